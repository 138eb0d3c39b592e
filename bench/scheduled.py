"""One measured stretch of scheduled runs for one side, or for both sides at the same time.

`measure_slots` is the shared core of B1, B2, B3 and the quick benchmark. For each side
it creates a namespace, starts that side's controller, creates the jobs and waits for
the measured due times (the *slots*). Then it reads when the recorder first saw each
Pod, the API requests of the side's controllers in the audit log, and the CPU and
memory of the processes involved. Afterwards it stops the controller, deletes the
namespace and waits for that, so the next measurement starts on a quiet cluster.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from bench.api import AsyncApi
from bench.audit import READ_VERBS, WRITE_VERBS, Window
from bench.procstat import Sampler
from bench.rig import SKED_USER, Controller, Rig
from bench.stats import percentile
from bench.workloads import CRONJOB, SKED, JobShape, manifests

logger = logging.getLogger(__name__)

# The clients whose requests count for each side: sked alone, and for CronJob the whole
# chain from CronJob to Job to Pod, the garbage collector included.
SIDE_CLIENTS = {
    SKED: {"sked"},
    CRONJOB: {"cronjob-controller", "job-controller", "garbage-collector"},
}

# Creating objects runs at about 150 per second with fsync on 2 cores. The estimate picks
# slots far enough ahead that every object exists before its first due time.
CREATES_PER_SECOND_ESTIMATE = 150
SLOT_MARGIN_SECONDS = 10

# The controllers have finished with a stretch once they wrote nothing for this long.
QUIET_SECONDS = 5.0
QUIET_TIMEOUT_SECONDS = 120.0


@dataclass
class SideWork:
    """The work of one side: the jobs that run and the idle ones that only cost memory."""

    side: str
    namespace: str
    active: list[JobShape]
    idle: list[JobShape] = field(default_factory=list)
    history: int = 3


@dataclass
class SideResult:
    """The outcome of one side over the measured slots."""

    side: str
    namespace: str
    rep: int
    together: bool
    slots: list[float]
    expected_per_slot: int
    pods: list[dict[str, Any]]
    """The recorder's lines for the side's Pods of the measured slots, each with ``lag``."""
    writes: int
    reads: int
    requests: list[dict[str, Any]]
    usage: dict[str, dict[str, Any]]
    create_seconds: float
    void_reasons: list[str]

    def lags(self) -> list[float]:
        return [pod["lag"] for pod in self.pods]

    def per_slot(self) -> list[dict[str, Any]]:
        """Return, per slot, the Pods seen, the time until the last of them and the rate."""
        rows = []
        for slot in self.slots:
            seen = sorted(pod["seen"] for pod in self.pods if pod["slot"] == slot)
            last = seen[-1] - slot if seen else None
            rows.append(
                {
                    "slot": slot,
                    "pods": len(seen),
                    "missed": self.expected_per_slot - len(seen),
                    "all_seen_seconds": last if len(seen) == self.expected_per_slot else None,
                    "last_seen_seconds": last,
                    "runs_per_second": len(seen) / last if last else None,
                }
            )
        return rows

    def summary(self) -> dict[str, Any]:
        lags = self.lags()
        runs = len(self.pods)
        return {
            "side": self.side,
            "rep": self.rep,
            "together": self.together,
            "namespace": self.namespace,
            "slots": len(self.slots),
            "expected_runs": self.expected_per_slot * len(self.slots),
            "runs": runs,
            "missed": self.expected_per_slot * len(self.slots) - runs,
            "lag_p50": percentile(lags, 0.5),
            "lag_p99": percentile(lags, 0.99),
            "lag_max": max(lags) if lags else None,
            "per_slot": self.per_slot(),
            "writes": self.writes,
            "reads": self.reads,
            "writes_per_run": self.writes / runs if runs else None,
            "reads_per_run": self.reads / runs if runs else None,
            "requests": self.requests,
            "usage": self.usage,
            "create_seconds": round(self.create_seconds, 2),
            "void_reasons": self.void_reasons,
        }


def next_minute(after: float) -> float:
    return math.floor(after / 60) * 60 + 60


def start_controller(
    rig: Rig, work: SideWork, tag: str, *, qps: float | None, burst: int | None
) -> Controller:
    if work.side == SKED:
        controller: Controller = rig.sked(f"sked-{tag}", [work.namespace])
    else:
        controller = rig.cronjob_controllers(f"cronjob-{tag}", qps=qps, burst=burst)
    controller.start()
    controller.wait_ready()
    return controller


async def _create(rig: Rig, items: list[tuple[str, dict[str, Any]]]) -> float:
    started = time.monotonic()
    async with AsyncApi(rig.admin.credentials) as api:
        await api.create_many(items, concurrency=16)
    return time.monotonic() - started


def create_objects(rig: Rig, work: SideWork, shapes: list[JobShape], run_id: str) -> float:
    """Create the side's objects for ``shapes``; return the seconds it took."""
    items = manifests(work.side, work.namespace, shapes, run_id, history=work.history)
    return asyncio.run(_create(rig, items)) if items else 0.0


def wait_quiet(
    windows: dict[str, Window],
    *,
    quiet: float = QUIET_SECONDS,
    timeout: float = QUIET_TIMEOUT_SECONDS,
    until: float | None = None,
) -> None:
    """Wait until no side's controller wrote for ``quiet`` seconds, or ``timeout`` passes.

    ``until`` is a time beyond which the wait ends in any case.
    """
    started = time.time()
    deadline = started + timeout if until is None else min(started + timeout, until)
    while time.time() < deadline:
        time.sleep(1.0)
        last = 0.0
        for side, window in windows.items():
            window.read()
            last = max(last, window.quiet_since(SIDE_CLIENTS[side]))
        if time.time() - max(last, started) >= quiet:
            return


def pods_of(rig: Rig, namespace: str, slots: list[float], since: float) -> list[dict[str, Any]]:
    """Return the recorded Pods of ``namespace`` for ``slots``, each with its slot and lag.

    A CronJob's Pod takes the slot of its Job, which carries the due time in an
    annotation; Job names end in the due time in minutes, which serves if the Job's line
    is missing.
    """
    lines = rig.recorded(since=since - 3600)
    job_slots = {
        line["name"]: line["slot"]
        for line in lines
        if line["kind"] == "job" and line["namespace"] == namespace and line["slot"] is not None
    }
    expected_slots = set(slots)
    pods = []
    for line in lines:
        if line["kind"] != "pod" or line["namespace"] != namespace:
            continue
        slot = line["slot"]
        if slot is None and line["owner"]:
            slot = job_slots.get(line["owner"])
            if slot is None and line["owner"].rsplit("-", 1)[-1].isdigit():
                slot = float(int(line["owner"].rsplit("-", 1)[-1]) * 60)
        if slot in expected_slots:
            pods.append({**line, "slot": slot, "lag": line["seen"] - slot})
    return pods


def _create_work(
    rig: Rig, works: list[SideWork], run_id: str, *, fires_once: bool
) -> tuple[float, dict[str, float]]:
    """Create every side's objects; return the first measured slot and each side's seconds."""
    # Idle objects first: they never fire, so they may take as long as they need.
    create_seconds = {work.side: create_objects(rig, work, work.idle, run_id) for work in works}
    if fires_once:
        estimate = sum(len(work.active) for work in works) / CREATES_PER_SECOND_ESTIMATE
        first_slot = next_minute(time.time() + estimate + SLOT_MARGIN_SECONDS)
        schedule = f"{dt.datetime.fromtimestamp(first_slot, dt.UTC):%M %H %d %m} *"
        for work in works:
            work.active = [JobShape(shape.name, schedule) for shape in work.active]
    else:
        # Start right after a minute begins, so the objects exist before it ends.
        time.sleep(max(0.0, next_minute(time.time()) + 1 - time.time()))
    for work in works:
        create_seconds[work.side] += create_objects(rig, work, work.active, run_id)
    if not fires_once:
        first_slot = next_minute(time.time())
        if first_slot - time.time() < SLOT_MARGIN_SECONDS:
            first_slot += 60
    if time.time() > first_slot - 2:
        raise RuntimeError(
            f"creating the jobs ended {time.time() - first_slot:+.1f} s from the first slot; "
            "lower CREATES_PER_SECOND_ESTIMATE"
        )
    return first_slot, create_seconds


def _windows(rig: Rig, works: list[SideWork]) -> dict[str, Window]:
    return {
        work.side: Window(
            rig.cluster.audit_log_path, sked_users={SKED_USER}, namespaces={work.namespace}
        )
        for work in works
    }


def _wait_for_pods(
    rig: Rig, works: list[SideWork], slot_times: list[float], *, since: float, until: float
) -> None:
    """Wait until every side has a Pod for each job and slot, or ``until`` passes."""
    expected = {work.side: len(work.active) * len(slot_times) for work in works}
    while time.time() < until:
        time.sleep(1.0)
        if time.time() < slot_times[-1]:
            continue
        seen = {work.side: len(pods_of(rig, work.namespace, slot_times, since)) for work in works}
        if all(seen[side] >= expected[side] for side in seen):
            return


def _void_reasons(usage: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"{name} saturated a core (average {usage[name]['core_share']:.2f}, "
        f"{usage[name]['longest_saturated_streak']} s in a row)"
        for name in ("recorder", "kwok")
        if name in usage and usage[name]["saturated"]
    ]


def measure_slots(
    rig: Rig,
    works: list[SideWork],
    *,
    run_id: str,
    rep: int,
    slots: int,
    fires_once: bool = False,
    qps: float | None = None,
    burst: int | None = None,
    run_timeout: float = 300.0,
) -> list[SideResult]:
    """Run ``works`` (one side, or several at the same time) over ``slots`` due times.

    Every-minute jobs (``fires_once`` False) are created just after a minute starts, so
    none fires before the first measured slot. Their controllers stop before the minute
    after the last slot. With ``fires_once``, each active job's schedule names the first
    slot only, which is then picked far enough ahead for all of them to exist in time.
    ``run_timeout`` bounds the wait for the Pods of the last slot.
    """
    together = len(works) > 1
    tag = f"{run_id}-r{rep}" + ("-together" if together else "")
    for work in works:
        rig.create_namespace(work.namespace)
    controllers = [start_controller(rig, work, tag, qps=qps, burst=burst) for work in works]
    first_slot, create_seconds = _create_work(rig, works, run_id, fires_once=fires_once)
    slot_times = [first_slot + 60 * index for index in range(slots)]

    # The first reconcile of every new object writes its status; that belongs to setup.
    wait_quiet(_windows(rig, works), until=first_slot - 3)
    windows = _windows(rig, works)
    sampler = Sampler()
    for name, pid in rig.pids().items():
        sampler.watch(name, pid)
    sampler.start()
    window_opened = time.time()
    logger.info(
        "run %s: %d slot(s) from %s", tag, slots, dt.datetime.fromtimestamp(first_slot, dt.UTC)
    )

    # Every-minute jobs stop before the slot after the last one measured would fire.
    end = slot_times[-1] + (run_timeout if fires_once else 55)
    _wait_for_pods(
        rig, works, slot_times, since=window_opened, until=min(end, slot_times[-1] + run_timeout)
    )
    wait_quiet(windows, until=end)
    for window in windows.values():
        window.read()
    usage = {name: value.as_dict() for name, value in sampler.stop().items()}
    for controller in controllers:
        controller.stop()

    results = []
    for work in works:
        counts = windows[work.side].counts
        clients = SIDE_CLIENTS[work.side]
        results.append(
            SideResult(
                side=work.side,
                namespace=work.namespace,
                rep=rep,
                together=together,
                slots=slot_times,
                expected_per_slot=len(work.active),
                pods=pods_of(rig, work.namespace, slot_times, window_opened),
                writes=counts.writes(clients),
                reads=counts.reads(clients),
                requests=[
                    row
                    for row in counts.table()
                    if row["client"] in clients and row["verb"] in READ_VERBS | WRITE_VERBS
                ],
                usage=usage,
                create_seconds=create_seconds[work.side],
                void_reasons=_void_reasons(usage),
            )
        )
    for work in works:
        rig.delete_namespace(work.namespace)
    return results
