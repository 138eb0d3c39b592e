"""B5: failover gap with two replicas per side and the same Lease timings.

Both sides run two replicas with leader election (Lease duration 15 s, renew deadline
10 s, retry period 2 s). In each trial the leader of one side gets SIGKILL a few seconds
before a due time, as a crashed node would stop it. The gap is the time from that due
time until the recorder records the slot's first and last Pods. The
killed replica then starts again as a follower for the next trial. Trials alternate
between the sides, one due time each, so the other side runs undisturbed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bench.rig import Controller, Rig, wait_for
from bench.scheduled import _create, next_minute, pods_of
from bench.workloads import CRONJOB, EVERY_MINUTE, SKED, manifests, shapes

logger = logging.getLogger(__name__)

KILL_BEFORE_DUE_SECONDS = 3.0
JOBS = 20
TRIAL_TIMEOUT_SECONDS = 120.0


def _await_leader(replicas: list[Controller], timeout: float) -> Controller:
    """Wait until exactly one replica leads and return it."""
    leader = wait_for(lambda: _leader(replicas), timeout=timeout, what="a single leader")
    assert isinstance(leader, Controller)
    return leader


def _leader(replicas: list[Controller]) -> Controller | None:
    leading = [r for r in replicas if r.running() and r.is_leading()]
    return leading[0] if len(leading) == 1 else None


def _replica(rig: Rig, side: str, namespace: str, index: int, generation: int) -> Controller:
    name = f"{side}-b5-{index}-{generation}"
    if side == SKED:
        return rig.sked(name, [namespace], leader_elect=True)
    return rig.cronjob_controllers(name, leader_elect=True)


def run(rig: Rig, *, trials: int = 10, jobs: int = JOBS) -> dict[str, Any]:
    namespaces = {side: f"b5-{side}" for side in (SKED, CRONJOB)}
    replicas: dict[str, list[Controller]] = {}
    for side, namespace in namespaces.items():
        rig.create_namespace(namespace)
        asyncio.run(_create(rig, manifests(side, namespace, shapes("f", jobs, EVERY_MINUTE), "b5")))
        replicas[side] = [_replica(rig, side, namespace, index, 0) for index in range(2)]
        for replica in replicas[side]:
            replica.start()
    for side in replicas:
        _await_leader(replicas[side], 120)

    results: dict[str, list[dict[str, Any]]] = {SKED: [], CRONJOB: []}
    generation = 0
    for trial in range(trials):
        for side in (SKED, CRONJOB) if trial % 2 == 0 else (CRONJOB, SKED):
            generation += 1
            leader = _await_leader(replicas[side], 60)
            due = next_minute(time.time() + KILL_BEFORE_DUE_SECONDS + 5)
            time.sleep(max(0.0, due - KILL_BEFORE_DUE_SECONDS - time.time()))
            killed_at = time.time()
            leader.kill()
            follower = next(r for r in replicas[side] if r is not leader)
            new_leader_at = None
            deadline = due + TRIAL_TIMEOUT_SECONDS
            pods: list[dict[str, Any]] = []
            while time.time() < deadline:
                time.sleep(0.2)
                if new_leader_at is None and follower.is_leading():
                    new_leader_at = time.time()
                pods = pods_of(rig, namespaces[side], [due], killed_at)
                if len(pods) >= jobs:
                    break
            seen = sorted(pod["seen"] for pod in pods)
            row = {
                "trial": trial,
                "due": due,
                "killed_before_due": due - killed_at,
                "new_leader_after_kill": None
                if new_leader_at is None
                else new_leader_at - killed_at,
                "first_pod_after_due": seen[0] - due if seen else None,
                "last_pod_after_due": seen[-1] - due if len(seen) >= jobs else None,
                "pods": len(seen),
            }
            results[side].append(row)
            logger.info("B5 %s trial %d: %s", side, trial, row)
            # The killed replica comes back as a follower for the next trials.
            index = replicas[side].index(leader)
            replacement = _replica(rig, side, namespaces[side], index, generation)
            replacement.start()
            replicas[side][index] = replacement
    for side in replicas:
        for replica in replicas[side]:
            replica.stop()
        rig.delete_namespace(namespaces[side])
    return {
        "jobs": jobs,
        "trials": trials,
        "kill_before_due_seconds": KILL_BEFORE_DUE_SECONDS,
        "results": results,
    }
