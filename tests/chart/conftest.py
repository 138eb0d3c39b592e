"""Fixtures for the Helm chart tests: the helm binary, rendering, and a cluster to apply to.

The cluster tests start their own local control plane, because they need two controllers
that the integration tests do without: deployment and replicaset. With them the operator's
Pods are admitted and turn Ready on the fake Nodes, so `helm install --wait` can succeed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sked.localcluster import DEFAULT_CONTROLLERS, LocalCluster
from tests.integration.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "sked"
HELM_VERSION = "v3.21.4"
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator@v0.89.0"
MONITORING_CRDS = (
    "monitoring.coreos.com_servicemonitors.yaml",
    "monitoring.coreos.com_prometheusrules.yaml",
)
COMMAND_TIMEOUT_SECONDS = 120


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    input: str | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command and return its result. With ``check``, a non-zero exit fails the test."""
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        env=env,
        input=input,
        cwd=cwd,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited with {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


@dataclass
class Helm:
    """The helm binary with the chart under test, and optionally a cluster's kubeconfig."""

    binary: Path
    kubeconfig: Path | None = None

    def env(self) -> dict[str, str]:
        environment = dict(os.environ)
        if self.kubeconfig is not None:
            environment["KUBECONFIG"] = str(self.kubeconfig)
        return environment

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([str(self.binary), *args], env=self.env(), check=check)

    def template_text(
        self,
        *,
        release: str = "sked",
        namespace: str = "sked-system",
        values: Sequence[Path] = (),
        settings: Sequence[str] = (),
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        argv = ["template", release, str(CHART), "--namespace", namespace]
        for path in values:
            argv += ["--values", str(path)]
        for setting in settings:
            argv += ["--set", setting]
        return self(*argv, check=check)

    def template(self, **options: Any) -> list[dict[str, Any]]:
        """Render the chart and return its objects, without the CRD."""
        text = self.template_text(**options).stdout
        return [document for document in yaml.safe_load_all(text) if document]


def find_helm() -> Path:
    cache = Path(os.environ.get("SKED_CACHE") or Path.home() / ".cache" / "sked")
    binary = cache / "bin" / f"helm-{HELM_VERSION}" / "helm"
    if not binary.exists():
        pytest.fail(
            f"helm {HELM_VERSION} not found at {binary}; build it with "
            "`bash hack/build-control-plane.sh helm`",
            pytrace=False,
        )
    return binary


@pytest.fixture(scope="session")
def helm() -> Helm:
    """helm, for commands that need no cluster."""
    return Helm(find_helm())


# ---------------------------------------------------------------------------------------
# The cluster
# ---------------------------------------------------------------------------------------

CHART_CONTROLLERS = (*DEFAULT_CONTROLLERS, "deployment-controller", "replicaset-controller")


@pytest.fixture(scope="session")
def chart_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A started local control plane that also runs Deployments, stopped at session end."""
    cluster = LocalCluster(tmp_path_factory.mktemp("chart-cluster"), controllers=CHART_CONTROLLERS)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def cluster_helm(chart_cluster: LocalCluster) -> Helm:
    """helm, pointed at the local cluster as its admin."""
    return Helm(find_helm(), chart_cluster.kubeconfig)


@dataclass
class Kubectl:
    """kubectl, logged in through one kubeconfig."""

    kubeconfig: Path

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            pytest.fail("kubectl not found on PATH", pytrace=False)
        return run([kubectl, f"--kubeconfig={self.kubeconfig}", *args], input=input, check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--output=json").stdout)

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        """Create a namespace unless it exists, set ``labels`` on it, and return its name.

        Returns once its ServiceAccount default exists, because Pods cannot be created
        before that.
        """
        metadata = {"name": name, "labels": labels or {}}
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
        self("apply", "--filename=-", input=json.dumps(manifest))

        def has_default_account() -> bool:
            found = self("get", "serviceaccount", "default", f"--namespace={name}", check=False)
            return found.returncode == 0

        wait_until(has_default_account, timeout=30, message=f"ServiceAccount default in {name}")
        return name


@pytest.fixture(scope="session")
def kubectl(chart_cluster: LocalCluster) -> Kubectl:
    """kubectl as the local cluster's admin."""
    return Kubectl(chart_cluster.kubeconfig)


def wait_for_crd(kubectl: Kubectl, name: str) -> None:
    def established() -> bool:
        found = kubectl.json("get", "customresourcedefinition", name)
        conditions = found.get("status", {}).get("conditions", [])
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_until(established, timeout=30, message=f"CRD {name} to be Established")


@pytest.fixture(scope="session")
def sked_crd(kubectl: Kubectl) -> None:
    """The chart's ScheduledJob CRD, applied as the upgrade step in the docs applies it.

    --force-conflicts takes .spec.versions over from Helm when Helm created the CRD, which
    an earlier test's `helm install` may have done.
    """
    kubectl("apply", "--server-side", "--force-conflicts", f"--filename={CHART / 'crds'}")
    wait_for_crd(kubectl, "scheduledjobs.sked.dev")


@pytest.fixture(scope="session")
def monitoring_crds(kubectl: Kubectl) -> None:
    """The ServiceMonitor and PrometheusRule CRDs of the prometheus-operator Go module."""
    go = shutil.which("go")
    if go is None:
        pytest.fail(
            "go not found on PATH; it downloads the prometheus-operator CRDs", pytrace=False
        )
    environment = dict(os.environ, GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    download = run([go, "mod", "download", "-json", PROMETHEUS_OPERATOR_MODULE], env=environment)
    folder = Path(json.loads(download.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    for name in MONITORING_CRDS:
        kubectl("apply", "--server-side", f"--filename={folder / name}")
    for name in ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"):
        wait_for_crd(kubectl, name)


# ---------------------------------------------------------------------------------------
# The operator as the chart's ServiceAccount
# ---------------------------------------------------------------------------------------


def service_account_kubeconfig(
    kubectl: Kubectl, admin_kubeconfig: Path, *, namespace: str, account: str, path: Path
) -> Path:
    """Write a kubeconfig that logs in with a token of ServiceAccount ``namespace/account``.

    The token comes from the TokenRequest API (`kubectl create token`), and the server and
    CA from the admin kubeconfig, so the operator authenticates exactly as it would in a Pod.
    """
    token = kubectl(
        "create", "token", account, f"--namespace={namespace}", "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    ca_path = path.with_suffix(".ca.crt")
    ca_path.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": cluster["server"], "certificate-authority": str(ca_path)},
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {
                "name": account,
                "context": {"cluster": "local", "user": account, "namespace": namespace},
            }
        ],
        "current-context": account,
    }
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(kubeconfig))
    return path


# ---------------------------------------------------------------------------------------
# Argo CD's Lua interpreter
# ---------------------------------------------------------------------------------------


@dataclass
class LuaHealth:
    """Runs an Argo CD health script on objects, through the luahealth Go program."""

    binary: Path

    def check(self, script: Path, objects: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
        """Return the {status, message} the script gives each object, in order."""
        result = run([str(self.binary), str(script)], input=json.dumps(list(objects)))
        return list(json.loads(result.stdout))


@pytest.fixture(scope="session")
def lua_health(tmp_path_factory: pytest.TempPathFactory) -> LuaHealth:
    """The luahealth program, built from tests/chart/luahealth with gopher-lua."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("go not found on PATH; it builds the Lua health check runner", pytrace=False)
    binary = tmp_path_factory.mktemp("luahealth") / "luahealth"
    source = Path(__file__).parent / "luahealth"
    environment = dict(os.environ, GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    run([go, "build", "-o", str(binary), "."], env=environment, cwd=source)
    return LuaHealth(binary)
