"""B6: catch-up after an outage of 2 hours.

Every-minute jobs are created while no controller of their side runs, and their status
gets a lastScheduleTime 2 hours back, as if the controller had been down that long.
Then the controller starts, and the benchmark waits until every object has its
catch-up run, which is a Pod that the recorder records after the start. Both sides run
only the newest missed slot: that is sked's default catch-up policy Latest and
CronJob's only behaviour. sked also counts the others in status.missedRuns, while
CronJob keeps no count: its v1.33 controller only logs "too many missed times" when
more than 100 were missed.

The croniter calls that sked's planner makes per object are counted in this process:
the same objects, as listed before the start, go through `sked.planner.plan` with the
schedule's `CroniterCounter`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from typing import Any

from bench.api import AsyncApi
from bench.procstat import cpu_seconds
from bench.rig import Controller, Rig
from bench.scheduled import _create
from bench.workloads import (
    CRONJOB,
    EVERY_MINUTE,
    SKED,
    JobShape,
    collection_path,
    manifests,
    status_patches,
)
from sked.controller import JobRecord, normalized_status, parse_time
from sked.planner import plan

logger = logging.getLogger(__name__)

OUTAGE = dt.timedelta(hours=2)
TIMEOUT_SECONDS = 900.0


def croniter_calls_per_object(items: list[dict[str, Any]], now: dt.datetime) -> dict[str, float]:
    """Plan every ScheduledJob in ``items`` at ``now`` and count croniter calls per object."""
    calls = []
    for body in items:
        metadata = body["metadata"]
        record = JobRecord(
            namespace=metadata["namespace"],
            name=metadata["name"],
            uid=metadata["uid"],
            generation=int(metadata.get("generation", 1)),
            created=parse_time(metadata["creationTimestamp"]) or now,
            resource_version=metadata["resourceVersion"],
            spec_json=json.dumps(body["spec"]),
            status_json=normalized_status(body.get("status")),
        )
        spec = record.parse()
        assert record.schedule is not None, record.spec_error
        counter = record.schedule.counter
        counter.calls = 0
        plan(record.view(spec, record.planned_status()), [], now=now, schedule=record.schedule)
        calls.append(counter.calls)
    return {"mean": sum(calls) / len(calls), "max": max(calls), "objects": len(calls)}


def _one_side(rig: Rig, side: str, jobs: int, rep: int) -> dict[str, Any]:
    namespace = f"b6-{side}-r{rep}"
    rig.create_namespace(namespace)
    shapes_ = [
        JobShape(
            f"late-{index:05d}", EVERY_MINUTE, last_schedule_time=dt.datetime.now(dt.UTC) - OUTAGE
        )
        for index in range(jobs)
    ]
    asyncio.run(_create(rig, manifests(side, namespace, shapes_, "b6")))

    async def patch() -> None:
        async with AsyncApi(rig.admin.credentials) as api:
            await api.patch_many(status_patches(side, namespace, shapes_), concurrency=16)

    asyncio.run(patch())
    result: dict[str, Any] = {"side": side, "rep": rep, "objects": jobs}
    if side == SKED:
        items = rig.admin.list_all(collection_path(side, namespace))
        result["croniter_calls_per_object"] = croniter_calls_per_object(
            items, dt.datetime.now(dt.UTC)
        )

    # Start in the middle of a minute, so the catch-up slot is the minute that began.
    now = time.time()
    wait = (20 - now % 60) % 60
    time.sleep(wait)
    controller: Controller = (
        rig.sked(f"sked-b6-r{rep}", [namespace])
        if side == SKED
        else rig.cronjob_controllers(f"cronjob-b6-r{rep}")
    )
    controller.start()
    started = controller.started_at
    done_at = None
    first_seen: dict[str, float] = {}
    cpu = 0.0
    while time.time() < started + TIMEOUT_SECONDS:
        time.sleep(1.0)
        cpu = cpu_seconds(controller.pid)
        for line in rig.recorded(since=started):
            if line["kind"] == "pod" and line["namespace"] == namespace:
                owner = line["owner"] if side == SKED else (line["owner"] or "").rsplit("-", 1)[0]
                first_seen.setdefault(owner, line["seen"])
        if len(first_seen) >= jobs:
            done_at = max(first_seen.values())
            break
    result.update(
        {
            "all_caught_up_seconds": None if done_at is None else done_at - started,
            "objects_caught_up": len(first_seen),
            "cpu_seconds": cpu,
        }
    )
    if side == SKED:
        items = rig.admin.list_all(collection_path(side, namespace))
        result["missed_runs_counted"] = sum(
            (item.get("status") or {}).get("missedRuns", 0) for item in items
        )
    controller.stop()
    rig.delete_namespace(namespace)
    logger.info("B6 %s rep %d: %s", side, rep, result)
    return result


def run(rig: Rig, *, jobs: int = 1000, reps: int = 1) -> dict[str, Any]:
    runs = []
    for rep in range(reps):
        for side in (SKED, CRONJOB) if rep % 2 == 0 else (CRONJOB, SKED):
            runs.append(_one_side(rig, side, jobs, rep))
    return {"jobs": jobs, "outage_hours": OUTAGE.total_seconds() / 3600, "reps": reps, "runs": runs}
