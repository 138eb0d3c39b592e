"""Tests of the Helm chart, the image build files, the kind script and the GitOps examples.

Tests without a mark need only helm (and go for the Lua health check). Tests marked
``integration`` apply the chart to a local control plane and run the operator out of
cluster with the chart's ServiceAccount token, which proves its RBAC both sufficient and
necessary.
"""

from __future__ import annotations

import copy
import filecmp
import json
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sked.localcluster import LocalCluster
from tests.chart.conftest import (
    CHART,
    ROOT,
    Helm,
    Kubectl,
    LuaHealth,
    run,
    service_account_kubeconfig,
    wait_for_crd,
)
from tests.integration.support import OperatorProcess, wait_until

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
VALUE_SETS = [None, *CI_VALUES]
VALUE_SET_IDS = ["default", *(path.name.removesuffix("-values.yaml") for path in CI_VALUES)]
NAMESPACED_VALUES = CHART / "ci" / "namespaced-values.yaml"
MONITORING_VALUES = CHART / "ci" / "monitoring-values.yaml"
LEASE_VALUES = CHART / "ci" / "lease-values.yaml"

# Rules the operator needs in each namespace it watches, as (apiGroup, resource, verbs).
WORKLOAD_RULES = {
    ("sked.dev", "scheduledjobs", ("get", "list", "watch")),
    ("sked.dev", "scheduledjobs/status", ("patch",)),
    ("sked.dev", "scheduledjobs/finalizers", ("update",)),
    ("", "pods", ("create", "delete", "deletecollection", "get", "list", "watch")),
    ("", "events", ("create",)),
}
NODE_RULE = ("", "nodes", ("get",))
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
# How the operator's log shows a request the API server refused. A bare "403" would also
# match the milliseconds of a timestamp.
FORBIDDEN = re.compile(r"(status |with |\()403\b|Forbidden")


def values_of(path: Path | None) -> list[Path]:
    return [] if path is None else [path]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [item for item in objects if item["kind"] == kind]


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def rule_set(rules: list[dict[str, Any]]) -> set[tuple[str, str, tuple[str, ...]]]:
    """Flatten RBAC rules into (apiGroup, resource, verbs) entries."""
    flattened = set()
    for rule in rules:
        assert "resourceNames" not in rule, f"unexpected resourceNames in {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                flattened.add((group, resource, tuple(rule["verbs"])))
    return flattened


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = only(objects, "Deployment")
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    return operator  # type: ignore[no-any-return]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:5]}"


# ---------------------------------------------------------------------------------------
# Lint, files kept in sync, and rendering with each set of values
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_SET_IDS)
def test_chart_lint_strict(helm: Helm, values: Path | None) -> None:
    argv = ["lint", "--strict", str(CHART)]
    if values is not None:
        argv += ["--values", str(values)]
    result = helm(*argv)
    assert "0 chart(s) failed" in result.stdout


def test_chart_crds_equal_top_level_crds() -> None:
    top_level = sorted(path.name for path in (ROOT / "crds").glob("*.yaml"))
    in_chart = sorted(path.name for path in (CHART / "crds").glob("*.yaml"))
    assert in_chart == top_level, "helm/sked/crds/ must hold the same files as crds/"
    for name in top_level:
        assert filecmp.cmp(ROOT / "crds" / name, CHART / "crds" / name, shallow=False), (
            f"helm/sked/crds/{name} differs from crds/{name}; copy it after `make crds`"
        )


@pytest.mark.parametrize("name", ["alerts.yaml", "dashboard.json"])
def test_chart_monitoring_files_equal_deploy_copies(name: str) -> None:
    source = ROOT / "deploy" / "monitoring" / name
    assert filecmp.cmp(source, CHART / "files" / name, shallow=False), (
        f"helm/sked/files/{name} differs from deploy/monitoring/{name}; copy it over"
    )


def test_alerts_file_alerts_on_consecutive_failures() -> None:
    document = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    failing = [rule for rule in rules if "sked_consecutive_failures" in rule.get("expr", "")]
    assert len(failing) == 1
    assert failing[0]["expr"] == "sked_consecutive_failures >= 3"
    for key in ("summary", "description"):
        text = failing[0]["annotations"][key]
        assert "$labels.namespace" in text, f"{key} does not name the namespace"
        assert "$labels.scheduledjob" in text, f"{key} does not name the ScheduledJob"


def test_dashboard_has_runs_finished_panel() -> None:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert any("sked_runs_finished_total" in expression for expression in expressions)
    assert dashboard["uid"]
    assert dashboard["title"]


def test_default_deployment_runs_two_hardened_replicas(helm: Helm) -> None:
    objects = helm.template()
    deployment = only(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    operator = container(objects)

    assert deployment["spec"]["replicas"] == 2
    assert operator["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert operator["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert operator["resources"]["requests"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert operator["securityContext"]["readOnlyRootFilesystem"] is True
    assert operator["securityContext"]["allowPrivilegeEscalation"] is False
    assert operator["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    fields = {env["name"]: env["valueFrom"]["fieldRef"]["fieldPath"] for env in operator["env"]}
    assert fields == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}


def test_default_args_carry_lease_settings(helm: Helm) -> None:
    args = container(helm.template())["args"]
    assert args == [
        "--metrics-host=0.0.0.0",
        "--metrics-port=8080",
        "--log-level=info",
        "--log-format=text",
        "--leader-elect",
        "--lease-name=sked-leader",
        "--lease-namespace=sked-system",
        "--lease-duration=15",
        "--renew-deadline=10",
        "--retry-period=2",
    ]


def test_lease_values_change_flags(helm: Helm) -> None:
    objects = helm.template(values=[LEASE_VALUES])
    args = container(objects)["args"]
    assert "--lease-name=sked-ci-leader" in args
    assert "--lease-duration=30" in args
    assert "--renew-deadline=20" in args
    assert "--retry-period=4" in args
    assert "--log-level=debug" in args
    assert "--no-per-job-metrics" in args
    assert only(objects, "Deployment")["spec"]["replicas"] == 3
    assert only(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == "50%"
    lease_role = only(objects, "Role")
    assert lease_role["rules"][1]["resourceNames"] == ["sked-ci-leader"]


def test_default_rbac_is_one_cluster_role(helm: Helm) -> None:
    objects = helm.template()
    cluster_role = only(objects, "ClusterRole")
    assert rule_set(cluster_role["rules"]) == WORKLOAD_RULES | {NODE_RULE}
    binding = only(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sked", "namespace": "sked-system"}
    ]
    lease_role = only(objects, "Role")
    assert lease_role["metadata"]["namespace"] == "sked-system"
    assert lease_role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["sked-leader"],
            "verbs": ["get", "update"],
        },
    ]


def test_rbac_nodes_off_drops_node_rule(helm: Helm) -> None:
    cluster_role = only(helm.template(settings=["rbac.nodes=false"]), "ClusterRole")
    assert rule_set(cluster_role["rules"]) == WORKLOAD_RULES


def test_namespaced_mode_uses_roles_and_flags(helm: Helm) -> None:
    objects = helm.template(values=[NAMESPACED_VALUES])
    watched = ["sked-ci-team-a", "sked-ci-team-b"]
    workload_roles = [role for role in of_kind(objects, "Role") if "rules" in role]
    by_namespace = {
        role["metadata"]["namespace"]: role
        for role in workload_roles
        if role["metadata"]["name"] == "sked"
    }
    assert sorted(by_namespace) == watched
    for role in by_namespace.values():
        assert rule_set(role["rules"]) == WORKLOAD_RULES
    bindings = {b["metadata"]["namespace"] for b in of_kind(objects, "RoleBinding")}
    assert bindings == {*watched, "sked-system"}
    cluster_role = only(objects, "ClusterRole")
    assert rule_set(cluster_role["rules"]) == {NODE_RULE}
    args = container(objects)["args"]
    assert [arg for arg in args if arg.startswith("--namespace")] == [
        "--namespace=sked-ci-team-a",
        "--namespace=sked-ci-team-b",
    ]


def test_namespaced_mode_without_nodes_is_cluster_role_free(helm: Helm) -> None:
    objects = helm.template(values=[NAMESPACED_VALUES], settings=["rbac.nodes=false"])
    assert of_kind(objects, "ClusterRole") == []
    assert of_kind(objects, "ClusterRoleBinding") == []


@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_SET_IDS)
def test_rbac_has_no_wildcards(helm: Helm, values: Path | None) -> None:
    objects = helm.template(values=values_of(values))
    for role in of_kind(objects, "ClusterRole") + of_kind(objects, "Role"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"{role['metadata']['name']} has * in {key}"


def test_monitoring_is_off_by_default(helm: Helm) -> None:
    kinds = {item["kind"] for item in helm.template()}
    assert "ServiceMonitor" not in kinds
    assert "PrometheusRule" not in kinds
    assert "ConfigMap" not in kinds


def test_monitoring_values_render_files(helm: Helm) -> None:
    objects = helm.template(values=[MONITORING_VALUES])
    monitor = only(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    service = only(objects, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    rule = only(objects, "PrometheusRule")
    alerts = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert rule["spec"] == alerts
    dashboard = only(objects, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["sked.json"]) == json.loads(
        (CHART / "files" / "dashboard.json").read_text()
    )


# ---------------------------------------------------------------------------------------
# Values that must fail the render
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        pytest.param("replicaCount=two", ["replicaCount", "integer"], id="wrong-type"),
        pytest.param("logLevel=verbose", ["logLevel", "must be one of"], id="bad-enum"),
        pytest.param("replicas=3", ["additional properties", "replicas"], id="unknown-key"),
        pytest.param(
            "leaderElection.leaseDuration=15",
            ["leaderElection", "leaseDuration"],
            id="unknown-nested-key",
        ),
        pytest.param(
            "watchNamespaces[0]=Team_A", ["watchNamespaces", "Team_A"], id="bad-namespace-name"
        ),
    ],
)
def test_schema_rejects_bad_values(helm: Helm, setting: str, expected: list[str]) -> None:
    result = helm.template_text(settings=[setting], check=False)
    assert result.returncode != 0, f"helm template accepted --set {setting}"
    assert "values don't meet the specifications of the schema" in result.stderr
    for text in expected:
        assert text in result.stderr, f"{text!r} missing from: {result.stderr}"


def test_schema_allows_global(helm: Helm) -> None:
    helm.template(settings=["global.imageRegistry=registry.example.com"])


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param(
            ["leaderElection.enabled=false"],
            "replicaCount is 2 but leaderElection.enabled is false",
            id="replicas-without-election",
        ),
        pytest.param(
            ["leaderElection.renewDeadlineSeconds=20"],
            "leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds (got 15, 20, 2)",
            id="lease-timings-out-of-order",
        ),
        pytest.param(
            ["serviceAccount.create=false"],
            "serviceAccount.name must name an existing ServiceAccount",
            id="missing-service-account-name",
        ),
    ],
)
def test_template_rejects_inconsistent_values(
    helm: Helm, settings: list[str], expected: str
) -> None:
    result = helm.template_text(settings=settings, check=False)
    assert result.returncode != 0
    assert expected in result.stderr


def test_single_replica_without_election_renders(helm: Helm) -> None:
    objects = helm.template(settings=["replicaCount=1", "leaderElection.enabled=false"])
    assert "--no-leader-elect" in container(objects)["args"]
    assert [role["metadata"]["name"] for role in of_kind(objects, "Role")] == []


# ---------------------------------------------------------------------------------------
# The image build files and the kind script
# ---------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """Return the Dockerfile's instructions, split into stages, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_builds_wheel_then_installs_it() -> None:
    build, final = dockerfile_stages()
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert build[0] == "FROM ${PYTHON_IMAGE} AS build"
    assert final[0] == "FROM ${PYTHON_IMAGE}"
    assert any("pip wheel" in line for line in build)
    install = next(line for line in final if "pip install" in line)
    assert "--no-index" in install
    assert "--mount=type=bind,from=build" in install
    assert not any(word in " ".join(final) for word in ("gcc", "build-essential", "apt-get"))
    assert "ENV PIP_NO_CACHE_DIR=1" in " ".join(final)
    assert "USER 10001:10001" in final
    assert final[-1] == 'ENTRYPOINT ["sked", "run"]'


def test_dockerignore_context_builds_wheel(tmp_path: Path) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", ".dockerignore must start by excluding everything"
    context = tmp_path / "context"
    context.mkdir()
    for pattern in patterns[1:]:
        if not pattern.startswith("!"):
            continue
        source = ROOT / pattern[1:].rstrip("/")
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(source, context / source.name, ignore=ignore)
        else:
            shutil.copy(source, context / source.name)

    # As in the image build: pip fetches setuptools into an isolated build environment.
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet"]
    run([*pip, "--wheel-dir", str(wheels), str(context)])

    (wheel,) = wheels.glob("sked-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(name for name in names if name.endswith("entry_points.txt"))
        assert "sked = sked.cli:main" in archive.read(entry_points).decode()
    assert "sked/cli.py" in names
    assert "sked/localcluster/kwok-stages.yaml" in names


@pytest.fixture
def bare_path(tmp_path: Path) -> Path:
    """A folder to use as the only PATH entry, empty at first."""
    folder = tmp_path / "bin"
    folder.mkdir()
    return folder


def run_kind_script(command: str, path: Path) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": str(path), "HOME": str(path.parent)}
    return subprocess.run(
        ["/bin/bash", str(ROOT / "hack" / "kind.sh"), command],
        capture_output=True,
        text=True,
        env=environment,
        timeout=30,
        check=False,
    )


def fake_command(folder: Path, name: str, exit_code: int) -> None:
    script = folder / name
    script.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    script.chmod(0o755)


@pytest.mark.parametrize("command", ["up", "deploy", "e2e", "down"])
def test_kind_script_without_docker_fails(command: str, bare_path: Path) -> None:
    result = run_kind_script(command, bare_path)
    assert result.returncode == 1
    assert "docker not found on PATH" in result.stderr


@pytest.mark.parametrize("command", ["up", "deploy", "e2e", "down"])
def test_kind_script_with_stopped_docker_fails(command: str, bare_path: Path) -> None:
    fake_command(bare_path, "docker", 1)
    result = run_kind_script(command, bare_path)
    assert result.returncode == 1
    assert "its daemon does not respond" in result.stderr


@pytest.mark.parametrize("command", ["up", "deploy", "e2e", "down"])
def test_kind_script_without_kind_fails(command: str, bare_path: Path) -> None:
    fake_command(bare_path, "docker", 0)
    result = run_kind_script(command, bare_path)
    assert result.returncode == 1
    assert "kind not found on PATH" in result.stderr


def test_kind_script_rejects_unknown_command(bare_path: Path) -> None:
    result = run_kind_script("start", bare_path)
    assert result.returncode == 2
    assert "usage: hack/kind.sh up|deploy|e2e|down" in result.stderr


def test_kind_config_labels_every_node_with_topology() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "kind" / "cluster.yaml").read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    zones = set()
    for node in config["nodes"]:
        labels = node["labels"]
        assert labels["topology.kubernetes.io/region"]
        zones.add(labels["topology.kubernetes.io/zone"])
    assert len(zones) >= 2


# ---------------------------------------------------------------------------------------
# GitOps
# ---------------------------------------------------------------------------------------

HEALTH_SCRIPT = ROOT / "deploy" / "gitops" / "argocd" / "health-scheduledjob.lua"


def scheduled_job(
    *,
    generation: int = 2,
    status: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    suspend: bool = False,
) -> dict[str, Any]:
    job: dict[str, Any] = {
        "apiVersion": "sked.dev/v1alpha1",
        "kind": "ScheduledJob",
        "metadata": {"name": "report", "namespace": "team-a", "generation": generation},
        "spec": {"schedule": "*/5 * * * *", "suspend": suspend},
    }
    if status is not None:
        job["status"] = {"observedGeneration": generation, **status}
        ready = {"type": "Ready", "status": "True", "reason": "Scheduled", "message": "ok"}
        job["status"]["conditions"] = [ready] if conditions is None else conditions
    return job


def condition(kind: str, value: str, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": value, "reason": reason, "message": message}


HEALTH_CASES = [
    pytest.param(scheduled_job(), "Progressing", "generation 2", id="no-status-yet"),
    pytest.param(
        {**scheduled_job(status={}), "status": {"observedGeneration": 1}},
        "Progressing",
        "generation 2",
        id="older-generation-observed",
    ),
    pytest.param(
        scheduled_job(status={"nextScheduleTime": "2030-01-01T00:05:00Z"}),
        "Healthy",
        "Next run at 2030-01-01T00:05:00Z",
        id="scheduled",
    ),
    pytest.param(
        scheduled_job(status={"activeCount": 1, "active": [{"pod": "report-1-1"}]}),
        "Healthy",
        "1 run active",
        id="run-active",
    ),
    pytest.param(
        scheduled_job(status={"activeCount": 2}), "Healthy", "2 runs active", id="two-runs-active"
    ),
    pytest.param(
        scheduled_job(
            status={},
            conditions=[condition("Ready", "True", "NeverFires", "0 0 30 2 * never fires")],
        ),
        "Healthy",
        "0 0 30 2 * never fires",
        id="never-fires",
    ),
    pytest.param(
        scheduled_job(
            status={},
            conditions=[
                condition("Ready", "False", "InvalidSpec", "invalid"),
                condition("InvalidSpec", "True", "InvalidSchedule", "61 * * * * is invalid"),
            ],
        ),
        "Degraded",
        "InvalidSpec: 61 * * * * is invalid",
        id="invalid-spec",
    ),
    pytest.param(
        scheduled_job(
            status={"nextScheduleTime": "2030-01-01T00:05:00Z"},
            conditions=[
                condition("Ready", "True", "Scheduled", "ok"),
                condition("Failing", "True", "ConsecutiveFailures", "3 runs failed in a row"),
            ],
        ),
        "Degraded",
        "Failing: 3 runs failed in a row",
        id="failing",
    ),
    pytest.param(
        scheduled_job(
            status={"nextScheduleTime": "2030-01-01T00:05:00Z"},
            conditions=[
                condition("Ready", "True", "Scheduled", "ok"),
                condition("Failing", "False", "Succeeded", "the last run succeeded"),
                condition("InvalidSpec", "False", "Valid", "the spec is valid"),
            ],
        ),
        "Healthy",
        "Next run at 2030-01-01T00:05:00Z",
        id="conditions-false",
    ),
    pytest.param(
        scheduled_job(status={}, suspend=True),
        "Suspended",
        "suspended",
        id="suspended",
    ),
]


@pytest.mark.parametrize(("job", "status", "message"), HEALTH_CASES)
def test_argocd_health_check(
    lua_health: LuaHealth, job: dict[str, Any], status: str, message: str
) -> None:
    (result,) = lua_health.check(HEALTH_SCRIPT, [job])
    assert "error" not in result, result.get("error")
    assert result["status"] == status
    assert message in result["message"]


def test_argocd_cm_patch_embeds_health_script() -> None:
    patch = yaml.safe_load((HEALTH_SCRIPT.parent / "argocd-cm-patch.yaml").read_text())
    assert patch["metadata"]["name"] == "argocd-cm"
    embedded = patch["data"]["resource.customizations.health.sked.dev_ScheduledJob"]
    assert embedded == HEALTH_SCRIPT.read_text()


def test_argocd_application_points_at_chart() -> None:
    application = yaml.safe_load((HEALTH_SCRIPT.parent / "application.yaml").read_text())
    source = application["spec"]["source"]
    assert (ROOT / source["path"] / "Chart.yaml").exists()
    assert "ServerSideApply=true" in application["spec"]["syncPolicy"]["syncOptions"]


def test_flux_objects_point_at_repository_folders() -> None:
    documents = list(
        yaml.safe_load_all((ROOT / "deploy" / "gitops" / "flux" / "sked.yaml").read_text())
    )
    kustomizations = [d for d in documents if d["kind"] == "Kustomization"]
    for kustomization in kustomizations:
        assert (ROOT / kustomization["spec"]["path"]).is_dir()
    crds = next(k for k in kustomizations if k["spec"]["path"] == "./crds")
    assert crds["spec"]["prune"] is False, "pruning the CRD would delete every ScheduledJob"
    (release,) = [d for d in documents if d["kind"] == "HelmRelease"]
    assert (ROOT / release["spec"]["chart"]["spec"]["chart"] / "Chart.yaml").exists()


# ---------------------------------------------------------------------------------------
# On the local control plane
# ---------------------------------------------------------------------------------------


def apply_dry_run(kubectl: Kubectl, manifest: str) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "--dry-run=server", "--filename=-", input=manifest)


@pytest.mark.integration
@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_SET_IDS)
def test_rendered_chart_passes_server_dry_run(
    request: pytest.FixtureRequest, helm: Helm, kubectl: Kubectl, values: Path | None
) -> None:
    if values == MONITORING_VALUES:
        request.getfixturevalue("monitoring_crds")
    release_namespace = kubectl.create_namespace(unique("dry-run"), RESTRICTED)
    if values == NAMESPACED_VALUES:
        for name in yaml.safe_load(values.read_text())["watchNamespaces"]:
            kubectl.create_namespace(name)
    manifest = helm.template_text(namespace=release_namespace, values=values_of(values)).stdout

    result = apply_dry_run(kubectl, manifest)

    assert "(server dry run)" in result.stdout
    assert "would violate PodSecurity" not in result.stderr
    kinds = {item["kind"] for item in yaml.safe_load_all(manifest) if item}
    if values == MONITORING_VALUES:
        assert {"ServiceMonitor", "PrometheusRule", "ConfigMap"} <= kinds


@pytest.mark.integration
def test_helm_install_upgrade_uninstall(
    cluster_helm: Helm, kubectl: Kubectl, chart_cluster: LocalCluster
) -> None:
    namespace = kubectl.create_namespace(unique("sked-life"), RESTRICTED)
    release = "life"
    cluster_helm(
        "install", release, str(CHART), f"--namespace={namespace}", "--wait", "--timeout=90s"
    )

    wait_for_crd(kubectl, "scheduledjobs.sked.dev")
    deployment = kubectl.json("get", "deployment", "life-sked", f"--namespace={namespace}")
    assert deployment["status"]["readyReplicas"] == 2
    kubectl("get", "serviceaccount", "life-sked", f"--namespace={namespace}")
    kubectl("get", "clusterrole,clusterrolebinding", "life-sked")
    kubectl("get", "role,rolebinding", "life-sked-leader-election", f"--namespace={namespace}")
    kubectl("get", "service", "life-sked-metrics", f"--namespace={namespace}")
    kubectl("get", "poddisruptionbudget", "life-sked", f"--namespace={namespace}")
    job_namespace = kubectl.create_namespace(unique("life-jobs"))
    kubectl(
        "apply",
        f"--namespace={job_namespace}",
        "--filename=-",
        input=(ROOT / "examples" / "every-ten-seconds.yaml").read_text(),
    )

    # The CRD step of an upgrade, as the docs give it. --force-conflicts is needed once,
    # because Helm created the CRD and owns .spec.versions; later applies need no force.
    kubectl("apply", "--server-side", "--force-conflicts", f"--filename={CHART / 'crds'}")
    kubectl("apply", "--server-side", f"--filename={CHART / 'crds'}")

    cluster_helm(
        "upgrade",
        release,
        str(CHART),
        f"--namespace={namespace}",
        "--set=logLevel=debug",
        "--wait",
        "--timeout=90s",
    )

    status = json.loads(
        cluster_helm("status", release, f"--namespace={namespace}", "--output=json").stdout
    )
    assert status["version"] == 2
    deployment = kubectl.json("get", "deployment", "life-sked", f"--namespace={namespace}")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--log-level=debug" in args

    cluster_helm("uninstall", release, f"--namespace={namespace}", "--wait", "--timeout=90s")

    leftover = kubectl("get", "clusterrole", "life-sked", check=False)
    assert leftover.returncode != 0, "the ClusterRole survived helm uninstall"
    leftover = kubectl("get", "deployment", "life-sked", f"--namespace={namespace}", check=False)
    assert leftover.returncode != 0, "the Deployment survived helm uninstall"
    # Helm never deletes a CRD from crds/, so ScheduledJobs outlive the release.
    kubectl("get", "customresourcedefinition", "scheduledjobs.sked.dev")
    kubectl("get", "scheduledjob", "every-ten-seconds", f"--namespace={job_namespace}")
    kubectl("delete", "scheduledjobs", "--all", f"--namespace={job_namespace}")
    kubectl("delete", "namespace", job_namespace, namespace, "--wait=false")


# ---------------------------------------------------------------------------------------
# RBAC, proven by running the operator with the chart's ServiceAccount
# ---------------------------------------------------------------------------------------

SUCCEEDING_JOB = {
    "schedule": "*/2 * * * * *",
    "history": {"successfulRunsLimit": 1},
    "template": {
        "metadata": {"annotations": {"kwok.sked.dev/succeed-after": "1s"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.37"}]},
    },
}
FAILING_JOB = {
    "schedule": "*/3 * * * * *",
    "retry": {"limit": 1, "backoff": {"initialSeconds": 1}},
    "history": {"failedRunsLimit": 1},
    "template": {
        "metadata": {"annotations": {"kwok.sked.dev/fail-after": "1s"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.37"}]},
    },
}


def job_manifest(name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "sked.dev/v1alpha1",
            "kind": "ScheduledJob",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


class Scenario:
    """The operator, run as a ServiceAccount, and the ScheduledJobs it should run."""

    def __init__(self, kubectl: Kubectl, cluster: LocalCluster, tmp_path: Path) -> None:
        self.kubectl = kubectl
        self.cluster = cluster
        self.tmp_path = tmp_path
        self.operator: OperatorProcess | None = None
        self.namespaces: list[str] = []

    def namespace(self, prefix: str, labels: dict[str, str] | None = None) -> str:
        name = self.kubectl.create_namespace(unique(prefix), labels)
        self.namespaces.append(name)
        return name

    def start_operator(
        self, *, namespace: str, account: str, args: list[str], monkeypatch: pytest.MonkeyPatch
    ) -> OperatorProcess:
        """Start `sked run` logged in as ServiceAccount ``namespace/account``."""
        kubeconfig = service_account_kubeconfig(
            self.kubectl,
            self.cluster.kubeconfig,
            namespace=namespace,
            account=account,
            path=self.tmp_path / f"{account}.kubeconfig",
        )
        monkeypatch.setenv("POD_NAMESPACE", namespace)
        self.operator = OperatorProcess(
            kubeconfig, self.tmp_path / "operator.log", args=tuple(args)
        )
        self.operator.start()
        return self.operator

    def apply_job(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.kubectl(
            "apply", f"--namespace={namespace}", "--filename=-", input=job_manifest(name, spec)
        )

    def job(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.kubectl.json(
            "get", "scheduledjob", name, f"--namespace={namespace}"
        )
        return found

    def event_reasons(self, namespace: str, name: str) -> list[str]:
        events = self.kubectl.json(
            "get",
            "events",
            f"--namespace={namespace}",
            f"--field-selector=involvedObject.kind=ScheduledJob,involvedObject.name={name}",
        )
        return [event["reason"] for event in events["items"]]

    def pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        listing = self.kubectl.json(
            "get", "pods", f"--namespace={namespace}", f"--selector=sked.dev/scheduledjob={name}"
        )
        return list(listing["items"])

    def lease_holder(self, namespace: str, name: str = "sked-leader") -> str:
        lease = self.kubectl.json("get", "lease", name, f"--namespace={namespace}")
        return str(lease["spec"].get("holderIdentity") or "")

    def can(self, account: str, *args: str) -> bool:
        result = self.kubectl("auth", "can-i", *args, f"--as={account}", check=False)
        return result.stdout.strip() == "yes"

    def log(self) -> str:
        return "" if self.operator is None else self.operator.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        # The ScheduledJobs go first and at once: in a namespace still terminating, a later
        # test's operator would fail to create their Pods.
        for namespace in self.namespaces:
            self.kubectl(
                "delete", "scheduledjobs", "--all", f"--namespace={namespace}", check=False
            )
        if self.namespaces:
            self.kubectl("delete", "namespace", *self.namespaces, "--wait=false", check=False)


@pytest.fixture
def scenario(kubectl: Kubectl, chart_cluster: LocalCluster, tmp_path: Path) -> Iterator[Scenario]:
    """A Scenario that stops its operator and deletes its namespaces at the end."""
    instance = Scenario(kubectl, chart_cluster, tmp_path)
    try:
        yield instance
    finally:
        if instance.operator is not None:
            sys.stderr.write(f"operator log:\n{instance.operator.log_tail()}\n")
        instance.close()


def operator_args(kubectl: Kubectl, namespace: str, deployment: str) -> list[str]:
    """Return the installed Deployment's `sked run` arguments, without the metrics address.

    The operator runs outside the cluster, so the metrics flags of the Pod would bind
    0.0.0.0:8080; OperatorProcess binds 127.0.0.1 on a free port instead.
    """
    found = kubectl.json("get", "deployment", deployment, f"--namespace={namespace}")
    args = found["spec"]["template"]["spec"]["containers"][0]["args"]
    return [arg for arg in args if not arg.startswith(("--metrics-host", "--metrics-port"))]


def install(helm: Helm, release: str, namespace: str, *settings: str) -> None:
    # replicaCount 0: only the out-of-cluster operator may act, never the chart's fake Pods.
    argv = ["install", release, str(CHART), f"--namespace={namespace}", "--set=replicaCount=0"]
    helm(*argv, *(f"--set={setting}" for setting in settings))


def wait_for_history_cut(scenario: Scenario, namespace: str) -> None:
    """Wait until the succeeding job has run 3 times and its older Pods are deleted."""

    def history_cut() -> bool:
        created = scenario.event_reasons(namespace, "succeeds").count("PodCreated")
        # successfulRunsLimit 1 keeps one finished run and an active one at most.
        return created >= 3 and len(scenario.pods(namespace, "succeeds")) <= 2

    wait_until(history_cut, timeout=45, message="3 runs of succeeds with older Pods deleted")


def wait_for_runs(scenario: Scenario, namespace: str) -> None:
    """Wait until the succeeding job's history is cut and the failing job has retried."""
    wait_for_history_cut(scenario, namespace)

    def retried() -> bool:
        reasons = scenario.event_reasons(namespace, "fails")
        return "RetryScheduled" in reasons and "RetriesExhausted" in reasons

    wait_until(retried, timeout=45, message="a retried and exhausted run of fails")


@pytest.mark.integration
def test_service_account_can_run_everything(
    scenario: Scenario, cluster_helm: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    release_namespace = scenario.namespace("sked-rbac")
    install(cluster_helm, "rbac", release_namespace)
    jobs = scenario.namespace("rbac-jobs")
    scenario.apply_job(jobs, "succeeds", SUCCEEDING_JOB)
    scenario.apply_job(jobs, "fails", FAILING_JOB)
    identity_account = f"system:serviceaccount:{release_namespace}:rbac-sked"

    operator = scenario.start_operator(
        namespace=release_namespace,
        account="rbac-sked",
        args=operator_args(scenario.kubectl, release_namespace, "rbac-sked"),
        monkeypatch=monkeypatch,
    )
    wait_for_runs(scenario, jobs)

    status = scenario.job(jobs, "succeeds")["status"]
    assert status["lastSuccessfulTime"]
    assert status["observedGeneration"] == 1
    assert scenario.job(jobs, "fails")["status"]["lastResult"] == "Failed"
    assert scenario.lease_holder(release_namespace) == operator.identity
    assert scenario.can(identity_account, "get", "nodes")
    assert not FORBIDDEN.search(scenario.log()), "the operator was refused a request"
    operator.stop()
    assert scenario.lease_holder(release_namespace) == "", "the Lease was not released"


@pytest.mark.integration
def test_namespaced_service_account_sees_only_its_namespace(
    scenario: Scenario, cluster_helm: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = scenario.namespace("watched")
    other = scenario.namespace("other")
    release_namespace = scenario.namespace("sked-ns")
    install(cluster_helm, "scoped", release_namespace, f"watchNamespaces={{{watched}}}")
    scenario.apply_job(watched, "succeeds", SUCCEEDING_JOB)
    scenario.apply_job(watched, "fails", FAILING_JOB)
    scenario.apply_job(other, "unseen", SUCCEEDING_JOB)
    account = f"system:serviceaccount:{release_namespace}:scoped-sked"

    args = operator_args(scenario.kubectl, release_namespace, "scoped-sked")
    assert f"--namespace={watched}" in args
    scenario.start_operator(
        namespace=release_namespace, account="scoped-sked", args=args, monkeypatch=monkeypatch
    )
    wait_for_runs(scenario, watched)

    assert "status" not in scenario.job(other, "unseen")
    assert scenario.pods(other, "unseen") == []
    assert scenario.can(account, "list", "scheduledjobs.sked.dev", f"--namespace={watched}")
    assert not scenario.can(account, "list", "scheduledjobs.sked.dev", f"--namespace={other}")
    assert not scenario.can(account, "list", "scheduledjobs.sked.dev", "--all-namespaces")
    assert not scenario.can(account, "create", "pods", f"--namespace={other}")
    assert scenario.can(account, "get", "nodes")
    assert not scenario.can(account, "list", "nodes")


def without_permission(
    objects: list[dict[str, Any]], resource: str, verb: str
) -> list[dict[str, Any]]:
    """Return a copy of ``objects`` with ``verb`` on ``resource`` removed from the ClusterRole."""
    trimmed = copy.deepcopy(objects)
    cluster_role = only(trimmed, "ClusterRole")
    found = False
    for rule in cluster_role["rules"]:
        if resource in rule["resources"] and verb in rule["verbs"]:
            assert rule["resources"] == [resource], "the rule covers more than the resource"
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
            found = True
    assert found, f"the ClusterRole has no {verb} on {resource}"
    cluster_role["rules"] = [rule for rule in cluster_role["rules"] if rule["verbs"]]
    return trimmed


@pytest.mark.integration
@pytest.mark.parametrize(
    ("resource", "verb"),
    [
        pytest.param("pods", "create", id="pods-create"),
        pytest.param("scheduledjobs/status", "patch", id="status-patch"),
        pytest.param("nodes", "get", id="nodes-get"),
        pytest.param("pods", "deletecollection", id="pods-deletecollection"),
    ],
)
@pytest.mark.usefixtures("sked_crd")
def test_missing_permission_breaks_scenario(
    scenario: Scenario,
    helm: Helm,
    monkeypatch: pytest.MonkeyPatch,
    resource: str,
    verb: str,
) -> None:
    release_namespace = scenario.namespace("sked-minus")
    release = unique("minus")
    objects = helm.template(
        release=release, namespace=release_namespace, settings=["replicaCount=0"]
    )
    trimmed = [
        item for item in without_permission(objects, resource, verb) if item["kind"] != "Deployment"
    ]
    manifest = "\n---\n".join(json.dumps(item) for item in trimmed)
    scenario.kubectl("apply", "--filename=-", input=manifest)
    jobs = scenario.namespace("minus-jobs")
    scenario.apply_job(jobs, "succeeds", SUCCEEDING_JOB)

    try:
        scenario.start_operator(
            namespace=release_namespace,
            account=f"{release}-sked",
            args=[f"--lease-namespace={release_namespace}"],
            monkeypatch=monkeypatch,
        )
        if resource == "nodes":
            # Each Node is read once and cached, so one refusal is all there is. Runs go
            # on without the Node's region and zone.
            wait_until(
                lambda: FORBIDDEN.search(scenario.log()),
                timeout=30,
                message="the operator to be refused get on a Node",
            )
            wait_until(
                lambda: scenario.job(jobs, "succeeds").get("status", {}).get("lastSuccessfulTime"),
                timeout=30,
                message="a successful run without Node access",
            )
            return
        if verb == "deletecollection":
            # A Role from an older chart: history cleanup falls back to one delete per Pod.
            wait_until(
                lambda: "deleting them one at a time" in scenario.log(),
                timeout=45,
                message="the operator to fall back to deleting Pods one at a time",
            )
            wait_for_history_cut(scenario, jobs)
            return
        # Two reconciles start at once; a third refusal comes from the retry 5 s later,
        # so the refusal is no passing start-up error.
        wait_until(
            lambda: len(FORBIDDEN.findall(scenario.log())) >= 3,
            timeout=30,
            message=f"the operator to be refused {verb} on {resource} three times",
        )
        if resource == "pods":
            assert scenario.pods(jobs, "succeeds") == []
            assert "RunSucceeded" not in scenario.event_reasons(jobs, "succeeds")
        else:
            assert "lastSuccessfulTime" not in scenario.job(jobs, "succeeds").get("status", {})
    finally:
        scenario.kubectl("delete", "--filename=-", "--wait=false", input=manifest, check=False)
