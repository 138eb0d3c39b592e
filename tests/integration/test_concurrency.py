"""The three concurrency policies with runs that last longer than the schedule's interval."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from tests.integration.helpers_extra import PodRecorder, parse_time
from tests.integration.support import Jobs, pod_template, wait_until

pytestmark = pytest.mark.integration


def running_pods(jobs: Jobs, name: str) -> list[client.V1Pod]:
    return [
        pod
        for pod in jobs.pods(name)
        if pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None
    ]


def test_forbid_skips_slots_while_run_active(jobs: Jobs) -> None:
    jobs.create(
        "forbid",
        {
            "schedule": "*/2 * * * * *",
            "concurrencyPolicy": "Forbid",
            "history": {"successfulRunsLimit": 10},
            "template": pod_template({"kwok.sked.dev/succeed-after": "5s"}),
        },
    )

    with PodRecorder(jobs, "forbid") as recorder:
        max_active = 0
        max_running = 0
        skipped: set[str] = set()

        # Sample status and Pods until a second run has started after some skipped slots.
        def two_runs_and_skips() -> dict[str, Any] | None:
            nonlocal max_active, max_running
            status = jobs.status("forbid")
            active = max(status.get("activeCount", 0), len(status.get("active", [])))
            max_active = max(max_active, active)
            max_running = max(max_running, len(running_pods(jobs, "forbid")))
            missed = status.get("lastMissed")
            if missed:
                skipped.add(missed["scheduledTime"])
            started = len(status.get("runs", []))
            return status if started >= 2 and status.get("missedRuns", 0) >= 2 else None

        status = wait_until(
            two_runs_and_skips, timeout=40, message="two runs and two skipped slots"
        )
        assert status["lastMissed"]["reason"] == "concurrency"
        assert max_active <= 1
        assert max_running <= 1

        # A skipped slot never starts later: give it the time a run would take, then look.
        time.sleep(3)
        created_slots = {pod.slot for pod in recorder.pods}

    assert not created_slots & {parse_time(slot) for slot in skipped}
    assert max(recorder.created_per_slot().values()) == 1
    assert "ConcurrencySkipped" in jobs.event_reasons("forbid")


def test_replace_deletes_active_run(jobs: Jobs) -> None:
    jobs.create(
        "replace",
        {
            "schedule": "*/3 * * * * *",
            "concurrencyPolicy": "Replace",
            # No kwok annotation: each Pod runs until the next slot replaces it.
            "template": pod_template(),
        },
    )

    def replaced_run() -> dict[str, Any] | None:
        runs = jobs.status("replace").get("runs", [])
        replaced = [run for run in runs if run.get("reason") == "RunReplaced"]
        return replaced[0] if replaced else None

    run = wait_until(replaced_run, timeout=30, message="a run ended by RunReplaced")
    assert run["phase"] == "Failed"
    assert run["attempts"][-1]["reason"] == "RunReplaced"
    replaced_pod = run["attempts"][-1]["podName"]

    def pod_gone() -> bool:
        names = [pod.metadata.name for pod in jobs.pods("replace")]
        return replaced_pod not in names

    wait_until(pod_gone, timeout=15, message=f"Pod {replaced_pod} to be deleted")

    # The slot that replaced it has started a run of its own.
    def newer_active_run() -> list[dict[str, Any]]:
        status = jobs.status("replace")
        return [
            active
            for active in status.get("active", [])
            if parse_time(active["scheduledTime"]) > parse_time(run["scheduledTime"])
        ]

    active = wait_until(newer_active_run, timeout=10, message="a newer run to be active")
    assert len(active) == 1
    assert "RunReplaced" in jobs.event_reasons("replace")


def test_allow_runs_side_by_side(jobs: Jobs) -> None:
    jobs.create(
        "allow",
        {
            "schedule": "*/2 * * * * *",
            "concurrencyPolicy": "Allow",
            "template": pod_template(),
        },
    )

    def two_running() -> list[client.V1Pod]:
        found = running_pods(jobs, "allow")
        return found if len(found) >= 2 else []

    pods = wait_until(two_running, timeout=30, message="two Pods Running at once")
    slots = {pod.metadata.annotations["sked.dev/scheduled-time"] for pod in pods}
    assert len(slots) == len(pods)

    def two_active() -> dict[str, Any] | None:
        status = jobs.status("allow")
        return status if status.get("activeCount", 0) >= 2 else None

    status = wait_until(two_active, timeout=10, message="activeCount of at least 2")
    assert len(status["active"]) == status["activeCount"]
    assert status.get("missedRuns", 0) == 0
