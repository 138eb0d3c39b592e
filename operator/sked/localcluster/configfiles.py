"""Kubeconfigs, the kwok configuration and the audit policy of the local cluster."""

from __future__ import annotations

import base64
import importlib.resources
import math
from pathlib import Path
from typing import Any

import yaml

from sked.localcluster.certs import KeyPair

CONTEXT_NAME = "sked-local"

# Pods on fake Nodes get addresses from this range; it stays apart from the service range
# 10.0.0.0/24, which is also kwok's default.
POD_CIDR = "10.244.0.0/16"

# kwok v0.8.0 renews a Lease for each fake Node, as a kubelet does.
NODE_LEASE_DURATION_SECONDS = 40

# kwok v0.8.0 sends requests without a client-side rate limit (its client uses a fake
# rate limiter), so the knob behind `kwok_qps` is the number of workers that apply Pod
# Stages, 4 by default. Measured on a 2-core machine with 600 Pods bound in advance: 4
# workers applied about 160 Stages per second, and 16 workers no more, because the API
# server and etcd used the CPU. A requested rate therefore gets one worker per 40 Stages
# per second, and never fewer than 4.
STAGES_PER_WORKER_PER_SECOND = 40
DEFAULT_STAGE_WORKERS = 4


def write_kubeconfig(path: Path, *, server: str, ca_cert: Path, client: KeyPair, user: str) -> None:
    """Write a kubeconfig with the certificates embedded, so it can be copied anywhere."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT_NAME,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": _base64_of(ca_cert),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _base64_of(client.cert),
                    "client-key-data": _base64_of(client.key),
                },
            }
        ],
        "contexts": [{"name": CONTEXT_NAME, "context": {"cluster": CONTEXT_NAME, "user": user}}],
        "current-context": CONTEXT_NAME,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # The file carries a private key, so only its owner may read it.
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def read_kubeconfig_server(path: Path) -> str | None:
    """Return the server URL of a kubeconfig written by `write_kubeconfig`, if it exists."""
    try:
        config = yaml.safe_load(path.read_text())
        return str(config["clusters"][0]["cluster"]["server"])
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError):
        return None


def _base64_of(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def packaged_yaml(name: str) -> list[dict[str, Any]]:
    """Return the documents of a YAML file shipped in this package."""
    text = importlib.resources.files(__package__).joinpath(name).read_text()
    return [document for document in yaml.safe_load_all(text) if document]


def write_kwok_config(path: Path, *, server_address: str, kwok_qps: float | None) -> None:
    """Write kwok's configuration: its options followed by the project's Stages."""
    workers = DEFAULT_STAGE_WORKERS
    if kwok_qps is not None:
        workers = max(workers, math.ceil(kwok_qps / STAGES_PER_WORKER_PER_SECOND))
    options = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        "metadata": {"name": "sked-local"},
        "options": {
            "cidr": POD_CIDR,
            "serverAddress": server_address,
            # The server exists for /healthz and /metrics; exec, logs and port-forward
            # have nothing behind them on fake Nodes.
            "enableDebuggingHandlers": False,
            "nodeLeaseDurationSeconds": NODE_LEASE_DURATION_SECONDS,
            # kwok v0.8.0 applies none of its documented defaults to a configuration file
            # given with --config, and it refuses to start with 0 workers.
            "podPlayStageParallelism": workers,
            "nodePlayStageParallelism": DEFAULT_STAGE_WORKERS,
            "nodeLeaseParallelism": DEFAULT_STAGE_WORKERS,
            "podsOnNodeSyncParallelism": 1,
        },
    }
    documents = [options, *packaged_yaml("kwok-stages.yaml")]
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def write_audit_policy(path: Path) -> None:
    """Write an audit policy that records every request at level Metadata.

    Metadata carries the user, the user agent, the verb and the resource of each request,
    which is what counting API calls per client needs; RequestReceived is omitted because
    each request also appears at ResponseComplete.
    """
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [{"level": "Metadata"}],
    }
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
