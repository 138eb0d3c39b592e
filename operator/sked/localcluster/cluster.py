"""A real Kubernetes control plane on loopback, with kwok's fake Nodes in place of kubelets.

`LocalCluster` runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
as child processes, each bound to 127.0.0.1 on a port picked at start. There are no real
Nodes: kwok keeps the fake Nodes of ``nodes.yaml`` Ready and moves the Pods that the real
scheduler binds to them through the Stages of ``kwok-stages.yaml``.

Limits: no container ever runs, so Pod logs, exec, probes and the Pod network do not exist.
No node lifecycle controller runs, so Nodes never turn NotReady on their own.
"""

from __future__ import annotations

import atexit
import dataclasses
import http.client
import json
import logging
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from sked.localcluster import apiclient, certs, configfiles, state
from sked.localcluster.binaries import Binaries, ensure_binaries, find_binaries
from sked.localcluster.errors import ClusterRunningError, ClusterStartError
from sked.localcluster.processes import ManagedProcess, pick_free_ports, port_is_free, tail

logger = logging.getLogger(__name__)

# Start order. Stopping runs it backwards, so no process loses a server it depends on
# while it still runs: kube-apiserver waits for etcd on shutdown, for example.
PROCESS_NAMES = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
STOP_ORDER = PROCESS_NAMES[::-1]

# The controllers that tests of an operator depend on. garbage-collector deletes the Pods
# of deleted owners, and namespace empties deleted Namespaces. serviceaccount creates the
# `default` ServiceAccount, without which ServiceAccount admission rejects every Pod.
# serviceaccount-token and root-ca-certificate-publisher provide what Pods mount, and
# clusterrole-aggregation fills aggregated roles such as admin, edit and view.
DEFAULT_CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
)

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
FAKE_NODE_SELECTOR = "kwok.x-k8s.io/node=fake"

# A first start on an empty etcd takes 3 to 5 s on 2 cores. The margin covers slow CI
# machines and the first API server start after a build, when the page cache is cold.
DEFAULT_START_TIMEOUT_SECONDS = 120.0
# The audit log may grow to 100 GB before kube-apiserver rotates it.
AUDIT_LOG_MAX_MB = 100_000
POLL_INTERVAL_SECONDS = 0.1


@dataclasses.dataclass
class Ports:
    """The loopback TCP ports of one cluster."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @classmethod
    def pick(cls, previous: Mapping[str, int] | None = None) -> Ports:
        """Reuse ``previous`` when every port in it is still free, else pick new ones.

        Reusing the ports keeps a kubeconfig valid across `stop` and `start` and keeps
        etcd's recorded peer URL the same.
        """
        names = [field.name for field in dataclasses.fields(cls)]
        if previous and all(
            isinstance(previous.get(name), int) and port_is_free(previous[name]) for name in names
        ):
            return cls(**{name: previous[name] for name in names})
        return cls(*pick_free_ports(len(names)))


class LocalCluster:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on loopback.

    Use it as a context manager, or call `start` and `stop`. Everything the cluster
    writes, its etcd data included, lives in ``workdir``, and a later start from the same
    folder continues with the same data, certificates and, when free, ports.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        binaries: Binaries | None = None,
        fsync: bool = False,
        audit_log: bool = False,
        kwok_qps: float | None = None,
        extra_apiserver_args: Sequence[str] = (),
        controllers: Iterable[str] | None = None,
        extra_args: Mapping[str, Sequence[str]] | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT_SECONDS,
    ) -> None:
        """Prepare a cluster in ``workdir``; nothing starts before `start`.

        ``binaries`` defaults to `find_binaries`, and missing ones are then built.
        ``fsync`` keeps etcd's fsync on, for benchmarks of durable writes. ``audit_log``
        records every request at level Metadata in ``workdir/audit.log``. ``kwok_qps``
        is the rate of Pod Stages per second kwok should sustain, which sets its number
        of workers. ``controllers`` replaces `DEFAULT_CONTROLLERS`. ``extra_args`` adds
        flags to any process by name, after the defaults, so a flag given there overrides
        the default value. For example ``{"kube-scheduler": ["--kube-api-qps=500"]}``
        lifts the scheduler's default limit of 50 requests per second, which binds about
        60 Pods per second.
        """
        self.layout = state.Layout(Path(workdir))
        self.fsync = fsync
        self.audit_log = audit_log
        self.kwok_qps = kwok_qps
        self.controllers = list(DEFAULT_CONTROLLERS if controllers is None else controllers)
        self.start_timeout = start_timeout
        self._binaries = binaries
        self._build_missing_binaries = binaries is None
        self._extra_args = {name: list(args) for name, args in (extra_args or {}).items()}
        unknown = set(self._extra_args) - set(PROCESS_NAMES)
        if unknown:
            raise ValueError(
                f"extra_args names unknown processes {sorted(unknown)}. "
                f"Use names from {PROCESS_NAMES}."
            )
        self._extra_args.setdefault("kube-apiserver", [])
        self._extra_args["kube-apiserver"][:0] = list(extra_apiserver_args)
        self._processes: dict[str, ManagedProcess] = {}
        self._ports: Ports | None = None
        self._pki: certs.Pki | None = None
        self._exit_hook_registered = False

    # Public attributes.

    @property
    def workdir(self) -> Path:
        return self.layout.workdir

    @property
    def log_dir(self) -> Path:
        """Folder with one log per process, named ``<process>.log``."""
        return self.layout.log_dir

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig: a client certificate in group system:masters."""
        return self.layout.kubeconfig

    @property
    def audit_log_path(self) -> Path:
        """The API server's audit log; it exists only with ``audit_log=True``."""
        return self.layout.audit_log

    @property
    def server(self) -> str:
        """The API server's URL, ``https://127.0.0.1:<port>``."""
        if self._ports is None:
            raise RuntimeError("The cluster has no server URL before start()")
        return f"https://127.0.0.1:{self._ports.apiserver}"

    @property
    def ports(self) -> Ports:
        if self._ports is None:
            raise RuntimeError("The cluster has no ports before start()")
        return self._ports

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        """The `Popen` of every process started and not yet stopped, keyed by name."""
        return {
            name: process.popen
            for name, process in self._processes.items()
            if process.popen is not None
        }

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = find_binaries()
        return self._binaries

    # Life cycle.

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start every process, wait until the cluster is ready and create the fake Nodes.

        Ready means: every process passes its health check, every fake Node is Ready and
        the ``default`` ServiceAccount exists in namespace ``default``. On any failure the
        processes started so far are stopped and the error is raised.
        """
        started_at = time.monotonic()
        self._check_not_running()
        try:
            self._prepare()
            self._register_exit_hook()
            self._start_processes()
            self._apply_nodes()
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        logger.info(
            "Local cluster is ready at %s after %.1f s; kubeconfig: %s",
            self.server,
            time.monotonic() - started_at,
            self.kubeconfig,
        )

    def stop(self) -> None:
        """Stop every process this object started, newest first. Calling it again is safe."""
        for name in STOP_ORDER:
            process = self._processes.get(name)
            if process is not None:
                process.stop()
        self._processes.clear()
        self.layout.pids_file.unlink(missing_ok=True)
        if self._exit_hook_registered:
            atexit.unregister(self.stop)
            self._exit_hook_registered = False

    def detach(self) -> None:
        """Leave the processes running after this Python process exits.

        ``python -m sked.localcluster down`` stops them later by the pids in
        ``pids.json``.
        """
        for process in self._processes.values():
            process.forget()
        self._processes.clear()
        if self._exit_hook_registered:
            atexit.unregister(self.stop)
            self._exit_hook_registered = False

    def restart_apiserver(self, *, graceful: bool = True) -> None:
        """Stop kube-apiserver and start it again on the same port, then wait for /readyz.

        A graceful stop (SIGTERM) takes about 2 s while clients hold watches;
        ``graceful=False`` sends SIGKILL at once, like a crash.
        """
        self._restart("kube-apiserver", graceful=graceful)
        self._wait_for_apiserver()

    def restart_etcd(self, *, graceful: bool = True) -> None:
        """Stop etcd and start it again on the same ports and data, then wait for health.

        A graceful stop (SIGTERM) takes about 7 s while kube-apiserver has open watches,
        because etcd v3.5 waits its request timeout for them. ``graceful=False`` sends
        SIGKILL at once. Either way no committed write is lost, even without fsync,
        because the kernel still has the written pages. Returns once kube-apiserver
        reports ready again, because it fails /readyz while etcd is away.
        """
        self._restart("etcd", graceful=graceful)
        self._wait_for_etcd()
        self._wait_for_apiserver()

    def logs_tail(self, lines: int = 50) -> str:
        """Return the last ``lines`` lines of every process's log, under one header each."""
        sections = []
        for name in PROCESS_NAMES:
            path = self.log_dir / f"{name}.log"
            if path.exists():
                sections.append(f"==> {path} <==\n{tail(path, lines)}")
        return "\n\n".join(sections)

    # Preparation.

    def _check_not_running(self) -> None:
        if self._processes:
            raise RuntimeError("The cluster is already started; call stop() first")
        running = state.running_pids(self.layout)
        if running:
            listing = ", ".join(f"{name} (pid {pid})" for name, pid in running.items())
            raise ClusterRunningError(
                f"A cluster from {self.workdir} is still running: {listing}. Stop it with "
                f"`python -m sked.localcluster down --dir {self.workdir}` or use another "
                "folder."
            )

    def _prepare(self) -> None:
        """Find or build the binaries and write the certificates and configuration files."""
        for folder in (self.workdir, self.layout.log_dir, self.layout.etcd_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.layout.etcd_dir.chmod(0o700)

        if self._build_missing_binaries:
            ensure_binaries(self.binaries, log_path=self.log_dir / "build.log")
        else:
            self.binaries.require()

        previous = state.read_json(self.layout.state_file).get("ports")
        self._ports = Ports.pick(previous)
        state.write_json(self.layout.state_file, {"ports": dataclasses.asdict(self._ports)})

        self._pki = certs.ensure_pki(self.layout.pki_dir)
        configfiles.write_kubeconfig(
            self.kubeconfig,
            server=self.server,
            ca_cert=self._pki.ca.cert,
            client=self._pki.client("admin"),
            user="sked-admin",
        )
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            configfiles.write_kubeconfig(
                self.layout.component_kubeconfig(name),
                server=self.server,
                ca_cert=self._pki.ca.cert,
                client=self._pki.client(name),
                user=certs.CLIENT_IDENTITIES[name].user,
            )
        configfiles.write_kwok_config(
            self.layout.kwok_config,
            server_address=f"127.0.0.1:{self._ports.kwok}",
            kwok_qps=self.kwok_qps,
        )
        if self.audit_log:
            configfiles.write_audit_policy(self.layout.audit_policy)

        argv_of = {
            "etcd": self._etcd_argv,
            "kube-apiserver": self._apiserver_argv,
            "kube-controller-manager": self._controller_manager_argv,
            "kube-scheduler": self._scheduler_argv,
            "kwok": self._kwok_argv,
        }
        for name in PROCESS_NAMES:
            argv = [*argv_of[name](), *self._extra_args.get(name, [])]
            self._processes[name] = ManagedProcess(name, argv, self.log_dir / f"{name}.log")

    def _register_exit_hook(self) -> None:
        # A foreground cluster must not outlive an interpreter that exits without stop(),
        # for example after an unhandled exception. SIGKILL of Python still leaks them.
        if not self._exit_hook_registered:
            atexit.register(self.stop)
            self._exit_hook_registered = True

    # Command lines.

    def _etcd_argv(self) -> list[str]:
        ports = self.ports
        client_url = f"http://127.0.0.1:{ports.etcd_client}"
        peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
        argv = [
            str(self.binaries.etcd),
            "--name=sked-local",
            f"--data-dir={self.layout.etcd_dir}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=sked-local={peer_url}",
        ]
        if not self.fsync:
            # fsync dominates etcd's write latency. Without it only a crash of the machine
            # loses writes, and tests do not need them after that.
            argv.append("--unsafe-no-fsync=true")
        return argv

    def _apiserver_argv(self) -> list[str]:
        pki = self._require_pki()
        serving = pki.serving("kube-apiserver")
        argv = [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The `kubernetes` Service cannot have a loopback endpoint, and no Pod runs
            # that could use one, so its Endpoints are left alone.
            "--endpoint-reconciler-type=none",
            f"--secure-port={self.ports.apiserver}",
            f"--cert-dir={pki.directory}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={pki.ca.cert}",
            # The request-header settings let kube-controller-manager and kube-scheduler
            # authenticate requests that the API server proxies, and keep them from
            # logging that the setting is missing.
            f"--requestheader-client-ca-file={pki.ca.cert}",
            f"--requestheader-allowed-names={certs.CLIENT_IDENTITIES['front-proxy'].user}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.client('front-proxy').cert}",
            f"--proxy-client-key-file={pki.client('front-proxy').key}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            # On SIGTERM, reply 429 with Retry-After to new requests until the running
            # ones finish, then close open watches after 2 s. Without it, v1.33 waits the
            # full request timeout of 60 s for the watches of its clients.
            "--shutdown-send-retry-after=true",
            # Added to the default plugins, which stay on.
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            # TaintNodesByCondition taints every new Node not-ready until the node
            # lifecycle controller removes the taint. That controller does not run here,
            # so the fake Nodes would never accept a Pod.
            "--disable-admission-plugins=TaintNodesByCondition",
        ]
        if self.audit_log:
            argv += [
                f"--audit-policy-file={self.layout.audit_policy}",
                f"--audit-log-path={self.layout.audit_log}",
                # With the default of 0, the file is rotated at 100 MB, and a reader's byte
                # offset would then point into a new file. Benchmarks read one file.
                f"--audit-log-maxsize={AUDIT_LOG_MAX_MB}",
            ]
        return argv

    def _controller_manager_argv(self) -> list[str]:
        pki = self._require_pki()
        kubeconfig = self.layout.component_kubeconfig("kube-controller-manager")
        serving = pki.serving("kube-controller-manager")
        return [
            str(self.binaries.kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports.controller_manager}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--leader-elect=false",
            f"--controllers={','.join(self.controllers)}",
            f"--root-ca-file={pki.ca.cert}",
            f"--service-account-private-key-file={pki.service_account_key}",
            # Each controller then acts as its own ServiceAccount in kube-system, so the
            # audit log names the controller behind each request.
            "--use-service-account-credentials=true",
            "--cluster-name=sked-local",
        ]

    def _scheduler_argv(self) -> list[str]:
        pki = self._require_pki()
        kubeconfig = self.layout.component_kubeconfig("kube-scheduler")
        serving = pki.serving("kube-scheduler")
        return [
            str(self.binaries.kube_scheduler),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports.scheduler}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--leader-elect=false",
        ]

    def _kwok_argv(self) -> list[str]:
        return [
            str(self.binaries.kwok),
            f"--kubeconfig={self.layout.component_kubeconfig('kwok')}",
            f"--config={self.layout.kwok_config}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_SELECTOR}",
            f"--server-address=127.0.0.1:{self.ports.kwok}",
            f"--node-lease-duration-seconds={configfiles.NODE_LEASE_DURATION_SECONDS}",
            f"--cidr={configfiles.POD_CIDR}",
        ]

    def _require_pki(self) -> certs.Pki:
        if self._pki is None:
            raise RuntimeError("The cluster's certificates are created by start()")
        return self._pki

    # Processes and readiness.

    def _start_processes(self) -> None:
        self._start("etcd")
        self._wait_for_etcd()
        self._start("kube-apiserver")
        self._wait_for_apiserver()
        # The other three only need the API server and start in parallel.
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            self._start(name)

    def _start(self, name: str) -> None:
        self._processes[name].start()
        self._write_pids()

    def _restart(self, name: str, *, graceful: bool) -> None:
        process = self._processes.get(name)
        if process is None:
            raise RuntimeError(f"{name} cannot be restarted before start()")
        if graceful:
            process.stop()
        else:
            process.kill()
        self._start(name)

    def _write_pids(self) -> None:
        pids = {
            name: process.pid
            for name, process in self._processes.items()
            if process.pid is not None and process.is_running()
        }
        state.write_json(self.layout.pids_file, pids)

    def _wait_until_ready(self) -> None:
        self._wait_for(
            "kube-controller-manager /healthz",
            lambda: self._https_ok(self.ports.controller_manager, "/healthz"),
        )
        self._wait_for(
            "kube-scheduler /healthz",
            lambda: self._https_ok(self.ports.scheduler, "/healthz"),
        )
        self._wait_for(
            "kwok /healthz",
            lambda: apiclient.get(f"http://127.0.0.1:{self.ports.kwok}/healthz")[0] == 200,
        )
        self._wait_for("the fake Nodes to be Ready", self._nodes_are_ready)
        self._wait_for(
            "the default ServiceAccount in namespace default",
            lambda: self._api_exists("/api/v1/namespaces/default/serviceaccounts/default"),
        )

    def _wait_for_etcd(self) -> None:
        url = f"http://127.0.0.1:{self.ports.etcd_client}/health"

        def etcd_is_healthy() -> bool:
            status, body = apiclient.get(url)
            return status == 200 and json.loads(body).get("health") == "true"

        self._wait_for("etcd /health", etcd_is_healthy)

    def _wait_for_apiserver(self) -> None:
        self._wait_for(
            "kube-apiserver /readyz",
            lambda: apiclient.get(self.server + "/readyz", self._admin_tls())[0] == 200,
        )

    def _wait_for(self, description: str, check: Callable[[], bool]) -> None:
        """Poll ``check`` until it returns True.

        Raises `ClusterStartError` when a started process exits or when
        ``start_timeout`` passes, with the log of the process concerned.
        """
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while True:
            self._raise_if_a_process_exited(description)
            try:
                if check():
                    logger.debug("Ready: %s", description)
                    return
            except (OSError, http.client.HTTPException, ValueError, apiclient.ApiError) as error:
                # Refused connections, TLS errors and 5xx responses mean "not ready yet".
                last_error = error
            if time.monotonic() > deadline:
                detail = f" The last error was: {last_error}." if last_error else ""
                raise ClusterStartError(
                    f"Timed out after {self.start_timeout:.0f} s waiting for "
                    f"{description}.{detail} The logs are in {self.log_dir}; their last "
                    f"lines:\n{self.logs_tail(20)}"
                )
            time.sleep(POLL_INTERVAL_SECONDS)

    def _raise_if_a_process_exited(self, description: str) -> None:
        for name, process in self._processes.items():
            code = process.exit_code()
            if code is not None:
                raise ClusterStartError(
                    f"{name} exited with code {code} while waiting for {description}. "
                    f"The last lines of {process.log_path}:\n"
                    f"{tail(process.log_path, 30)}"
                )

    def _admin_tls(self) -> ssl.SSLContext:
        pki = self._require_pki()
        return apiclient.tls_context(str(pki.ca.cert), pki.client("admin"))

    def _admin_client(self) -> apiclient.ApiClient:
        return apiclient.ApiClient(self.server, self._admin_tls())

    def _https_ok(self, port: int, path: str) -> bool:
        context = apiclient.tls_context(str(self._require_pki().ca.cert))
        return apiclient.get(f"https://127.0.0.1:{port}{path}", context)[0] == 200

    def _api_exists(self, path: str) -> bool:
        try:
            self._admin_client().request("GET", path)
        except apiclient.ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    # Fake Nodes.

    def _apply_nodes(self) -> None:
        """Create the fake Nodes, or bring existing ones back to their labels and spec."""
        client = self._admin_client()
        version = client.request("GET", "/version")["gitVersion"]
        for node in fake_nodes(kubelet_version=version):
            name = node["metadata"]["name"]
            try:
                client.request("POST", "/api/v1/nodes", node)
                logger.debug("Created fake Node %s", name)
            except apiclient.ApiError as error:
                if error.status != 409:
                    raise
                patch = {"metadata": node["metadata"], "spec": node["spec"]}
                client.request(
                    "PATCH",
                    f"/api/v1/nodes/{urllib.parse.quote(name)}",
                    patch,
                    content_type="application/merge-patch+json",
                )
                logger.debug("Updated fake Node %s", name)

    def _nodes_are_ready(self) -> bool:
        expected = {node["metadata"]["name"] for node in fake_nodes(kubelet_version="")}
        query = urllib.parse.urlencode({"labelSelector": "type=kwok"})
        listing = self._admin_client().request("GET", f"/api/v1/nodes?{query}")
        ready = {
            item["metadata"]["name"]
            for item in listing.get("items", [])
            if any(
                condition.get("type") == "Ready" and condition.get("status") == "True"
                for condition in item.get("status", {}).get("conditions", [])
            )
        }
        return expected <= ready


def fake_nodes(*, kubelet_version: str) -> list[dict]:
    """Return the fake Node objects of ``nodes.yaml``, reporting ``kubelet_version``."""
    nodes = configfiles.packaged_yaml("nodes.yaml")
    for node in nodes:
        node["status"]["nodeInfo"] = {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "osImage": "kwok fake node",
            "kernelVersion": "fake",
            "containerRuntimeVersion": "kwok://fake",
            "kubeletVersion": kubelet_version,
            "kubeProxyVersion": "",
            "machineID": "",
            "systemUUID": node["metadata"]["name"],
            "bootID": "",
        }
    return nodes
