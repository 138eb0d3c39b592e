"""B4: memory, idle CPU and restart-to-ready time with many idle jobs.

For each side, one controller starts with no objects, then the namespace fills up to
each size in turn with daily jobs that do not fire during the benchmark. At each size
the controller restarts a few times, and each restart-to-ready time runs from process
start until sked's /readyz returns 200, or until kube-controller-manager's cronjob and
job controllers have synced caches. Then the controller settles, and its RSS and the
CPU it uses while nothing is due are read from /proc. Settled means the controller
wrote nothing to the API server for 5 s and 20 s more have passed. The RSS slope is the
growth over the empty controller per 1,000 objects.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from bench.audit import Window
from bench.procstat import cpu_seconds, rss_bytes
from bench.rig import SKED_USER, Controller, Rig
from bench.scheduled import SideWork, _create, wait_quiet
from bench.workloads import CRONJOB, SKED, daily_at_unused_hour, manifests, shapes

logger = logging.getLogger(__name__)

SETTLE_SECONDS = 20.0
IDLE_SECONDS = 30.0


def _controller(rig: Rig, side: str, namespace: str, tag: str) -> Controller:
    if side == SKED:
        return rig.sked(f"sked-b4-{tag}", [namespace])
    return rig.cronjob_controllers(f"cronjob-b4-{tag}")


def _settled_reading(
    rig: Rig, side: str, namespace: str, controller: Controller
) -> dict[str, float]:
    """Wait until the controller is quiet, then return its RSS and its CPU share while idle.

    After a start, sked checks every Pod template once with a dry-run create. So the
    wait is for 5 s without a write, and `SETTLE_SECONDS` more.
    """
    window = Window(rig.cluster.audit_log_path, sked_users={SKED_USER}, namespaces={namespace})
    wait_quiet({side: window}, timeout=900)
    time.sleep(SETTLE_SECONDS)
    before = cpu_seconds(controller.pid)
    time.sleep(IDLE_SECONDS)
    share = (cpu_seconds(controller.pid) - before) / IDLE_SECONDS
    return {"rss_mib": rss_bytes(controller.pid) / 2**20, "idle_core_share": share}


def _one_side(rig: Rig, side: str, sizes: list[int], restarts: int) -> dict[str, Any]:
    namespace = f"b4-{side}"
    rig.create_namespace(namespace)
    controller = _controller(rig, side, namespace, "0")
    controller.start()
    controller.wait_ready()
    empty = _settled_reading(rig, side, namespace, controller)
    logger.info("B4 %s empty: %.1f MiB", side, empty["rss_mib"])
    rows = []
    existing = 0
    daily = daily_at_unused_hour(dt.datetime.now(dt.UTC))
    for size in sizes:
        work = SideWork(side, namespace, shapes("idle", size, daily)[existing:])
        window = Window(rig.cluster.audit_log_path, sked_users={SKED_USER}, namespaces={namespace})
        asyncio.run(_create(rig, manifests(side, namespace, work.active, "b4")))
        existing = size
        # sked writes each new object's status once; wait for that before restarting.
        wait_quiet({side: window}, timeout=600)
        ready = []
        for index in range(restarts):
            controller.stop()
            controller = _controller(rig, side, namespace, f"{size}-{index}")
            controller.start()
            ready.append(controller.wait_ready())
            if index < restarts - 1:
                # Let the start's own work end, so the next restart begins from idle.
                wait_quiet(
                    {
                        side: Window(
                            rig.cluster.audit_log_path,
                            sked_users={SKED_USER},
                            namespaces={namespace},
                        )
                    },
                    timeout=900,
                )
        reading = _settled_reading(rig, side, namespace, controller)
        slope = (reading["rss_mib"] - empty["rss_mib"]) / size * 1000
        rows.append(
            {
                "objects": size,
                "restart_to_ready_seconds": ready,
                **reading,
                "rss_slope_mib_per_1000": slope,
            }
        )
        logger.info(
            "B4 %s %d objects: %.1f MiB, ready after %s s", side, size, reading["rss_mib"], ready
        )
    controller.stop()
    rig.delete_namespace(namespace, timeout=900)
    return {"empty": empty, "sizes": rows}


def run(rig: Rig, *, sizes: list[int], restarts: int = 3) -> dict[str, Any]:
    return {
        "sizes": sizes,
        "restarts": restarts,
        "settle_seconds": SETTLE_SECONDS,
        "idle_seconds": IDLE_SECONDS,
        "sides": {side: _one_side(rig, side, sizes, restarts) for side in (SKED, CRONJOB)},
    }
