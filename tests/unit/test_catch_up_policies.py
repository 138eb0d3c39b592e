"""Catch-up policies Latest, All and None: which missed slots run, what is counted, the cost."""

from __future__ import annotations

import datetime as dt

import pytest

from sked import naming
from sked.catchup import ON_TIME, due_slots
from sked.planner import JobView, PodView, Reason, plan
from sked.schedule import (
    MISSED_COUNT_CAP,
    CroniterCounter,
    jitter,
    parse_schedule,
    parse_schedules,
)
from sked.spec import (
    CatchUpPolicy,
    MissedReason,
    RunPhase,
    ScheduledJobSpec,
    ScheduledJobStatus,
)

LATEST, ALL, NONE = CatchUpPolicy.LATEST, CatchUpPolicy.ALL, CatchUpPolicy.NONE
TEMPLATE = {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}

# The operator handled 12:00 and comes back at 12:31. The six slots 12:05 to 12:30
# fell due while it was away.
LAST = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def at(minute: int, second: int = 0) -> dt.datetime:
    return LAST.replace(minute=minute, second=second)


def decide(
    policy: CatchUpPolicy,
    now: dt.datetime,
    *,
    deadline: int | None = None,
    max_runs: int = 10,
    expression: str = "*/5 * * * *",
):
    schedule = parse_schedule(expression, "UTC")
    return due_slots(
        schedule,
        last_handled=LAST,
        now=now,
        starting_deadline=None if deadline is None else dt.timedelta(seconds=deadline),
        policy=policy,
        max_runs=max_runs,
    )


# -- Latest -------------------------------------------------------------------------


def test_latest_runs_newest_slot():
    due = decide(LATEST, at(31))

    assert due is not None
    assert due.runs == [at(30)]
    assert due.missed == 5
    assert due.newest_missed == at(25)
    assert due.missed_reason is MissedReason.CATCH_UP


def test_latest_past_deadline_runs_nothing():
    due = decide(LATEST, at(31, 30), deadline=60)

    assert due is not None
    assert due.runs == []
    assert due.missed == 6
    assert due.newest_missed == at(30)
    assert due.missed_reason is MissedReason.DEADLINE


def test_latest_nothing_due_before_first_slot():
    assert decide(LATEST, at(4, 59)) is None


# -- All ----------------------------------------------------------------------------


def test_all_runs_every_missed_slot_oldest_first():
    due = decide(ALL, at(16))

    assert due is not None
    assert due.runs == [at(5), at(10), at(15)]
    assert due.missed == 0
    assert due.newest_missed is None


def test_all_stops_at_max_runs():
    due = decide(ALL, at(31), max_runs=3)

    # The newest three run, oldest first. 12:05, 12:10 and 12:15 are counted as missed.
    assert due is not None
    assert due.runs == [at(20), at(25), at(30)]
    assert due.missed == 3
    assert due.newest_missed == at(15)
    assert due.missed_reason is MissedReason.CATCH_UP


def test_all_runs_only_slots_inside_deadline():
    # At 12:31 with a 600 s deadline, slots from 12:21 on may start: 12:25 and 12:30.
    due = decide(ALL, at(31), deadline=600)

    assert due is not None
    assert due.runs == [at(25), at(30)]
    assert due.missed == 4
    assert due.newest_missed == at(20)
    assert due.missed_reason is MissedReason.DEADLINE


def test_all_slot_exactly_at_deadline_runs():
    due = decide(ALL, at(31), deadline=660)

    assert due is not None
    assert due.runs == [at(20), at(25), at(30)]
    assert due.newest_missed == at(15)


def test_all_with_max_runs_below_deadline_window():
    due = decide(ALL, at(31), deadline=600, max_runs=1)

    assert due is not None
    assert due.runs == [at(30)]
    assert due.missed == 5
    assert due.newest_missed == at(25)
    assert due.missed_reason is MissedReason.CATCH_UP


def test_all_past_deadline_runs_nothing():
    due = decide(ALL, at(31), deadline=30)

    assert due is not None
    assert due.runs == []
    assert due.missed == 6
    assert due.newest_missed == at(30)
    assert due.missed_reason is MissedReason.DEADLINE


# -- None ---------------------------------------------------------------------------


def test_none_runs_slot_reached_on_time():
    due = decide(NONE, at(30, 5))

    assert due is not None
    assert due.runs == [at(30)]
    assert due.missed == 5
    assert due.newest_missed == at(25)


def test_none_on_time_limit_inclusive():
    assert ON_TIME.total_seconds() == 10

    at_limit = decide(NONE, at(30, 10))
    past_limit = decide(NONE, at(30, 11))

    assert at_limit is not None
    assert at_limit.runs == [at(30)]
    assert past_limit is not None
    assert past_limit.runs == []


def test_none_runs_no_missed_slot():
    due = decide(NONE, at(31))

    assert due is not None
    assert due.runs == []
    assert due.missed == 6
    assert due.newest_missed == at(30)
    assert due.missed_reason is MissedReason.CATCH_UP


def test_none_deadline_shorter_than_on_time():
    due = decide(NONE, at(30, 8), deadline=5)

    assert due is not None
    assert due.runs == []
    assert due.missed == 6
    assert due.missed_reason is MissedReason.DEADLINE


# -- a slot still inside its jitter delay ---------------------------------------------


@pytest.mark.parametrize("policy", [LATEST, ALL, NONE])
def test_slot_waiting_for_jitter_not_missed(policy):
    schedule = parse_schedule("*/5 * * * *", "UTC")

    due = due_slots(
        schedule,
        last_handled=at(25),
        now=at(30, 30),
        starting_deadline=None,
        policy=policy,
        delay=lambda slot: dt.timedelta(seconds=60),
    )

    assert due is not None
    assert due.runs == []
    assert due.missed == 0
    assert due.wake_at == at(31)


def test_older_slot_runs_while_newest_waits():
    schedule = parse_schedule("*/5 * * * *", "UTC")

    due = due_slots(
        schedule,
        last_handled=at(20),
        now=at(30, 30),
        starting_deadline=None,
        policy=ALL,
        delay=lambda slot: dt.timedelta(seconds=60),
    )

    assert due is not None
    assert due.runs == [at(25)]
    assert due.missed == 0
    assert due.wake_at == at(31)


# -- cost: croniter calls do not grow with the downtime --------------------------------

NOW = dt.datetime(2024, 6, 1, 12, 0, 30, tzinfo=dt.UTC)
DAY, YEAR = dt.timedelta(days=1), dt.timedelta(days=365)

# Schedules with a fixed period, where missed slots are counted by arithmetic. The
# daily one is compared after a week, since one day contains only one of its slots and
# needs no lookup of an older one.
FIXED_PERIOD = [
    pytest.param("* * * * *", "UTC", DAY, id="minutely-utc"),
    pytest.param("* * * * *", "America/New_York", DAY, id="minutely-new-york"),
    pytest.param("*/5 * * * *", "Australia/Sydney", DAY, id="five-minutes-sydney"),
    pytest.param("*/10 * * * * *", "Europe/Berlin", DAY, id="ten-seconds-berlin"),
    pytest.param("0 9 * * *", "UTC", 7 * DAY, id="daily-utc"),
]

# Schedules without one, where counting stops at MISSED_COUNT_CAP.
NO_FIXED_PERIOD = [
    pytest.param("0 9 * * 1-5", "UTC", id="weekdays-utc"),
    pytest.param("0 9 * * *", "America/New_York", id="daily-new-york"),
]


def calls_after(
    expression: str,
    zone: str,
    downtime: dt.timedelta,
    policy: CatchUpPolicy,
    *,
    max_runs: int = 10,
    jitter_seconds: int | None = None,
) -> int:
    counter = CroniterCounter()
    schedule = parse_schedule(expression, zone, counter=counter)

    def delay(slot: dt.datetime) -> dt.timedelta:
        return jitter(schedule, slot, key="prod/report", jitter_seconds=jitter_seconds)

    due = due_slots(
        schedule,
        last_handled=NOW - downtime,
        now=NOW,
        starting_deadline=None,
        policy=policy,
        max_runs=max_runs,
        delay=delay,
    )
    assert due is not None
    return counter.calls


@pytest.mark.parametrize("policy", [LATEST, NONE])
@pytest.mark.parametrize(("expression", "zone", "short"), FIXED_PERIOD)
def test_latest_and_none_cost_constant(expression, zone, short, policy):
    after_short = calls_after(expression, zone, short, policy)
    after_year = calls_after(expression, zone, YEAR, policy)

    assert after_year == after_short
    assert after_year <= 5


@pytest.mark.parametrize("policy", [LATEST, NONE])
@pytest.mark.parametrize(("expression", "zone"), NO_FIXED_PERIOD)
def test_latest_and_none_cost_capped(expression, zone, policy):
    after_year = calls_after(expression, zone, YEAR, policy)
    after_ten_years = calls_after(expression, zone, 10 * YEAR, policy)

    assert after_ten_years == after_year
    assert after_year <= MISSED_COUNT_CAP + 5


@pytest.mark.parametrize("max_runs", [1, 10, 100])
@pytest.mark.parametrize(("expression", "zone", "short"), FIXED_PERIOD)
def test_all_cost_bounded_by_max_runs(expression, zone, short, max_runs):
    for downtime in (short, YEAR):
        calls = calls_after(expression, zone, downtime, ALL, max_runs=max_runs)
        assert calls <= 3 * max_runs + 10


@pytest.mark.parametrize(("expression", "zone", "short"), FIXED_PERIOD)
def test_all_cost_with_jitter_bounded(expression, zone, short):
    for downtime in (short, YEAR):
        calls = calls_after(expression, zone, downtime, ALL, max_runs=10, jitter_seconds=30)
        assert calls <= 3 * 10 + 10


@pytest.mark.parametrize(("expression", "zone"), NO_FIXED_PERIOD)
def test_all_cost_capped_without_fixed_period(expression, zone):
    after_year = calls_after(expression, zone, YEAR, ALL, max_runs=10)
    after_ten_years = calls_after(expression, zone, 10 * YEAR, ALL, max_runs=10)

    assert after_ten_years == after_year
    assert after_year <= MISSED_COUNT_CAP + 3 * 10 + 10


def test_year_of_downtime_counted_exactly():
    schedule = parse_schedule("* * * * *", "America/New_York")
    # 365 days of minutes end at 12:00 on 2024-06-01. The DST changes in between do
    # not change how many real minutes pass.
    due = due_slots(
        schedule,
        last_handled=NOW - YEAR,
        now=NOW,
        starting_deadline=None,
        policy=ALL,
        max_runs=10,
    )

    assert due is not None
    assert len(due.runs) == 10
    assert due.runs[-1] == dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
    assert due.missed == 365 * 24 * 60 - 10
    assert due.lower_bound is False


# -- the planner: catch-up under each concurrency policy ------------------------------


def job_with(policy: CatchUpPolicy, concurrency: str, status: ScheduledJobStatus, **extra):
    spec = ScheduledJobSpec.model_validate(
        {
            "schedule": "*/5 * * * *",
            "catchUp": {"policy": policy.value, "maxRuns": extra.pop("max_runs", 10)},
            "concurrencyPolicy": concurrency,
            "history": {"successfulRunsLimit": 20, "failedRunsLimit": 20},
            "template": TEMPLATE,
            **extra,
        }
    )
    return JobView(
        namespace="prod",
        name="report",
        uid="uid-1",
        generation=1,
        created=LAST - dt.timedelta(hours=1),
        spec=spec,
        status=status,
    )


def schedule_of(job: JobView):
    assert job.spec is not None
    return parse_schedules(job.spec.expressions, job.spec.timeZone, hash_id="prod/report")


def pod_for(slot: dt.datetime, phase: str, *, created: dt.datetime) -> PodView:
    finished = created + dt.timedelta(seconds=30) if phase in ("Succeeded", "Failed") else None
    return PodView(
        name=naming.pod_name("report", slot, 1),
        slot=slot,
        attempt=1,
        phase=phase,
        created=created,
        finished=finished,
        exit_code=0 if phase == "Succeeded" else None,
    )


def missed_events(result) -> list[str]:
    return [event.message for event in result.events if event.reason is Reason.MISSED_SCHEDULE]


def test_planner_latest_runs_one_and_counts_rest():
    job = job_with(LATEST, "Forbid", ScheduledJobStatus(lastScheduleTime=LAST))

    result = plan(job, [], now=at(31), schedule=schedule_of(job))

    assert [create.slot for create in result.creates] == [at(30)]
    assert result.status.missedRuns == 5
    assert result.status.lastMissed is not None
    assert result.status.lastMissed.scheduledTime == at(25)
    assert result.status.lastMissed.reason is MissedReason.CATCH_UP
    assert result.status.lastScheduleTime == at(30)
    assert len(missed_events(result)) == 1


def test_planner_all_allow_runs_side_by_side():
    job = job_with(ALL, "Allow", ScheduledJobStatus(lastScheduleTime=LAST), max_runs=2)

    result = plan(job, [], now=at(31), schedule=schedule_of(job))

    assert [create.slot for create in result.creates] == [at(25), at(30)]
    assert [run.scheduledTime for run in result.status.runs] == [at(25), at(30)]
    assert result.status.missedRuns == 4
    assert result.status.lastScheduleTime == at(30)


def test_planner_all_forbid_runs_one_after_another():
    job = job_with(ALL, "Forbid", ScheduledJobStatus(lastScheduleTime=LAST))
    schedule = schedule_of(job)

    first = plan(job, [], now=at(16), schedule=schedule)
    assert [create.slot for create in first.creates] == [at(5)]
    assert first.status.missedRuns == 0

    running = [pod_for(at(5), "Running", created=at(16))]
    job = job_with(ALL, "Forbid", first.status)
    waiting = plan(job, running, now=at(17), schedule=schedule)
    # The later catch-up slots wait for the active run instead of being skipped.
    assert waiting.creates == []
    assert waiting.status.missedRuns == 0

    done = [pod_for(at(5), "Succeeded", created=at(16))]
    job = job_with(ALL, "Forbid", waiting.status)
    second = plan(job, done, now=at(18), schedule=schedule)
    assert [create.slot for create in second.creates] == [at(10)]
    assert second.status.missedRuns == 0
    assert second.status.runs[0].phase is RunPhase.SUCCEEDED


def test_planner_all_forbid_drops_slots_past_deadline():
    job = job_with(
        ALL, "Forbid", ScheduledJobStatus(lastScheduleTime=LAST), startingDeadlineSeconds=600
    )
    schedule = schedule_of(job)

    first = plan(job, [], now=at(31), schedule=schedule)
    assert [create.slot for create in first.creates] == [at(25)]
    assert first.status.missedRuns == 4
    assert first.status.lastMissed is not None
    assert first.status.lastMissed.reason is MissedReason.DEADLINE

    # The 12:25 run ends at 12:41. By then 12:30 is 11 minutes late, so it is missed,
    # and 12:35 and 12:40 are still inside the deadline: 12:35 starts first.
    done = [pod_for(at(25), "Succeeded", created=at(31))]
    job = job_with(ALL, "Forbid", first.status, startingDeadlineSeconds=600)
    second = plan(job, done, now=at(41), schedule=schedule)
    assert [create.slot for create in second.creates] == [at(35)]
    assert second.status.missedRuns == 5
    assert second.status.lastMissed is not None
    assert second.status.lastMissed.scheduledTime == at(30)


def test_planner_all_replace_runs_only_newest():
    job = job_with(ALL, "Replace", ScheduledJobStatus(lastScheduleTime=LAST))

    result = plan(job, [], now=at(31), schedule=schedule_of(job))

    assert [create.slot for create in result.creates] == [at(30)]
    assert result.status.missedRuns == 5
    assert result.status.lastMissed is not None
    assert result.status.lastMissed.scheduledTime == at(25)
    assert result.status.lastScheduleTime == at(30)


def test_planner_none_counts_once():
    job = job_with(NONE, "Forbid", ScheduledJobStatus(lastScheduleTime=LAST))
    schedule = schedule_of(job)

    first = plan(job, [], now=at(31), schedule=schedule)
    assert first.creates == []
    assert first.status.missedRuns == 6
    assert first.status.lastScheduleTime == at(30)
    assert first.status.nextScheduleTime == at(35)

    job = job_with(NONE, "Forbid", first.status)
    again = plan(job, [], now=at(32), schedule=schedule)
    assert again.creates == []
    assert again.status.missedRuns == 6
    assert missed_events(again) == []

    job = job_with(NONE, "Forbid", again.status)
    on_time = plan(job, [], now=at(35), schedule=schedule)
    assert [create.slot for create in on_time.creates] == [at(35)]
    assert on_time.status.missedRuns == 6


def test_planner_latest_repeat_plan_starts_nothing_new():
    job = job_with(LATEST, "Allow", ScheduledJobStatus(lastScheduleTime=LAST))
    schedule = schedule_of(job)
    first = plan(job, [], now=at(31), schedule=schedule)

    job = job_with(LATEST, "Allow", first.status)
    pods = [pod_for(at(30), "Running", created=at(31))]
    again = plan(job, pods, now=at(31, 5), schedule=schedule)

    assert again.creates == []
    assert again.status.missedRuns == 5
