"""spec.schedules: the union of several cron expressions, where a shared slot runs once."""

from __future__ import annotations

import datetime as dt
import itertools

import pydantic
import pytest

from sked.catchup import due_slots
from sked.errors import InvalidScheduleError
from sked.planner import JobView, plan
from sked.schedule import (
    CroniterCounter,
    ScheduleSet,
    count_slots,
    parse_schedules,
)
from sked.spec import CatchUpPolicy, ScheduledJobSpec, ScheduledJobStatus

TEMPLATE = {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def first_slots(expressions: list[str], zone: str, start: dt.datetime, count: int):
    schedule = parse_schedules(expressions, zone)
    return list(itertools.islice(schedule.iter_after(start), count))


# -- the union ----------------------------------------------------------------------


def test_weekdays_and_weekends_interleave():
    # 2024-05-03 is a Friday.
    found = first_slots(["0 9 * * 1-5", "0 12 * * 6,0"], "UTC", utc("2024-05-03T00:00"), 5)

    assert found == [
        utc("2024-05-03T09:00"),
        utc("2024-05-04T12:00"),
        utc("2024-05-05T12:00"),
        utc("2024-05-06T09:00"),
        utc("2024-05-07T09:00"),
    ]


def test_shared_daily_slot_runs_once():
    # Monday 09:00 is named by both entries.
    found = first_slots(["0 9 * * *", "0 9 * * 1"], "UTC", utc("2024-05-05T00:00"), 3)

    assert found == [utc("2024-05-05T09:00"), utc("2024-05-06T09:00"), utc("2024-05-07T09:00")]


def test_overlapping_steps_merge():
    start = utc("2024-05-01T10:00")
    end = utc("2024-05-01T11:00")
    schedule = parse_schedules(["*/15 * * * *", "*/10 * * * *"], "UTC")

    found = list(itertools.takewhile(lambda slot: slot <= end, schedule.iter_after(start)))

    # :00 and :30 belong to both entries and appear once each.
    assert [slot.minute for slot in found] == [10, 15, 20, 30, 40, 45, 50, 0]
    assert len(found) == len(set(found))


def test_seconds_and_minutes_entries_mix():
    found = first_slots(["*/20 * * * * *", "0 * * * *"], "UTC", utc("2024-05-01T09:59:30"), 4)

    # 10:00:00 is named by both.
    assert found == [
        utc("2024-05-01T09:59:40"),
        utc("2024-05-01T10:00:00"),
        utc("2024-05-01T10:00:20"),
        utc("2024-05-01T10:00:40"),
    ]


def test_latest_slot_of_union():
    schedule = parse_schedules(["0 9 * * 1-5", "0 12 * * 6,0"], "UTC")

    # At 10:00 on Sunday 2024-05-05, Sunday's noon has not come, so Saturday's is newest.
    assert schedule.latest_at_or_before(utc("2024-05-05T10:00")) == utc("2024-05-04T12:00")
    assert schedule.latest_at_or_before(utc("2024-05-06T09:00")) == utc("2024-05-06T09:00")
    assert schedule.latest_at_or_before(utc("2024-05-06T08:59:59")) == utc("2024-05-05T12:00")


def test_count_of_union_counts_shared_once():
    schedule = parse_schedules(["*/15 * * * *", "*/10 * * * *"], "UTC")

    count, lower_bound = count_slots(schedule, utc("2024-05-01T10:00"), utc("2024-05-01T10:50"))

    # 10:00 10:10 10:15 10:20 10:30 10:40 10:45 10:50.
    assert count == 8
    assert lower_bound is False


def test_union_applies_dst_rule_per_entry():
    # On 2024-03-10 in New York, 02:30 is skipped and shifts to the jump at 07:00Z,
    # which is also 03:00 EDT, the slot of the second entry: one run.
    start = dt.datetime(2024, 3, 9, 17, tzinfo=dt.UTC)

    found = first_slots(["30 2 * * *", "0 3 * * *"], "America/New_York", start, 3)

    assert found == [utc("2024-03-10T07:00"), utc("2024-03-11T06:30"), utc("2024-03-11T07:00")]


def test_union_fires_when_one_entry_fires():
    assert parse_schedules(["0 0 30 2 *", "0 9 * * *"], "UTC").fires is True
    assert parse_schedules(["0 0 30 2 *", "0 0 31 4 *"], "UTC").fires is False
    assert (
        parse_schedules(["0 0 30 2 *", "0 0 31 4 *"], "UTC").next_after(utc("2024-01-01")) is None
    )


def test_one_entry_gives_plain_schedule():
    schedule = parse_schedules(["0 9 * * *"], "UTC")

    assert not isinstance(schedule, ScheduleSet)


def test_entries_share_one_counter():
    counter = CroniterCounter()
    schedule = parse_schedules(["0 9 * * *", "0 12 * * *"], "UTC", counter=counter)

    schedule.next_after(utc("2024-05-01T00:00"))

    assert counter.calls == 2
    assert schedule.counter is counter


def test_empty_list_rejected():
    with pytest.raises(InvalidScheduleError, match="no schedule"):
        parse_schedules([], "UTC")


def test_invalid_entry_named():
    with pytest.raises(InvalidScheduleError, match="61 \\* \\* \\* \\*"):
        parse_schedules(["0 9 * * *", "61 * * * *"], "UTC")


# -- catch-up and the planner -----------------------------------------------------


def test_catch_up_all_runs_shared_slot_once():
    schedule = parse_schedules(["*/15 * * * *", "*/10 * * * *"], "UTC")

    due = due_slots(
        schedule,
        last_handled=utc("2024-05-01T10:00"),
        now=utc("2024-05-01T10:31"),
        starting_deadline=None,
        policy=CatchUpPolicy.ALL,
        max_runs=10,
    )

    assert due is not None
    assert due.runs == [
        utc("2024-05-01T10:10"),
        utc("2024-05-01T10:15"),
        utc("2024-05-01T10:20"),
        utc("2024-05-01T10:30"),
    ]
    assert due.missed == 0


def job_with(spec_fields: dict[str, object], *, created: dt.datetime) -> JobView:
    spec = ScheduledJobSpec.model_validate({**spec_fields, "template": TEMPLATE})
    return JobView(
        namespace="prod",
        name="report",
        uid="uid-1",
        generation=1,
        created=created,
        spec=spec,
        status=ScheduledJobStatus(),
    )


def test_planner_creates_one_pod_for_shared_slot():
    job = job_with({"schedules": ["0 9 * * *", "0 9 * * 1"]}, created=utc("2024-05-05T12:00"))
    assert job.spec is not None
    schedule = parse_schedules(job.spec.expressions, "UTC")
    monday = utc("2024-05-06T09:00")

    result = plan(job, [], now=monday, schedule=schedule)

    assert [create.slot for create in result.creates] == [monday]
    assert result.status.nextScheduleTime == utc("2024-05-07T09:00")
    assert result.status.missedRuns == 0


# -- the spec accepts exactly one of schedule and schedules --------------------------


def test_spec_expressions_of_schedules():
    spec = ScheduledJobSpec.model_validate(
        {"schedules": ["0 9 * * *", "@hourly"], "template": TEMPLATE}
    )

    assert spec.expressions == ["0 9 * * *", "@hourly"]


def test_spec_with_both_fields_rejected():
    with pytest.raises(pydantic.ValidationError, match="exactly one"):
        ScheduledJobSpec.model_validate(
            {"schedule": "0 9 * * *", "schedules": ["0 12 * * *"], "template": TEMPLATE}
        )


def test_spec_with_neither_field_rejected():
    with pytest.raises(pydantic.ValidationError, match="exactly one"):
        ScheduledJobSpec.model_validate({"template": TEMPLATE})


def test_spec_with_empty_schedules_rejected():
    with pytest.raises(pydantic.ValidationError):
        ScheduledJobSpec.model_validate({"schedules": [], "template": TEMPLATE})
