"""Cron slots in a time zone, across daylight-saving changes in both directions.

Expected instants are written as UTC literals worked out by hand from the
zone's offsets, or computed here with zoneinfo by a simple model that shares
no code with ``sked.schedule``.
"""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from sked.errors import InvalidScheduleError
from sked.schedule import (
    MACROS,
    CroniterCounter,
    RepeatedTime,
    Schedule,
    SkippedTime,
    parse_schedule,
)

UTC = dt.UTC
ONCE, TWICE = RepeatedTime.ONCE, RepeatedTime.TWICE
SHIFT, SKIP = SkippedTime.SHIFT, SkippedTime.SKIP
RULES = list(itertools.product(RepeatedTime, SkippedTime))


def utc(text: str) -> dt.datetime:
    """Parse an ISO 8601 instant written with Z or an offset."""
    return dt.datetime.fromisoformat(text)


def local(text: str, zone: str) -> dt.datetime:
    """Return the UTC instant of a wall time that exists exactly once in ``zone``."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def first_slots(schedule: Schedule, start: dt.datetime, count: int) -> list[dt.datetime]:
    return list(itertools.islice(schedule.iter_after(start), count))


def slots_between(schedule: Schedule, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Return the slots in (start, end]."""
    return list(itertools.takewhile(lambda slot: slot <= end, schedule.iter_after(start)))


# -- the cases that must hold exactly ------------------------------------------


def test_hourly_new_york_follows_real_time():
    schedule = parse_schedule("0 * * * *", "America/New_York")

    # 22:00 EST is 03:00Z. Clocks jump from 02:00 EST to 03:00 EDT at 07:00Z.
    start = local("2022-03-12T22:00:30", "America/New_York")

    assert first_slots(schedule, start, 6) == [
        utc("2022-03-13T04:00Z"),
        utc("2022-03-13T05:00Z"),
        utc("2022-03-13T06:00Z"),
        utc("2022-03-13T07:00Z"),
        utc("2022-03-13T08:00Z"),
        utc("2022-03-13T09:00Z"),
    ]


@pytest.mark.parametrize(
    ("skipped", "expected"),
    [
        # 02:30 does not exist on 2024-03-10 because clocks jump at 07:00Z (02:00 EST).
        # 02:30 EDT the next day is 06:30Z.
        (SHIFT, ["2024-03-10T07:00Z", "2024-03-11T06:30Z"]),
        (SKIP, ["2024-03-11T06:30Z", "2024-03-12T06:30Z"]),
    ],
    ids=["shift", "skip"],
)
def test_skipped_slot_new_york(skipped, expected):
    schedule = parse_schedule("30 2 * * *", "America/New_York", skipped=skipped)
    start = local("2024-03-09T12:00", "America/New_York")

    assert first_slots(schedule, start, 2) == [utc(text) for text in expected]


def test_daily_new_york_keeps_wall_time():
    schedule = parse_schedule("0 9 * * *", "America/New_York")
    start = local("2024-03-07T12:00", "America/New_York")

    # 09:00 EST is 14:00Z until 2024-03-10, then 09:00 EDT is 13:00Z.
    assert first_slots(schedule, start, 4) == [
        utc("2024-03-08T14:00Z"),
        utc("2024-03-09T14:00Z"),
        utc("2024-03-10T13:00Z"),
        utc("2024-03-11T13:00Z"),
    ]


def test_day_of_month_or_day_of_week():
    schedule = parse_schedule("0 18 1-7,15-21 * 2", "UTC")
    june = slots_between(schedule, utc("2024-06-01T00:00Z"), utc("2024-06-30T23:59Z"))

    # The Tuesdays of June 2024 are the 4th, 11th, 18th and 25th.
    expected_days = [*range(1, 8), 11, *range(15, 22), 25]
    assert [slot.day for slot in june] == expected_days
    assert len(june) == 16
    assert all(slot.hour == 18 and slot.minute == 0 for slot in june)


# -- repeated and skipped wall times in several zones --------------------------


@pytest.mark.parametrize(
    ("expression", "zone", "start", "repeated", "expected"),
    [
        # Clocks go back from 02:00 EDT to 01:00 EST at 2024-11-03T06:00Z.
        ("30 1 * * *", "America/New_York", "2024-11-02T16:00Z", ONCE,
         ["2024-11-03T05:30Z", "2024-11-04T06:30Z"]),
        ("30 1 * * *", "America/New_York", "2024-11-02T16:00Z", TWICE,
         ["2024-11-03T05:30Z", "2024-11-03T06:30Z", "2024-11-04T06:30Z"]),
        # The second 01:00 is the instant of the change itself.
        ("0 1 * * *", "America/New_York", "2024-11-02T16:00Z", ONCE,
         ["2024-11-03T05:00Z", "2024-11-04T06:00Z"]),
        ("0 1 * * *", "America/New_York", "2024-11-02T16:00Z", TWICE,
         ["2024-11-03T05:00Z", "2024-11-03T06:00Z", "2024-11-04T06:00Z"]),
        # Clocks go back from 03:00 CEST to 02:00 CET at 2024-10-27T01:00Z.
        ("30 2 * * *", "Europe/Berlin", "2024-10-26T10:00Z", ONCE,
         ["2024-10-27T00:30Z", "2024-10-28T01:30Z"]),
        ("30 2 * * *", "Europe/Berlin", "2024-10-26T10:00Z", TWICE,
         ["2024-10-27T00:30Z", "2024-10-27T01:30Z", "2024-10-28T01:30Z"]),
        # Clocks go back from 03:00 AEDT to 02:00 AEST at 2024-04-06T16:00Z.
        ("30 2 * * *", "Australia/Sydney", "2024-04-06T00:00Z", ONCE,
         ["2024-04-06T15:30Z", "2024-04-07T16:30Z"]),
        ("30 2 * * *", "Australia/Sydney", "2024-04-06T00:00Z", TWICE,
         ["2024-04-06T15:30Z", "2024-04-06T16:30Z", "2024-04-07T16:30Z"]),
        # Clocks go back 30 minutes, from 02:00 +11:00 to 01:30 +10:30, at 2024-04-06T15:00Z.
        ("45 1 * * *", "Australia/Lord_Howe", "2024-04-06T00:00Z", ONCE,
         ["2024-04-06T14:45Z", "2024-04-07T15:15Z"]),
        ("45 1 * * *", "Australia/Lord_Howe", "2024-04-06T00:00Z", TWICE,
         ["2024-04-06T14:45Z", "2024-04-06T15:15Z", "2024-04-07T15:15Z"]),
    ],
    ids=[
        "new-york-once",
        "new-york-twice",
        "new-york-at-change-once",
        "new-york-at-change-twice",
        "berlin-once",
        "berlin-twice",
        "sydney-once",
        "sydney-twice",
        "lord-howe-once",
        "lord-howe-twice",
    ],
)  # fmt: skip
def test_repeated_wall_time(expression, zone, start, repeated, expected):
    schedule = parse_schedule(expression, zone, repeated=repeated)

    assert first_slots(schedule, utc(start), len(expected)) == [utc(text) for text in expected]


@pytest.mark.parametrize(
    ("expression", "zone", "start", "skipped", "expected"),
    [
        # Clocks jump from 02:00 CET to 03:00 CEST at 2024-03-31T01:00Z.
        ("30 2 * * *", "Europe/Berlin", "2024-03-30T10:00Z", SHIFT,
         ["2024-03-31T01:00Z", "2024-04-01T00:30Z"]),
        ("30 2 * * *", "Europe/Berlin", "2024-03-30T10:00Z", SKIP,
         ["2024-04-01T00:30Z", "2024-04-02T00:30Z"]),
        # Clocks jump from 02:00 AEST to 03:00 AEDT at 2024-10-05T16:00Z.
        ("30 2 * * *", "Australia/Sydney", "2024-10-05T00:00Z", SHIFT,
         ["2024-10-05T16:00Z", "2024-10-06T15:30Z"]),
        ("30 2 * * *", "Australia/Sydney", "2024-10-05T00:00Z", SKIP,
         ["2024-10-06T15:30Z", "2024-10-07T15:30Z"]),
        # Clocks jump 30 minutes, from 02:00 +10:30 to 02:30 +11:00, at 2024-10-05T15:30Z.
        ("15 2 * * *", "Australia/Lord_Howe", "2024-10-05T00:00Z", SHIFT,
         ["2024-10-05T15:30Z", "2024-10-06T15:15Z"]),
        ("15 2 * * *", "Australia/Lord_Howe", "2024-10-05T00:00Z", SKIP,
         ["2024-10-06T15:15Z", "2024-10-07T15:15Z"]),
        # Midnight does not exist on 2024-09-08: clocks jump to 01:00 -03 at 04:00Z.
        ("0 0 * * *", "America/Santiago", "2024-09-06T12:00Z", SHIFT,
         ["2024-09-07T04:00Z", "2024-09-08T04:00Z", "2024-09-09T03:00Z"]),
        ("0 0 * * *", "America/Santiago", "2024-09-06T12:00Z", SKIP,
         ["2024-09-07T04:00Z", "2024-09-09T03:00Z"]),
        # New York 2024-03-10: 02:00 and 02:30 are both skipped and run once at 07:00Z.
        ("0,30 2 * * *", "America/New_York", "2024-03-09T17:00Z", SHIFT,
         ["2024-03-10T07:00Z", "2024-03-11T06:00Z", "2024-03-11T06:30Z"]),
        ("0,30 2 * * *", "America/New_York", "2024-03-09T17:00Z", SKIP,
         ["2024-03-11T06:00Z", "2024-03-11T06:30Z", "2024-03-12T06:00Z"]),
        # 02:00 shifts to 03:00 EDT, where the 03:00 slot already runs: one run.
        ("0 2,3 * * *", "America/New_York", "2024-03-09T17:00Z", SHIFT,
         ["2024-03-10T07:00Z", "2024-03-11T06:00Z", "2024-03-11T07:00Z"]),
    ],
    ids=[
        "berlin-shift",
        "berlin-skip",
        "sydney-shift",
        "sydney-skip",
        "lord-howe-shift",
        "lord-howe-skip",
        "santiago-midnight-shift",
        "santiago-midnight-skip",
        "two-slots-collapse-shift",
        "two-slots-skip",
        "shift-onto-existing-slot",
    ],
)  # fmt: skip
def test_skipped_wall_time(expression, zone, start, skipped, expected):
    schedule = parse_schedule(expression, zone, skipped=skipped)

    assert first_slots(schedule, utc(start), len(expected)) == [utc(text) for text in expected]


@pytest.mark.parametrize(
    ("expression", "zone", "start", "expected"),
    [
        # Both passes through 01:00-02:00 on 2024-11-03 run, 30 minutes of real time apart.
        ("*/30 * * * *", "America/New_York", "2024-11-03T04:00Z",
         ["2024-11-03T04:30Z", "2024-11-03T05:00Z", "2024-11-03T05:30Z",
          "2024-11-03T06:00Z", "2024-11-03T06:30Z", "2024-11-03T07:00Z"]),
        ("*/15 1 * * *", "America/New_York", "2024-11-03T04:00Z",
         ["2024-11-03T05:00Z", "2024-11-03T05:15Z", "2024-11-03T05:30Z", "2024-11-03T05:45Z",
          "2024-11-03T06:00Z", "2024-11-03T06:15Z", "2024-11-03T06:30Z", "2024-11-03T06:45Z",
          "2024-11-04T06:00Z"]),
        # Hour 2 never occurs on 2024-03-10, so the next run is 02:00 EDT a day later.
        ("*/15 2 * * *", "America/New_York", "2024-03-09T17:00Z",
         ["2024-03-11T06:00Z", "2024-03-11T06:15Z", "2024-03-11T06:30Z", "2024-03-11T06:45Z",
          "2024-03-12T06:00Z"]),
        ("*/30 * * * *", "America/New_York", "2024-03-10T05:00Z",
         ["2024-03-10T05:30Z", "2024-03-10T06:00Z", "2024-03-10T06:30Z", "2024-03-10T07:00Z",
          "2024-03-10T07:30Z"]),
        # Lord Howe going back 30 minutes at 15:00Z: 01:30-02:00 repeats and no full hour
        # falls in it, so the hourly slots are 90 minutes apart once.
        ("0 * * * *", "Australia/Lord_Howe", "2024-04-06T13:00Z",
         ["2024-04-06T14:00Z", "2024-04-06T15:30Z", "2024-04-06T16:30Z"]),
        # Lord Howe jumping 30 minutes at 15:30Z: 02:00 never occurs.
        ("0 * * * *", "Australia/Lord_Howe", "2024-10-05T13:00Z",
         ["2024-10-05T13:30Z", "2024-10-05T14:30Z", "2024-10-05T16:00Z"]),
        # Sydney going back at 16:00Z: the 02:xx hour runs twice.
        ("*/20 2 * * *", "Australia/Sydney", "2024-04-06T14:59Z",
         ["2024-04-06T15:00Z", "2024-04-06T15:20Z", "2024-04-06T15:40Z",
          "2024-04-06T16:00Z", "2024-04-06T16:20Z", "2024-04-06T16:40Z",
          "2024-04-07T16:00Z"]),
    ],
    ids=[
        "new-york-fall-every-30-minutes",
        "new-york-fall-fixed-hour",
        "new-york-spring-fixed-hour",
        "new-york-spring-every-30-minutes",
        "lord-howe-fall-hourly",
        "lord-howe-spring-hourly",
        "sydney-fall-fixed-hour",
    ],
)  # fmt: skip
@pytest.mark.parametrize(("repeated", "skipped"), RULES, ids=lambda rule: rule.value.lower())
def test_elapsed_time_schedule_ignores_rules(expression, zone, start, repeated, skipped, expected):
    schedule = parse_schedule(expression, zone, repeated=repeated, skipped=skipped)

    assert first_slots(schedule, utc(start), len(expected)) == [utc(text) for text in expected]


# -- agreement with a simple model built on zoneinfo ---------------------------

# Offset changes in 2024 from the IANA time zone database, each checked by a test below.
TRANSITIONS_2024 = {
    "America/New_York": ["2024-03-10T07:00Z", "2024-11-03T06:00Z"],
    "Europe/Berlin": ["2024-03-31T01:00Z", "2024-10-27T01:00Z"],
    "Australia/Sydney": ["2024-04-06T16:00Z", "2024-10-05T16:00Z"],
    "Australia/Lord_Howe": ["2024-04-06T15:00Z", "2024-10-05T15:30Z"],
    "America/Santiago": ["2024-04-07T03:00Z", "2024-09-08T04:00Z"],
}
TRANSITION_CASES = [
    (zone, utc(instant)) for zone, instants in TRANSITIONS_2024.items() for instant in instants
]
TRANSITION_IDS = [f"{zone}-{instant:%m-%d}" for zone, instant in TRANSITION_CASES]

EVERY_HOUR = set(range(24))

# (expression, minutes, hours, follows elapsed time)
MODEL_SCHEDULES = [
    ("30 2 * * *", {30}, {2}, False),
    ("0,30 2 * * *", {0, 30}, {2}, False),
    ("0 1 * * *", {0}, {1}, False),
    ("30 1 * * *", {30}, {1}, False),
    ("45 1 * * *", {45}, {1}, False),
    ("15 2 * * *", {15}, {2}, False),
    ("0 2,3 * * *", {0}, {2, 3}, False),
    ("0 0 * * *", {0}, {0}, False),
    ("30 23 * * *", {30}, {23}, False),
    ("0 9 * * *", {0}, {9}, False),
    ("0 * * * *", {0}, EVERY_HOUR, True),
    ("*/15 * * * *", {0, 15, 30, 45}, EVERY_HOUR, True),
    ("*/20 1-3 * * *", {0, 20, 40}, {1, 2, 3}, True),
    ("5 */2 * * *", {5}, set(range(0, 24, 2)), True),
    ("*/30 0 * * *", {0, 30}, {0}, True),
]


def _offset(zone: ZoneInfo, instant: dt.datetime) -> dt.timedelta | None:
    return instant.astimezone(zone).utcoffset()


def _jump_instant(zone: ZoneInfo, low: dt.datetime, high: dt.datetime) -> dt.datetime:
    """Find, minute by minute, where the offset changes between two instants."""
    before = _offset(zone, low)
    instant = low
    while _offset(zone, instant) == before:
        instant += dt.timedelta(minutes=1)
    assert instant <= high
    return instant


def model_slots(
    minutes: set[int],
    hours: set[int],
    elapsed: bool,
    zone: ZoneInfo,
    start: dt.datetime,
    end: dt.datetime,
    repeated: RepeatedTime,
    skipped: SkippedTime,
) -> list[dt.datetime]:
    """Return the slots in (start, end] of a daily schedule under sked.schedule's rules.

    Fixed-time slots are placed with zoneinfo's fold attribute, and elapsed-time
    slots by checking the wall time of every real minute.
    """
    found: set[dt.datetime] = set()
    if elapsed:
        # Every real minute whose wall time matches is a slot.
        instant = start.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        while instant <= end:
            wall = instant.astimezone(zone)
            if wall.minute in minutes and wall.hour in hours:
                found.add(instant)
            instant += dt.timedelta(minutes=1)
        return sorted(found)

    day = start.astimezone(zone).date() - dt.timedelta(days=1)
    while day <= end.astimezone(zone).date() + dt.timedelta(days=1):
        for hour, minute in itertools.product(hours, minutes):
            wall = dt.datetime.combine(day, dt.time(hour, minute))
            # PEP 495: fold=0 reads the wall time with the offset in force before a change.
            first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
            second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
            if first == second:
                found.add(first)
            elif first < second:
                found.add(first)
                if repeated is TWICE:
                    found.add(second)
            elif skipped is SHIFT:
                found.add(_jump_instant(zone, second, first))
        day += dt.timedelta(days=1)
    return sorted(instant for instant in found if start < instant <= end)


@pytest.mark.parametrize(("zone_name", "transition"), TRANSITION_CASES, ids=TRANSITION_IDS)
def test_transition_table_is_correct(zone_name, transition):
    zone = ZoneInfo(zone_name)

    assert _offset(zone, transition - dt.timedelta(seconds=1)) != _offset(zone, transition)


@pytest.mark.parametrize(("zone_name", "transition"), TRANSITION_CASES, ids=TRANSITION_IDS)
def test_slots_match_zoneinfo_model(zone_name, transition):
    zone = ZoneInfo(zone_name)
    start = transition - dt.timedelta(days=1)
    end = transition + dt.timedelta(days=1)

    mismatches = []
    for (expression, minutes, hours, elapsed), (repeated, skipped) in itertools.product(
        MODEL_SCHEDULES, RULES
    ):
        schedule = parse_schedule(expression, zone_name, repeated=repeated, skipped=skipped)
        actual = slots_between(schedule, start, end)
        expected = model_slots(minutes, hours, elapsed, zone, start, end, repeated, skipped)
        if actual != expected:
            mismatches.append((expression, repeated.value, skipped.value, actual, expected))

    assert mismatches == []


@pytest.mark.parametrize(("zone_name", "transition"), TRANSITION_CASES, ids=TRANSITION_IDS)
def test_latest_agrees_with_next_after(zone_name, transition):
    # The rules change nothing for the last two, which follow elapsed time.
    cases = [
        *(("30 2 * * *", *rule) for rule in RULES),
        *(("0,30 1 * * *", *rule) for rule in RULES),
        *(("0 0 * * *", *rule) for rule in RULES),
        ("0 * * * *", ONCE, SHIFT),
        ("*/20 1-3 * * *", ONCE, SHIFT),
    ]
    steps = range(-10, 11)  # every 30 minutes from 5 hours before to 5 hours after

    mismatches = []
    for expression, repeated, skipped in cases:
        schedule = parse_schedule(expression, zone_name, repeated=repeated, skipped=skipped)
        for step, nudge in itertools.product(steps, (0, -1)):
            instant = transition + dt.timedelta(minutes=30 * step, seconds=nudge)
            earlier = slots_between(schedule, instant - dt.timedelta(days=3), instant)
            expected = earlier[-1] if earlier else None
            actual = schedule.latest_at_or_before(instant)
            if actual != expected:
                mismatches.append((expression, repeated.value, skipped.value, instant, actual))

    assert mismatches == []


@pytest.mark.parametrize(
    ("expression", "zone"),
    [("0 9 * * 1-5", "UTC"), ("*/7 * * * *", "UTC"), ("0 0 29 2 *", "Europe/Berlin")],
    ids=["weekdays", "uneven-minutes", "leap-day"],
)
def test_latest_at_slot_returns_that_slot(expression, zone):
    schedule = parse_schedule(expression, zone)
    slots = first_slots(schedule, utc("2023-12-30T00:00Z"), 5)

    for slot in slots:
        assert schedule.latest_at_or_before(slot) == slot
    for previous, slot in itertools.pairwise(slots):
        assert schedule.latest_at_or_before(slot - dt.timedelta(seconds=1)) == previous


def test_sub_second_instants():
    schedule = parse_schedule("0 * * * *")
    slot = utc("2024-05-01T11:00Z")
    half_second = dt.timedelta(milliseconds=500)

    assert schedule.next_after(slot - half_second) == slot
    assert schedule.next_after(slot + half_second) == utc("2024-05-01T12:00Z")
    assert schedule.latest_at_or_before(slot + half_second) == slot
    assert schedule.latest_at_or_before(slot - half_second) == utc("2024-05-01T10:00Z")


# -- expression syntax ----------------------------------------------------------


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@yearly", "2025-01-01T00:00Z"),
        ("@annually", "2025-01-01T00:00Z"),
        ("@monthly", "2024-06-01T00:00Z"),
        ("@weekly", "2024-05-19T00:00Z"),  # 2024-05-19 is a Sunday
        ("@daily", "2024-05-16T00:00Z"),
        ("@midnight", "2024-05-16T00:00Z"),
        ("@hourly", "2024-05-15T11:00Z"),
    ],
    ids=["yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly"],
)
def test_macro_next_slot(macro, expected):
    schedule = parse_schedule(macro)

    assert schedule.next_after(utc("2024-05-15T10:30Z")) == utc(expected)


def test_macro_table_is_complete():
    assert set(MACROS) == {
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    }


def test_macro_is_case_insensitive():
    schedule = parse_schedule(" @Daily ")

    assert schedule.next_after(utc("2024-05-15T10:30Z")) == utc("2024-05-16T00:00Z")


def test_day_and_month_names():
    schedule = parse_schedule("0 9 * JAN-MAR MON-FRI")

    # 2024-03-28 is a Thursday and 2025-01-01 a Wednesday. April to December never fire.
    assert first_slots(schedule, utc("2024-03-28T00:00Z"), 4) == [
        utc("2024-03-28T09:00Z"),
        utc("2024-03-29T09:00Z"),
        utc("2025-01-01T09:00Z"),
        utc("2025-01-02T09:00Z"),
    ]


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        ("*/10 * * * * *", "2024-05-01T00:00:05Z",
         ["2024-05-01T00:00:10Z", "2024-05-01T00:00:20Z", "2024-05-01T00:00:30Z"]),
        ("30 0 9 * * *", "2024-05-01T08:00Z",
         ["2024-05-01T09:00:30Z", "2024-05-02T09:00:30Z"]),
        ("15 * * * * *", "2024-05-01T08:00Z",
         ["2024-05-01T08:00:15Z", "2024-05-01T08:01:15Z"]),
    ],
    ids=["every-10-seconds", "daily-with-seconds", "each-minute-at-15-seconds"],
)  # fmt: skip
def test_seconds_field_comes_first(expression, start, expected):
    schedule = parse_schedule(expression)

    assert first_slots(schedule, utc(start), len(expected)) == [utc(text) for text in expected]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
@pytest.mark.parametrize(
    "expression", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4 *"], ids=["feb-30", "apr-31", "both"]
)
def test_never_firing_schedule(expression, zone):
    counter = CroniterCounter()
    schedule = parse_schedule(expression, zone, counter=counter)
    instant = utc("2024-03-01T00:00Z")

    assert schedule.fires is False
    assert schedule.next_after(instant) is None
    assert schedule.latest_at_or_before(instant) is None
    assert list(schedule.iter_after(instant)) == []
    # It returns without searching the years ahead.
    assert counter.calls <= 2


@pytest.mark.parametrize(
    ("zone", "expected"),
    [("UTC", "2028-02-29T00:00Z"), ("Europe/Berlin", "2028-02-28T23:00Z")],
    ids=["utc", "berlin"],
)
def test_leap_day_fires_every_four_years(zone, expected):
    schedule = parse_schedule("0 0 29 2 *", zone)

    assert schedule.fires is True
    assert schedule.next_after(utc("2024-03-01T00:00Z")) == utc(expected)
    assert schedule.latest_at_or_before(utc("2028-02-28T00:00Z")) == local("2024-02-29T00:00", zone)


@pytest.mark.parametrize(
    "expression",
    ["0 0 30 2 1", "0 0 L 2 *", "0 0 31 */2 *"],
    ids=["weekday-or-day", "last-day", "odd-months"],
)
def test_schedule_fires(expression):
    assert parse_schedule(expression).fires is True


# -- invalid input --------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "zone", "quoted", "fix"),
    [
        ("61 * * * *", "UTC", "61 * * * *", "minute 0-59"),
        ("0 24 * * *", "UTC", "0 24 * * *", "hour 0-23"),
        ("* * *", "UTC", "* * *", "5 fields"),
        ("* * * * * * *", "UTC", "* * * * * * *", "5 fields"),
        ("CRON_TZ=UTC 0 * * * *", "UTC", "CRON_TZ=UTC", "spec.timeZone"),
        ("TZ=UTC 0 * * * *", "UTC", "TZ=UTC", "spec.timeZone"),
        ("@fortnightly", "UTC", "@fortnightly", "@daily"),
        ("0 * * * *", "America/Nowhere", "America/Nowhere", "spec.timeZone"),
        ("0 * * * *", "", "''", "spec.timeZone"),
    ],
    ids=[
        "minute-out-of-range",
        "hour-out-of-range",
        "three-fields",
        "seven-fields",
        "cron-tz-prefix",
        "tz-prefix",
        "unknown-macro",
        "unknown-zone",
        "empty-zone",
    ],
)
def test_invalid_schedule_message(expression, zone, quoted, fix):
    with pytest.raises(InvalidScheduleError) as raised:
        parse_schedule(expression, zone)

    assert quoted in str(raised.value)
    assert fix in str(raised.value)


def test_invalid_schedule_reason():
    with pytest.raises(InvalidScheduleError) as raised:
        parse_schedule("61 * * * *")

    assert raised.value.reason == "InvalidSchedule"


# -- fixed periods ----------------------------------------------------------------

YEAR_2024 = (utc("2024-01-01T00:00Z"), utc("2025-01-01T00:00Z"))
MAY_2024 = (utc("2024-05-01T00:00Z"), utc("2024-06-01T00:00Z"))


@pytest.mark.parametrize(
    ("expression", "zone", "span", "expected"),
    [
        ("* * * * *", "UTC", YEAR_2024, dt.timedelta(minutes=1)),
        ("*/5 * * * *", "UTC", YEAR_2024, dt.timedelta(minutes=5)),
        ("0 * * * *", "UTC", YEAR_2024, dt.timedelta(hours=1)),
        ("*/10 * * * * *", "UTC", YEAR_2024, dt.timedelta(seconds=10)),
        # Follows elapsed time, and each change is one whole hour.
        ("0 * * * *", "America/New_York", YEAR_2024, dt.timedelta(hours=1)),
        ("*/5 * * * *", "America/New_York", YEAR_2024, dt.timedelta(minutes=5)),
        # No offset change in May.
        ("0 9 * * *", "America/New_York", MAY_2024, dt.timedelta(days=1)),
        ("0 9 * * 1-5", "UTC", MAY_2024, None),
        ("0 9 * * *", "America/New_York", YEAR_2024, None),
        # The 30-minute change in Lord Howe is not a whole number of hours.
        ("0 * * * *", "Australia/Lord_Howe", YEAR_2024, None),
        ("*/30 * * * *", "Australia/Lord_Howe", YEAR_2024, dt.timedelta(minutes=30)),
        ("*/7 * * * *", "UTC", MAY_2024, None),
        ("0 */5 * * *", "UTC", MAY_2024, None),
    ],
    ids=[
        "every-minute",
        "every-5-minutes",
        "hourly",
        "every-10-seconds",
        "hourly-new-york",
        "every-5-minutes-new-york",
        "daily-new-york-may",
        "weekdays",
        "daily-new-york-year",
        "hourly-lord-howe",
        "every-30-minutes-lord-howe",
        "uneven-minutes",
        "uneven-hours",
    ],
)
def test_fixed_period(expression, zone, span, expected):
    schedule = parse_schedule(expression, zone)

    assert schedule.fixed_period(*span) == expected


@pytest.mark.parametrize(
    ("expression", "zone", "start", "end"),
    [
        ("0 * * * *", "America/New_York", "2024-03-09T00:00Z", "2024-03-12T00:00Z"),
        ("0 * * * *", "America/New_York", "2024-11-02T00:00Z", "2024-11-05T00:00Z"),
        ("*/30 * * * *", "Australia/Lord_Howe", "2024-04-05T00:00Z", "2024-04-08T00:00Z"),
        ("*/30 * * * *", "Australia/Lord_Howe", "2024-10-04T00:00Z", "2024-10-07T00:00Z"),
    ],
    ids=["new-york-spring", "new-york-fall", "lord-howe-fall", "lord-howe-spring"],
)
def test_fixed_period_matches_real_spacing(expression, zone, start, end):
    schedule = parse_schedule(expression, zone)
    period = schedule.fixed_period(*YEAR_2024)
    slots = slots_between(schedule, utc(start), utc(end))

    gaps = {later - earlier for earlier, later in itertools.pairwise(slots)}
    assert gaps == {period}


# -- the kept answer of next_after --------------------------------------------------


def test_next_after_reuses_kept_answer():
    counter = CroniterCounter()
    schedule = parse_schedule("0 * * * *", "UTC", counter=counter)

    first = schedule.next_after(utc("2024-05-01T10:00:00Z"))
    calls = counter.calls
    inside = schedule.next_after(utc("2024-05-01T10:59:59Z"))

    assert first == utc("2024-05-01T11:00:00Z")
    assert inside == first
    assert counter.calls == calls
    assert schedule.next_after(first) == utc("2024-05-01T12:00:00Z")
    assert counter.calls > calls


@pytest.mark.parametrize("expression", ["30 2 * * *", "*/20 * * * *", "0 3 * * *"])
@pytest.mark.parametrize(
    ("zone", "around"),
    [
        ("Europe/Berlin", "2024-03-31T01:00Z"),
        ("Europe/Berlin", "2024-10-27T01:00Z"),
        ("America/New_York", "2024-11-03T06:00Z"),
    ],
)
@pytest.mark.parametrize(("repeated", "skipped"), RULES)
def test_kept_answer_matches_fresh_lookup(expression, zone, around, repeated, skipped):
    cached = parse_schedule(expression, zone, repeated=repeated, skipped=skipped)
    start = utc(around) - dt.timedelta(hours=3)
    for step in range(0, 6 * 60, 7):
        instant = start + dt.timedelta(minutes=step)
        fresh = parse_schedule(expression, zone, repeated=repeated, skipped=skipped)
        assert cached.next_after(instant) == fresh.next_after(instant), instant
