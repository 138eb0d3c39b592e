"""Placement on the local cluster's fake Nodes, where the real kube-scheduler decides.

The Nodes (see sked/localcluster/nodes.yaml): kwok-eu-west-a-small (4 cpu, 8Gi),
kwok-eu-west-b-large (16 cpu, 64Gi), kwok-us-east-a-small (4 cpu, 8Gi) and
kwok-us-east-a-gpu (8 cpu, 32Gi, 4 nvidia.com/gpu, tainted nvidia.com/gpu). Each job
runs once, on a 6-field schedule that fires a few seconds after it is created, and its
Pods end Succeeded two seconds after they start, so they stop holding resources.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from sked.localcluster import LocalCluster
from tests.integration.support import Jobs, wait_until

pytestmark = pytest.mark.integration

EU_WEST_NODES = {"kwok-eu-west-a-small": "4", "kwok-eu-west-b-large": "16"}
SUCCEED = {"kwok.sked.dev/succeed-after": "2s"}
ZONE_LABEL = "topology.kubernetes.io/zone"


def one_shot(seconds: int = 3) -> str:
    """Return a 6-field schedule that fires once, about ``seconds`` from now (UTC)."""
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return f"{due.second} {due.minute} {due.hour} {due.day} {due.month} *"


def template(
    spec: dict[str, Any] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"annotations": SUCCEED if annotations is None else annotations},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.37"}], **(spec or {})},
    }


def create_job(
    jobs: Jobs,
    name: str,
    placement: dict[str, Any],
    *,
    pod_template: dict[str, Any] | None = None,
    retry_limit: int = 0,
) -> None:
    jobs.create(
        name,
        {
            "schedule": one_shot(),
            "retry": {"limit": retry_limit},
            "placement": placement,
            "template": pod_template or template(),
        },
    )


def finished_run(jobs: Jobs, name: str, *, timeout: float = 40) -> dict[str, Any]:
    """Wait for the job's only run to finish and return it."""

    def finished() -> dict[str, Any] | None:
        runs = jobs.status(name).get("runs", [])
        done = [run for run in runs if run["phase"] in ("Succeeded", "Failed")]
        return done[0] if done else None

    return wait_until(finished, timeout=timeout, message=lambda: f"a finished run of {name}")


def only_attempt(run: dict[str, Any]) -> dict[str, Any]:
    (attempt,) = run["attempts"]
    return attempt  # type: ignore[no-any-return]


def event_messages(jobs: Jobs, name: str, reason: str) -> list[str]:
    return [event.message for event in jobs.events(name) if event.reason == reason]


def wait_for_event(jobs: Jobs, name: str, reason: str) -> list[str]:
    # The operator posts Events after it writes status, so they may lag a little.
    return wait_until(
        lambda: event_messages(jobs, name, reason),
        timeout=10,
        message=f"a {reason} Event on {name}",
    )


def pod_named(jobs: Jobs, name: str) -> client.V1Pod:
    return jobs.core.read_namespaced_pod(name, jobs.namespace)


# ---------------------------------------------------------------------------------------
# A full region: filler Pods bound straight to every eu-west Node, each requesting all of
# its Node's cpu. nodeName skips the scheduler, but the scheduler still counts the
# requests, so no Pod that requests cpu fits in eu-west while they exist.
# ---------------------------------------------------------------------------------------


def filler_pod(node: str, cpu: str) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=f"filler-{node}", labels={"role": "filler"}),
        spec=client.V1PodSpec(
            node_name=node,
            restart_policy="Never",
            containers=[
                client.V1Container(
                    name="filler",
                    image="busybox:1.37",
                    resources=client.V1ResourceRequirements(requests={"cpu": cpu}),
                )
            ],
        ),
    )


@pytest.fixture
def full_eu_west(jobs: Jobs) -> Iterator[None]:
    """Fill every eu-west Node's cpu for the length of the test."""
    core = jobs.core
    try:
        for node, cpu in EU_WEST_NODES.items():
            core.create_namespaced_pod(jobs.namespace, filler_pod(node, cpu))

        def fillers_running() -> bool:
            pods = core.list_namespaced_pod(jobs.namespace, label_selector="role=filler").items
            return len(pods) == len(EU_WEST_NODES) and all(
                pod.status.phase == "Running" for pod in pods
            )

        wait_until(fillers_running, timeout=20, message="the filler Pods to run")
        yield
    finally:
        core.delete_collection_namespaced_pod(
            jobs.namespace, label_selector="role=filler", grace_period_seconds=0
        )

        def fillers_gone() -> bool:
            pods = core.list_namespaced_pod(jobs.namespace, label_selector="role=filler").items
            return not pods

        wait_until(fillers_gone, timeout=30, message="the filler Pods to be deleted")


# ---------------------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------------------


def test_gpu_job_lands_on_gpu_node(jobs: Jobs) -> None:
    create_job(jobs, "gpu", {"resources": {"gpu": 1, "cpu": "1"}})

    run = finished_run(jobs, "gpu")

    assert run["phase"] == "Succeeded"
    attempt = only_attempt(run)
    assert attempt["node"] == "kwok-us-east-a-gpu"
    assert attempt["region"] == "us-east"
    assert attempt["zone"] == "us-east-a"
    pod = pod_named(jobs, attempt["podName"])
    main = pod.spec.containers[0]
    assert main.resources.requests["nvidia.com/gpu"] == "1"
    assert main.resources.limits["nvidia.com/gpu"] == "1"
    assert any(
        toleration.key == "nvidia.com/gpu"
        and toleration.operator == "Exists"
        and toleration.effect == "NoSchedule"
        for toleration in pod.spec.tolerations
    )


def test_memory_heavy_job_lands_on_large_node(jobs: Jobs) -> None:
    create_job(jobs, "big-memory", {"resources": {"memory": "40Gi"}})

    run = finished_run(jobs, "big-memory")

    attempt = only_attempt(run)
    assert run["phase"] == "Succeeded"
    assert attempt["node"] == "kwok-eu-west-b-large"
    requests = pod_named(jobs, attempt["podName"]).spec.containers[0].resources.requests
    assert requests == {"memory": "40Gi"}


def test_template_limit_below_placement_request(jobs: Jobs) -> None:
    # The template sets only a cpu limit. The API server defaults the request to the limit,
    # so the template's value wins and the Pod must stay valid.
    pod_template = template()
    pod_template["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "500m"}}
    create_job(jobs, "limited", {"resources": {"cpu": "2"}}, pod_template=pod_template)

    def run_or_rejection() -> dict[str, Any] | None:
        invalid = jobs.condition("limited", "InvalidSpec")
        if invalid is not None and invalid["status"] == "True":
            return invalid
        runs = jobs.status("limited").get("runs", [])
        return next((run for run in runs if run["phase"] in ("Succeeded", "Failed")), None)

    outcome = wait_until(run_or_rejection, timeout=40, message="a finished run or InvalidSpec")

    assert outcome.get("type") != "InvalidSpec", outcome.get("message")
    assert outcome["phase"] == "Succeeded"


# ---------------------------------------------------------------------------------------
# Regions and the template's own affinity
# ---------------------------------------------------------------------------------------


def test_required_region_is_honoured(jobs: Jobs) -> None:
    create_job(jobs, "east", {"regions": ["us-east"]})

    run = finished_run(jobs, "east")

    attempt = only_attempt(run)
    # The GPU node is in us-east too, but its taint keeps Pods without GPUs off it.
    assert attempt["node"] == "kwok-us-east-a-small"
    assert attempt["region"] == "us-east"
    assert attempt["zone"] == "us-east-a"
    assert attempt["step"] == 0
    assert jobs.status("east")["lastRegion"] == "us-east"


def test_attempt_records_placement_and_event(jobs: Jobs) -> None:
    create_job(jobs, "placed", {"regions": ["eu-west"], "zones": ["eu-west-a"]})

    attempt = only_attempt(finished_run(jobs, "placed"))

    assert attempt["node"] == "kwok-eu-west-a-small"
    assert attempt["region"] == "eu-west"
    assert attempt["zone"] == "eu-west-a"
    (message,) = wait_for_event(jobs, "placed", "Placed")
    assert "kwok-eu-west-a-small" in message
    assert "eu-west" in message
    assert "eu-west-a" in message


def zone_template(zone: str) -> dict[str, Any]:
    term = {"matchExpressions": [{"key": ZONE_LABEL, "operator": "In", "values": [zone]}]}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }
    return template({"affinity": affinity})


@pytest.mark.parametrize(
    ("zone", "node"),
    [("eu-west-a", "kwok-eu-west-a-small"), ("eu-west-b", "kwok-eu-west-b-large")],
)
def test_template_zone_holds_inside_region(jobs: Jobs, zone: str, node: str) -> None:
    create_job(jobs, "zoned", {"regions": ["eu-west"]}, pod_template=zone_template(zone))

    attempt = only_attempt(finished_run(jobs, "zoned"))

    assert attempt["node"] == node
    pod = pod_named(jobs, attempt["podName"])
    affinity = pod.spec.affinity.node_affinity
    (term,) = affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    keys = [expression.key for expression in term.match_expressions]
    assert keys == [ZONE_LABEL, "topology.kubernetes.io/region"]


def test_template_zone_outside_region_is_unschedulable(jobs: Jobs) -> None:
    # The template requires a us-east zone and the placement eu-west, and no node is in both.
    create_job(jobs, "nowhere", {"regions": ["eu-west"]}, pod_template=zone_template("us-east-a"))

    def unschedulable_pod() -> client.V1Pod | None:
        for pod in jobs.pods("nowhere"):
            for condition in pod.status.conditions or []:
                if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                    return pod
        return None

    pod = wait_until(unschedulable_pod, timeout=20, message="the Pod to be Unschedulable")
    assert pod.spec.node_name is None


# ---------------------------------------------------------------------------------------
# A full region: fallback and spill-over
# ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("full_eu_west")
def test_full_region_falls_back(jobs: Jobs) -> None:
    placement = {
        "regions": ["eu-west", "us-east"],
        "fallbackAfterSeconds": 3,
        "resources": {"cpu": "1"},
    }
    create_job(jobs, "fallback", placement)

    run = finished_run(jobs, "fallback", timeout=60)

    assert run["phase"] == "Succeeded"
    attempt = only_attempt(run)
    assert attempt["attempt"] == 1
    assert attempt["step"] == 1
    assert attempt["fallbackFrom"] == "eu-west"
    assert "cpu" in attempt["fallbackReason"]
    assert attempt["region"] == "us-east"
    assert attempt["node"] == "kwok-us-east-a-small"
    assert attempt["podName"].endswith("-1-f1")
    (message,) = wait_for_event(jobs, "fallback", "PlacementFallback")
    assert "eu-west" in message
    assert "us-east" in message
    # The step 0 Pod, pinned to eu-west, was deleted, so only the step 1 Pod is left.
    assert [pod.metadata.name for pod in jobs.pods("fallback")] == [attempt["podName"]]


@pytest.mark.usefixtures("full_eu_west")
def test_preferred_region_spills_over(jobs: Jobs) -> None:
    placement = {"regions": ["eu-west", "us-east"], "mode": "Preferred", "resources": {"cpu": "1"}}
    create_job(jobs, "spill", placement)

    run = finished_run(jobs, "spill")

    assert run["phase"] == "Succeeded"
    attempt = only_attempt(run)
    assert attempt["step"] == 0
    assert attempt["region"] == "us-east"
    assert attempt.get("fallbackFrom") is None
    assert "PlacementFallback" not in jobs.event_reasons("spill")


def test_unschedulable_everywhere_fails_run(jobs: Jobs) -> None:
    placement = {
        "regions": ["eu-west", "us-east"],
        "fallbackAfterSeconds": 2,
        "resources": {"cpu": "100"},
    }
    create_job(jobs, "too-big", placement, retry_limit=0)

    run = finished_run(jobs, "too-big")

    assert run["phase"] == "Failed"
    assert run["reason"] == "RetriesExhausted"
    attempt = only_attempt(run)
    assert attempt["reason"] == "Unschedulable"
    assert attempt["step"] == 1
    assert attempt["fallbackFrom"] == "eu-west"
    assert "us-east" in attempt["message"]
    assert attempt.get("node") is None
    (message,) = wait_for_event(jobs, "too-big", "PlacementFallback")
    assert "us-east" in message
    wait_for_event(jobs, "too-big", "RetriesExhausted")
    # The step 0 Pod is deleted at the fallback, the step 1 Pod when the attempt fails.
    wait_until(lambda: not jobs.pods("too-big"), timeout=20, message="the Pods to be deleted")


# ---------------------------------------------------------------------------------------
# kubectl
# ---------------------------------------------------------------------------------------


def kubectl_get(kubeconfig: str, *args: str) -> str:
    return subprocess.run(
        ["kubectl", "get", *args],
        env=dict(os.environ, KUBECONFIG=kubeconfig),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


def test_wide_output_shows_last_region(jobs: Jobs, local_cluster: LocalCluster) -> None:
    create_job(jobs, "shown", {"regions": ["us-east"]})
    finished_run(jobs, "shown")
    kubeconfig = str(local_cluster.kubeconfig)

    wide = kubectl_get(kubeconfig, "sj", "shown", "-n", jobs.namespace, "-o", "wide")
    narrow = kubectl_get(kubeconfig, "sj", "shown", "-n", jobs.namespace)

    header, row = wide.splitlines()
    # kubectl aligns every value under the start of its column's header.
    column = header.index("LAST REGION")
    assert row[column:].split()[0] == "us-east"
    assert "LAST REGION" not in narrow
