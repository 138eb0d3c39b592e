"""The benchmark rig: a local control plane, the controllers under test and the recorder.

One `Rig` owns one `LocalCluster` in its own folder, with etcd syncing to the real disk,
an audit log at level Metadata, and kwok with more workers. The cluster's own
kube-controller-manager runs its default controllers only (garbage collector, namespace,
service accounts). The CronJob side's cronjob and job controllers run in a second
kube-controller-manager that the rig starts, stops and kills like a sked process. It
keeps the default client limits of 20 requests per second and bursts of 30 unless a
benchmark raises them. The garbage collector, which deletes the Pods of the Jobs that CronJob drops
from its history, stays in the first one, and its requests count for the CronJob side.

sked runs as ``sked run`` in a child process with a ServiceAccount of its own, so the
audit log names its requests, and the recorder (`bench.recorder`) is a third process
whose CPU use is watched along with kwok's.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from bench.api import Api, ApiError, Credentials
from bench.workloads import BENCH_LABEL
from sked.localcluster import DEFAULT_CONTROLLERS, LocalCluster
from sked.localcluster.processes import pick_free_ports

logger = logging.getLogger(__name__)

REPOSITORY = Path(__file__).resolve().parents[1]
CRD_FILE = REPOSITORY / "crds" / "scheduledjobs.sked.dev.yaml"

SKED_NAMESPACE = "sked-system"
SKED_ACCOUNT = "sked"
SKED_USER = f"system:serviceaccount:{SKED_NAMESPACE}:{SKED_ACCOUNT}"

# The kube-controller-manager defaults of v1.33 for its client.
DEFAULT_PEER_QPS = 20
DEFAULT_PEER_BURST = 30

# kwok's rate of Pod Stages; the value sets its number of workers (one per 40 per second).
KWOK_QPS = 400

# The same Lease timings on both sides: Kubernetes' defaults, which are also sked's.
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 15, 10, 2

READY_TIMEOUT_SECONDS = 300.0


def wait_for(
    check: Callable[[], object], *, timeout: float, interval: float = 0.2, what: str
) -> object:
    """Poll ``check`` until it returns a truthy value and return it.

    Raises TimeoutError after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Controller:
    """One controller process of either side, in a session of its own, with its log in a file."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, *, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self._log_offset = 0

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} has not started"
        return self.popen.pid

    def start(self) -> None:
        if self.running():
            raise RuntimeError(f"{self.name} is already running with pid {self.pid}")
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        environment = {**os.environ, **(self.env or {})}
        with self.log_path.open("ab") as log:
            self.started_at = time.time()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=REPOSITORY,
                start_new_session=True,
            )
        logger.info("started %s with pid %d", self.name, self.popen.pid)

    def stop(self, timeout: float = 20.0) -> None:
        """Send SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if not self.running():
            return
        assert self.popen is not None
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def kill(self) -> None:
        """Send SIGKILL, as a crash of the machine or the process would end it."""
        if self.running():
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait()

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_since_start(self) -> str:
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    def is_ready(self) -> bool:
        raise NotImplementedError

    def is_leading(self) -> bool:
        raise NotImplementedError

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> float:
        """Wait until the controller can act; return seconds since `start`."""

        def check() -> bool:
            if not self.running():
                raise RuntimeError(f"{self.name} exited; its log is {self.log_path}")
            return self.is_ready()

        wait_for(check, timeout=timeout, interval=0.05, what=f"{self.name} to be ready")
        return time.time() - self.started_at


class SkedProcess(Controller):
    """``sked run`` as its own ServiceAccount, ready once /readyz returns 200."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, metrics_port: int, *, env: dict[str, str]
    ) -> None:
        super().__init__(name, argv, log_path, env=env)
        self.metrics_port = metrics_port

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=2
            ) as reply:
                return reply.status == 200
        except OSError:
            return False

    def is_leading(self) -> bool:
        """Tell from /metrics whether this replica holds the Lease."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
            ) as reply:
                text = reply.read().decode()
        except OSError:
            return False
        return any(
            line.startswith("sked_leader ") and line.split()[1] == "1.0"
            for line in text.splitlines()
        )


class CronJobControllers(Controller):
    """A kube-controller-manager with only the cronjob and job controllers.

    Ready means that both controllers logged that their informer caches are synced. A
    replica that waits for the Lease logs that only once it leads.
    """

    def is_ready(self) -> bool:
        log = self.log_since_start()
        return all(f'"Caches are synced" controller="{name}"' in log for name in ("cronjob", "job"))

    def is_leading(self) -> bool:
        return "successfully acquired lease" in self.log_since_start()


class Rig:
    """A started cluster with the CRD, sked's ServiceAccount and the recorder."""

    def __init__(self, workdir: Path, *, kwok_qps: float = KWOK_QPS) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cluster = LocalCluster(
            workdir / "cluster",
            fsync=True,
            audit_log=True,
            kwok_qps=kwok_qps,
            controllers=DEFAULT_CONTROLLERS,
            extra_args={"kube-scheduler": ["--kube-api-qps=1000", "--kube-api-burst=1000"]},
        )
        self.recorder_output = workdir / "recorder.jsonl"
        self.sked_kubeconfig = workdir / "sked.kubeconfig"
        self.controllers: list[Controller] = []
        self._recorder: subprocess.Popen[bytes] | None = None
        self.api: Api | None = None

    # Life cycle.

    def start(self) -> None:
        self.cluster.start()
        self.api = Api(Credentials.from_kubeconfig(self.cluster.kubeconfig))
        self._apply_crd()
        self._create_sked_account()
        self._start_recorder()

    def stop(self) -> None:
        for controller in self.controllers:
            controller.stop()
        if self._recorder is not None and self._recorder.poll() is None:
            self._recorder.terminate()
            self._recorder.wait(10)
        self.cluster.stop()

    def __enter__(self) -> Rig:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def admin(self) -> Api:
        assert self.api is not None, "the rig has not started"
        return self.api

    def pids(self) -> dict[str, int]:
        """Return the pid of every process whose CPU a benchmark may watch."""
        pids = {name: popen.pid for name, popen in self.cluster.processes.items()}
        if self._recorder is not None:
            pids["recorder"] = self._recorder.pid
        for controller in self.controllers:
            if controller.running():
                pids[controller.name] = controller.pid
        return pids

    # Setup.

    def _apply_crd(self) -> None:
        manifest = yaml.safe_load(CRD_FILE.read_text())
        self.admin.create(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", manifest, exist_ok=True
        )
        name = manifest["metadata"]["name"]
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"

        def established() -> bool:
            conditions = (self.admin.get(path).get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_for(established, timeout=60, what="the ScheduledJob CRD to be Established")

    def _create_sked_account(self) -> None:
        """Create sked's ServiceAccount with cluster-admin and write a token kubeconfig for it."""
        api = self.admin
        self.create_namespace(SKED_NAMESPACE)
        accounts = f"/api/v1/namespaces/{SKED_NAMESPACE}/serviceaccounts"
        api.create(accounts, {"metadata": {"name": SKED_ACCOUNT}}, exist_ok=True)
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "sked-bench"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": SKED_ACCOUNT, "namespace": SKED_NAMESPACE}
            ],
        }
        api.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding, exist_ok=True)
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 86400},
        }
        token = api.create(f"{accounts}/{SKED_ACCOUNT}/token", request)["status"]["token"]
        admin_config = yaml.safe_load(self.cluster.kubeconfig.read_text())
        admin_config["users"] = [{"name": SKED_ACCOUNT, "user": {"token": token}}]
        admin_config["contexts"][0]["context"]["user"] = SKED_ACCOUNT
        self.sked_kubeconfig.touch(mode=0o600)
        self.sked_kubeconfig.write_text(yaml.safe_dump(admin_config, sort_keys=False))

    def _start_recorder(self) -> None:
        log = (self.workdir / "recorder.log").open("ab")
        self._recorder = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.recorder",
                f"--kubeconfig={self.cluster.kubeconfig}",
                f"--label={BENCH_LABEL}",
                f"--output={self.recorder_output}",
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=REPOSITORY,
        )
        assert self._recorder.stdout is not None
        line = self._recorder.stdout.readline().decode().strip()
        if line != "ready":
            raise RuntimeError(f"the recorder did not start; see {self.workdir / 'recorder.log'}")

    # Namespaces.

    def create_namespace(self, name: str) -> None:
        self.admin.create("/api/v1/namespaces", {"metadata": {"name": name}}, exist_ok=True)
        wait_for(
            lambda: self.admin.exists(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
            timeout=60,
            what=f"the default ServiceAccount of namespace {name}",
        )

    def delete_namespace(self, name: str, *, timeout: float = 600) -> bool:
        """Delete a namespace and wait until it is gone, so its cleanup stays out of later runs.

        Returns False, with a warning, if it still exists after ``timeout`` seconds. The
        measurement before it is kept either way.
        """
        self._empty_namespace(name)
        self.admin.delete(f"/api/v1/namespaces/{name}")
        try:
            wait_for(
                lambda: not self.admin.exists(f"/api/v1/namespaces/{name}"),
                timeout=timeout,
                interval=1.0,
                what=f"namespace {name} to be deleted",
            )
        except TimeoutError as error:
            logger.warning("%s; the next run starts anyway", error)
            return False
        return True

    def _empty_namespace(self, name: str) -> None:
        """Delete the benchmark's objects in ``name`` as the admin, after its measurement.

        Left to the namespace controller and the garbage collector, which send at most 20
        requests per second, a namespace with thousands of Jobs and Pods takes many
        minutes. The admin has no such limit. Pods go first, and the Job controller's
        tracking finalizer is taken off them, because that controller no longer runs. Their
        owners then have no dependents left for the garbage collector.
        """
        api = self.admin
        pods = f"/api/v1/namespaces/{name}/pods"
        for pod in api.list_all(pods):
            if not pod["metadata"].get("finalizers"):
                continue
            try:
                api.patch(f"{pods}/{pod['metadata']['name']}", {"metadata": {"finalizers": None}})
            except ApiError as error:
                if error.status != 404:
                    raise
        collections = [
            pods,
            f"/apis/batch/v1/namespaces/{name}/jobs",
            f"/apis/batch/v1/namespaces/{name}/cronjobs",
            f"/apis/sked.dev/v1alpha1/namespaces/{name}/scheduledjobs",
        ]
        for path in collections:
            api.request(
                "DELETE",
                path,
                {"propagationPolicy": "Background", "gracePeriodSeconds": 0},
                expected=(200, 404),
            )

    # Controllers.

    def sked(
        self,
        name: str,
        namespaces: list[str],
        *,
        leader_elect: bool = False,
        extra: list[str] | None = None,
    ) -> SkedProcess:
        """Return a sked process for ``namespaces``, not yet started."""
        (port,) = pick_free_ports(1)
        argv = [
            sys.executable,
            "-m",
            "sked.cli",
            "run",
            "--metrics-host=127.0.0.1",
            f"--metrics-port={port}",
            *(f"--namespace={namespace}" for namespace in namespaces),
        ]
        if leader_elect:
            argv += [
                f"--lease-namespace={SKED_NAMESPACE}",
                f"--lease-duration={LEASE_DURATION}",
                f"--renew-deadline={RENEW_DEADLINE}",
                f"--retry-period={RETRY_PERIOD}",
            ]
        else:
            argv.append("--no-leader-elect")
        argv += extra or []
        # NOTE: the kubeconfig goes in $KUBECONFIG, not --kubeconfig. kopf logs in through the
        # `kubernetes` package, which reads $KUBECONFIG when it is imported, before sked sets
        # it from the flag, so with the flag alone kopf finds no credentials and stops.
        environment = {
            "KUBECONFIG": str(self.sked_kubeconfig),
            "POD_NAME": name,
            "PYTHONUNBUFFERED": "1",
        }
        process = SkedProcess(name, argv, self.workdir / f"{name}.log", port, env=environment)
        self.controllers.append(process)
        return process

    def cronjob_controllers(
        self,
        name: str,
        *,
        qps: float | None = None,
        burst: int | None = None,
        leader_elect: bool = False,
    ) -> CronJobControllers:
        """Return a kube-controller-manager with the cronjob and job controllers, not started."""
        layout = self.cluster.layout
        kubeconfig = layout.component_kubeconfig("kube-controller-manager")
        (port,) = pick_free_ports(1)
        argv = [
            str(self.cluster.binaries.kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--controllers=cronjob,job",
            "--use-service-account-credentials=true",
            "--cluster-name=sked-local",
            f"--kube-api-qps={qps if qps is not None else DEFAULT_PEER_QPS:g}",
            f"--kube-api-burst={burst if burst is not None else DEFAULT_PEER_BURST}",
        ]
        if leader_elect:
            # The Lease kube-system/kube-controller-manager, which the default RBAC policy lets
            # this identity hold; the cluster's own instance runs without election.
            argv += [
                "--leader-elect=true",
                f"--leader-elect-lease-duration={LEASE_DURATION}s",
                f"--leader-elect-renew-deadline={RENEW_DEADLINE}s",
                f"--leader-elect-retry-period={RETRY_PERIOD}s",
            ]
        else:
            argv.append("--leader-elect=false")
        process = CronJobControllers(name, argv, self.workdir / f"{name}.log")
        self.controllers.append(process)
        return process

    # Reading results.

    def recorded(self, *, since: float = 0.0) -> list[dict]:
        """Return the recorder's lines for objects first seen at or after ``since``."""
        if not self.recorder_output.exists():
            return []
        lines = []
        with self.recorder_output.open() as output:
            for line in output:
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if item["seen"] >= since:
                    lines.append(item)
        return lines
