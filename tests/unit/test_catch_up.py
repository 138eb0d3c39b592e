"""Catch-up after downtime: which slot runs, how many are missed, and what it costs."""

from __future__ import annotations

import datetime as dt

import pytest

from sked.schedule import (
    MISSED_COUNT_CAP,
    CroniterCounter,
    count_slots,
    parse_schedule,
    slots_due,
)

NOW = dt.datetime(2023, 6, 1, 12, 0, 30, tzinfo=dt.UTC)
NEWEST_MINUTE = dt.datetime(2023, 6, 1, 12, 0, tzinfo=dt.UTC)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# -- a minutely job that was down for a long time -------------------------------


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_minutely_year_of_downtime(zone):
    counter = CroniterCounter()
    schedule = parse_schedule("* * * * *", zone, counter=counter)
    # The last run was exactly 365 days before the newest slot. June 2022 to June 2023
    # has no February 29, so 365 * 24 * 60 slots follow it, and the last of them runs now.
    last_run = NEWEST_MINUTE - dt.timedelta(days=365)

    due = slots_due(schedule, last_handled=last_run, now=NOW, starting_deadline=None)

    assert due is not None
    assert due.run == NEWEST_MINUTE
    assert due.missed == 365 * 24 * 60 - 1 == 525599
    assert due.lower_bound is False
    assert due.newest_missed == NEWEST_MINUTE - dt.timedelta(minutes=1)
    assert counter.calls <= 5


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_minutely_cost_does_not_grow(zone):
    def calls_after(downtime: dt.timedelta) -> int:
        counter = CroniterCounter()
        schedule = parse_schedule("* * * * *", zone, counter=counter)
        slots_due(
            schedule,
            last_handled=NEWEST_MINUTE - downtime,
            now=NOW,
            starting_deadline=None,
        )
        return counter.calls

    assert calls_after(dt.timedelta(days=365)) == calls_after(dt.timedelta(days=1))
    assert calls_after(dt.timedelta(days=3650)) == calls_after(dt.timedelta(days=1))


def test_count_slots_minutely_exact():
    schedule = parse_schedule("* * * * *")
    first = utc("2022-06-01T12:01Z")

    assert count_slots(schedule, first, NEWEST_MINUTE) == (525600, False)
    assert count_slots(schedule, first, first) == (1, False)
    assert count_slots(schedule, NEWEST_MINUTE, first) == (0, False)


# -- schedules without a fixed period ---------------------------------------------


def weekday_slots(first: dt.datetime, count: int) -> list[dt.datetime]:
    """Return ``count`` consecutive Monday-to-Friday instants at the time of ``first``."""
    found = []
    day = first
    while len(found) < count:
        if day.weekday() < 5:
            found.append(day)
        day += dt.timedelta(days=1)
    return found


def test_count_slots_cap_boundary():
    schedule = parse_schedule("0 9 * * 1-5")
    slots = weekday_slots(utc("2024-01-01T09:00Z"), MISSED_COUNT_CAP + 1)

    assert count_slots(schedule, slots[0], slots[-2]) == (MISSED_COUNT_CAP, False)
    assert count_slots(schedule, slots[0], slots[-1]) == (MISSED_COUNT_CAP, True)
    assert count_slots(schedule, slots[0], slots[9]) == (10, False)


def test_daily_new_york_year_is_capped():
    counter = CroniterCounter()
    schedule = parse_schedule("0 9 * * *", "America/New_York", counter=counter)
    # 09:00 EDT on 2022-06-01 and 2023-05-31, with the offset changes of both years between.
    first, last = utc("2022-06-01T13:00Z"), utc("2023-05-31T13:00Z")

    count, lower_bound = count_slots(schedule, first, last)

    assert count == MISSED_COUNT_CAP
    assert lower_bound is True
    # One or two croniter calls per slot counted, whatever the length of the downtime.
    assert counter.calls <= 2 * MISSED_COUNT_CAP


@pytest.mark.parametrize("years", [1, 10])
def test_daily_new_york_downtime_is_capped(years):
    counter = CroniterCounter()
    schedule = parse_schedule("0 9 * * *", "America/New_York", counter=counter)
    last_run = NOW - dt.timedelta(days=365 * years)

    due = slots_due(schedule, last_handled=last_run, now=NOW, starting_deadline=None)

    assert due is not None
    # NOW is 08:00:30 EDT, so the newest slot is 09:00 EDT the day before.
    assert due.run == utc("2023-05-31T13:00Z")
    assert due.lower_bound is True
    assert due.missed + 1 == MISSED_COUNT_CAP
    assert counter.calls <= 2 * (MISSED_COUNT_CAP + 2)


def test_daily_new_york_short_downtime_is_exact():
    schedule = parse_schedule("0 9 * * *", "America/New_York")

    # 2024-03-06 .. 2024-03-09 at 14:00Z (EST), 2024-03-10 .. 2024-03-15 at 13:00Z (EDT).
    due = slots_due(
        schedule,
        last_handled=utc("2024-03-05T15:00Z"),
        now=utc("2024-03-15T14:00Z"),
        starting_deadline=None,
    )

    assert due is not None
    assert due.run == utc("2024-03-15T13:00Z")
    assert due.missed == 9
    assert due.lower_bound is False
    assert due.newest_missed == utc("2024-03-14T13:00Z")


@pytest.mark.parametrize(
    ("expression", "zone", "last_handled", "now", "run", "missed"),
    [
        ("*/5 * * * *", "UTC", "2024-01-01T00:00Z", "2024-01-01T01:02Z", "2024-01-01T01:00Z", 11),
        # Hourly in real time across the spring change: 05:00Z to 09:00Z.
        ("0 * * * *", "America/New_York", "2024-03-10T04:00Z", "2024-03-10T09:30Z",
         "2024-03-10T09:00Z", 4),
        # Every 30 minutes of real time across Lord Howe's 30-minute fall change.
        ("*/30 * * * *", "Australia/Lord_Howe", "2024-04-06T14:00Z", "2024-04-06T16:10Z",
         "2024-04-06T16:00Z", 3),
        # Hourly in Lord Howe counted slot by slot: 14:00Z, 15:30Z, 16:30Z.
        ("0 * * * *", "Australia/Lord_Howe", "2024-04-06T13:00Z", "2024-04-06T16:40Z",
         "2024-04-06T16:30Z", 2),
        ("0 9 * * 1-5", "UTC", "2024-05-03T09:00Z", "2024-05-08T12:00Z", "2024-05-08T09:00Z", 2),
    ],
    ids=[
        "every-5-minutes",
        "hourly-new-york-spring",
        "every-30-minutes-lord-howe",
        "hourly-lord-howe",
        "weekdays-over-weekend",
    ],
)  # fmt: skip
def test_slots_due_counts(expression, zone, last_handled, now, run, missed):
    schedule = parse_schedule(expression, zone)

    due = slots_due(schedule, last_handled=utc(last_handled), now=utc(now), starting_deadline=None)

    assert due is not None
    assert due.run == utc(run)
    assert due.missed == missed
    assert due.lower_bound is False


# -- starting deadline and nothing due ------------------------------------------


def test_deadline_passed_misses_every_slot():
    schedule = parse_schedule("0 * * * *")

    due = slots_due(
        schedule,
        last_handled=utc("2024-05-01T10:00Z"),
        now=utc("2024-05-01T12:05Z"),
        starting_deadline=dt.timedelta(seconds=299),
    )

    assert due is not None
    assert due.run is None
    assert due.missed == 2
    assert due.newest_missed == utc("2024-05-01T12:00Z")


def test_deadline_reached_exactly_still_runs():
    schedule = parse_schedule("0 * * * *")

    due = slots_due(
        schedule,
        last_handled=utc("2024-05-01T10:00Z"),
        now=utc("2024-05-01T12:05Z"),
        starting_deadline=dt.timedelta(seconds=300),
    )

    assert due is not None
    assert due.run == utc("2024-05-01T12:00Z")
    assert due.missed == 1
    assert due.newest_missed == utc("2024-05-01T11:00Z")


def test_single_due_slot_misses_nothing():
    schedule = parse_schedule("0 * * * *")

    due = slots_due(
        schedule,
        last_handled=utc("2024-05-01T10:00Z"),
        now=utc("2024-05-01T11:00Z"),
        starting_deadline=dt.timedelta(0),
    )

    assert due is not None
    assert due.run == utc("2024-05-01T11:00Z")
    assert due.missed == 0
    assert due.newest_missed is None


@pytest.mark.parametrize(
    ("expression", "now"),
    [("0 * * * *", "2024-05-01T10:59:59Z"), ("0 0 30 2 *", "2030-01-01T00:00Z")],
    ids=["before-next-slot", "never-fires"],
)
def test_no_slot_due(expression, now):
    schedule = parse_schedule(expression)

    due = slots_due(
        schedule, last_handled=utc("2024-05-01T10:00Z"), now=utc(now), starting_deadline=None
    )

    assert due is None
