"""Which due slots run now and which are missed, under a catch-up policy.

The cost is a constant number of croniter calls for Latest and None, and
about ``maxRuns`` for All, however long the operator was down: slots are
counted by their fixed period where the schedule has one, and otherwise up
to a cap that status reports as a lower bound.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from sked.schedule import ONE_SECOND, Schedule, ScheduleSet, count_slots
from sked.spec import CatchUpPolicy, MissedReason

# Under policy None, when the caller does not say since when the operator has
# been watching, a slot reached within this long after its due time (and its
# jitter) is on time and runs; a later one counts as missed.
ON_TIME = dt.timedelta(seconds=10)


@dataclass
class DueSlots:
    """The outcome for the slots after the last handled one, up to now."""

    runs: list[dt.datetime] = field(default_factory=list)
    """Slots to start now, oldest first."""
    missed: int = 0
    lower_bound: bool = False
    newest_missed: dt.datetime | None = None
    missed_reason: MissedReason = MissedReason.CATCH_UP
    wake_at: dt.datetime | None = None
    """When a slot that is due but still inside its jitter delay starts."""


def _no_delay(_slot: dt.datetime) -> dt.timedelta:
    return dt.timedelta(0)


def _on_time(due_at: dt.datetime, now: dt.datetime, online_since: dt.datetime | None) -> bool:
    """Tell whether a slot fell due while the operator was watching (or just before now)."""
    if online_since is not None:
        return due_at >= online_since
    return now - due_at <= ON_TIME


def due_slots(
    schedule: Schedule | ScheduleSet,
    *,
    last_handled: dt.datetime,
    now: dt.datetime,
    starting_deadline: dt.timedelta | None,
    policy: CatchUpPolicy = CatchUpPolicy.LATEST,
    max_runs: int = 10,
    delay: Callable[[dt.datetime], dt.timedelta] = _no_delay,
    online_since: dt.datetime | None = None,
) -> DueSlots | None:
    """Decide the slots in (last_handled, now] under ``policy``; None when none is due.

    A slot is due at its time plus ``delay(slot)`` (the jitter) and late by
    how long ago that was. Only a late slot can be missed. ``online_since`` is
    when the operator started watching: under None, a slot due before it fell
    in downtime and does not run.
    """
    first = schedule.next_after(last_handled)
    if first is None or first > now:
        return None
    newest = schedule.latest_at_or_before(now)
    if newest is None:
        return None
    result = DueSlots()
    if newest + delay(newest) > now:
        # The newest slot waits for its jitter; the delay is shorter than the
        # gap between slots, so only this one can be waiting.
        result.wake_at = newest + delay(newest)
        previous = schedule.latest_at_or_before(newest - ONE_SECOND)
        if previous is None or previous < first:
            return result
        newest = previous
    total, lower_bound = count_slots(schedule, first, newest)
    result.lower_bound = lower_bound

    def inside_deadline(slot: dt.datetime) -> bool:
        late = now - (slot + delay(slot))
        return starting_deadline is None or late <= starting_deadline

    if policy is CatchUpPolicy.ALL:
        runs: list[dt.datetime] = []
        cursor: dt.datetime | None = newest
        while cursor is not None and cursor >= first and len(runs) < max_runs:
            if not inside_deadline(cursor):
                break
            runs.append(cursor)
            cursor = schedule.latest_at_or_before(cursor - ONE_SECOND)
        result.runs = list(reversed(runs))
        result.missed = total - len(runs)
        if result.missed > 0:
            result.newest_missed = cursor
            inside = cursor is not None and inside_deadline(cursor)
            result.missed_reason = MissedReason.CATCH_UP if inside else MissedReason.DEADLINE
        return result

    on_time = policy is CatchUpPolicy.LATEST or _on_time(newest + delay(newest), now, online_since)
    if inside_deadline(newest) and on_time:
        result.runs = [newest]
        result.missed = total - 1
        if total > 1:
            result.newest_missed = schedule.latest_at_or_before(newest - ONE_SECOND)
        return result
    result.missed = total
    result.newest_missed = newest
    result.missed_reason = (
        MissedReason.DEADLINE if not inside_deadline(newest) else MissedReason.CATCH_UP
    )
    return result
