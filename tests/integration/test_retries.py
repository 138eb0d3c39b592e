"""Retries with exponential backoff, and attempts stopped by activeDeadlineSeconds."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from kubernetes import client

from tests.integration.helpers_extra import PodRecorder, once_a_minute_soon, parse_time
from tests.integration.support import Jobs, pod_template, wait_until

pytestmark = pytest.mark.integration


def only_run(jobs: Jobs, name: str) -> dict[str, Any] | None:
    runs = jobs.status(name).get("runs", [])
    return runs[0] if runs else None


def test_failing_attempts_back_off_then_exhaust(jobs: Jobs) -> None:
    # Waits of 2 s and 4 s, not 1 s and 2 s: status times have whole seconds, so a wait of
    # 1 s can shrink to almost nothing, and the gaps between starts could come out equal.
    jobs.create(
        "flaky",
        {
            "schedule": once_a_minute_soon(),
            "retry": {"limit": 2, "backoff": {"initialSeconds": 2, "factor": 2}},
            "template": pod_template(
                {"kwok.sked.dev/fail-after": "1s", "kwok.sked.dev/exit-code": "3"}
            ),
        },
    )

    with PodRecorder(jobs, "flaky") as recorder:

        def finished_run() -> dict[str, Any] | None:
            run = only_run(jobs, "flaky")
            return run if run is not None and run["phase"] == "Failed" else None

        run = wait_until(finished_run, timeout=40, message="the run to end Failed")
        seen = recorder.pods

    assert run["reason"] == "RetriesExhausted"
    attempts = run["attempts"]
    assert [attempt["attempt"] for attempt in attempts] == [1, 2, 3]
    for attempt in attempts:
        assert attempt["phase"] == "Failed"
        assert attempt["exitCode"] == 3

    # Each retry starts no earlier than the failed attempt's finish plus its backoff.
    for previous, following, backoff in zip(attempts[:-1], attempts[1:], (2, 4), strict=True):
        wait = parse_time(following["startTime"]) - parse_time(previous["finishTime"])
        assert wait >= dt.timedelta(seconds=backoff), (previous, following)

    # The watch saw each Pod within milliseconds of its creation, so its clock gives the
    # gaps between starts more precisely than the whole seconds of status.
    assert [pod.attempt for pod in seen] == [1, 2, 3]
    first_gap = seen[1].seen - seen[0].seen
    second_gap = seen[2].seen - seen[1].seen
    assert first_gap >= 2
    assert second_gap >= 4
    assert second_gap > first_gap

    status = jobs.status("flaky")
    assert status["lastResult"] == "Failed"
    assert status["activeCount"] == 0
    # Events are posted after the status write, so they may trail it a little.
    wait_until(
        lambda: "RetriesExhausted" in jobs.event_reasons("flaky"),
        timeout=10,
        message="a RetriesExhausted Event",
    )
    reasons = jobs.event_reasons("flaky")
    assert reasons.count("RetryScheduled") == 2
    assert reasons.count("RetriesExhausted") == 1
    assert reasons.count("PodCreated") == 3


def test_active_deadline_stops_attempt(jobs: Jobs) -> None:
    jobs.create(
        "stuck",
        {
            "schedule": once_a_minute_soon(),
            "activeDeadlineSeconds": 2,
            "retry": {"limit": 0},
            # No kwok annotation: the Pod runs until someone deletes it.
            "template": pod_template(),
        },
    )

    def running_pod() -> list[client.V1Pod]:
        return [pod for pod in jobs.pods("stuck") if pod.status.phase == "Running"]

    pod_name = wait_until(running_pod, timeout=20, message="a Running Pod")[0].metadata.name

    def finished_run() -> dict[str, Any] | None:
        run = only_run(jobs, "stuck")
        return run if run is not None and run["phase"] == "Failed" else None

    run = wait_until(finished_run, timeout=20, message="the run to end Failed")
    attempt = run["attempts"][0]
    assert attempt["podName"] == pod_name
    assert attempt["reason"] == "DeadlineExceeded"
    lasted = parse_time(attempt["finishTime"]) - parse_time(attempt["startTime"])
    assert lasted >= dt.timedelta(seconds=2)

    def pod_gone() -> bool:
        try:
            jobs.core.read_namespaced_pod(pod_name, jobs.namespace)
        except client.ApiException as error:
            return error.status == 404
        return False

    wait_until(pod_gone, timeout=15, message=f"Pod {pod_name} to be deleted")
    assert jobs.status("stuck")["lastResult"] == "Failed"
