"""Deterministic names and label values for the Pods of a ScheduledJob.

A Pod's name is derived from its ScheduledJob, slot and attempt, so creating
it twice (after a crash, a restart or a failover) fails with AlreadyExists
instead of running the slot twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

MAX_NAME = 63
_HASH_LENGTH = 8
_INVALID = re.compile(r"[^a-z0-9-]+")

LABEL_SCHEDULEDJOB = "sked.dev/scheduledjob"
# The Pod's own name, so one request can delete many Pods by label selector.
LABEL_POD = "sked.dev/pod"
ANNOTATION_SCHEDULED_TIME = "sked.dev/scheduled-time"
ANNOTATION_ATTEMPT = "sked.dev/attempt"
ANNOTATION_RUN_NOW = "sked.dev/run-now"
ANNOTATION_PLACEMENT_STEP = "sked.dev/placement-step"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LENGTH]


def _shorten(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, ending in a hash of the whole so cuts stay distinct."""
    if len(text) <= limit:
        return text
    keep = limit - _HASH_LENGTH - 1
    return f"{text[:keep].rstrip('-.')}-{_digest(text)}"


def slot_key(slot: dt.datetime) -> str:
    """Return the slot as Unix seconds, the part of a Pod name that identifies the slot."""
    return str(int(slot.timestamp()))


def pod_name(
    job_name: str, slot: dt.datetime, attempt: int, *, trigger: str | None = None, step: int = 0
) -> str:
    """Return the Pod name of one attempt of one slot: ``<job>-<unix seconds>-<attempt>``.

    A run started by hand is named by its run-now value instead of its time,
    ``<job>-m<hash of the value>-<attempt>``, so re-applying the same value
    cannot start a second Pod. A placement fallback step after the first adds
    ``-f<step>``, so each region an attempt tries has a Pod name of its own.

    The result is a DNS-1123 label of at most 63 characters. A long job name
    is cut and given a hash of the full name, so two long names that share a
    prefix still get different Pods.
    """
    key = f"m{_digest(trigger)}" if trigger is not None else slot_key(slot)
    suffix = f"-{key}-{attempt}" + (f"-f{step}" if step else "")
    base = _INVALID.sub("-", job_name.lower()).strip("-") or "job"
    if base != job_name:
        # Changed characters could make two names equal; the hash keeps them apart.
        base = f"{base[: MAX_NAME - len(suffix) - _HASH_LENGTH - 1]}-{_digest(job_name)}"
    return _shorten(base, MAX_NAME - len(suffix)) + suffix


def label_value(name: str) -> str:
    """Return ``name`` as a valid label value (63 characters at most, alphanumeric ends)."""
    return _shorten(name, MAX_NAME)
