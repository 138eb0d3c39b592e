"""Waits between the attempts of a run."""

from __future__ import annotations

import datetime as dt

from sked.spec import Backoff


def retry_delay(backoff: Backoff, failed_attempts: int) -> dt.timedelta:
    """Return the wait after the ``failed_attempts``-th failure: initial × factor^(n-1), capped."""
    if failed_attempts < 1:
        raise ValueError(f"failed_attempts must be at least 1 (got {failed_attempts})")
    # Exponents past 64 overflow floats for large factors and are capped anyway.
    exponent = min(failed_attempts - 1, 64)
    seconds = min(backoff.initialSeconds * backoff.factor**exponent, backoff.maxSeconds)
    return dt.timedelta(seconds=seconds)
