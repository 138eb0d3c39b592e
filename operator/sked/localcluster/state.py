"""The layout of a cluster's folder and the state recorded in it.

A cluster folder contains everything one local cluster needs, so two folders run two
independent clusters:

    kubeconfig       admin kubeconfig (context sked-local)
    pids.json        {process name: pid} of the processes that run now
    cluster.json     the ports of the last start, reused when they are still free
    pki/             CA, certificates and keys
    kubeconfigs/     one kubeconfig per component
    etcd/            etcd's data
    logs/            one log per process
    kwok.yaml        kwok's options and Stages
    audit-policy.yaml, audit.log
                     the API server's audit policy and log, when auditing is enabled
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from sked.localcluster import processes


class Layout:
    """Paths inside one cluster folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir.resolve()

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def pids_file(self) -> Path:
        return self.workdir / "pids.json"

    @property
    def state_file(self) -> Path:
        return self.workdir / "cluster.json"

    @property
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    @property
    def kubeconfig_dir(self) -> Path:
        return self.workdir / "kubeconfigs"

    @property
    def etcd_dir(self) -> Path:
        return self.workdir / "etcd"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def kwok_config(self) -> Path:
        return self.workdir / "kwok.yaml"

    @property
    def audit_policy(self) -> Path:
        return self.workdir / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def component_kubeconfig(self, name: str) -> Path:
        return self.kubeconfig_dir / f"{name}.kubeconfig"

    @property
    def process_marker(self) -> str:
        """A string that every process of this cluster has on its command line.

        Each process is given at least one path inside the folder, so the folder's path
        identifies the cluster's processes among all others.
        """
        return str(self.workdir) + os.sep


def read_json(path: Path) -> dict:
    """Return the JSON object in ``path``, or an empty dict if it is missing or invalid."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict) -> None:
    """Replace ``path`` atomically, so a reader never sees half a file."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)


def running_pids(layout: Layout) -> dict[str, int]:
    """Return the recorded processes that still run, keyed by process name."""
    recorded = read_json(layout.pids_file)
    return {
        name: pid
        for name, pid in recorded.items()
        if isinstance(pid, int) and processes.pid_belongs_to(pid, layout.process_marker)
    }


def stop_recorded(layout: Layout, order: list[str]) -> list[str]:
    """Stop the recorded processes one after the other in ``order``, then delete the pid file.

    Returns the names of the processes that were running. Names missing from ``order``
    are stopped last.
    """
    recorded = read_json(layout.pids_file)
    names = [name for name in order if name in recorded]
    names += [name for name in recorded if name not in order]
    stopped = [
        name
        for name in names
        if isinstance(recorded[name], int)
        and processes.stop_pid(name, recorded[name], layout.process_marker)
    ]
    with contextlib.suppress(FileNotFoundError):
        layout.pids_file.unlink()
    return stopped
