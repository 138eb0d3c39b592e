"""Conditions on a ScheduledJob's status: set them with a transition time, read them."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from sked.spec import Condition, ScheduledJobStatus


def set_condition(
    status: ScheduledJobStatus,
    kind: str,
    value: bool,
    reason: str,
    message: str,
    *,
    now: dt.datetime,
    generation: int,
) -> bool:
    """Set a condition; return True when its status or reason changed."""
    text: Literal["True", "False"] = "True" if value else "False"
    for condition in status.conditions:
        if condition.type == kind:
            changed = condition.status != text or condition.reason != reason
            if changed:
                condition.lastTransitionTime = now
            condition.status = text
            condition.reason = reason
            condition.message = message
            condition.observedGeneration = generation
            return changed
    status.conditions.append(
        Condition(
            type=kind,
            status=text,
            reason=reason,
            message=message,
            lastTransitionTime=now,
            observedGeneration=generation,
        )
    )
    return True


def condition_is(status: ScheduledJobStatus, kind: str, value: str) -> bool:
    return any(c.type == kind and c.status == value for c in status.conditions)


def set_failing(
    status: ScheduledJobStatus, threshold: int, *, now: dt.datetime, generation: int
) -> bool:
    """Set Failing from status.consecutiveFailures; return True when it changed."""
    count = status.consecutiveFailures
    if count >= threshold:
        newest = status.runs[-1] if status.runs else None
        detail = ""
        if newest is not None and newest.attempts:
            last = newest.attempts[-1]
            ended = f"exit code {last.exitCode}" if last.exitCode is not None else last.reason
            detail = f"; the newest ended with {ended}"
        return set_condition(
            status,
            "Failing",
            True,
            "ConsecutiveFailures",
            f"the last {count} runs failed{detail}; see status.runs and the Pods' logs",
            now=now,
            generation=generation,
        )
    return set_condition(
        status,
        "Failing",
        False,
        "Succeeding" if status.lastSuccessfulTime else "NoFailures",
        f"{count} failed run(s) in a row, below the threshold of {threshold}",
        now=now,
        generation=generation,
    )


def set_late(
    status: ScheduledJobStatus, late: bool, message: str, *, now: dt.datetime, generation: int
) -> bool:
    """Set Late, True when the newest due slot still has no Pod; return True when it changed."""
    reason = "PodCreateFailed" if late else "OnTime"
    return set_condition(status, "Late", late, reason, message, now=now, generation=generation)
