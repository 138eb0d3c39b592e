"""Operator restarts: no slot runs twice, missed slots are counted, retry waits hold."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from tests.integration.helpers_extra import (
    PodRecorder,
    once_a_minute_soon,
    parse_time,
    start_operator,
    utc_now,
)
from tests.integration.support import Jobs, OperatorProcess, pod_template, wait_until

pytestmark = pytest.mark.integration

INTERVAL = dt.timedelta(seconds=5)


def run_for(jobs: Jobs, name: str, slot: dt.datetime) -> dict[str, Any] | None:
    for run in jobs.status(name).get("runs", []):
        if parse_time(run["scheduledTime"]) == slot:
            return run  # type: ignore[no-any-return]
    return None


def test_kill_mid_run_runs_newest_missed_slot(jobs: Jobs, operator: OperatorProcess) -> None:
    # Allow, so that no slot is skipped because of the policy and the missed count only
    # reflects the downtime. History large enough to keep every run and Pod of the test.
    jobs.create(
        "restarted",
        {
            "schedule": "*/5 * * * * *",
            "concurrencyPolicy": "Allow",
            "history": {"successfulRunsLimit": 50},
            "template": pod_template({"kwok.sked.dev/succeed-after": "3s"}),
        },
    )

    with PodRecorder(jobs, "restarted") as recorder:
        first = wait_until(lambda: recorder.pods, timeout=15, message="a first Pod")[0]
        # Killed at once, possibly before the status that names the Pod was written.
        operator.kill()

        # Restart about 12 s after the first slot: two slots fall due meanwhile, and the
        # restart lands between slots, not on one.
        time.sleep(max(0.0, 12 - (utc_now() - first.slot).total_seconds()))
        start_operator(operator)
        restarted_at = utc_now()

        def pod_after_restart() -> list[Any]:
            return [pod for pod in recorder.pods if pod.slot > restarted_at]

        wait_until(pod_after_restart, timeout=15, message="a Pod for a slot after the restart")
        slots_seen = recorder.created_per_slot()
        names_seen = recorder.created_per_name()

    down_slots = []
    slot = first.slot + INTERVAL
    while slot <= restarted_at:
        down_slots.append(slot)
        slot += INTERVAL
    assert len(down_slots) >= 2
    newest_missed = down_slots[-1]

    # Every slot got at most one first attempt, and no Pod name was created twice.
    assert max(slots_seen.values()) == 1, slots_seen
    assert max(names_seen.values()) == 1, names_seen
    # Only the newest slot of the downtime ran, and the older ones have no Pod.
    assert slots_seen[newest_missed] == 1
    for older in down_slots[:-1]:
        assert slots_seen[older] == 0, older

    status = jobs.status("restarted")
    assert status["missedRuns"] == len(down_slots) - 1
    assert status["lastMissed"]["reason"] in ("catchUp", "deadline")
    assert parse_time(status["lastMissed"]["scheduledTime"]) == down_slots[-2]

    # The run that was active during the kill was followed to its end afterwards.
    def first_run_finished() -> dict[str, Any] | None:
        run = run_for(jobs, "restarted", first.slot)
        return run if run is not None and run["phase"] == "Succeeded" else None

    wait_until(first_run_finished, timeout=15, message="the first run to end Succeeded")
    assert run_for(jobs, "restarted", newest_missed) is not None

    # Status and Pods name the same attempts once each run's end is written. A run
    # that just started may be missing from status for up to the status batch delay.
    def names_match() -> bool:
        status = jobs.status("restarted")
        in_status = {attempt["podName"] for run in status["runs"] for attempt in run["attempts"]}
        return {pod.metadata.name for pod in jobs.pods("restarted")} == in_status

    wait_until(names_match, timeout=15, message="status to name every Pod")


def test_retry_wait_survives_restart(jobs: Jobs, operator: OperatorProcess) -> None:
    # Long enough that a graceful stop (about 5 s) and a start fit inside the wait.
    backoff = dt.timedelta(seconds=10)
    jobs.create(
        "retried",
        {
            "schedule": once_a_minute_soon(),
            "retry": {"limit": 1, "backoff": {"initialSeconds": backoff.seconds}},
            "template": pod_template({"kwok.sked.dev/fail-after": "1s"}),
        },
    )

    def waiting_for_retry() -> dict[str, Any] | None:
        runs = jobs.status("retried").get("runs", [])
        return runs[0] if runs and runs[0].get("nextAttemptTime") else None

    with PodRecorder(jobs, "retried") as recorder:
        run = wait_until(waiting_for_retry, timeout=20, message="a retry to be scheduled")
        slot = parse_time(run["scheduledTime"])
        retry_due = parse_time(run["nextAttemptTime"])
        # SIGTERM, as a rolling update stops it.
        operator.stop()
        start_operator(operator)
        restarted_at = utc_now()
        assert restarted_at < retry_due, "the restart took longer than the retry wait"

        def run_failed() -> dict[str, Any] | None:
            found = run_for(jobs, "retried", slot)
            return found if found is not None and found["phase"] == "Failed" else None

        run = wait_until(run_failed, timeout=30, message="the run to end after its retry")
        retries_created = recorder.created_per_slot(attempt=2)

    attempts = run["attempts"]
    assert [attempt["attempt"] for attempt in attempts] == [1, 2]
    finished = parse_time(attempts[0]["finishTime"])
    retried = parse_time(attempts[1]["startTime"])
    assert retried >= finished + backoff
    # A wait counted again from the restart would start the retry a full backoff after it.
    # The retry came at the time set before the restart.
    assert retried <= finished + backoff + dt.timedelta(seconds=2)
    assert retries_created == {slot: 1}
    assert run["reason"] == "RetriesExhausted"
