"""Helpers for integration tests: the operator as a process, and polling with timeouts."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client

T = TypeVar("T")

GROUP, VERSION, PLURAL = "sked.dev", "v1alpha1", "scheduledjobs"


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Poll ``check`` until it returns a truthy value and return it; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    text = message() if callable(message) else message
    raise AssertionError(f"timed out after {timeout}s waiting for {text}; last value: {last!r}")


class OperatorProcess:
    """``sked run`` in a subprocess, as a user starts it, with its log in a file."""

    def __init__(self, kubeconfig: Path, log_path: Path, *, args: tuple[str, ...] = ()) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.args = args
        self.metrics_port = free_port()
        self.identity = f"sked-test-{self.metrics_port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # A stable identity lets a restarted operator take its own Lease back at once.
        environment = dict(
            os.environ,
            KUBECONFIG=str(self.kubeconfig),
            PYTHONUNBUFFERED="1",
            POD_NAME=self.identity,
        )
        # Each start appends to the same log; count only what this start writes.
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sked.cli",
                "run",
                "--metrics-host=127.0.0.1",
                f"--metrics-port={self.metrics_port}",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
        )
        log.close()
        wait_until(
            lambda: (
                "loaded" in self.log_path.read_text(errors="replace")[offset:] or self._exited()
            ),
            timeout=30,
            message="the operator to load its ScheduledJobs",
        )
        if self._exited():
            raise AssertionError(f"the operator exited at start:\n{self.log_tail()}")

    def scrape(self) -> str:
        """Return the operator's /metrics text."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def _exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        code = self.process.returncode
        self.process = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 80) -> str:
        if not self.log_path.exists():
            return "(no operator log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def job_manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScheduledJob",
        "metadata": {"name": name},
        "spec": spec,
    }


def pod_template(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"annotations": annotations or {}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.37"}]},
    }


class Jobs:
    """ScheduledJob calls in one namespace, through the kubernetes client."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    def create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, PLURAL, job_manifest(name, spec)
        )

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, PLURAL, name
        )

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            body=client.V1DeleteOptions(propagation_policy="Background"),
        )

    def pods(self, name: str | None = None) -> list[client.V1Pod]:
        selector = f"sked.dev/scheduledjob={name}" if name else "sked.dev/scheduledjob"
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=selector).items)

    def events(self, name: str) -> list[client.CoreV1Event]:
        selector = f"involvedObject.name={name},involvedObject.kind=ScheduledJob"
        return list(self.core.list_namespaced_event(self.namespace, field_selector=selector).items)

    def event_reasons(self, name: str) -> list[str]:
        return [event.reason for event in self.events(name)]

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        for condition in self.status(name).get("conditions", []):
            if condition["type"] == kind:
                return condition  # type: ignore[no-any-return]
        return None


@contextlib.contextmanager
def namespace(api_client: client.ApiClient, prefix: str = "it") -> Iterator[str]:
    """Create a namespace, wait for its default ServiceAccount, and delete it afterwards."""
    core = client.CoreV1Api(api_client)
    name = unique_name(prefix)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def has_default_account() -> bool:
        accounts = core.list_namespaced_service_account(name).items
        return any(account.metadata.name == "default" for account in accounts)

    # After an earlier test restarted the API server, this can take over a minute,
    # because kube-controller-manager's watches back off while it is away.
    wait_until(has_default_account, timeout=120, message=f"ServiceAccount default in {name}")
    try:
        yield name
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(name)
