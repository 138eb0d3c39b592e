"""Daylight-saving rules: repeated and skipped wall times, for fixed-time and elapsed-time slots.

Expected instants are worked out by hand from each zone's rules for 2024 (and 2022 for
the first case):

* America/New_York: EST is UTC-5, EDT is UTC-4. Clocks jump from 02:00 to 03:00 on
  2024-03-10 (07:00Z) and go back from 02:00 to 01:00 on 2024-11-03 (06:00Z).
* Europe/Berlin: CET is UTC+1, CEST is UTC+2. Clocks jump from 02:00 to 03:00 on
  2024-03-31 (01:00Z) and go back from 03:00 to 02:00 on 2024-10-27 (01:00Z).
* Australia/Sydney: AEST is UTC+10, AEDT is UTC+11. Clocks go back from 03:00 to 02:00
  on the first Sunday of April, 2024-04-07 (2024-04-06T16:00Z), and jump from 02:00 to
  03:00 on the first Sunday of October, 2024-10-06 (2024-10-05T16:00Z).
"""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from sked.schedule import RepeatedTime, SkippedTime, parse_schedule

ONCE, TWICE = RepeatedTime.ONCE, RepeatedTime.TWICE
SHIFT, SKIP = SkippedTime.SHIFT, SkippedTime.SKIP


def local(zone: str, text: str) -> dt.datetime:
    """Return the wall time ``text`` in ``zone`` (first occurrence where it repeats)."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def first_slots(
    expression: str,
    zone: str,
    start: dt.datetime,
    count: int,
    *,
    repeated: RepeatedTime = ONCE,
    skipped: SkippedTime = SHIFT,
) -> list[dt.datetime]:
    schedule = parse_schedule(expression, zone, repeated=repeated, skipped=skipped)
    return list(itertools.islice(schedule.iter_after(start), count))


def slots_between(
    expression: str,
    zone: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    repeated: RepeatedTime = ONCE,
    skipped: SkippedTime = SHIFT,
) -> list[dt.datetime]:
    """Return every slot strictly after ``start`` and strictly before ``end``."""
    schedule = parse_schedule(expression, zone, repeated=repeated, skipped=skipped)
    return list(itertools.takewhile(lambda slot: slot < end, schedule.iter_after(start)))


# -- the required cases ------------------------------------------------------------


def test_hourly_across_new_york_spring_forward():
    # 22:00 EST, 23:00, 00:00 and 01:00 EST, then 03:00, 04:00 and 05:00 EDT: the
    # 02:00 wall hour does not exist, and an hourly job follows elapsed time.
    start = local("America/New_York", "2022-03-12T22:00:30")

    found = first_slots("0 * * * *", "America/New_York", start, 6)

    assert found == [
        utc("2022-03-13T04:00"),
        utc("2022-03-13T05:00"),
        utc("2022-03-13T06:00"),
        utc("2022-03-13T07:00"),
        utc("2022-03-13T08:00"),
        utc("2022-03-13T09:00"),
    ]


def test_skipped_slot_shifts_to_jump():
    start = local("America/New_York", "2024-03-09T12:00")

    found = first_slots("30 2 * * *", "America/New_York", start, 2, skipped=SHIFT)

    # 02:30 does not exist on 2024-03-10, so the slot runs at the jump, 02:00 EST.
    assert found == [utc("2024-03-10T07:00"), utc("2024-03-11T06:30")]


def test_skipped_slot_dropped_under_skip():
    start = local("America/New_York", "2024-03-09T12:00")

    found = first_slots("30 2 * * *", "America/New_York", start, 1, skipped=SKIP)

    assert found == [utc("2024-03-11T06:30")]


def test_daily_keeps_wall_time_across_jump():
    start = local("America/New_York", "2024-03-07T12:00")

    found = first_slots("0 9 * * *", "America/New_York", start, 4)

    assert found == [
        utc("2024-03-08T14:00"),
        utc("2024-03-09T14:00"),
        utc("2024-03-10T13:00"),
        utc("2024-03-11T13:00"),
    ]


def test_day_fields_ored_in_june_2024():
    # 2024-06-01 is a Saturday, so the Tuesdays are the 4th, 11th, 18th and 25th.
    # Days 1-7 and 15-21 fire, and so do the Tuesdays 11 and 25 outside them.
    start = utc("2024-06-01T00:00")
    end = utc("2024-07-01T00:00")

    found = slots_between("0 18 1-7,15-21 * 2", "UTC", start, end)

    days = [slot.day for slot in found]
    assert days == [1, 2, 3, 4, 5, 6, 7, 11, 15, 16, 17, 18, 19, 20, 21, 25]
    assert len(found) == 16
    assert all(slot.hour == 18 and slot.minute == 0 for slot in found)


# -- fixed-time slots where clocks go back ----------------------------------------

REPEATED_CASES = [
    pytest.param(
        "30 1 * * *",
        "America/New_York",
        "2024-11-02T12:00",
        ONCE,
        ["2024-11-03T05:30", "2024-11-04T06:30"],
        id="new-york-once",
    ),
    pytest.param(
        "30 1 * * *",
        "America/New_York",
        "2024-11-02T12:00",
        TWICE,
        ["2024-11-03T05:30", "2024-11-03T06:30", "2024-11-04T06:30"],
        id="new-york-twice",
    ),
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        "2024-10-26T12:00",
        ONCE,
        ["2024-10-27T00:30", "2024-10-28T01:30"],
        id="berlin-once",
    ),
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        "2024-10-26T12:00",
        TWICE,
        ["2024-10-27T00:30", "2024-10-27T01:30", "2024-10-28T01:30"],
        id="berlin-twice",
    ),
    pytest.param(
        "30 2 * * *",
        "Australia/Sydney",
        "2024-04-06T12:00",
        ONCE,
        ["2024-04-06T15:30", "2024-04-07T16:30"],
        id="sydney-once",
    ),
    pytest.param(
        "30 2 * * *",
        "Australia/Sydney",
        "2024-04-06T12:00",
        TWICE,
        ["2024-04-06T15:30", "2024-04-06T16:30", "2024-04-07T16:30"],
        id="sydney-twice",
    ),
    pytest.param(
        "0 2 * * *",
        "Europe/Berlin",
        "2024-10-26T12:00",
        TWICE,
        ["2024-10-27T00:00", "2024-10-27T01:00", "2024-10-28T01:00"],
        id="berlin-twice-at-start-of-repeat",
    ),
]


@pytest.mark.parametrize(("expression", "zone", "start", "rule", "expected"), REPEATED_CASES)
def test_repeated_wall_time(expression, zone, start, rule, expected):
    found = first_slots(expression, zone, local(zone, start), len(expected), repeated=rule)

    assert found == [utc(text) for text in expected]


def test_repeated_rule_ignores_skipped_rule():
    start = local("Europe/Berlin", "2024-10-26T12:00")

    shifted = first_slots("30 2 * * *", "Europe/Berlin", start, 3, repeated=TWICE, skipped=SHIFT)
    skipped = first_slots("30 2 * * *", "Europe/Berlin", start, 3, repeated=TWICE, skipped=SKIP)

    assert shifted == skipped


# -- fixed-time slots where clocks jump forward -----------------------------------

SKIPPED_CASES = [
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        "2024-03-30T12:00",
        SHIFT,
        ["2024-03-31T01:00", "2024-04-01T00:30"],
        id="berlin-shift",
    ),
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        "2024-03-30T12:00",
        SKIP,
        ["2024-04-01T00:30", "2024-04-02T00:30"],
        id="berlin-skip",
    ),
    pytest.param(
        "30 2 * * *",
        "Australia/Sydney",
        "2024-10-05T12:00",
        SHIFT,
        ["2024-10-05T16:00", "2024-10-06T15:30"],
        id="sydney-shift",
    ),
    pytest.param(
        "30 2 * * *",
        "Australia/Sydney",
        "2024-10-05T12:00",
        SKIP,
        ["2024-10-06T15:30", "2024-10-07T15:30"],
        id="sydney-skip",
    ),
    pytest.param(
        "0,15,30,45 2 * * *",
        "America/New_York",
        "2024-03-09T12:00",
        SHIFT,
        ["2024-03-10T07:00", "2024-03-11T06:00", "2024-03-11T06:15"],
        id="new-york-four-slots-shift-to-one",
    ),
    pytest.param(
        "0,15,30,45 2 * * *",
        "America/New_York",
        "2024-03-09T12:00",
        SKIP,
        ["2024-03-11T06:00", "2024-03-11T06:15"],
        id="new-york-four-slots-skip",
    ),
    pytest.param(
        # The shifted 02:00 slot and the 03:00 EDT slot are the same instant: one run.
        "0 2,3 * * *",
        "America/New_York",
        "2024-03-09T12:00",
        SHIFT,
        ["2024-03-10T07:00", "2024-03-11T06:00", "2024-03-11T07:00"],
        id="new-york-shift-meets-next-hour",
    ),
    pytest.param(
        "0 2,3 * * *",
        "America/New_York",
        "2024-03-09T12:00",
        SKIP,
        ["2024-03-10T07:00", "2024-03-11T06:00", "2024-03-11T07:00"],
        id="new-york-skip-keeps-next-hour",
    ),
]


@pytest.mark.parametrize(("expression", "zone", "start", "rule", "expected"), SKIPPED_CASES)
def test_skipped_wall_time(expression, zone, start, rule, expected):
    found = first_slots(expression, zone, local(zone, start), len(expected), skipped=rule)

    assert found == [utc(text) for text in expected]


def test_slots_in_skipped_hour_become_one_run():
    start = local("America/New_York", "2024-03-10T00:00")
    end = local("America/New_York", "2024-03-10T12:00")

    found = slots_between("*/10 2 * * *", "America/New_York", start, end)
    fixed = slots_between("0,10,20,30,40,50 2 * * *", "America/New_York", start, end)

    # "*/10 2" follows elapsed time, so it has no run that day. The listed minutes are
    # fixed times, and all six shift to the jump as one run.
    assert found == []
    assert fixed == [utc("2024-03-10T07:00")]


# -- schedules that follow elapsed time --------------------------------------------


@pytest.mark.parametrize("rule", [ONCE, TWICE])
def test_quarter_hours_run_in_both_repeated_hours(rule):
    start = local("Europe/Berlin", "2024-10-26T12:00")
    end = local("Europe/Berlin", "2024-10-27T12:00")

    found = slots_between("*/15 2 * * *", "Europe/Berlin", start, end, repeated=rule)

    # 02:00 to 02:45 CEST, then 02:00 to 02:45 CET: eight runs whatever the rule.
    assert found == [
        utc("2024-10-27T00:00"),
        utc("2024-10-27T00:15"),
        utc("2024-10-27T00:30"),
        utc("2024-10-27T00:45"),
        utc("2024-10-27T01:00"),
        utc("2024-10-27T01:15"),
        utc("2024-10-27T01:30"),
        utc("2024-10-27T01:45"),
    ]


@pytest.mark.parametrize("rule", [SHIFT, SKIP])
def test_quarter_hours_never_run_in_skipped_hour(rule):
    start = local("America/New_York", "2024-03-09T12:00")

    found = first_slots("*/15 2 * * *", "America/New_York", start, 4, skipped=rule)

    # Nothing runs on 2024-03-10. The next day's 02:00 EDT is 06:00Z.
    assert found == [
        utc("2024-03-11T06:00"),
        utc("2024-03-11T06:15"),
        utc("2024-03-11T06:30"),
        utc("2024-03-11T06:45"),
    ]


def test_every_minute_of_hour_after_jump():
    # In Sydney the wall clock reads 03:00 AEDT at the jump, 2024-10-05T16:00Z.
    start = local("Australia/Sydney", "2024-10-06T00:00")
    end = local("Australia/Sydney", "2024-10-06T12:00")

    found = slots_between("* 3 * * *", "Australia/Sydney", start, end)

    assert len(found) == 60
    assert found[0] == utc("2024-10-05T16:00")
    assert found[-1] == utc("2024-10-05T16:59")
    assert all(b - a == dt.timedelta(minutes=1) for a, b in itertools.pairwise(found))


def test_every_minute_of_hour_after_fall_back():
    # Berlin's 03:00 CET follows the repeated 02:00 hour, and occurs once.
    start = local("Europe/Berlin", "2024-10-27T00:00")
    end = local("Europe/Berlin", "2024-10-27T12:00")

    found = slots_between("* 3 * * *", "Europe/Berlin", start, end, repeated=ONCE)

    assert len(found) == 60
    assert found[0] == utc("2024-10-27T02:00")
    assert found[-1] == utc("2024-10-27T02:59")


def test_every_minute_of_repeated_hour_runs_twice():
    start = local("Australia/Sydney", "2024-04-07T00:00")
    end = local("Australia/Sydney", "2024-04-07T12:00")

    found = slots_between("* 2 * * *", "Australia/Sydney", start, end, repeated=ONCE)

    # 02:00 to 02:59 AEDT (15:00Z to 15:59Z), then again in AEST (16:00Z to 16:59Z).
    assert len(found) == 120
    assert found[0] == utc("2024-04-06T15:00")
    assert found[59] == utc("2024-04-06T15:59")
    assert found[60] == utc("2024-04-06T16:00")
    assert found[-1] == utc("2024-04-06T16:59")


@pytest.mark.parametrize("rule", [SHIFT, SKIP])
def test_every_minute_of_skipped_hour_never_runs(rule):
    start = local("Australia/Sydney", "2024-10-06T00:00")
    end = local("Australia/Sydney", "2024-10-06T12:00")

    found = slots_between("* 2 * * *", "Australia/Sydney", start, end, skipped=rule)

    assert found == []


# -- looking back gives the same slots as looking forward ---------------------------

BACKWARD_CASES = [
    pytest.param("30 2 * * *", "America/New_York", "2024-03-08T00:00", ONCE, SHIFT, id="ny-shift"),
    pytest.param("30 2 * * *", "America/New_York", "2024-03-08T00:00", ONCE, SKIP, id="ny-skip"),
    pytest.param("30 1 * * *", "America/New_York", "2024-11-01T00:00", ONCE, SHIFT, id="ny-once"),
    pytest.param("30 1 * * *", "America/New_York", "2024-11-01T00:00", TWICE, SHIFT, id="ny-twice"),
    pytest.param(
        "30 2 * * *", "Europe/Berlin", "2024-10-25T00:00", TWICE, SHIFT, id="berlin-twice"
    ),
    pytest.param("30 2 * * *", "Australia/Sydney", "2024-10-03T00:00", ONCE, SHIFT, id="syd-shift"),
    pytest.param("30 2 * * *", "Australia/Sydney", "2024-04-04T00:00", ONCE, SHIFT, id="syd-once"),
    pytest.param("*/15 2 * * *", "Europe/Berlin", "2024-10-26T00:00", ONCE, SHIFT, id="berlin-15"),
    pytest.param("0 * * * *", "America/New_York", "2024-03-09T20:00", ONCE, SHIFT, id="ny-hourly"),
]


@pytest.mark.parametrize(("expression", "zone", "start", "repeated", "skipped"), BACKWARD_CASES)
def test_latest_slot_matches_forward_slots(expression, zone, start, repeated, skipped):
    schedule = parse_schedule(expression, zone, repeated=repeated, skipped=skipped)
    forward = list(itertools.islice(schedule.iter_after(local(zone, start)), 12))

    for previous, slot in itertools.pairwise(forward):
        assert schedule.latest_at_or_before(slot) == slot
        assert schedule.latest_at_or_before(slot - dt.timedelta(seconds=1)) == previous
        assert schedule.next_after(previous) == slot


# -- every rule against a minute-by-minute walk of real time ------------------------

TRANSITION_DAYS = {
    "America/New_York": ["2024-03-10", "2024-11-03"],
    "Europe/Berlin": ["2024-03-31", "2024-10-27"],
    "Australia/Sydney": ["2024-04-07", "2024-10-06"],
    # Lord Howe Island moves its clocks by 30 minutes, at 02:00 both ways.
    "Australia/Lord_Howe": ["2024-04-07", "2024-10-06"],
}

# Expressions restricted to minute and hour: the wall minutes and hours each one names,
# and whether it follows elapsed time (its minute or hour field starts with "*").
WALKED_EXPRESSIONS = {
    "30 2 * * *": ({30}, {2}, False),
    "0 2 * * *": ({0}, {2}, False),
    "0,30 1-3 * * *": ({0, 30}, {1, 2, 3}, False),
    "45 1 * * *": ({45}, {1}, False),
    "*/20 1-3 * * *": ({0, 20, 40}, {1, 2, 3}, True),
    "0 * * * *": ({0}, set(range(24)), True),
}


def walked_slots(
    zone_name: str,
    minutes: set[int],
    hours: set[int],
    start: dt.datetime,
    end: dt.datetime,
    *,
    elapsed: bool,
    repeated: RepeatedTime,
    skipped: SkippedTime,
) -> list[dt.datetime]:
    """Return the slots in (start, end) by walking real time a minute at a time.

    Each real minute whose wall time matches is a slot, except a repeated wall time of
    a fixed-time schedule under Once. Under Shift, a forward jump over a matching wall
    time adds the jump instant. This is the rule as stated, without croniter.
    """
    zone = ZoneInfo(zone_name)
    minute = dt.timedelta(minutes=1)
    found: list[dt.datetime] = []
    instant = start + minute
    while instant < end:
        wall = instant.astimezone(zone).replace(tzinfo=None)
        before = (instant - minute).astimezone(zone).utcoffset()
        after = instant.astimezone(zone).utcoffset()
        assert before is not None and after is not None
        if after > before and not elapsed and skipped is SHIFT:
            skipped_wall = (instant + before).replace(tzinfo=None)
            while skipped_wall < wall:
                if skipped_wall.minute in minutes and skipped_wall.hour in hours:
                    found.append(instant)
                    break
                skipped_wall += minute
        if wall.minute in minutes and wall.hour in hours and (not found or found[-1] != instant):
            seen_before = any(
                (instant - back).astimezone(zone).replace(tzinfo=None) == wall
                for back in (dt.timedelta(minutes=30), dt.timedelta(hours=1))
            )
            if elapsed or repeated is TWICE or not seen_before:
                found.append(instant)
        instant += minute
    return found


@pytest.mark.parametrize("zone", list(TRANSITION_DAYS))
@pytest.mark.parametrize("expression", list(WALKED_EXPRESSIONS))
def test_slots_match_walk_of_real_time(zone, expression):
    minutes, hours, elapsed = WALKED_EXPRESSIONS[expression]
    for day in TRANSITION_DAYS[zone]:
        start = local(zone, day).astimezone(dt.UTC) - dt.timedelta(hours=6)
        end = start + dt.timedelta(hours=36)
        for repeated, skipped in itertools.product(RepeatedTime, SkippedTime):
            expected = walked_slots(
                zone,
                minutes,
                hours,
                start,
                end,
                elapsed=elapsed,
                repeated=repeated,
                skipped=skipped,
            )
            schedule = parse_schedule(expression, zone, repeated=repeated, skipped=skipped)
            found = slots_between(expression, zone, start, end, repeated=repeated, skipped=skipped)

            assert found == expected, (day, repeated, skipped)
            for previous, slot in itertools.pairwise(expected):
                assert schedule.latest_at_or_before(slot - dt.timedelta(seconds=1)) == previous
