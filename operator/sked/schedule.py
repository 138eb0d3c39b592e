"""Due times of cron schedules in a time zone, with an explicit daylight-saving rule.

Every function takes the instant to start from as an argument and never reads
the clock, so the rules are tested with tables and no sleeps.

Slots are computed on the local wall clock (croniter over datetimes that carry
UTC only as a label, so its arithmetic meets no transitions) and then mapped to
real instants one offset segment at a time. A segment is a stretch of time
between two offset changes of the zone. Where two segments meet:

* When clocks go back, wall times in the repeated hour occur twice. A
  fixed-time slot (minute and hour fields that do not start with ``*``) runs
  at its first occurrence only under ``RepeatedTime.ONCE`` and at both under
  ``RepeatedTime.TWICE``.
* When clocks jump forward, wall times in the skipped hour do not exist. A
  fixed-time slot there runs at the instant of the jump under
  ``SkippedTime.SHIFT`` (several such slots become one run) and not at all
  under ``SkippedTime.SKIP``.
* A schedule whose minute or hour field starts with ``*`` follows real
  elapsed time whatever the rule: every real instant whose wall time matches
  is a slot, so repeated wall times run again and skipped ones never occur.

These defaults (ONCE, SHIFT) match Debian's cron. Each lookup costs one or two
croniter calls per segment it crosses, which keeps catch-up after long
downtime constant in cost; ``CroniterCounter`` counts them for tests.
"""

from __future__ import annotations

import bisect
import datetime as dt
import enum
import functools
import hashlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from sked.errors import InvalidScheduleError

UTC = dt.UTC
ONE_SECOND = dt.timedelta(seconds=1)

# Missed slots are counted exactly only for schedules with a fixed period.
# Otherwise counting stops after this many croniter calls and the count is
# reported as a lower bound, as CronJob stops at 100 for the same reason.
MISSED_COUNT_CAP = 100

# Lookups give up after crossing this many offset segments without a slot,
# about 20 years for a zone with daylight-saving time.
MAX_SEGMENTS = 40

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

DAYS_IN_MONTH = {
    1: 31,
    2: 29,
    3: 31,
    4: 30,
    5: 31,
    6: 30,
    7: 31,
    8: 31,
    9: 30,
    10: 31,
    11: 30,
    12: 31,
}

_ZONE_PREFIX = re.compile(r"^\s*(CRON_TZ|TZ)=", re.IGNORECASE)


class RepeatedTime(enum.StrEnum):
    """The rule for a fixed-time slot whose wall time occurs twice when clocks go back."""

    ONCE = "Once"
    TWICE = "Twice"


class SkippedTime(enum.StrEnum):
    """The rule for a fixed-time slot whose wall time clocks skip when they jump forward."""

    SHIFT = "Shift"
    SKIP = "Skip"


@dataclass
class CroniterCounter:
    """Counts croniter lookups, so tests can show that catch-up cost does not grow."""

    calls: int = 0


def load_zone(name: str) -> ZoneInfo:
    """Return the IANA time zone ``name`` or raise InvalidScheduleError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, IsADirectoryError):
        raise InvalidScheduleError(
            f"unknown time zone {name!r}: set spec.timeZone to an IANA name such as "
            "'Europe/Berlin' or 'UTC'"
        ) from None


def normalize_expression(expression: str) -> str:
    """Expand a macro and check the field count; raise InvalidScheduleError otherwise."""
    text = expression.strip()
    if _ZONE_PREFIX.match(text):
        raise InvalidScheduleError(
            f"schedule {expression!r} carries a time zone prefix: remove it and set "
            "spec.timeZone instead"
        )
    if text.startswith("@"):
        macro = MACROS.get(text.lower())
        if macro is None:
            raise InvalidScheduleError(
                f"unknown schedule macro {expression!r}: use one of {', '.join(MACROS)} "
                "or five cron fields"
            )
        return macro
    fields = text.split()
    if len(fields) not in (5, 6):
        raise InvalidScheduleError(
            f"invalid schedule {expression!r}: expected 5 fields (minute hour day-of-month "
            "month day-of-week) or 6 with seconds first, got "
            f"{len(fields)}"
        )
    return " ".join(fields)


@functools.cache
def _transitions(zone: ZoneInfo, year: int) -> tuple[dt.datetime, ...]:
    """Return the instants in ``year`` where the zone's UTC offset changes, found by bisection."""
    start = dt.datetime(year, 1, 1, tzinfo=UTC)
    found: list[dt.datetime] = []
    day = dt.timedelta(days=1)
    day_start = start
    day_offset = day_start.astimezone(zone).utcoffset()
    while day_start.year == year:
        next_day = day_start + day
        next_offset = next_day.astimezone(zone).utcoffset()
        if next_offset != day_offset:
            low, high = day_start, next_day
            while high - low > ONE_SECOND:
                middle = low + (high - low) / 2
                middle = middle.replace(microsecond=0)
                if middle.astimezone(zone).utcoffset() == day_offset:
                    low = middle
                else:
                    high = middle
            found.append(high)
        day_start, day_offset = next_day, next_offset
    return tuple(found)


def _has_transitions(zone: ZoneInfo) -> bool:
    return any(_transitions(zone, year) for year in (2024, 2025))


def _offset(zone: ZoneInfo, instant: dt.datetime) -> dt.timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _transition_after(zone: ZoneInfo, instant: dt.datetime) -> dt.datetime | None:
    """Return the first offset change strictly after ``instant``, looking two years ahead."""
    for year in (instant.year, instant.year + 1, instant.year + 2):
        points = _transitions(zone, year)
        index = bisect.bisect_right(points, instant)
        if index < len(points):
            return points[index]
    return None


def _transition_at_or_before(zone: ZoneInfo, instant: dt.datetime) -> dt.datetime | None:
    """Return the last offset change at or before ``instant``, looking two years back."""
    for year in (instant.year, instant.year - 1, instant.year - 2):
        points = _transitions(zone, year)
        index = bisect.bisect_right(points, instant)
        if index > 0:
            return points[index - 1]
    return None


def _fires_at_all(expanded: list[list[int | str]]) -> bool:
    """Tell whether a 5-field expansion names any real calendar day (ignoring leap years)."""
    days, months, weekdays = expanded[2], expanded[3], expanded[4]
    if weekdays != ["*"] and days != ["*"]:
        return True  # Classic cron ORs the day fields, so the weekday alone fires.
    if days == ["*"]:
        return True
    month_numbers = range(1, 13) if months == ["*"] else [int(m) for m in months]
    return any(
        int(d) <= DAYS_IN_MONTH[m] for m in month_numbers for d in days if d not in ("l", "L")
    ) or any(d in ("l", "L") for d in days)


@dataclass
class Schedule:
    """One cron expression in one time zone, with the daylight-saving rule to apply."""

    expression: str
    zone: ZoneInfo
    repeated: RepeatedTime = RepeatedTime.ONCE
    skipped: SkippedTime = SkippedTime.SHIFT
    counter: CroniterCounter = field(default_factory=CroniterCounter)
    hash_id: str | None = None
    _last_next: tuple[dt.datetime, dt.datetime | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.has_seconds = len(self.expression.split()) == 6
        # croniter fills an H field from a CRC of these bytes: stable across restarts.
        self._hash_bytes = self.hash_id.encode() if self.hash_id is not None else None
        fields = self.expression.split()
        minute, hour = (fields[1], fields[2]) if self.has_seconds else (fields[0], fields[1])
        # Schedules like "0 * * * *" or "*/15 2 * * *" follow real elapsed time.
        self.follows_elapsed_time = minute.startswith("*") or hour.startswith("*")
        try:
            self._iterator = croniter(
                self.expression,
                dt.datetime(2000, 1, 1, tzinfo=UTC),
                ret_type=dt.datetime,
                second_at_beginning=self.has_seconds,
                hash_id=self._hash_bytes,
            )
            expanded, _ = croniter.expand(
                self.expression, hash_id=self._hash_bytes, second_at_beginning=self.has_seconds
            )
        except (CroniterBadCronError, ValueError, KeyError) as error:
            raise InvalidScheduleError(
                f"invalid schedule {self.expression!r}: {error}; check each field's range "
                "(minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6)"
            ) from None
        self._expanded = expanded
        self.fires = _fires_at_all(expanded[:5])
        self._zone_changes = _has_transitions(self.zone)

    # -- wall-clock lookups, the only place croniter is called --------------

    def _wall_next(self, wall: dt.datetime) -> dt.datetime | None:
        """Return the first wall time strictly after ``wall`` that the expression names."""
        self.counter.calls += 1
        self._iterator.set_current(wall.replace(microsecond=0), force=True)
        try:
            result: dt.datetime = self._iterator.get_next(dt.datetime)
        except CroniterBadDateError:
            return None
        return result

    def _wall_prev(self, wall: dt.datetime) -> dt.datetime | None:
        """Return the last wall time at or before ``wall`` that the expression names."""
        self.counter.calls += 1
        self._iterator.set_current(wall.replace(microsecond=0) + ONE_SECOND, force=True)
        try:
            result: dt.datetime = self._iterator.get_prev(dt.datetime)
        except CroniterBadDateError:
            return None
        return result

    def _wall(self, instant: dt.datetime, offset: dt.timedelta) -> dt.datetime:
        return (instant + offset).replace(tzinfo=UTC)

    def _drops_repeat(self, wall: dt.datetime, segment_start: dt.datetime | None) -> bool:
        """Tell whether ``wall`` repeats a time that already ran before clocks went back."""
        if self.follows_elapsed_time or self.repeated is RepeatedTime.TWICE:
            return False
        if segment_start is None:
            return False
        before = _offset(self.zone, segment_start - ONE_SECOND)
        after = _offset(self.zone, segment_start)
        if after >= before:
            return False
        return wall < self._wall(segment_start, before)

    def _gap_has_slot(self, jump: dt.datetime, before: dt.timedelta, after: dt.timedelta) -> bool:
        """Tell whether a fixed-time slot falls in the wall times a forward jump skips."""
        if self.follows_elapsed_time or self.skipped is SkippedTime.SKIP or after <= before:
            return False
        first_skipped = self._wall(jump, before)
        candidate = self._wall_next(first_skipped - ONE_SECOND)
        return candidate is not None and candidate < self._wall(jump, after)

    def _shifts_into_jump(self, wall: dt.datetime, jump: dt.datetime, before: dt.timedelta) -> bool:
        """Tell whether ``wall``, the first slot at or after a jump's skipped times, was skipped."""
        if self.follows_elapsed_time or self.skipped is SkippedTime.SKIP:
            return False
        after = _offset(self.zone, jump)
        return after > before and wall < self._wall(jump, after)

    # -- instants -----------------------------------------------------------

    def next_after(self, instant: dt.datetime) -> dt.datetime | None:
        """Return the first slot strictly after ``instant``, or None if none comes.

        The last answer is kept with the instant it was computed for. No slot
        lies between the two, so every instant in that range has the same
        answer without a croniter call. A reconcile asks for the slot after the
        last handled one and for the slot after now, and both fall in the kept
        range until the next slot is due.
        """
        cached = self._last_next
        if (
            cached is not None
            and cached[0] <= instant
            and (cached[1] is None or instant < cached[1])
        ):
            return cached[1]
        found = self._next_after(instant)
        self._last_next = (instant, found)
        return found

    def _next_after(self, instant: dt.datetime) -> dt.datetime | None:
        if not self.fires:
            return None
        instant = instant.astimezone(UTC)
        if not self._zone_changes:
            offset = _offset(self.zone, instant)
            wall = self._wall_next(self._wall(instant, offset))
            return None if wall is None else wall - offset
        cursor = instant
        start = _transition_at_or_before(self.zone, instant)
        for _ in range(MAX_SEGMENTS):
            # The segment [start, end) has one offset; look for a slot after cursor in it.
            anchor = cursor if start is None else start
            offset = _offset(self.zone, anchor)
            end = _transition_after(self.zone, anchor)
            wall = self._wall_next(self._wall(cursor, offset))
            if wall is None:
                return None
            candidate = wall - offset
            if end is None or candidate < end:
                if self._drops_repeat(wall, start):
                    cursor = candidate
                    continue
                return candidate
            # The first slot lies past the segment. Under Shift, a slot whose wall
            # time the jump skips runs at the jump itself.
            if self._shifts_into_jump(wall, end, offset):
                return end
            # One second before the next segment, so a slot exactly at its start is found.
            cursor = end - ONE_SECOND
            start = end
        return None

    def latest_at_or_before(self, instant: dt.datetime) -> dt.datetime | None:
        """Return the newest slot at or before ``instant``, or None if there is none."""
        if not self.fires:
            return None
        instant = instant.astimezone(UTC)
        if not self._zone_changes:
            offset = _offset(self.zone, instant)
            wall = self._wall_prev(self._wall(instant, offset))
            return None if wall is None else wall - offset
        cursor = instant
        for _ in range(MAX_SEGMENTS):
            start = _transition_at_or_before(self.zone, cursor)
            offset = _offset(self.zone, cursor)
            wall = self._wall_prev(self._wall(cursor, offset))
            if wall is None:
                return None
            candidate = wall - offset
            if start is None or candidate >= start:
                if not self._drops_repeat(wall, start):
                    return candidate
                # Every slot of this segment up to cursor repeats an earlier one.
                assert start is not None
                cursor = start - ONE_SECOND
                continue
            before = _offset(self.zone, start - ONE_SECOND)
            if self._gap_has_slot(start, before, offset):
                return start
            cursor = start - ONE_SECOND
        return None

    def iter_after(self, instant: dt.datetime) -> Iterator[dt.datetime]:
        """Yield the slots strictly after ``instant``, in order, for as long as they come."""
        cursor: dt.datetime | None = instant
        while cursor is not None:
            cursor = self.next_after(cursor)
            if cursor is not None:
                yield cursor

    def fixed_period(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta | None:
        """Return the real-time period of slots between two instants, or None if it varies.

        A period exists when the day fields are all ``*`` and the times of day
        form one evenly spaced series, and either the zone's offset does not
        change in between or every change is a whole number of periods and
        the schedule follows elapsed time.
        """
        period = self._wall_period
        if period is None:
            return None
        if not self._zone_changes:
            return period
        cursor = start
        while True:
            change = _transition_after(self.zone, cursor)
            if change is None or change > end:
                return period
            shift = abs(_offset(self.zone, change) - _offset(self.zone, change - ONE_SECOND))
            if not self.follows_elapsed_time or shift % period:
                return None
            cursor = change

    @functools.cached_property
    def _wall_period(self) -> dt.timedelta | None:
        """Return the spacing of slots on the wall clock when it never varies, else None."""
        expanded = self._expanded
        if any(part != ["*"] for part in expanded[2:5]):
            return None
        seconds = [0] if not self.has_seconds else _values(expanded[5], 60)
        minutes = _values(expanded[0], 60)
        hours = _values(expanded[1], 24)
        times = sorted(h * 3600 + m * 60 + s for h in hours for m in minutes for s in seconds)
        if len(times) == 1:
            return dt.timedelta(days=1)
        step = times[1] - times[0]
        if 86400 % step or len(times) * step != 86400:
            return None
        if any(b - a != step for a, b in itertools.pairwise(times)):
            return None
        return dt.timedelta(seconds=step)


def _values(part: list[int | str], size: int) -> list[int]:
    return list(range(size)) if part == ["*"] else [int(value) for value in part]


@dataclass(frozen=True)
class MissedSlots:
    """The outcome for the slots between the last handled one and now."""

    run: dt.datetime | None
    """The slot to start now, or None."""
    missed: int
    """How many slots get no run."""
    lower_bound: bool
    """True when ``missed`` stopped counting at MISSED_COUNT_CAP and there were more."""
    newest_missed: dt.datetime | None
    """The newest slot that gets no run."""


def count_slots(
    schedule: Schedule | ScheduleSet, first: dt.datetime, last: dt.datetime
) -> tuple[int, bool]:
    """Count the slots from ``first`` to ``last``, both slots; return (count, is_lower_bound)."""
    if last < first:
        return 0, False
    period = schedule.fixed_period(first, last)
    if period is not None:
        return (last - first) // period + 1, False
    count = 1
    cursor = first
    while count < MISSED_COUNT_CAP:
        following = schedule.next_after(cursor)
        if following is None or following > last:
            return count, False
        count += 1
        cursor = following
    return count, cursor < last


def slots_due(
    schedule: Schedule | ScheduleSet,
    *,
    last_handled: dt.datetime,
    now: dt.datetime,
    starting_deadline: dt.timedelta | None,
) -> MissedSlots | None:
    """Decide which slot after ``last_handled`` runs now and how many are missed.

    Only the newest due slot can run, and only inside the starting deadline;
    every older slot is missed. Returns None when no slot is due.
    """
    first = schedule.next_after(last_handled)
    if first is None or first > now:
        return None
    newest = schedule.latest_at_or_before(now)
    assert newest is not None  # first <= now, so a slot at or before now exists.
    count, lower_bound = count_slots(schedule, first, newest)
    late = now - newest
    if starting_deadline is None or late <= starting_deadline:
        older = None
        if count > 1:
            older = schedule.latest_at_or_before(newest - ONE_SECOND)
        return MissedSlots(
            run=newest, missed=count - 1, lower_bound=lower_bound, newest_missed=older
        )
    return MissedSlots(run=None, missed=count, lower_bound=lower_bound, newest_missed=newest)


@dataclass
class ScheduleSet:
    """The union of several schedules in one zone; a slot that two share counts once."""

    members: list[Schedule]

    @property
    def fires(self) -> bool:
        return any(member.fires for member in self.members)

    @property
    def counter(self) -> CroniterCounter:
        return self.members[0].counter

    def next_after(self, instant: dt.datetime) -> dt.datetime | None:
        found = [member.next_after(instant) for member in self.members]
        return min((slot for slot in found if slot is not None), default=None)

    def latest_at_or_before(self, instant: dt.datetime) -> dt.datetime | None:
        found = [member.latest_at_or_before(instant) for member in self.members]
        return max((slot for slot in found if slot is not None), default=None)

    def iter_after(self, instant: dt.datetime) -> Iterator[dt.datetime]:
        cursor: dt.datetime | None = instant
        while cursor is not None:
            cursor = self.next_after(cursor)
            if cursor is not None:
                yield cursor

    def fixed_period(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta | None:
        if len(self.members) == 1:
            return self.members[0].fixed_period(start, end)
        return None


def jitter(
    schedule: Schedule | ScheduleSet, slot: dt.datetime, *, key: str, jitter_seconds: int | None
) -> dt.timedelta:
    """Return the delay of ``slot``: fixed per slot and object, below the gap to the next slot.

    Derived from a hash of ``key`` and the slot, so every replica computes the same delay.
    """
    if not jitter_seconds:
        return dt.timedelta(0)
    following = schedule.next_after(slot)
    limit = jitter_seconds
    if following is not None:
        limit = min(limit, int((following - slot).total_seconds()))
    if limit <= 1:
        return dt.timedelta(0)
    digest = hashlib.sha256(f"{key}/{int(slot.timestamp())}".encode()).digest()
    return dt.timedelta(seconds=int.from_bytes(digest[:8], "big") % limit)


def parse_schedules(
    expressions: list[str],
    time_zone: str = "UTC",
    *,
    repeated: RepeatedTime = RepeatedTime.ONCE,
    skipped: SkippedTime = SkippedTime.SHIFT,
    hash_id: str | None = None,
    counter: CroniterCounter | None = None,
) -> Schedule | ScheduleSet:
    """Build the Schedule of one expression, or the ScheduleSet of several."""
    shared = counter or CroniterCounter()
    members = [
        parse_schedule(
            expression,
            time_zone,
            repeated=repeated,
            skipped=skipped,
            hash_id=hash_id,
            counter=shared,
        )
        for expression in expressions
    ]
    if not members:
        raise InvalidScheduleError("no schedule given: set spec.schedule or spec.schedules")
    return members[0] if len(members) == 1 else ScheduleSet(members)


def parse_schedule(
    expression: str,
    time_zone: str = "UTC",
    *,
    repeated: RepeatedTime = RepeatedTime.ONCE,
    skipped: SkippedTime = SkippedTime.SHIFT,
    hash_id: str | None = None,
    counter: CroniterCounter | None = None,
) -> Schedule:
    """Build a Schedule from user input, raising InvalidScheduleError with the fix."""
    zone = load_zone(time_zone)
    normalized = normalize_expression(expression)
    return Schedule(
        normalized,
        zone,
        repeated=repeated,
        skipped=skipped,
        counter=counter or CroniterCounter(),
        hash_id=hash_id,
    )
