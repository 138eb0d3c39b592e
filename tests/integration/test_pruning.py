"""Batched deletes of the finished Pods that history dropped.

sked labels each Pod with its own name, so the Pods that many ScheduledJobs drop
from history in the same second share deletecollection requests (per namespace, 100
names at most), which spare Pods that still run. Pods made before that label existed
are deleted one by one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sked import naming
from sked.kube import KubeClient
from sked.localcluster import LocalCluster
from sked.podspec import build_pod
from sked.spec import ScheduledJobSpec
from tests.integration.helpers_extra import start_operator
from tests.integration.support import (
    GROUP,
    PLURAL,
    VERSION,
    Jobs,
    OperatorProcess,
    pod_template,
    wait_until,
)

pytestmark = pytest.mark.integration


def plain_pod(name: str, labels: dict[str, str], *, finish: bool) -> dict[str, Any]:
    annotations = {"kwok.sked.dev/succeed-after": "1s"} if finish else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.37"}]},
    }


def phases(jobs: Jobs, selector: str) -> dict[str, str]:
    pods = jobs.core.list_namespaced_pod(jobs.namespace, label_selector=selector).items
    return {
        pod.metadata.name: pod.status.phase
        for pod in pods
        if pod.metadata.deletion_timestamp is None
    }


async def delete_named(kubeconfig: Path, namespace: str, names: list[str]) -> None:
    kube = await KubeClient.connect(kubeconfig=str(kubeconfig))
    try:
        await kube.delete_pods_named(namespace, names)
    finally:
        await kube.close()


def test_delete_pods_named_only_those(jobs: Jobs, local_cluster: LocalCluster) -> None:
    finished = [f"pruned-{index}" for index in range(3)]
    for name in finished:
        labels = {naming.LABEL_POD: name, "test": "pruning"}
        jobs.core.create_namespaced_pod(jobs.namespace, plain_pod(name, labels, finish=True))
    # A running Pod with a matching label, such as a copy made by hand, is spared.
    running_labels = {naming.LABEL_POD: "pruned-running", "test": "pruning"}
    jobs.core.create_namespaced_pod(
        jobs.namespace, plain_pod("pruned-running", running_labels, finish=False)
    )
    # A Pod without the label is never selected, whatever its name.
    jobs.core.create_namespaced_pod(
        jobs.namespace, plain_pod("pruned-9", {"test": "pruning"}, finish=True)
    )
    expected = {**dict.fromkeys([*finished, "pruned-9"], "Succeeded"), "pruned-running": "Running"}
    wait_until(
        lambda: phases(jobs, "test=pruning") == expected,
        timeout=30,
        message="4 Succeeded Pods and 1 Running Pod",
    )

    named = [*finished[:2], "pruned-9", "pruned-running"]
    asyncio.run(delete_named(local_cluster.kubeconfig, jobs.namespace, named))

    wait_until(
        lambda: set(phases(jobs, "test=pruning")) == {finished[2], "pruned-9", "pruned-running"},
        timeout=15,
        message="only the first two finished labelled Pods deleted",
    )
    assert phases(jobs, "test=pruning")["pruned-running"] == "Running"


def test_pods_carry_name_label(jobs: Jobs, operator: OperatorProcess) -> None:
    jobs.create(
        "labelled",
        {
            "schedule": "*/2 * * * * *",
            "history": {"successfulRunsLimit": 1},
            "template": pod_template({"kwok.sked.dev/succeed-after": "1s"}),
        },
    )

    def history_cut() -> bool:
        created = jobs.event_reasons("labelled").count("PodCreated")
        live = set(phases(jobs, "sked.dev/scheduledjob=labelled"))
        return created >= 4 and len(live) <= 2

    wait_until(history_cut, timeout=30, message="4 runs with the older Pods deleted")
    for pod in jobs.pods("labelled"):
        assert pod.metadata.labels[naming.LABEL_POD] == pod.metadata.name


def test_prune_unlabelled_pod_deleted(jobs: Jobs, operator: OperatorProcess) -> None:
    # A Pod from a sked version without the name label, left by a run that history
    # dropped while the operator was down: it is deleted by name after the restart.
    spec = {
        "schedule": "0 0 1 1 *",
        "template": pod_template({"kwok.sked.dev/succeed-after": "1s"}),
    }
    created = jobs.create("upgraded", spec)
    wait_until(
        lambda: jobs.status("upgraded").get("nextScheduleTime"),
        timeout=15,
        message="the operator to plan the job",
    )
    operator.stop()
    try:
        slot = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=400)
        pod = build_pod(
            namespace=jobs.namespace,
            job_name="upgraded",
            job_uid=created["metadata"]["uid"],
            spec=ScheduledJobSpec.model_validate(spec),
            slot=slot,
            attempt=1,
        )
        del pod["metadata"]["labels"][naming.LABEL_POD]
        name = pod["metadata"]["name"]
        # lastScheduleTime is newer than the Pod's slot, so the Pod cannot be adopted.
        last = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        jobs.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            jobs.namespace,
            PLURAL,
            "upgraded",
            {"status": {"lastScheduleTime": last}},
        )
        jobs.core.create_namespaced_pod(jobs.namespace, pod)

        def succeeded() -> bool:
            found: client.V1Pod = jobs.core.read_namespaced_pod(name, jobs.namespace)
            return bool(found.status.phase == "Succeeded")

        wait_until(succeeded, timeout=20, message="the old Pod to succeed")
    finally:
        start_operator(operator)

    wait_until(
        lambda: name not in set(phases(jobs, "sked.dev/scheduledjob=upgraded")),
        timeout=20,
        message="the unlabelled Pod of the dropped run to be deleted",
    )
