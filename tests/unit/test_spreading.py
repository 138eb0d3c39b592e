"""Spreading load: H fields hashed from namespace/name, and a jitter delay per slot."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import os
import subprocess
import sys

import pytest

from sked.errors import InvalidScheduleError
from sked.planner import JobView, plan
from sked.schedule import RepeatedTime, jitter, parse_schedule, parse_schedules
from sked.spec import ScheduledJobSpec, ScheduledJobStatus

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
NAMES = [f"team-{index % 7}/report-{index}" for index in range(1000)]


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def first_slots(expression: str, key: str, count: int = 3) -> list[dt.datetime]:
    schedule = parse_schedule(expression, "UTC", hash_id=key)
    return list(itertools.islice(schedule.iter_after(START), count))


# -- H fields ---------------------------------------------------------------------


def test_hashed_minute_same_for_same_key():
    first = first_slots("H 3 * * *", "prod/nightly")
    second = first_slots("H 3 * * *", "prod/nightly")

    assert first == second
    assert all(slot.hour == 3 for slot in first)
    assert [slot.day for slot in first] == [1, 2, 3]


def test_hashed_minute_same_in_new_process():
    # A restarted operator must pick the same minute, so the hash may not depend on
    # the process (Python's own str hash changes with PYTHONHASHSEED).
    code = (
        "import datetime as dt; from sked.schedule import parse_schedule; "
        "s = parse_schedule('H H * * *', 'UTC', hash_id='prod/nightly'); "
        "print(s.next_after(dt.datetime(2024, 1, 1, tzinfo=dt.UTC)).isoformat())"
    )
    outputs = set()
    for seed in ("1", "2"):
        environment = dict(os.environ, PYTHONHASHSEED=seed)
        finished = subprocess.run(
            [sys.executable, "-c", code],
            env=environment,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        outputs.add(finished.stdout.strip())

    expected = first_slots("H H * * *", "prod/nightly", 1)[0].isoformat()
    assert outputs == {expected}


def test_hashed_minute_spread_across_names():
    minutes = collections.Counter()
    for key in NAMES:
        slot = first_slots("H 3 * * *", key, 1)[0]
        assert slot.hour == 3
        assert slot.second == 0
        minutes[slot.minute] += 1

    assert all(0 <= minute <= 59 for minute in minutes)
    assert len(minutes) >= 50
    # No minute takes much more than its share (1000 / 60, about 17).
    assert max(minutes.values()) <= 60


def test_hashed_range_stays_inside():
    minutes = set()
    for key in NAMES:
        for slot in first_slots("H(0-29) 3 * * *", key, 2):
            assert slot.hour == 3
            assert 0 <= slot.minute <= 29
            minutes.add(slot.minute)

    assert len(minutes) >= 25


def test_hashed_step_keeps_spacing():
    offsets = set()
    for key in NAMES[:200]:
        slots = first_slots("H/15 * * * *", key, 8)
        offset = slots[0].minute % 15
        assert {slot.minute for slot in slots} == {offset, offset + 15, offset + 30, offset + 45}
        assert all(b - a == dt.timedelta(minutes=15) for a, b in itertools.pairwise(slots))
        offsets.add(offset)

    assert len(offsets) >= 10


def test_hashed_differs_between_namespaces():
    # The key is namespace/name, so the same name in two namespaces is spread too.
    slots = {first_slots("H H * * *", f"tenant-{index}/backup", 1)[0] for index in range(50)}

    assert len(slots) >= 25


def test_hash_without_key_rejected():
    with pytest.raises(InvalidScheduleError, match="H 3"):
        parse_schedule("H 3 * * *", "UTC")


# -- jitter -----------------------------------------------------------------------


def delays(expression: str, key: str, jitter_seconds: int | None, count: int) -> list[int]:
    schedule = parse_schedule(expression, "UTC")
    result = []
    for slot in itertools.islice(schedule.iter_after(START), count):
        delay = jitter(schedule, slot, key=key, jitter_seconds=jitter_seconds)
        result.append(delay.total_seconds())
    return result


@pytest.mark.parametrize("jitter_seconds", [None, 0])
def test_jitter_unset_is_zero(jitter_seconds):
    assert delays("0 * * * *", "prod/report", jitter_seconds, 20) == [0] * 20


def test_jitter_inside_range():
    found = delays("0 * * * *", "prod/report", 600, 500)

    assert all(0 <= delay < 600 for delay in found)
    assert all(delay == int(delay) for delay in found)


def test_jitter_same_for_same_slot_and_key():
    schedule = parse_schedule("0 * * * *", "UTC")
    slot = utc("2024-05-01T10:00")

    first = jitter(schedule, slot, key="prod/report", jitter_seconds=600)
    again = jitter(parse_schedule("0 * * * *", "UTC"), slot, key="prod/report", jitter_seconds=600)

    assert first == again


def test_jitter_differs_across_slots():
    found = delays("0 * * * *", "prod/report", 600, 100)

    assert len(set(found)) >= 50


def test_jitter_differs_across_keys():
    schedule = parse_schedule("0 * * * *", "UTC")
    slot = utc("2024-05-01T10:00")

    found = {jitter(schedule, slot, key=key, jitter_seconds=600) for key in NAMES[:100]}

    assert len(found) >= 50


def test_jitter_below_gap_of_short_period():
    schedule = parse_schedule("*/10 * * * * *", "UTC")
    found = []
    for slot in itertools.islice(schedule.iter_after(START), 300):
        delay = jitter(schedule, slot, key="prod/poll", jitter_seconds=3600)
        following = schedule.next_after(slot)
        assert following is not None
        assert dt.timedelta(0) <= delay < following - slot
        found.append(delay)

    # Still spread inside the 10 s gap, not collapsed to zero.
    assert len(set(found)) >= 5


def test_jitter_below_gap_in_repeated_hour():
    # Under Twice, 01:30 runs at 05:30Z and again at 06:30Z on 2024-11-03, an hour apart.
    schedule = parse_schedule("30 1 * * *", "America/New_York", repeated=RepeatedTime.TWICE)
    first = utc("2024-11-03T05:30")
    assert schedule.next_after(first) == utc("2024-11-03T06:30")

    for key in NAMES[:200]:
        delay = jitter(schedule, first, key=key, jitter_seconds=86400)
        assert delay < dt.timedelta(hours=1)


def test_jitter_below_gap_of_schedule_set():
    schedules = parse_schedules(["0 * * * *", "5 * * * *"], "UTC")
    slot = utc("2024-05-01T10:00")

    for key in NAMES[:200]:
        delay = jitter(schedules, slot, key=key, jitter_seconds=3600)
        assert delay < dt.timedelta(minutes=5)


def test_jitter_of_never_firing_schedule():
    schedule = parse_schedule("0 0 30 2 *", "UTC")

    delay = jitter(schedule, utc("2024-05-01T10:00"), key="prod/manual", jitter_seconds=60)

    assert dt.timedelta(0) <= delay < dt.timedelta(seconds=60)


# -- the planner starts a jittered slot at its delayed time --------------------------


def test_planner_waits_for_jitter():
    spec = ScheduledJobSpec.model_validate(
        {
            "schedule": "0 * * * *",
            "jitterSeconds": 1800,
            "template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}},
        }
    )
    job = JobView(
        namespace="prod",
        name="report",
        uid="uid-1",
        generation=1,
        created=utc("2024-05-01T09:30"),
        spec=spec,
        status=ScheduledJobStatus(),
    )
    schedule = parse_schedules(spec.expressions, "UTC", hash_id="prod/report")
    slot = utc("2024-05-01T10:00")
    delay = jitter(schedule, slot, key="prod/report", jitter_seconds=1800)
    # The test needs a real delay to wait for, which this key and slot give.
    assert delay >= dt.timedelta(seconds=2)

    early = plan(job, [], now=slot, schedule=schedule)
    assert early.creates == []
    assert early.wake_at == slot + delay

    due = plan(job, [], now=slot + delay, schedule=schedule)
    assert [create.slot for create in due.creates] == [slot]
    assert due.status.lastScheduleTime == slot
    assert due.status.missedRuns == 0
