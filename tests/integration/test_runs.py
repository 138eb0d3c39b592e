"""Runs on a seconds-level schedule: Pods at due times, recorded in status."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.integration.support import Jobs, pod_template, wait_until

pytestmark = pytest.mark.integration


def parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_seconds_schedule_runs_recorded(jobs: Jobs) -> None:
    jobs.create(
        "tick",
        {
            "schedule": "*/3 * * * * *",
            "history": {"successfulRunsLimit": 10},
            "template": pod_template({"kwok.sked.dev/succeed-after": "1s"}),
        },
    )

    def two_succeeded() -> list[dict[str, object]]:
        runs = jobs.status("tick").get("runs", [])
        done = [run for run in runs if run["phase"] == "Succeeded"]
        return done if len(done) >= 2 else []

    succeeded = wait_until(two_succeeded, timeout=30, message="two succeeded runs")
    for run in succeeded:
        slot = parse(str(run["scheduledTime"]))
        assert slot.second % 3 == 0
        attempts = run["attempts"]
        assert isinstance(attempts, list)
        assert len(attempts) == 1
        assert attempts[0]["exitCode"] == 0
        # The Pod is created at its due time, not at a later poll.
        started = parse(attempts[0]["startTime"])
        assert started - slot < dt.timedelta(seconds=2)

    status = jobs.status("tick")
    assert status["lastResult"] == "Succeeded"
    assert status["nextScheduleTime"] > status["lastScheduleTime"]
    pods = jobs.pods("tick")
    slots = [pod.metadata.annotations["sked.dev/scheduled-time"] for pod in pods]
    assert len(slots) == len(set(slots))
    assert "PodCreated" in jobs.event_reasons("tick")
    # A success after a success is recorded in status and metrics, not as an Event.
    assert "RunSucceeded" not in jobs.event_reasons("tick")
