"""``sked next``: the next due instants of a ScheduledJob, with its DST rule and spreading."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pydantic

from sked.errors import InvalidSpecError
from sked.schedule import jitter, parse_schedules
from sked.spec import ScheduledJobSpec


def next_runs(
    manifest: dict[str, Any], *, after: dt.datetime, count: int
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Yield ``count`` pairs of (due instant in UTC, slot in the job's zone) after ``after``.

    The due instant is the slot plus its jitter, as the operator would start it.
    """
    metadata = manifest.get("metadata") or {}
    namespace = metadata.get("namespace") or "default"
    name = metadata.get("name") or ""
    try:
        spec = ScheduledJobSpec.model_validate(manifest.get("spec") or {})
    except pydantic.ValidationError as error:
        raise InvalidSpecError(f"invalid ScheduledJob {name!r}: {error}") from None
    schedule = parse_schedules(
        spec.expressions,
        spec.timeZone,
        repeated=spec.daylightSaving.repeatedTime,
        skipped=spec.daylightSaving.skippedTime,
        hash_id=f"{namespace}/{name}",
    )
    zone = schedule.zone if hasattr(schedule, "zone") else schedule.members[0].zone
    produced = 0
    cursor = after
    while produced < count:
        slot = schedule.next_after(cursor)
        if slot is None:
            return
        delay = jitter(schedule, slot, key=f"{namespace}/{name}", jitter_seconds=spec.jitterSeconds)
        yield slot + delay, slot.astimezone(zone)
        produced += 1
        cursor = slot
