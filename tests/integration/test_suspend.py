"""Suspending a ScheduledJob: no runs meanwhile, and none of those slots on resume."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from tests.integration.helpers_extra import PodRecorder, once_a_minute_soon, parse_time, utc_now
from tests.integration.support import Jobs, pod_template, wait_until

pytestmark = pytest.mark.integration

INTERVAL = dt.timedelta(seconds=2)

# Allow, so that every slot either runs or is missed because of the suspension, and the
# missed count can be checked exactly.
EVERY_TWO_SECONDS = {
    "schedule": "*/2 * * * * *",
    "concurrencyPolicy": "Allow",
    "history": {"successfulRunsLimit": 20},
    "template": pod_template({"kwok.sked.dev/succeed-after": "1s"}),
}


def suspended_condition(jobs: Jobs, name: str) -> dict[str, Any] | None:
    condition = jobs.condition(name, "Suspended")
    return condition if condition and condition["status"] == "True" else None


def test_suspended_job_counts_missed_slots(jobs: Jobs) -> None:
    jobs.create("pausable", EVERY_TWO_SECONDS)

    with PodRecorder(jobs, "pausable") as recorder:
        wait_until(lambda: recorder.pods, timeout=15, message="a first Pod")
        suspended_at = utc_now()
        jobs.patch_spec("pausable", {"suspend": True})

        condition = wait_until(
            lambda: suspended_condition(jobs, "pausable"),
            timeout=10,
            message="condition Suspended True",
        )
        assert condition["reason"] == "Suspended"
        assert jobs.status("pausable").get("nextScheduleTime") is None

        # Status keeps counting the slots that fall due while the job is suspended.
        def suspended_slots_missed() -> dict[str, Any] | None:
            status = jobs.status("pausable")
            missed = status.get("lastMissed") or {}
            if status.get("missedRuns", 0) >= 2 and missed.get("reason") == "suspended":
                return status
            return None

        status = wait_until(
            suspended_slots_missed, timeout=10, message="two slots missed while suspended"
        )
        assert status.get("nextScheduleTime") is None
        assert parse_time(status["lastMissed"]["scheduledTime"]) > suspended_at
        created_while_suspended = [
            pod for pod in recorder.pods if pod.slot > suspended_at + dt.timedelta(seconds=1)
        ]

    assert created_while_suspended == []


def test_resume_skips_suspended_slots(jobs: Jobs) -> None:
    jobs.create("pausable", EVERY_TWO_SECONDS)

    with PodRecorder(jobs, "pausable") as recorder:
        wait_until(lambda: recorder.pods, timeout=15, message="a first Pod")
        suspended_at = utc_now()
        jobs.patch_spec("pausable", {"suspend": True})
        wait_until(
            lambda: suspended_condition(jobs, "pausable"),
            timeout=10,
            message="condition Suspended True",
        )
        # Three slots fall due while suspended.
        time.sleep(3 * INTERVAL.total_seconds())

        resumed_at = utc_now()
        jobs.patch_spec("pausable", {"suspend": False})

        def slot_after_resume() -> list[Any]:
            return [pod for pod in recorder.pods if pod.slot > resumed_at]

        wait_until(slot_after_resume, timeout=15, message="a run for a slot after the resume")
        # Let slots near the resume settle, so a late run of a suspended slot would show.
        time.sleep(INTERVAL.total_seconds())
        slots = sorted({pod.slot for pod in recorder.pods})

    # The operator reacts to a patch within a second, so the slot right at the suspension
    # may still run. No slot after it, up to the resume, got a Pod, then or later.
    window_start = suspended_at + dt.timedelta(seconds=1)
    in_window = [slot for slot in slots if window_start < slot <= resumed_at]
    assert in_window == []

    status = jobs.status("pausable")
    condition = jobs.condition("pausable", "Suspended")
    assert condition is not None
    assert condition["status"] == "False"
    assert status.get("nextScheduleTime")

    # Each slot between the last run before the suspension and the first after it is
    # counted once as missed, and nothing else was missed.
    last_before = max(slot for slot in slots if slot <= window_start)
    first_after = min(slot for slot in slots if slot > resumed_at)
    gap_slots = (first_after - last_before) // INTERVAL - 1
    assert gap_slots >= 3
    assert status["missedRuns"] == gap_slots
    assert status["lastMissed"]["reason"] == "suspended"
    assert parse_time(status["lastMissed"]["scheduledTime"]) < first_after
    assert "MissedSchedule" in jobs.event_reasons("pausable")


def test_suspend_applies_right_after_pod_creation(jobs: Jobs) -> None:
    # One slot soon, then none for a minute: no slot wakes the operator up meanwhile, so
    # only the watch event of the patch can make it act.
    jobs.create(
        "pausable",
        {"schedule": once_a_minute_soon(), "template": pod_template()},
    )

    with PodRecorder(jobs, "pausable") as recorder:
        wait_until(lambda: recorder.pods, timeout=15, message="the Pod of the first slot")
        # The patch lands within the second the Pod was created in. A user's change can
        # come at any time, this one included.
        jobs.patch_spec("pausable", {"suspend": True})

    wait_until(
        lambda: suspended_condition(jobs, "pausable"),
        timeout=3,
        message="condition Suspended True within 3 s of the patch",
    )
