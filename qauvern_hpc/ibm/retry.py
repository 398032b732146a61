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

`send_with_retries` is the loop: it calls one try until it returns a reply, raises, or returns a `Failure`
the policy does not retry (not retryable, out of tries, or the wait would cross the deadline). A try that
finds no time left raises `DeadlinePassed`; the loop then raises the last failure (or says the deadline
passed). The last failure of several tries carries the hint "gave up after N tries".
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from qauvern_hpc.ibm.errors import IBMError

log = logging.getLogger("qauvern_hpc.ibm")
R = TypeVar("R")

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


@dataclass
class Failure:
    """A try that failed in a way a retry may fix: the error to raise if none follows, whether the request
    may be sent again, and the server's ``Retry-After`` (seconds) if it gave one."""

    error: IBMError
    retryable: bool
    retry_after: float | None = None


class DeadlinePassed(Exception):
    """Raised by a try that has no time left to send (`send_with_retries` reports the last failure)."""


def send_with_retries(
    policy: RetryPolicy,
    try_once: Callable[[], R | Failure],
    *,
    call: str,
    host: str,
    deadline_at: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> R:
    """Call `try_once` until it returns a result, under `policy` and `deadline_at` (a `clock` time)."""
    attempt = 0
    failure: IBMError | None = None
    while True:
        attempt += 1
        try:
            outcome = try_once()
        except DeadlinePassed:
            raise failure or IBMError(
                call, None, f"deadline of {policy.deadline:g} s passed before sending"
            ) from None
        if not isinstance(outcome, Failure):
            return outcome
        failure = outcome.error
        log.debug("%s %s -> %s", call, host, failure.ibm_message)
        if not outcome.retryable:
            raise failure
        delay = policy.delay(attempt, outcome.retry_after)
        if attempt >= policy.max_attempts or clock() + delay >= deadline_at:
            if attempt > 1:
                failure.hint = f"gave up after {attempt} tries"
            raise failure
        log.info(
            "%s failed (%s); retry %d of %d in %.1f s",
            call,
            failure.message,
            attempt,
            policy.max_attempts - 1,
            delay,
        )
        sleep(delay)
