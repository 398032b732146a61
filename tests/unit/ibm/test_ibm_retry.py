"""RetryPolicy backoff, jitter and caps; Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from qauvern_hpc.ibm import RetryPolicy
from qauvern_hpc.ibm.retry import NO_RETRY, parse_retry_after


def test_exponential_backoff_without_jitter_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_stays_between_half_and_full_backoff() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=100.0)
    for attempt, full in ((1, 1.0), (3, 4.0), (5, 16.0)):
        waits = {policy.delay(attempt) for _ in range(200)}
        assert all(full / 2 <= w <= full for w in waits)
        assert len(waits) > 1  # it is random


def test_retry_after_wins_but_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=10.0)
    assert policy.delay(1, retry_after=4.0) == 4.0
    assert policy.delay(3, retry_after=0.0) == 0.0
    assert policy.delay(1, retry_after=120.0) == 10.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"base_delay": -1.0}, "delays"),
        ({"max_delay": -1.0}, "delays"),
        ({"deadline": 0.0}, "deadline"),
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_no_retry_policy() -> None:
    assert NO_RETRY.max_attempts == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Sun, 22 Nov 2026 10:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now=now) == 0.0
