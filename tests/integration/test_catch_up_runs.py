"""Catch-up after the operator was down: Latest, All and None on a 4-second schedule.

One downtime serves the three tests. Three ScheduledJobs, one per policy, run normally,
the operator stops for long enough that at least three slots pass, and then starts
again. Each test checks what its own job did with the slots of the downtime.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.integration.support import Jobs, OperatorProcess, namespace, pod_template, wait_until

pytestmark = pytest.mark.integration

PERIOD = dt.timedelta(seconds=4)
SCHEDULE = "*/4 * * * * *"
# Long enough for at least three slots 4 s apart, whatever the phase of the stop.
DOWNTIME_SECONDS = 14
LOADED_LINE = "ScheduledJobs and their Pods"
POLICIES = {
    "latest": {"policy": "Latest"},
    "all": {"policy": "All", "maxRuns": 2},
    "none": {"policy": "None"},
}


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def pod_slot(pod: client.V1Pod) -> dt.datetime:
    return parse_time(pod.metadata.annotations["sked.dev/scheduled-time"])


@dataclasses.dataclass
class Downtime:
    """What each job looked like when the operator stopped, and when it came back."""

    jobs: Jobs
    last_handled: dict[str, dt.datetime]
    missed_before: dict[str, int]
    stopped: dt.datetime
    restarted: dt.datetime

    def slots_while_down(self, name: str) -> list[dt.datetime]:
        """Return the slots after the last handled one that fell due before the restart."""
        slots = []
        slot = self.last_handled[name] + PERIOD
        while slot <= self.restarted:
            slots.append(slot)
            slot += PERIOD
        return slots

    def pods_after_last(self, name: str) -> list[client.V1Pod]:
        pods = [pod for pod in self.jobs.pods(name) if pod_slot(pod) > self.last_handled[name]]
        return sorted(pods, key=pod_slot)

    def missed_since(self, name: str) -> int:
        return int(self.jobs.status(name).get("missedRuns", 0)) - self.missed_before[name]


def start_again(operator: OperatorProcess) -> None:
    """Start the operator and wait for this process's own load line, not an earlier one's."""
    loads_before = operator.log_path.read_text(errors="replace").count(LOADED_LINE)
    operator.start()
    wait_until(
        lambda: operator.log_path.read_text(errors="replace").count(LOADED_LINE) > loads_before,
        timeout=30,
        message="the restarted operator to load its ScheduledJobs",
    )


@pytest.fixture(scope="module")
def downtime(operator: OperatorProcess, api_client: client.ApiClient) -> Iterator[Downtime]:
    with namespace(api_client, prefix="catchup") as name:
        jobs = Jobs(api_client, name)
        for job, catch_up in POLICIES.items():
            jobs.create(
                job,
                {
                    "schedule": SCHEDULE,
                    "catchUp": catch_up,
                    "concurrencyPolicy": "Allow",
                    "history": {"successfulRunsLimit": 50, "failedRunsLimit": 50},
                    "template": pod_template({"kwok.sked.dev/succeed-after": "1s"}),
                },
            )

        def every_job_succeeded_once() -> bool:
            return all(
                any(run["phase"] == "Succeeded" for run in jobs.status(job).get("runs", []))
                for job in POLICIES
            )

        wait_until(every_job_succeeded_once, timeout=30, message="a succeeded run of each job")

        try:
            operator.stop()
            stopped = utc_now()
            # The operator wrote its last status before it exited, so this is what it handled.
            statuses = {job: jobs.status(job) for job in POLICIES}
            last_handled = {job: parse_time(s["lastScheduleTime"]) for job, s in statuses.items()}
            missed_before = {job: int(s.get("missedRuns", 0)) for job, s in statuses.items()}

            # The downtime itself: nothing runs, so there is nothing to poll for.
            time.sleep(DOWNTIME_SECONDS)
            restarted = utc_now()
            start_again(operator)
        finally:
            if operator.process is None:
                operator.start()

        def every_job_planned_again() -> bool:
            return all(
                parse_time(jobs.status(job)["lastScheduleTime"]) > restarted - PERIOD
                for job in POLICIES
            )

        wait_until(every_job_planned_again, timeout=20, message="each job to be planned again")
        yield Downtime(jobs, last_handled, missed_before, stopped, restarted)


def run_of(status: dict[str, Any], slot: dt.datetime) -> dict[str, Any] | None:
    for run in status.get("runs", []):
        if parse_time(run["scheduledTime"]) == slot:
            return run  # type: ignore[no-any-return]
    return None


def test_downtime_spans_three_slots(downtime: Downtime) -> None:
    for job in POLICIES:
        assert len(downtime.slots_while_down(job)) >= 3, job


def test_latest_runs_only_newest_missed_slot(downtime: Downtime) -> None:
    pods = downtime.pods_after_last("latest")
    assert pods, "no Pod was created after the restart"
    newest = pod_slot(pods[0])

    # One Pod covers every slot from the downtime up to the one that ran, and it is the
    # newest slot at the restart (a slot may also fall due while the operator starts).
    assert [pod_slot(pod) for pod in pods if pod_slot(pod) <= newest] == [newest]
    assert newest > downtime.restarted - PERIOD
    skipped = (newest - downtime.last_handled["latest"]) // PERIOD - 1
    assert skipped >= 2
    assert downtime.missed_since("latest") == skipped

    status = downtime.jobs.status("latest")
    assert status["lastMissed"]["reason"] == "catchUp"
    assert parse_time(status["lastMissed"]["scheduledTime"]) == newest - PERIOD
    assert run_of(status, newest) is not None
    wait_until(
        lambda: "MissedSchedule" in downtime.jobs.event_reasons("latest"),
        timeout=10,
        message="a MissedSchedule Event",
    )


def test_all_runs_two_newest_as_separate_runs(downtime: Downtime) -> None:
    pods = downtime.pods_after_last("all")
    assert len(pods) >= 2
    first, second = pod_slot(pods[0]), pod_slot(pods[1])

    # With maxRuns 2, the two newest slots at the restart run side by side under Allow,
    # each as its own run. The older slots of the downtime are counted, not run.
    assert second - first == PERIOD
    assert first <= downtime.restarted
    assert all(pod.metadata.creation_timestamp >= downtime.stopped for pod in pods[:2])
    assert [pod.metadata.annotations["sked.dev/attempt"] for pod in pods[:2]] == ["1", "1"]
    assert pods[0].metadata.name != pods[1].metadata.name

    status = downtime.jobs.status("all")
    first_run, second_run = run_of(status, first), run_of(status, second)
    assert first_run is not None
    assert second_run is not None
    assert first_run["attempts"][0]["podName"] == pods[0].metadata.name
    assert second_run["attempts"][0]["podName"] == pods[1].metadata.name

    skipped = (first - downtime.last_handled["all"]) // PERIOD - 1
    assert skipped >= 1
    assert downtime.missed_since("all") == skipped


def test_none_runs_no_slot_of_downtime(downtime: Downtime) -> None:
    while_down = downtime.slots_while_down("none")
    pods = downtime.pods_after_last("none")

    # Slots that fell due after the restart run on time, but none from the downtime does.
    ran_while_down = [pod_slot(pod) for pod in pods if pod_slot(pod) <= downtime.restarted]
    assert ran_while_down == [], f"slots of the downtime that ran (restart {downtime.restarted})"
    assert downtime.missed_since("none") >= len(while_down)

    status = downtime.jobs.status("none")
    assert status["lastMissed"]["reason"] == "catchUp"
