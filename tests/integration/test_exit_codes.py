"""retry.nonRetryableExitCodes: listed exit codes end the run at once, others are retried."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.integration.support import Jobs, pod_template, wait_until

pytestmark = pytest.mark.integration


def soon_then_hourly(seconds: int = 3) -> str:
    """Return a 6-field schedule whose first slot is about ``seconds`` away, then hourly."""
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return f"{due.second} {due.minute} * * * *"


def failing_job(jobs: Jobs, name: str, exit_code: int) -> None:
    jobs.create(
        name,
        {
            "schedule": soon_then_hourly(),
            "retry": {
                "limit": 2,
                "backoff": {"initialSeconds": 1},
                "nonRetryableExitCodes": [42],
            },
            "template": pod_template(
                {"kwok.sked.dev/fail-after": "1s", "kwok.sked.dev/exit-code": str(exit_code)}
            ),
        },
    )


def finished_run(jobs: Jobs, name: str) -> dict[str, Any] | None:
    runs = jobs.status(name).get("runs", [])
    if runs and runs[0]["phase"] in ("Succeeded", "Failed"):
        return runs[0]  # type: ignore[no-any-return]
    return None


def test_listed_exit_code_not_retried(jobs: Jobs) -> None:
    failing_job(jobs, "fatal", 42)

    run = wait_until(
        lambda: finished_run(jobs, "fatal"), timeout=30, message="the run of fatal to end"
    )

    assert run["phase"] == "Failed"
    assert run["reason"] == "NonRetryableExitCode"
    [attempt] = run["attempts"]
    assert attempt["exitCode"] == 42
    assert attempt["phase"] == "Failed"
    assert run.get("nextAttemptTime") is None

    wait_until(
        lambda: "RunFailed" in jobs.event_reasons("fatal"),
        timeout=10,
        message="a RunFailed Event",
    )
    reasons = jobs.event_reasons("fatal")
    assert "RetryScheduled" not in reasons
    assert reasons.count("PodCreated") == 1
    # The run is final, so its one Pod is the only one it ever gets.
    assert len(jobs.pods("fatal")) == 1
    assert jobs.status("fatal")["lastResult"] == "Failed"


def test_unlisted_exit_code_retried(jobs: Jobs) -> None:
    failing_job(jobs, "flaky", 3)

    run = wait_until(
        lambda: finished_run(jobs, "flaky"), timeout=40, message="the run of flaky to end"
    )

    assert run["phase"] == "Failed"
    assert run["reason"] == "RetriesExhausted"
    attempts = run["attempts"]
    assert [attempt["attempt"] for attempt in attempts] == [1, 2, 3]
    assert [attempt["exitCode"] for attempt in attempts] == [3, 3, 3]
    wait_until(
        lambda: "RetriesExhausted" in jobs.event_reasons("flaky"),
        timeout=10,
        message="a RetriesExhausted Event",
    )
    assert jobs.event_reasons("flaky").count("RetryScheduled") == 2
