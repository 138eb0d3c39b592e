"""Throwaway certificates and keys for the local control plane.

One self-signed CA signs every certificate: the serving certificates of kube-apiserver,
kube-controller-manager and kube-scheduler (for 127.0.0.1 and localhost), and one client
certificate per identity that talks to the API server. The service account tokens get their
own key pair. All keys are ECDSA P-256, which is quick to generate and which every
component accepts.

WARNING: these files protect nothing but a cluster on loopback. The CA key sits next to the
certificates and must never sign anything else.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough that a cluster folder kept for years still starts, because a loopback cluster
# gains nothing from rotation.
VALIDITY = datetime.timedelta(days=3650)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")

# The names under which Pods reach the API server through the `kubernetes` Service. 10.0.0.1
# is the first address of the service range 10.0.0.0/24.
APISERVER_HOSTS = (
    *LOOPBACK_HOSTS,
    "10.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclasses.dataclass(frozen=True)
class ClientIdentity:
    """The subject of a client certificate: user name (CN) and groups (O)."""

    user: str
    groups: tuple[str, ...] = ()


# The component identities are the ones that the API server's default RBAC policy grants
# permissions to. kwok needs cluster-wide writes to Pods, Nodes and Leases, so it joins
# system:masters. front-proxy-client is the API server itself when it proxies a request to
# an aggregated API server.
CLIENT_IDENTITIES = {
    "admin": ClientIdentity("sked-admin", ("system:masters",)),
    "kube-controller-manager": ClientIdentity("system:kube-controller-manager"),
    "kube-scheduler": ClientIdentity("system:kube-scheduler"),
    "kwok": ClientIdentity("kwok", ("system:masters",)),
    "front-proxy": ClientIdentity("front-proxy-client"),
}

SERVING_IDENTITIES = {
    "kube-apiserver": APISERVER_HOSTS,
    "kube-controller-manager": LOOPBACK_HOSTS,
    "kube-scheduler": LOOPBACK_HOSTS,
}


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """Paths of a PEM certificate and its PEM private key."""

    cert: Path
    key: Path


@dataclasses.dataclass(frozen=True)
class Pki:
    """Paths of every certificate and key in a cluster's ``pki`` folder."""

    directory: Path

    @property
    def ca(self) -> KeyPair:
        return KeyPair(self.directory / "ca.crt", self.directory / "ca.key")

    @property
    def service_account_key(self) -> Path:
        """Private key that signs service account tokens."""
        return self.directory / "sa.key"

    @property
    def service_account_public_key(self) -> Path:
        """Public key that verifies service account tokens."""
        return self.directory / "sa.pub"

    def serving(self, component: str) -> KeyPair:
        """Return the serving certificate of ``component``."""
        return KeyPair(
            self.directory / f"{component}-serving.crt",
            self.directory / f"{component}-serving.key",
        )

    def client(self, identity: str) -> KeyPair:
        """Return the client certificate of ``identity`` (a key of `CLIENT_IDENTITIES`)."""
        return KeyPair(
            self.directory / f"{identity}-client.crt",
            self.directory / f"{identity}-client.key",
        )

    def all_files(self) -> list[Path]:
        """Return every file that a complete PKI folder contains."""
        pairs = [self.ca]
        pairs += [self.serving(component) for component in SERVING_IDENTITIES]
        pairs += [self.client(identity) for identity in CLIENT_IDENTITIES]
        files = [path for pair in pairs for path in (pair.cert, pair.key)]
        return [*files, self.service_account_key, self.service_account_public_key]


def ensure_pki(directory: Path) -> Pki:
    """Create the CA, certificates and keys in ``directory`` unless all of them exist.

    Existing files are reused, so a cluster restarted from the same folder keeps its
    kubeconfig and its service account tokens valid. A partial folder is regenerated whole,
    because certificates signed by a lost CA key are useless.
    """
    pki = Pki(directory)
    if all(path.is_file() for path in pki.all_files()):
        return pki

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sked-local-ca")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_pair(pki.ca, ca_cert, ca_key)

    for component, hosts in SERVING_IDENTITIES.items():
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, component)])
        _issue(pki.serving(component), subject, ca_cert, ca_key, now, hosts=hosts)

    for identity_name, identity in CLIENT_IDENTITIES.items():
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in identity.groups]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, identity.user))
        _issue(pki.client(identity_name), x509.Name(attributes), ca_cert, ca_key, now)

    service_account_key = ec.generate_private_key(ec.SECP256R1())
    _write_private_key(pki.service_account_key, service_account_key)
    pki.service_account_public_key.write_bytes(
        service_account_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime.datetime,
) -> x509.CertificateBuilder:
    # Backdated by an hour so a clock that steps back a little does not void the files.
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
    )


def _issue(
    pair: KeyPair,
    subject: x509.Name,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
    *,
    hosts: tuple[str, ...] = (),
) -> None:
    """Write a certificate signed by the CA: a serving one when ``hosts`` is given."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if hosts else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(host) for host in hosts]), critical=False
        )
    _write_pair(pair, builder.sign(ca_key, hashes.SHA256()), key)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_pair(pair: KeyPair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    _write_private_key(pair.key, key)
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created with mode 0600 from the start, so the key is never readable by others.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        key_file.write(data)
