"""B1, B2, B3 and the quick form: scheduled runs of both sides, interleaved over repetitions.

Each repetition runs one side after the other, in alternating order (sked first in even
repetitions, CronJob first in odd ones), so a drift of the shared machine over time
does not favour one side. ``together`` adds one more repetition with both sides at once.

B1  every-minute jobs plus idle daily ones: lag from due time to Pod seen.
B2  K jobs due in the same second: time until all K Pods exist, runs/s, missed slots.
B3  every-minute jobs over several runs: API writes and reads per run.
quick  100 every-minute jobs over 3 slots, which yields all three at small size: each
       slot is a burst of 100 jobs due in the same second (B2 with K = 100), and its
       lags and requests give B1 and B3. It keeps 1 successful run per job instead of
       3, so that runs 2 and 3 already include the history cleanup that every run
       pays in the long run.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from bench.rig import Rig
from bench.scheduled import SideWork, measure_slots
from bench.workloads import CRONJOB, EVERY_MINUTE, SIDES, SKED, daily_at_unused_hour, shapes

logger = logging.getLogger(__name__)


def order(rep: int) -> tuple[str, str]:
    return (SKED, CRONJOB) if rep % 2 == 0 else (CRONJOB, SKED)


def _run_reps(
    rig: Rig,
    name: str,
    *,
    reps: int,
    together: bool,
    build: Any,
    **options: Any,
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """Run ``reps`` interleaved repetitions, plus one with both sides together if asked.

    Returns the summary of every run and the lags of every Pod of the runs with one side
    at a time, by side.
    """
    summaries = []
    lags: dict[str, list[float]] = {side: [] for side in SIDES}
    for rep in range(reps):
        for side in order(rep):
            (result,) = measure_slots(
                rig, [build(side, f"{name}-{side}-r{rep}")], run_id=name, rep=rep, **options
            )
            summaries.append(result.summary())
            lags[side] += [round(lag, 4) for lag in result.lags()]
            _log(name, summaries[-1])
    if together:
        works = [build(side, f"{name}-{side}-together") for side in SIDES]
        for result in measure_slots(rig, works, run_id=name, rep=reps, **options):
            summaries.append(result.summary())
            _log(name, summaries[-1])
    return summaries, lags


def _log(name: str, summary: dict[str, Any]) -> None:
    logger.info(
        "%s %s rep %d%s: %d/%d runs, lag p50 %s p99 %s, %.1f writes and %.1f reads per run",
        name,
        summary["side"],
        summary["rep"],
        " (together)" if summary["together"] else "",
        summary["runs"],
        summary["expected_runs"],
        _seconds(summary["lag_p50"]),
        _seconds(summary["lag_p99"]),
        summary["writes_per_run"] or 0,
        summary["reads_per_run"] or 0,
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def run_quick(rig: Rig, *, jobs: int = 100, slots: int = 3, reps: int = 3) -> dict[str, Any]:
    def build(side: str, namespace: str) -> SideWork:
        return SideWork(side, namespace, shapes("q", jobs, EVERY_MINUTE), history=1)

    summaries, lags = _run_reps(rig, "quick", reps=reps, together=False, build=build, slots=slots)
    return {
        "jobs": jobs,
        "slots": slots,
        "reps": reps,
        "history": 1,
        "runs": summaries,
        "lags": lags,
    }


def run_lag(
    rig: Rig,
    *,
    jobs: int = 1000,
    idle: int = 5000,
    slots: int = 10,
    reps: int = 3,
    together: bool = True,
) -> dict[str, Any]:
    """B1: ``jobs`` every-minute jobs and ``idle`` daily ones that do not fire."""
    daily = daily_at_unused_hour(dt.datetime.now(dt.UTC))

    def build(side: str, namespace: str) -> SideWork:
        return SideWork(
            side, namespace, shapes("m", jobs, EVERY_MINUTE), idle=shapes("d", idle, daily)
        )

    summaries, lags = _run_reps(rig, "b1", reps=reps, together=together, build=build, slots=slots)
    return {
        "jobs": jobs,
        "idle": idle,
        "slots": slots,
        "reps": reps,
        "runs": summaries,
        "lags": lags,
    }


def run_burst(
    rig: Rig, *, sizes: list[int], reps: int = 3, qps: float | None = None, timeout: float = 1200.0
) -> dict[str, Any]:
    """B2: for each K in ``sizes``, K jobs due in the same second."""
    by_size = {}
    for size in sizes:

        def build(side: str, namespace: str, size: int = size) -> SideWork:
            # The schedule is replaced by one naming the chosen slot.
            return SideWork(side, namespace, shapes("k", size, EVERY_MINUTE))

        by_size[str(size)], _ = _run_reps(
            rig,
            f"b2-{size}",
            reps=reps,
            together=False,
            build=build,
            slots=1,
            fires_once=True,
            qps=qps,
            run_timeout=timeout,
        )
    return {"sizes": sizes, "reps": reps, "qps": qps, "timeout": timeout, "runs": by_size}


def run_cost(rig: Rig, *, jobs: int = 200, slots: int = 10, reps: int = 3) -> dict[str, Any]:
    """B3: ``jobs`` every-minute jobs over ``slots`` runs each."""

    def build(side: str, namespace: str) -> SideWork:
        return SideWork(side, namespace, shapes("c", jobs, EVERY_MINUTE))

    summaries, _ = _run_reps(rig, "b3", reps=reps, together=False, build=build, slots=slots)
    return {"jobs": jobs, "slots": slots, "reps": reps, "runs": summaries}
