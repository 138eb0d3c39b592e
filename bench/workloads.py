"""The same scheduled work written for both sides: sked ScheduledJobs and Kubernetes CronJobs.

Every Pod of either side is bound in its template to a fake Node (``nodeName``), so the
kube-scheduler takes no part, and kwok ends it Succeeded 2 s after it starts. The Pods
use the host network, because kwok otherwise gives each Pod an address from its Node's
/24 and a few thousand Pods kept for history would run out of them.

The two templates differ only where the APIs differ: a CronJob wraps the Pod in a Job
with ``backoffLimit`` 3, the number of retries sked's default ``retry.limit`` allows.
Both keep the same number of successful runs (3 unless a benchmark sets another) and
1 failed run, and both forbid concurrent runs. These are sked's defaults, and CronJob is
set to match them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

BENCH_LABEL = "bench.sked.dev/run"
SKED = "sked"
CRONJOB = "cronjob"
SIDES = (SKED, CRONJOB)

# The fake Nodes without a taint; Pods are spread over them by index.
FAKE_NODES = ("kwok-eu-west-a-small", "kwok-eu-west-b-large", "kwok-us-east-a-small")
RUN_SECONDS = "2s"

EVERY_MINUTE = "* * * * *"


@dataclass(frozen=True)
class JobShape:
    """One scheduled job, the same for both sides."""

    name: str
    schedule: str
    last_schedule_time: dt.datetime | None = None
    """Written to status before the controllers start, as after a long outage."""


def shapes(prefix: str, count: int, schedule: str, **extra: Any) -> list[JobShape]:
    return [JobShape(f"{prefix}-{index:05d}", schedule, **extra) for index in range(count)]


def daily_at_unused_hour(now: dt.datetime) -> str:
    """Return a daily schedule that cannot fire in the next 11 hours: idle load."""
    hour = (now.astimezone(dt.UTC).hour + 12) % 24
    return f"0 {hour} * * *"


def once_at(slot: dt.datetime) -> str:
    """Return a 5-field schedule whose next due time after now is ``slot`` (then a year on)."""
    slot = slot.astimezone(dt.UTC)
    return f"{slot.minute} {slot.hour} {slot.day} {slot.month} *"


def pod_template(run_id: str, index: int) -> JSON:
    return {
        "metadata": {
            "labels": {BENCH_LABEL: run_id},
            "annotations": {"kwok.sked.dev/succeed-after": RUN_SECONDS},
        },
        "spec": {
            "nodeName": FAKE_NODES[index % len(FAKE_NODES)],
            "hostNetwork": True,
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.37", "command": ["true"]}],
        },
    }


def scheduled_job(namespace: str, shape: JobShape, run_id: str, index: int, history: int) -> JSON:
    return {
        "apiVersion": "sked.dev/v1alpha1",
        "kind": "ScheduledJob",
        "metadata": {"name": shape.name, "namespace": namespace, "labels": {BENCH_LABEL: run_id}},
        "spec": {
            "schedule": shape.schedule,
            "timeZone": "UTC",
            "concurrencyPolicy": "Forbid",
            "retry": {"limit": 3},
            "history": {"successfulRunsLimit": history, "failedRunsLimit": 1},
            "template": pod_template(run_id, index),
        },
    }


def cron_job(namespace: str, shape: JobShape, run_id: str, index: int, history: int) -> JSON:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": shape.name, "namespace": namespace, "labels": {BENCH_LABEL: run_id}},
        "spec": {
            "schedule": shape.schedule,
            "timeZone": "UTC",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": history,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": {BENCH_LABEL: run_id}},
                "spec": {"backoffLimit": 3, "template": pod_template(run_id, index)},
            },
        },
    }


def collection_path(side: str, namespace: str) -> str:
    if side == SKED:
        return f"/apis/sked.dev/v1alpha1/namespaces/{namespace}/scheduledjobs"
    return f"/apis/batch/v1/namespaces/{namespace}/cronjobs"


def manifests(
    side: str, namespace: str, jobs: list[JobShape], run_id: str, *, history: int = 3
) -> list[tuple[str, JSON]]:
    """Return (collection path, body) of every object of ``jobs`` for ``side``.

    ``history`` is the number of successful runs each object keeps.
    """
    build = scheduled_job if side == SKED else cron_job
    path = collection_path(side, namespace)
    return [
        (path, build(namespace, shape, run_id, index, history)) for index, shape in enumerate(jobs)
    ]


def status_patches(side: str, namespace: str, jobs: list[JobShape]) -> list[tuple[str, JSON]]:
    """Return (status path, merge patch) that set lastScheduleTime where a shape has one."""
    patches = []
    for shape in jobs:
        if shape.last_schedule_time is None:
            continue
        stamp = shape.last_schedule_time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        path = f"{collection_path(side, namespace)}/{shape.name}/status"
        patches.append((path, {"status": {"lastScheduleTime": stamp}}))
    return patches
