"""The reconcile step: what one plan decides from a ScheduledJob, its Pods and ``now``.

``FakeJob`` applies each plan the way the operator does (create the Pods,
delete the Pods, write the status), so a test reads as a sequence of
reconciles. A deleted Pod disappears at once, and Pods change phase only
when a test sets the phase.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from sked import naming
from sked.errors import InvalidScheduleError
from sked.planner import (
    JobView,
    Plan,
    PodToCreate,
    PodView,
    Reason,
    SuccessEvents,
    needs_prompt_write,
    plan,
)
from sked.schedule import MISSED_COUNT_CAP, parse_schedule
from sked.spec import (
    MissedReason,
    MissedSlot,
    RunPhase,
    ScheduledJobSpec,
    ScheduledJobStatus,
    parse_spec,
)

NAMESPACE = "team-a"
JOB_NAME = "report"
JOB_UID = "6f1c-uid"
CREATED = dt.datetime(2024, 5, 1, 10, 0, 30, tzinfo=dt.UTC)


def at(clock: str) -> dt.datetime:
    """Return 2024-05-01 at ``clock`` (HH:MM or HH:MM:SS) in UTC."""
    return dt.datetime.fromisoformat(f"2024-05-01T{clock}Z")


S11, S12, S13, S14 = at("11:00"), at("12:00"), at("13:00"), at("14:00")


def make_spec(**fields: Any) -> ScheduledJobSpec:
    body: dict[str, Any] = {
        "schedule": "0 * * * *",
        "template": {"spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}},
    }
    body.update(fields)
    return parse_spec(body)


def pod_name(slot: dt.datetime, attempt: int = 1) -> str:
    return naming.pod_name(JOB_NAME, slot, attempt)


def reasons(result: Plan) -> list[Reason]:
    return [event.reason for event in result.events]


@dataclasses.dataclass
class FakeJob:
    """One ScheduledJob with its Pods and the status the last applied plan wrote."""

    spec: ScheduledJobSpec
    status: ScheduledJobStatus = dataclasses.field(default_factory=ScheduledJobStatus)
    pods: dict[str, PodView] = dataclasses.field(default_factory=dict)

    def view(self) -> JobView:
        return JobView(
            namespace=NAMESPACE,
            name=JOB_NAME,
            uid=JOB_UID,
            generation=1,
            created=CREATED,
            spec=self.spec,
            status=self.status,
        )

    def plan(
        self,
        now: dt.datetime,
        *,
        write_status: bool = True,
        success_events: SuccessEvents = SuccessEvents.RECOVERY,
    ) -> Plan:
        """Plan at ``now`` and apply the result, losing the status unless ``write_status``."""
        schedule = parse_schedule(self.spec.schedule or "", self.spec.timeZone)
        result = plan(
            self.view(),
            list(self.pods.values()),
            now=now,
            schedule=schedule,
            success_events=success_events,
        )
        for create in result.creates:
            name = pod_name(create.slot, create.attempt)
            self.pods[name] = PodView(name, create.slot, create.attempt, "Pending", created=now)
        for name in (*result.deletes, *result.prunes):
            self.pods.pop(name, None)
        if write_status:
            self.status = result.status
        return result

    def set_phase(
        self,
        slot: dt.datetime,
        attempt: int,
        phase: str,
        *,
        finished: dt.datetime | None = None,
        exit_code: int | None = None,
    ) -> None:
        name = pod_name(slot, attempt)
        self.pods[name] = dataclasses.replace(
            self.pods[name], phase=phase, finished=finished, exit_code=exit_code
        )

    def succeed(self, slot: dt.datetime, attempt: int, finished: dt.datetime) -> None:
        self.set_phase(slot, attempt, "Succeeded", finished=finished, exit_code=0)

    def fail(self, slot: dt.datetime, attempt: int, finished: dt.datetime) -> None:
        self.set_phase(slot, attempt, "Failed", finished=finished, exit_code=1)

    def run_of(self, slot: dt.datetime):
        (found,) = [run for run in self.status.runs if run.scheduledTime == slot]
        return found


def condition(status: ScheduledJobStatus, kind: str):
    (found,) = [c for c in status.conditions if c.type == kind]
    return found


# -- the first slot -----------------------------------------------------------------


def test_new_job_waits_for_first_slot():
    job = FakeJob(make_spec())

    result = job.plan(at("10:30"))

    assert result.creates == []
    assert result.wake_at == S11
    assert result.status.nextScheduleTime == S11


def test_nothing_created_just_before_slot():
    job = FakeJob(make_spec())

    result = job.plan(S11 - dt.timedelta(seconds=1))

    assert result.creates == []
    assert result.wake_at == S11


def test_slot_creates_first_attempt():
    job = FakeJob(make_spec())
    job.plan(at("10:30"))

    result = job.plan(S11)

    assert result.creates == [PodToCreate(slot=S11, attempt=1)]
    assert reasons(result) == [Reason.POD_CREATED]
    assert result.status.lastScheduleTime == S11
    assert result.status.activeCount == 1
    assert job.run_of(S11).attempts[0].podName == pod_name(S11)
    assert result.status.nextScheduleTime == S12


# -- a run's attempts ---------------------------------------------------------------


def test_succeeded_pod_finishes_run():
    job = FakeJob(make_spec())
    job.plan(S11)
    job.succeed(S11, 1, finished=at("11:00:40"))

    result = job.plan(at("11:00:41"))

    assert job.run_of(S11).phase is RunPhase.SUCCEEDED
    assert reasons(result) == []
    assert result.status.lastSuccessfulTime == at("11:00:40")
    assert result.status.lastResult == "Succeeded"
    assert result.status.activeCount == 0


def test_success_event_for_every_run_when_asked():
    job = FakeJob(make_spec())
    job.plan(S11)
    job.succeed(S11, 1, finished=at("11:00:40"))

    result = job.plan(at("11:00:41"), success_events=SuccessEvents.ALL)

    assert reasons(result) == [Reason.RUN_SUCCEEDED]
    assert "after" not in result.events[0].message


def test_success_after_failed_runs_posts_event():
    job = FakeJob(make_spec(retry={"limit": 0}))
    job.plan(S11)
    job.fail(S11, 1, finished=at("11:00:40"))
    job.plan(at("11:00:41"))
    job.plan(S12)
    job.succeed(S12, 1, finished=at("12:00:40"))

    result = job.plan(at("12:00:41"))

    assert reasons(result) == [Reason.RUN_SUCCEEDED]
    assert "after 1 failed run(s) in a row" in result.events[0].message
    assert result.status.consecutiveFailures == 0


# -- which plans write status at once -----------------------------------------------


def test_started_run_may_wait_for_batch():
    job = FakeJob(make_spec())
    job.plan(at("10:30"))
    written = job.status

    result = job.plan(S11)

    assert result.status.activeCount == 1
    assert not needs_prompt_write(written, result.status, result.events)


def test_running_pod_may_wait_for_batch():
    job = FakeJob(make_spec())
    job.plan(S11)
    written = job.status
    job.set_phase(S11, 1, "Running")

    result = job.plan(at("11:00:05"))

    assert job.run_of(S11).phase is RunPhase.RUNNING
    assert not needs_prompt_write(written, result.status, result.events)


def test_finished_run_is_written_at_once():
    job = FakeJob(make_spec())
    job.plan(at("10:30"))
    written = job.status
    job.plan(S11, write_status=False)
    job.status = written
    job.succeed(S11, 1, finished=at("11:00:04"))

    result = job.plan(at("11:00:05"))

    assert job.run_of(S11).phase is RunPhase.SUCCEEDED
    assert needs_prompt_write(written, result.status, result.events)


def test_missed_slot_is_written_at_once():
    job = FakeJob(make_spec(concurrencyPolicy="Forbid"))
    job.plan(S11)
    written = job.status

    result = job.plan(S12)

    assert result.status.missedRuns == 1
    assert needs_prompt_write(written, result.status, result.events)


def test_condition_change_is_written_at_once():
    job = FakeJob(make_spec(retry={"limit": 0}))
    job.plan(at("10:30"))
    written = job.status
    job.spec = make_spec(retry={"limit": 0}, suspend=True)

    result = job.plan(at("10:31"))

    assert needs_prompt_write(written, result.status, result.events)


def test_failed_pod_schedules_retry():
    job = FakeJob(make_spec())
    job.plan(S11)
    job.fail(S11, 1, finished=at("11:00:40"))

    result = job.plan(at("11:00:41"))

    # The default backoff waits 10 seconds after the first failure.
    assert result.creates == []
    assert job.run_of(S11).nextAttemptTime == at("11:00:50")
    assert reasons(result) == [Reason.RETRY_SCHEDULED]
    assert result.events[0].warning is True
    assert result.wake_at == at("11:00:50")


def test_retry_starts_at_next_attempt_time():
    job = FakeJob(make_spec())
    job.plan(S11)
    job.fail(S11, 1, finished=at("11:00:40"))
    job.plan(at("11:00:41"))

    early = job.plan(at("11:00:49"))
    due = job.plan(at("11:00:50"))

    assert early.creates == []
    assert due.creates == [PodToCreate(slot=S11, attempt=2)]
    assert job.run_of(S11).nextAttemptTime is None


def test_retries_exhausted_fail_run():
    job = FakeJob(make_spec(retry={"limit": 2}))
    job.plan(S11)
    job.fail(S11, 1, finished=at("11:00:10"))
    job.plan(at("11:00:10"))

    # Waits of 10 s, then 20 s, after each failure.
    second = job.plan(at("11:00:20"))
    job.fail(S11, 2, finished=at("11:00:30"))
    job.plan(at("11:00:30"))
    third = job.plan(at("11:00:50"))
    job.fail(S11, 3, finished=at("11:01:00"))
    final = job.plan(at("11:01:00"))

    assert second.creates == [PodToCreate(slot=S11, attempt=2)]
    assert third.creates == [PodToCreate(slot=S11, attempt=3)]
    assert final.creates == []
    assert job.run_of(S11).phase is RunPhase.FAILED
    assert job.run_of(S11).reason == "RetriesExhausted"
    assert reasons(final) == [Reason.RETRIES_EXHAUSTED]
    assert final.status.lastFailureTime == at("11:01:00")
    assert final.status.lastResult == "Failed"


def test_active_deadline_fails_attempt():
    job = FakeJob(make_spec(activeDeadlineSeconds=60))
    job.plan(S11)
    job.set_phase(S11, 1, "Running")

    before = job.plan(at("11:00:59"))
    reached = job.plan(at("11:01:00"))

    assert before.deletes == []
    assert before.wake_at == at("11:01:00")
    assert reached.deletes == [pod_name(S11)]
    assert job.run_of(S11).attempts[0].reason == "DeadlineExceeded"
    assert job.run_of(S11).attempts[0].phase is RunPhase.FAILED
    assert reasons(reached) == [Reason.RETRY_SCHEDULED]
    assert job.run_of(S11).nextAttemptTime == at("11:01:10")


# -- concurrency policies ------------------------------------------------------------


def test_forbid_skips_slot_while_run_active():
    job = FakeJob(make_spec(concurrencyPolicy="Forbid"))
    job.plan(S11)
    job.set_phase(S11, 1, "Running")

    result = job.plan(S12)

    assert result.creates == []
    assert result.status.missedRuns == 1
    assert result.status.lastMissed == MissedSlot(
        scheduledTime=S12, reason=MissedReason.CONCURRENCY
    )
    assert Reason.CONCURRENCY_SKIPPED in reasons(result)


def test_forbid_skipped_slot_does_not_start_later():
    job = FakeJob(make_spec(concurrencyPolicy="Forbid"))
    job.plan(S11)
    job.set_phase(S11, 1, "Running")
    job.plan(S12)
    job.succeed(S11, 1, finished=at("12:10"))

    result = job.plan(at("12:10"))

    assert result.creates == []
    assert result.status.nextScheduleTime == S13


def test_replace_stops_active_run():
    job = FakeJob(make_spec(concurrencyPolicy="Replace"))
    job.plan(S11)
    job.set_phase(S11, 1, "Running")

    result = job.plan(S12)

    assert result.deletes == [pod_name(S11)]
    assert result.creates == [PodToCreate(slot=S12, attempt=1)]
    assert job.run_of(S11).phase is RunPhase.FAILED
    assert job.run_of(S11).reason == "RunReplaced"
    assert Reason.RUN_REPLACED in reasons(result)


def test_replace_does_not_create_pod_it_deletes():
    job = FakeJob(make_spec(concurrencyPolicy="Replace"))
    job.plan(S11)
    # The retry of the 11:00 run falls due at 12:00, the same instant as the next slot.
    job.fail(S11, 1, finished=at("11:59:50"))
    job.plan(at("11:59:55"))

    result = job.plan(S12)

    created = {pod_name(create.slot, create.attempt) for create in result.creates}
    assert created.isdisjoint(result.deletes)
    assert result.creates == [PodToCreate(slot=S12, attempt=1)]


def test_allow_runs_side_by_side():
    job = FakeJob(make_spec(concurrencyPolicy="Allow"))
    job.plan(S11)
    job.set_phase(S11, 1, "Running")

    result = job.plan(S12)

    assert result.creates == [PodToCreate(slot=S12, attempt=1)]
    assert result.deletes == []
    assert result.status.activeCount == 2


# -- missed slots -----------------------------------------------------------------------


def test_catch_up_runs_newest_slot():
    job = FakeJob(make_spec())
    job.plan(at("10:30"))

    result = job.plan(at("13:30"))

    assert result.creates == [PodToCreate(slot=S13, attempt=1)]
    assert result.status.missedRuns == 2
    assert result.status.lastMissed == MissedSlot(scheduledTime=S12, reason=MissedReason.CATCH_UP)
    assert Reason.MISSED_SCHEDULE in reasons(result)


def test_long_downtime_counts_lower_bound():
    job = FakeJob(make_spec(schedule="0 9 * * *", timeZone="America/New_York"))
    job.plan(at("10:30"))

    # A year later, daily slots across two offset changes are counted up to the cap.
    result = job.plan(dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC))

    assert result.creates == [
        PodToCreate(slot=dt.datetime(2025, 4, 30, 13, 0, tzinfo=dt.UTC), attempt=1)
    ]
    assert result.status.missedRunsIsLowerBound is True
    assert result.status.missedRuns == MISSED_COUNT_CAP - 1
    (missed,) = [event for event in result.events if event.reason is Reason.MISSED_SCHEDULE]
    assert f"at least {MISSED_COUNT_CAP - 1}" in missed.message


def test_suspended_slots_are_missed():
    job = FakeJob(make_spec(suspend=True))

    result = job.plan(at("12:30"))

    assert result.creates == []
    assert result.status.missedRuns == 2
    assert result.status.lastMissed == MissedSlot(scheduledTime=S12, reason=MissedReason.SUSPENDED)
    assert result.status.nextScheduleTime is None
    assert condition(result.status, "Suspended").status == "True"


def test_resume_runs_no_missed_slot():
    job = FakeJob(make_spec(suspend=True))
    job.plan(at("12:30"))
    job.spec = make_spec(suspend=False)

    resumed = job.plan(at("13:30"))
    next_slot = job.plan(S14)

    assert resumed.creates == []
    assert resumed.status.missedRuns == 3
    assert resumed.status.lastMissed == MissedSlot(scheduledTime=S13, reason=MissedReason.SUSPENDED)
    assert resumed.status.nextScheduleTime == S14
    assert condition(resumed.status, "Suspended").status == "False"
    assert next_slot.creates == [PodToCreate(slot=S14, attempt=1)]


def test_starting_deadline_reached_exactly_runs():
    job = FakeJob(make_spec(startingDeadlineSeconds=60))

    result = job.plan(at("11:01:00"))

    assert result.creates == [PodToCreate(slot=S11, attempt=1)]
    assert result.status.missedRuns == 0


def test_starting_deadline_passed_misses_slot():
    job = FakeJob(make_spec(startingDeadlineSeconds=60))

    result = job.plan(at("11:01:01"))

    assert result.creates == []
    assert result.status.missedRuns == 1
    assert result.status.lastMissed == MissedSlot(scheduledTime=S11, reason=MissedReason.DEADLINE)
    assert result.status.lastScheduleTime == S11
    assert result.status.nextScheduleTime == S12


def test_changed_schedule_skips_old_slots():
    job = FakeJob(make_spec())
    job.plan(at("10:30"))
    job.spec = make_spec(schedule="*/15 * * * *")

    result = job.plan(at("12:30"))

    assert result.creates == []
    assert result.status.missedRuns == 0
    assert result.status.nextScheduleTime == at("12:45")


def test_unchanged_schedule_catches_up():
    # The counterpart of the test above: without the change, 12:00 runs late.
    job = FakeJob(make_spec())
    job.plan(at("10:30"))

    result = job.plan(at("12:30"))

    assert result.creates == [PodToCreate(slot=S12, attempt=1)]


# -- history --------------------------------------------------------------------------------


def test_history_keeps_newest_succeeded_runs():
    job = FakeJob(make_spec(history={"successfulRunsLimit": 2}))
    deleted: list[str] = []
    for slot in (S11, S12, S13, S14):
        job.plan(slot)
        job.succeed(slot, 1, finished=slot + dt.timedelta(seconds=10))
        deleted += job.plan(slot + dt.timedelta(seconds=10)).prunes

    assert [run.scheduledTime for run in job.status.runs] == [S13, S14]
    assert deleted == [pod_name(S11), pod_name(S12)]
    assert sorted(job.pods) == sorted([pod_name(S13), pod_name(S14)])


def test_history_keeps_newest_failed_run():
    job = FakeJob(make_spec(retry={"limit": 0}, history={"failedRunsLimit": 1}))
    deleted: list[str] = []
    for slot in (S11, S12):
        job.plan(slot)
        job.fail(slot, 1, finished=slot + dt.timedelta(seconds=10))
        deleted += job.plan(slot + dt.timedelta(seconds=10)).prunes

    assert [run.scheduledTime for run in job.status.runs] == [S12]
    assert deleted == [pod_name(S11)]


def test_history_dropped_run_stays_dropped():
    job = FakeJob(make_spec(history={"successfulRunsLimit": 0}))
    job.plan(S11)
    job.succeed(S11, 1, finished=at("11:00:10"))
    trimmed = job.plan(at("11:00:10"))
    # The API server shows the Pod as terminating for a while after the delete.
    name = pod_name(S11)
    job.pods[name] = PodView(
        name, S11, 1, "Succeeded", created=S11, finished=at("11:00:10"), deleting=True
    )

    terminating = job.plan(at("11:00:20"))
    del job.pods[name]
    removed = job.plan(at("11:06"))

    assert trimmed.prunes == [name]
    assert trimmed.deletes == []
    assert job.status.runs == []
    for result in (terminating, removed):
        assert result.creates == []
        assert result.events == []


@pytest.mark.parametrize(
    ("history", "phase", "exit_code", "time_field"),
    [
        ({"successfulRunsLimit": 0}, "Succeeded", 0, "lastSuccessfulTime"),
        ({"failedRunsLimit": 0}, "Failed", 1, "lastFailureTime"),
    ],
    ids=["no-succeeded-runs-kept", "no-failed-runs-kept"],
)
def test_history_limit_zero_keeps_last_result(history, phase, exit_code, time_field):
    job = FakeJob(make_spec(retry={"limit": 0}, history=history))
    job.plan(S11)
    job.set_phase(S11, 1, phase, finished=at("11:00:10"), exit_code=exit_code)

    result = job.plan(at("11:00:10"))

    assert getattr(result.status, time_field) == at("11:00:10")
    assert result.status.lastResult == phase


# -- crashes and repeated plans ----------------------------------------------------------


def test_pod_unknown_to_status_is_adopted():
    job = FakeJob(make_spec())
    job.plan(at("10:30"))
    # The operator created the Pod and stopped before writing status.
    lost = job.plan(S11, write_status=False)

    adopted = job.plan(at("11:00:05"))
    after = job.plan(at("11:00:10"))

    assert lost.creates == [PodToCreate(slot=S11, attempt=1)]
    assert adopted.creates == []
    assert after.creates == []
    assert job.status.lastScheduleTime == S11
    assert [attempt.podName for attempt in job.run_of(S11).attempts] == [pod_name(S11)]
    assert job.status.activeCount == 1


def test_adopted_retry_waits_for_backoff():
    job = FakeJob(make_spec())
    job.plan(S11)
    job.fail(S11, 1, finished=at("11:00:05"))
    job.plan(at("11:00:06"))
    # Attempt 2 is created at 11:00:15 and its status write is lost.
    job.plan(at("11:00:15"), write_status=False)
    job.set_phase(S11, 2, "Running")

    adopted = job.plan(at("11:00:16"))
    job.fail(S11, 2, finished=at("11:00:20"))
    after_failure = job.plan(at("11:00:21"))

    assert adopted.creates == []
    # The second failure waits 20 seconds, as it would without the crash.
    assert after_failure.creates == []
    assert reasons(after_failure) == [Reason.RETRY_SCHEDULED]
    assert job.run_of(S11).nextAttemptTime == at("11:00:40")


def test_adopted_retry_has_no_pending_retry_time():
    job = FakeJob(make_spec())
    job.plan(S11)
    job.fail(S11, 1, finished=at("11:00:05"))
    job.plan(at("11:00:06"))
    job.plan(at("11:00:15"), write_status=False)
    job.set_phase(S11, 2, "Running")

    job.plan(at("11:00:16"))

    assert job.run_of(S11).phase is RunPhase.RUNNING
    assert job.run_of(S11).nextAttemptTime is None


def test_replan_is_idempotent():
    job = FakeJob(make_spec(concurrencyPolicy="Forbid"))
    steps = [
        (at("10:30"), None),
        (S11, None),
        (at("11:00:05"), lambda: job.set_phase(S11, 1, "Running")),
        (at("11:00:20"), lambda: job.fail(S11, 1, finished=at("11:00:20"))),
        (at("11:00:30"), None),
        (at("11:00:31"), lambda: job.set_phase(S11, 2, "Running")),
        (S12, None),
        (at("12:00:10"), lambda: job.succeed(S11, 2, finished=at("12:00:10"))),
        (S13, None),
    ]

    repeats = []
    for now, change in steps:
        if change is not None:
            change()
        job.plan(now)
        # The same instant again, with the status and Pods the first plan left.
        repeats.append((now, job.plan(now)))

    for now, repeat in repeats:
        assert repeat.creates == [], now
        assert repeat.deletes == [], now
        assert repeat.events == [], now


# -- specs that cannot run ----------------------------------------------------------------


def invalid_job(status: ScheduledJobStatus) -> JobView:
    error = InvalidScheduleError("invalid schedule '61 * * * *': check each field's range")
    return JobView(
        namespace=NAMESPACE,
        name=JOB_NAME,
        uid=JOB_UID,
        generation=2,
        created=CREATED,
        spec=None,
        status=status,
        spec_error=error,
    )


def test_invalid_spec_sets_conditions():
    valid = FakeJob(make_spec())
    valid.plan(at("10:30"))

    result = plan(invalid_job(valid.status), [], now=at("10:40"), schedule=None)

    assert condition(result.status, "InvalidSpec").status == "True"
    assert condition(result.status, "InvalidSpec").reason == "InvalidSchedule"
    assert condition(result.status, "Ready").status == "False"
    assert result.status.nextScheduleTime is None
    assert result.creates == []
    assert reasons(result) == [Reason.INVALID_SCHEDULE]
    assert result.events[0].warning is True
    assert "61 * * * *" in result.events[0].message


def test_invalid_spec_reported_once():
    first = plan(invalid_job(ScheduledJobStatus()), [], now=at("10:40"), schedule=None)

    second = plan(invalid_job(first.status), [], now=at("10:50"), schedule=None)

    assert reasons(first) == [Reason.INVALID_SCHEDULE]
    assert second.events == []


def test_never_firing_schedule_is_ready():
    job = FakeJob(make_spec(schedule="0 0 30 2 *"))

    result = job.plan(at("10:30"))

    assert condition(result.status, "Ready").status == "True"
    assert condition(result.status, "Ready").reason == "NeverFires"
    assert result.status.nextScheduleTime is None
    assert result.creates == []
    assert result.wake_at is None
