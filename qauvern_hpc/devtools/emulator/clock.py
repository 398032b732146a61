"""The emulator's notion of "now".

Two modes:

- ``real``: time flows with the wall clock, optionally sped up by ``time_scale`` (2.0 = twice as fast),
  starting from ``start`` (default: the real current time). ``advance()`` still works and jumps forward.
- ``manual``: time stands still at ``start`` until ``advance(seconds)`` is called (tests).

Every rolling window, token expiry, job progress and session TTL in the emulator is computed from this clock,
never from ``datetime.now()``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

ClockMode = Literal["real", "manual"]
CLOCK_MODES: tuple[ClockMode, ...] = ("real", "manual")


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


def as_utc(value: datetime) -> datetime:
    """A naive datetime is taken as UTC; an aware one is converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class Clock:
    """Thread-safe clock; see the module docstring."""

    def __init__(
        self, mode: ClockMode = "real", *, start: datetime | None = None, time_scale: float = 1.0
    ) -> None:
        if mode not in CLOCK_MODES:
            raise ValueError(f"clock mode must be one of {', '.join(CLOCK_MODES)}, not {mode!r}")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, not {time_scale!r}")
        self._mode: ClockMode = mode
        self._scale = float(time_scale)
        self._start = as_utc(start) if start is not None else utc_now()
        self._mono0 = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    @property
    def mode(self) -> ClockMode:
        return self._mode

    @property
    def time_scale(self) -> float:
        return self._scale

    def now(self) -> datetime:
        with self._lock:
            elapsed = self._offset
            if self._mode == "real":
                elapsed += (time.monotonic() - self._mono0) * self._scale
        return self._start + timedelta(seconds=elapsed)

    def advance(self, seconds: float) -> datetime:
        """Jump forward by `seconds` (emulated seconds, not scaled). Returns the new now."""
        if seconds < 0:
            raise ValueError(f"cannot advance the clock by a negative amount ({seconds})")
        with self._lock:
            self._offset += float(seconds)
        return self.now()

    def describe(self) -> dict[str, object]:
        return {"mode": self._mode, "time_scale": self._scale, "now": iso(self.now())}


def iso(value: datetime) -> str:
    """IBM-style timestamp: UTC, millisecond precision, `Z` suffix."""
    value = as_utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 timestamp as sent by clients. Naive means UTC.

    A `+` in a query string that was not percent-encoded arrives as a space (`...T00:00:00 00:00`): repaired.
    A date alone (`2026-11-22`) means midnight UTC.
    """
    raw = text.strip()
    head, sep, tail = raw.rpartition(" ")
    if sep and len(head) >= 19 and len(tail) == 5 and tail[2] == ":":
        raw = f"{head}+{tail}"
    return as_utc(datetime.fromisoformat(raw))
