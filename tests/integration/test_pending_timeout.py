"""pendingTimeoutSeconds: attempts stuck in Pending fail with the Pod's own reason."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.integration.support import Jobs, pod_template, wait_until

pytestmark = pytest.mark.integration


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def soon_then_hourly(seconds: int = 3) -> str:
    """Return a 6-field schedule whose first slot is about ``seconds`` away, then hourly."""
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return f"{due.second} {due.minute} * * * *"


def finished_run(jobs: Jobs, name: str) -> dict[str, Any] | None:
    runs = jobs.status(name).get("runs", [])
    if runs and runs[0]["phase"] in ("Succeeded", "Failed"):
        return runs[0]  # type: ignore[no-any-return]
    return None


def test_image_pull_backoff_fails_each_attempt(jobs: Jobs) -> None:
    jobs.create(
        "pull",
        {
            "schedule": soon_then_hourly(),
            "pendingTimeoutSeconds": 3,
            "retry": {"limit": 1, "backoff": {"initialSeconds": 1}},
            "template": pod_template({"kwok.sked.dev/pending-reason": "ImagePullBackOff"}),
        },
    )

    run = wait_until(
        lambda: finished_run(jobs, "pull"), timeout=40, message="the run of pull to end"
    )

    assert run["phase"] == "Failed"
    assert run["reason"] == "RetriesExhausted"
    attempts = run["attempts"]
    assert [attempt["attempt"] for attempt in attempts] == [1, 2]
    for attempt in attempts:
        assert attempt["phase"] == "Failed"
        assert attempt["reason"] == "ImagePullBackOff"
        assert "pendingTimeoutSeconds (3s)" in attempt["message"]
        # Each attempt stayed Pending for the timeout, no less.
        waited = parse_time(attempt["finishTime"]) - parse_time(attempt["startTime"])
        assert waited >= dt.timedelta(seconds=3)

    # The operator deletes each stuck Pod when its attempt times out.
    def pods_gone() -> bool:
        return not [pod for pod in jobs.pods("pull") if pod.metadata.deletion_timestamp is None]

    wait_until(pods_gone, timeout=20, message="the Pending Pods of pull to be deleted")
    wait_until(
        lambda: "RetriesExhausted" in jobs.event_reasons("pull"),
        timeout=10,
        message="a RetriesExhausted Event",
    )
    assert jobs.event_reasons("pull").count("RetryScheduled") == 1


def test_unschedulable_pod_fails_with_reason(jobs: Jobs) -> None:
    template = pod_template()
    # No node carries this label, so the kube-scheduler cannot place the Pod.
    template["spec"]["nodeSelector"] = {"sked.test/no-such-node": "true"}
    jobs.create(
        "nowhere",
        {
            "schedule": soon_then_hourly(),
            "pendingTimeoutSeconds": 3,
            "retry": {"limit": 0},
            "template": template,
        },
    )

    run = wait_until(
        lambda: finished_run(jobs, "nowhere"), timeout=30, message="the run of nowhere to end"
    )

    assert run["phase"] == "Failed"
    [attempt] = run["attempts"]
    assert attempt["reason"] == "Unschedulable"
    assert "pendingTimeoutSeconds (3s)" in attempt["message"]
    # The kube-scheduler's own explanation follows.
    assert "nodes are available" in attempt["message"]

    def pods_gone() -> bool:
        return not [pod for pod in jobs.pods("nowhere") if pod.metadata.deletion_timestamp is None]

    wait_until(pods_gone, timeout=20, message="the unschedulable Pod to be deleted")
