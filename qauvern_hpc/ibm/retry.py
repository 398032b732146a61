"""Bounded retries: exponential backoff with jitter, capped in tries and in total time.

What is retried (decided by the client, see `qauvern_hpc.ibm.client`):

- replies 429 (honouring ``Retry-After``, capped by `max_delay`), 502, 503 and 504;
- timeouts and connection errors.

Only idempotent requests are retried once they may have reached IBM: GET, PUT, DELETE, the IAM token
exchange, and the Resource Controller PATCH of instance parameters (it sets absolute values, so sending it
twice leaves the same state). POSTs that create something (instances, sessions) are retried only when
nothing was sent (the connection could not be opened).

A retry is never started when its wait would cross `deadline` (seconds since the first try), and each try's
HTTP timeout is shortened to what is left of the deadline, so `deadline` bounds the whole call.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """At most `max_attempts` tries; waits grow as ``base_delay * 2**(n-1)`` up to `max_delay`.

    With `jitter` a wait is drawn uniformly from [w/2, w] ("equal jitter"), so clients that failed together
    do not retry together. No try starts after `deadline` seconds from the first.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    deadline: float = 120.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must be >= 0")
        if self.deadline <= 0:
            raise ValueError(f"RetryPolicy.deadline must be > 0 seconds, got {self.deadline}")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number `attempt` (counting from 1).

        A server's Retry-After wins over our backoff but is capped by `max_delay`.
        """
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_delay))
        backoff = min(self.max_delay, self.base_delay * (2 ** max(0, attempt - 1)))
        if self.jitter:
            backoff *= 0.5 + random.random() / 2
        return float(backoff)


NO_RETRY = RetryPolicy(max_attempts=1)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
        return max(0.0, seconds)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return seconds if seconds >= 0 else None
