"""The planner's handling of run-now, pendingTimeoutSeconds and nonRetryableExitCodes."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest

from sked import naming
from sked.planner import JobView, Plan, PodView, Reason, plan
from sked.schedule import parse_schedules
from sked.spec import (
    Attempt,
    Run,
    RunPhase,
    ScheduledJobSpec,
    ScheduledJobStatus,
)

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
CREATED = NOW - dt.timedelta(hours=1)
NEVER = "0 0 30 2 *"
TEMPLATE = {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}


def manual_pod_name(value: str, attempt: int) -> str:
    return f"report-m{hashlib.sha256(value.encode()).hexdigest()[:8]}-{attempt}"


def job_view(
    status: ScheduledJobStatus | None = None,
    *,
    run_now: str | None = None,
    **spec_fields: Any,
) -> JobView:
    fields = {"schedule": NEVER, "template": TEMPLATE, **spec_fields}
    return JobView(
        namespace="prod",
        name="report",
        uid="uid-1",
        generation=1,
        created=CREATED,
        spec=ScheduledJobSpec.model_validate(fields),
        status=status or ScheduledJobStatus(),
        run_now=run_now,
    )


def plan_at(job: JobView, pods: list[PodView], now: dt.datetime = NOW) -> Plan:
    assert job.spec is not None
    schedule = parse_schedules(job.spec.expressions, job.spec.timeZone, hash_id="prod/report")
    return plan(job, pods, now=now, schedule=schedule)


def reasons(result: Plan) -> list[Reason]:
    return [event.reason for event in result.events]


def active_run(slot: dt.datetime, pod_name: str, *, trigger: str | None = None) -> Run:
    return Run(
        scheduledTime=slot,
        phase=RunPhase.RUNNING,
        trigger=trigger,
        attempts=[Attempt(attempt=1, podName=pod_name, startTime=slot, phase=RunPhase.RUNNING)],
    )


def pod(
    name: str,
    slot: dt.datetime,
    phase: str,
    *,
    attempt: int = 1,
    created: dt.datetime | None = None,
    **fields: Any,
) -> PodView:
    return PodView(
        name=name, slot=slot, attempt=attempt, phase=phase, created=created or slot, **fields
    )


# -- run now ------------------------------------------------------------------------


def test_run_now_starts_one_run():
    job = job_view(run_now="first")

    result = plan_at(job, [])

    assert len(result.creates) == 1
    create = result.creates[0]
    assert create.trigger == "first"
    assert create.attempt == 1
    assert create.slot == NOW
    assert result.status.lastRunNow == "first"
    [run] = result.status.runs
    assert run.trigger == "first"
    assert run.attempts[0].podName == manual_pod_name("first", 1)
    assert Reason.POD_CREATED in reasons(result)
    # A run by hand is not a slot: the schedule's bookkeeping is untouched.
    assert result.status.lastScheduleTime is None
    assert result.status.missedRuns == 0
    assert result.status.active[0].trigger == "first"


def test_pod_name_of_manual_run():
    name = naming.pod_name("report", NOW, 3, trigger="2024-05-01 by hand")

    assert name == manual_pod_name("2024-05-01 by hand", 3)


def test_run_now_same_value_starts_nothing():
    first = plan_at(job_view(run_now="first"), [])
    pods = [pod(manual_pod_name("first", 1), NOW, "Running", trigger="first")]

    again = plan_at(job_view(first.status, run_now="first"), pods, NOW + dt.timedelta(minutes=1))

    assert again.creates == []
    assert len(again.status.runs) == 1


def test_run_now_same_value_after_run_ended():
    first = plan_at(job_view(run_now="first"), [])
    done = [
        pod(
            manual_pod_name("first", 1),
            NOW,
            "Succeeded",
            trigger="first",
            exit_code=0,
            finished=NOW + dt.timedelta(seconds=5),
        )
    ]

    later = plan_at(job_view(first.status, run_now="first"), done, NOW + dt.timedelta(hours=1))

    assert later.creates == []
    assert [run.phase for run in later.status.runs] == [RunPhase.SUCCEEDED]


def test_run_now_pod_adopted_after_crash():
    # The operator created the Pod but stopped before it wrote lastRunNow.
    pods = [pod(manual_pod_name("first", 1), NOW, "Running", trigger="first")]

    result = plan_at(job_view(run_now="first"), pods, NOW + dt.timedelta(seconds=5))

    assert result.creates == []
    assert result.deletes == []
    assert result.status.lastRunNow == "first"
    [run] = result.status.runs
    assert run.trigger == "first"
    assert run.phase is RunPhase.RUNNING


def test_run_now_new_value_starts_second_run():
    first = plan_at(job_view(run_now="first"), [])
    later = NOW + dt.timedelta(minutes=1)
    pods = [
        pod(
            manual_pod_name("first", 1),
            NOW,
            "Succeeded",
            trigger="first",
            exit_code=0,
            finished=NOW + dt.timedelta(seconds=5),
        )
    ]

    second = plan_at(job_view(first.status, run_now="second"), pods, later)

    assert [create.trigger for create in second.creates] == ["second"]
    assert second.status.lastRunNow == "second"
    assert [run.trigger for run in second.status.runs] == ["first", "second"]
    assert second.status.runs[1].attempts[0].podName == manual_pod_name("second", 1)


@pytest.mark.parametrize("value", [None, ""])
def test_run_now_without_value_starts_nothing(value):
    result = plan_at(job_view(run_now=value), [])

    assert result.creates == []
    assert result.status.lastRunNow is None


def test_run_now_on_suspended_job():
    result = plan_at(job_view(run_now="first", suspend=True), [])

    assert [create.trigger for create in result.creates] == ["first"]
    assert result.status.missedRuns == 0


def test_run_now_on_regular_schedule_keeps_slots():
    status = ScheduledJobStatus(lastScheduleTime=NOW - dt.timedelta(minutes=5))
    job = job_view(status, run_now="first", schedule="*/5 * * * *", concurrencyPolicy="Allow")

    result = plan_at(job, [])

    # The 12:00 slot and the manual run both start, and the slot keeps its time-based name.
    assert {(create.slot, create.trigger) for create in result.creates} == {
        (NOW, None),
        (NOW, "first"),
    }
    assert result.status.lastScheduleTime == NOW
    names = {attempt.podName for run in result.status.runs for attempt in run.attempts}
    assert names == {naming.pod_name("report", NOW, 1), manual_pod_name("first", 1)}


def test_run_now_waits_for_active_run_under_forbid():
    slot = NOW - dt.timedelta(minutes=5)
    scheduled_pod = naming.pod_name("report", slot, 1)
    status = ScheduledJobStatus(lastScheduleTime=slot, runs=[active_run(slot, scheduled_pod)])
    running = [pod(scheduled_pod, slot, "Running")]

    waiting = plan_at(job_view(status, run_now="first"), running)

    assert waiting.creates == []
    assert waiting.deletes == []
    assert waiting.status.lastRunNow is None

    finished = NOW + dt.timedelta(seconds=30)
    done = [pod(scheduled_pod, slot, "Succeeded", exit_code=0, finished=finished)]
    started = plan_at(job_view(waiting.status, run_now="first"), done, finished)

    assert [create.trigger for create in started.creates] == ["first"]
    assert started.status.lastRunNow == "first"
    assert started.status.runs[0].phase is RunPhase.SUCCEEDED


def test_run_now_replaces_active_run_under_replace():
    slot = NOW - dt.timedelta(minutes=5)
    scheduled_pod = naming.pod_name("report", slot, 1)
    status = ScheduledJobStatus(lastScheduleTime=slot, runs=[active_run(slot, scheduled_pod)])
    running = [pod(scheduled_pod, slot, "Running")]

    result = plan_at(job_view(status, run_now="first", concurrencyPolicy="Replace"), running)

    assert [create.trigger for create in result.creates] == ["first"]
    assert result.deletes == [scheduled_pod]
    replaced = result.status.runs[0]
    assert replaced.phase is RunPhase.FAILED
    assert replaced.reason == "RunReplaced"
    assert Reason.RUN_REPLACED in reasons(result)


def test_run_now_beside_active_run_under_allow():
    slot = NOW - dt.timedelta(minutes=5)
    scheduled_pod = naming.pod_name("report", slot, 1)
    status = ScheduledJobStatus(lastScheduleTime=slot, runs=[active_run(slot, scheduled_pod)])
    running = [pod(scheduled_pod, slot, "Running")]

    result = plan_at(job_view(status, run_now="first", concurrencyPolicy="Allow"), running)

    assert [create.trigger for create in result.creates] == ["first"]
    assert result.deletes == []
    assert result.status.activeCount == 2


def test_manual_run_retry_keeps_manual_name():
    first = plan_at(job_view(run_now="first", retry={"limit": 2}), [])
    failed_at = NOW + dt.timedelta(seconds=5)
    failed = [
        pod(
            manual_pod_name("first", 1),
            NOW,
            "Failed",
            trigger="first",
            exit_code=1,
            reason="Error",
            finished=failed_at,
        )
    ]

    job = job_view(first.status, run_now="first", retry={"limit": 2})
    waiting = plan_at(job, failed, failed_at)
    assert waiting.creates == []
    assert waiting.wake_at == failed_at + dt.timedelta(seconds=10)

    job = job_view(waiting.status, run_now="first", retry={"limit": 2})
    retried = plan_at(job, failed, failed_at + dt.timedelta(seconds=10))
    assert [(create.attempt, create.trigger) for create in retried.creates] == [(2, "first")]
    assert retried.status.runs[0].attempts[1].podName == manual_pod_name("first", 2)


@pytest.mark.parametrize(
    ("phase", "pruned"),
    [
        # A finished Pod waits for the batched delete.
        pytest.param("Succeeded", True, id="finished"),
        # A Pod that still runs is stopped at once.
        pytest.param("Running", False, id="running"),
    ],
)
def test_stale_manual_pod_deleted(phase: str, pruned: bool):
    # A Pod of an old run-now value whose run history cleanup already dropped.
    stale = pod(manual_pod_name("old", 1), NOW - dt.timedelta(days=1), phase, trigger="old")
    status = ScheduledJobStatus(lastRunNow="new")

    result = plan_at(job_view(status, run_now="new"), [stale])

    assert result.prunes == ([stale.name] if pruned else [])
    assert result.deletes == ([] if pruned else [stale.name])
    assert result.creates == []


def test_history_trim_of_manual_run_spares_slot_pod():
    # A manual run and a scheduled slot in the same second: dropping the finished manual
    # run from history must not delete the Pod of the scheduled run, which still runs.
    fields = {
        "schedule": "0 * * * *",
        "concurrencyPolicy": "Allow",
        "retry": {"limit": 0},
        "history": {"failedRunsLimit": 0},
    }
    first = plan_at(job_view(run_now="first", **fields), [])
    assert {create.trigger for create in first.creates} == {None, "first"}
    scheduled_pod = naming.pod_name("report", NOW, 1)
    pods = [
        pod(scheduled_pod, NOW, "Running"),
        pod(
            manual_pod_name("first", 1),
            NOW,
            "Failed",
            trigger="first",
            exit_code=1,
            reason="Error",
            finished=NOW + dt.timedelta(seconds=2),
        ),
    ]

    result = plan_at(
        job_view(first.status, run_now="first", **fields), pods, NOW + dt.timedelta(seconds=3)
    )

    assert [run.trigger for run in result.status.runs] == [None]
    assert result.status.runs[0].phase is RunPhase.RUNNING
    assert result.prunes == [manual_pod_name("first", 1)]
    assert scheduled_pod not in result.deletes


# -- pendingTimeoutSeconds ----------------------------------------------------------

# The run under test is the 11:59 slot of an hourly schedule, so no other slot falls due.
HOURLY = "59 * * * *"
SLOT = NOW - dt.timedelta(minutes=1)
FIRST_POD = naming.pod_name("report", SLOT, 1)
SECOND_POD = naming.pod_name("report", SLOT, 2)


def pending_status() -> ScheduledJobStatus:
    return ScheduledJobStatus(
        lastScheduleTime=SLOT,
        runs=[
            Run(
                scheduledTime=SLOT,
                phase=RunPhase.PENDING,
                attempts=[Attempt(attempt=1, podName=FIRST_POD, startTime=SLOT)],
            )
        ],
    )


def pending_pod(name: str, attempt: int, created: dt.datetime, reason: str | None, **fields):
    return pod(
        name,
        SLOT,
        "Pending",
        attempt=attempt,
        created=created,
        pending_reason=reason,
        **fields,
    )


def test_pending_within_timeout_waits():
    job = job_view(pending_status(), schedule=HOURLY, pendingTimeoutSeconds=120)
    pods = [pending_pod(FIRST_POD, 1, SLOT, "ImagePullBackOff")]

    result = plan_at(job, pods)

    assert result.deletes == []
    assert result.status.runs[0].attempts[0].phase is RunPhase.PENDING
    assert result.wake_at == SLOT + dt.timedelta(seconds=120)


@pytest.mark.parametrize(
    ("pending_reason", "expected"),
    [
        pytest.param("ImagePullBackOff", "ImagePullBackOff", id="image-pull"),
        pytest.param("Unschedulable", "Unschedulable", id="unschedulable"),
        pytest.param(None, "PendingTimeout", id="no-reason"),
    ],
)
def test_pending_past_timeout_fails_attempt(pending_reason, expected):
    job = job_view(pending_status(), schedule=HOURLY, pendingTimeoutSeconds=60)
    pods = [
        pending_pod(FIRST_POD, 1, SLOT, pending_reason, pending_message="0/4 nodes are available")
    ]

    result = plan_at(job, pods)

    run = result.status.runs[0]
    attempt = run.attempts[0]
    assert attempt.phase is RunPhase.FAILED
    assert attempt.reason == expected
    assert "pendingTimeoutSeconds (60s)" in (attempt.message or "")
    assert "0/4 nodes are available" in (attempt.message or "")
    assert attempt.finishTime == NOW
    assert result.deletes == [FIRST_POD]
    # One attempt is used up and the run waits for its retry.
    assert run.phase is RunPhase.PENDING
    assert run.nextAttemptTime == NOW + dt.timedelta(seconds=10)
    assert Reason.RETRY_SCHEDULED in reasons(result)


def test_pending_timeout_exhausts_retries():
    job = job_view(pending_status(), schedule=HOURLY, pendingTimeoutSeconds=60, retry={"limit": 1})
    first = plan_at(job, [pending_pod(FIRST_POD, 1, SLOT, "ImagePullBackOff")])
    assert first.deletes == [FIRST_POD]

    retry_at = NOW + dt.timedelta(seconds=10)
    job = job_view(first.status, schedule=HOURLY, pendingTimeoutSeconds=60, retry={"limit": 1})
    deleting = pending_pod(FIRST_POD, 1, SLOT, "ImagePullBackOff", deleting=True)
    second = plan_at(job, [deleting], retry_at)
    assert [(create.slot, create.attempt) for create in second.creates] == [(SLOT, 2)]

    timeout_at = retry_at + dt.timedelta(seconds=60)
    job = job_view(second.status, schedule=HOURLY, pendingTimeoutSeconds=60, retry={"limit": 1})
    pods = [pending_pod(SECOND_POD, 2, retry_at, "ImagePullBackOff")]
    third = plan_at(job, pods, timeout_at)

    run = third.status.runs[0]
    assert third.deletes == [SECOND_POD]
    assert third.creates == []
    assert [attempt.reason for attempt in run.attempts] == ["ImagePullBackOff"] * 2
    assert run.phase is RunPhase.FAILED
    assert run.reason == "RetriesExhausted"
    assert Reason.RETRIES_EXHAUSTED in reasons(third)


def test_pending_timeout_ignores_running_pod():
    job = job_view(pending_status(), schedule=HOURLY, pendingTimeoutSeconds=10)
    pods = [pod(FIRST_POD, SLOT, "Running")]

    result = plan_at(job, pods)

    assert result.deletes == []
    assert result.status.runs[0].phase is RunPhase.RUNNING


def test_pending_without_timeout_waits_forever():
    job = job_view(pending_status(), schedule=HOURLY)
    pods = [pending_pod(FIRST_POD, 1, SLOT - dt.timedelta(days=1), "ImagePullBackOff")]

    result = plan_at(job, pods)

    assert result.deletes == []
    assert result.status.runs[0].attempts[0].phase is RunPhase.PENDING


# -- nonRetryableExitCodes ------------------------------------------------------------


def failed_pod(exit_code: int | None, *, reason: str = "Error") -> PodView:
    return pod(
        FIRST_POD,
        SLOT,
        "Failed",
        exit_code=exit_code,
        reason=reason,
        finished=NOW - dt.timedelta(seconds=5),
    )


def exit_code_job(codes: list[int], limit: int = 3) -> JobView:
    return job_view(
        pending_status(),
        schedule=HOURLY,
        retry={"limit": limit, "nonRetryableExitCodes": codes},
    )


def test_listed_exit_code_fails_run_at_once():
    result = plan_at(exit_code_job([42]), [failed_pod(42)])

    run = result.status.runs[0]
    assert result.creates == []
    assert run.phase is RunPhase.FAILED
    assert run.reason == "NonRetryableExitCode"
    assert run.finishTime == NOW - dt.timedelta(seconds=5)
    assert run.nextAttemptTime is None
    assert len(run.attempts) == 1
    assert run.attempts[0].exitCode == 42
    failed_events = [event for event in result.events if event.reason is Reason.RUN_FAILED]
    assert len(failed_events) == 1
    assert failed_events[0].warning is True
    assert "42" in failed_events[0].message
    assert Reason.RETRY_SCHEDULED not in reasons(result)
    assert result.status.lastResult == "Failed"


def test_unlisted_exit_code_retried():
    result = plan_at(exit_code_job([42]), [failed_pod(3)])

    run = result.status.runs[0]
    assert run.phase is RunPhase.PENDING
    assert run.attempts[0].exitCode == 3
    assert run.nextAttemptTime == NOW - dt.timedelta(seconds=5) + dt.timedelta(seconds=10)
    assert Reason.RETRY_SCHEDULED in reasons(result)
    assert Reason.RUN_FAILED not in reasons(result)


def test_listed_exit_code_on_last_attempt():
    result = plan_at(exit_code_job([42], limit=0), [failed_pod(42)])

    run = result.status.runs[0]
    assert run.phase is RunPhase.FAILED
    assert run.reason == "NonRetryableExitCode"


def test_failure_without_exit_code_retried():
    result = plan_at(exit_code_job([42]), [failed_pod(None, reason="Evicted")])

    run = result.status.runs[0]
    assert run.phase is RunPhase.PENDING
    assert run.attempts[0].reason == "Evicted"
    assert Reason.RETRY_SCHEDULED in reasons(result)


def test_listed_exit_code_on_manual_run():
    first = plan_at(job_view(run_now="first", retry={"nonRetryableExitCodes": [42]}), [])
    failed = [
        pod(
            manual_pod_name("first", 1),
            NOW,
            "Failed",
            trigger="first",
            exit_code=42,
            reason="Error",
            finished=NOW + dt.timedelta(seconds=2),
        )
    ]

    job = job_view(first.status, run_now="first", retry={"nonRetryableExitCodes": [42]})
    result = plan_at(job, failed, NOW + dt.timedelta(seconds=3))

    [run] = result.status.runs
    assert result.creates == []
    assert run.phase is RunPhase.FAILED
    assert run.reason == "NonRetryableExitCode"
