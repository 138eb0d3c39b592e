"""Waits between the attempts of a run."""

from __future__ import annotations

import datetime as dt

import pytest

from sked.backoff import retry_delay
from sked.spec import Backoff


@pytest.mark.parametrize(
    ("failed_attempts", "seconds"),
    [(1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 320), (7, 360), (8, 360)],
    ids=lambda value: str(value),
)
def test_retry_delay_doubles_up_to_max(failed_attempts, seconds):
    backoff = Backoff(initialSeconds=10, factor=2, maxSeconds=360)

    assert retry_delay(backoff, failed_attempts) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("failed_attempts", [1, 2, 10], ids=lambda value: f"after-{value}")
def test_retry_delay_factor_one_is_constant(failed_attempts):
    backoff = Backoff(initialSeconds=30, factor=1, maxSeconds=360)

    assert retry_delay(backoff, failed_attempts) == dt.timedelta(seconds=30)


@pytest.mark.parametrize("failed_attempts", [1, 5], ids=lambda value: f"after-{value}")
def test_retry_delay_max_zero_retries_at_once(failed_attempts):
    backoff = Backoff(initialSeconds=10, factor=2, maxSeconds=0)

    assert retry_delay(backoff, failed_attempts) == dt.timedelta(0)


def test_retry_delay_fractional_factor():
    backoff = Backoff(initialSeconds=10, factor=1.5, maxSeconds=360)

    # 10 * 1.5 * 1.5
    assert retry_delay(backoff, 3) == dt.timedelta(seconds=22.5)


@pytest.mark.parametrize("failed_attempts", [65, 1_000, 10**9], ids=["65", "1000", "1e9"])
@pytest.mark.parametrize("factor", [2, 10], ids=["factor-2", "factor-10"])
def test_retry_delay_huge_attempt_is_capped(failed_attempts, factor):
    backoff = Backoff(initialSeconds=86400, factor=factor, maxSeconds=604800)

    assert retry_delay(backoff, failed_attempts) == dt.timedelta(seconds=604800)


@pytest.mark.parametrize("failed_attempts", [0, -1], ids=["zero", "negative"])
def test_retry_delay_rejects_no_failure(failed_attempts):
    with pytest.raises(ValueError, match=f"got {failed_attempts}"):
        retry_delay(Backoff(), failed_attempts)
