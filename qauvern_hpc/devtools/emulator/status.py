"""Backend status over time: scheduled changes, temporary changes that revert, flapping and wait spikes.

Invariants: a backend's `schedule` holds future `StatusChange`s; the scheduler applies each when it falls
due (earliest first) and then dispatches, so a backend that comes back online starts its queued jobs at that
instant. A change with `for_seconds` schedules the return (`revert`) to the status (and message) the
backend had before it, or before the temporary change it replaces: at most one return is pending. A flap is
expanded into changes at creation: down (paused, "internal") and back every `period_seconds` for
`for_seconds`, ending on the status it had when the flap was created. Pure functions over the model; no
lock, no clock.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from qauvern_hpc.devtools.emulator.model import Backend, StatusChange, WaitSpike


def change(body: dict[str, Any], now: datetime, what: str) -> StatusChange:
    """A `StatusChange` from `{after_seconds?, status, message?, for_seconds?}` (or an absolute `at`)."""
    unknown = set(body) - {"at", "after_seconds", "status", "message", "for_seconds"}
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {', '.join(sorted(unknown))}")
    if body.get("for_seconds") is not None:
        _positive(body["for_seconds"], f"{what}.for_seconds")
    at = body["at"] if "at" in body else timed(body, now, what)
    fields = {k: v for k, v in body.items() if k != "after_seconds"}
    return StatusChange.model_validate({**fields, "at": at})


def apply_change(b: Backend, change: StatusChange, at: datetime) -> None:
    """Apply `change` now (`at`). A pending way back (of an earlier temporary change) is dropped: with
    `for_seconds` this change returns to the same status instead, later; without, it is permanent."""
    reverts = [c for c in b.schedule if c.revert]
    base = (reverts[0].status, reverts[0].message) if reverts else (b.status, b.message)
    b.schedule = [c for c in b.schedule if not c.revert]
    if change.for_seconds is not None:
        back = at + timedelta(seconds=change.for_seconds)
        b.schedule.append(StatusChange(at=back, status=base[0], message=base[1], revert=True))
    b.status = change.status
    b.message = change.message


def flap_changes(
    base: tuple[str, str | None], start: datetime, period_seconds: float, for_seconds: float
) -> list[StatusChange]:
    """The changes of a flap starting at `start` on a backend whose (status, message) is `base`."""
    if not period_seconds > 0 or not for_seconds > 0:
        raise ValueError("a flap needs period_seconds > 0 and for_seconds > 0")
    steps = math.ceil(for_seconds / period_seconds)
    if steps > 10_000:
        raise ValueError(f"a flap of {for_seconds} s every {period_seconds} s has too many changes")
    up = base if base[0] == "online" else ("online", None)
    down = ("paused", "internal")
    out = []
    for k in range(steps):
        status, message = down if k % 2 == 0 else up
        at = start + timedelta(seconds=k * period_seconds)
        out.append(StatusChange.model_validate({"at": at, "status": status, "message": message}))
    end = start + timedelta(seconds=for_seconds)
    out.append(StatusChange.model_validate({"at": end, "status": base[0], "message": base[1]}))
    return out


def wait_spike(body: dict[str, Any], now: datetime, what: str) -> WaitSpike:
    """A `WaitSpike` from `{after_seconds?, extra_jobs?, rate_factor?, for_seconds}`."""
    unknown = set(body) - {"extra_jobs", "rate_factor", "for_seconds", "after_seconds", "backend"}
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {', '.join(sorted(unknown))}")
    for_seconds = _positive(body.get("for_seconds"), f"{what}.for_seconds")
    if "extra_jobs" not in body and "rate_factor" not in body:
        raise ValueError(f"{what}: give extra_jobs and/or rate_factor")
    start = timed(body, now, what)
    return WaitSpike.model_validate(
        {
            "start": start,
            "end": start + timedelta(seconds=for_seconds),
            "extra_jobs": body.get("extra_jobs", 0),
            "rate_factor": body.get("rate_factor", 1.0),
        }
    )


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{what}: must be a number of seconds > 0, not {value!r}")
    return float(value)


def timed(body: dict[str, Any], now: datetime, what: str) -> datetime:
    """When an entry with optional `after_seconds` (from `now`) starts."""
    after = body.get("after_seconds", 0)
    if isinstance(after, bool) or not isinstance(after, int | float) or not 0 <= after < math.inf:
        raise ValueError(f"{what}.after_seconds: must be a number of seconds >= 0, not {after!r}")
    return now + timedelta(seconds=after)


def flap(base: tuple[str, str | None], body: dict[str, Any], now: datetime, what: str) -> list[StatusChange]:
    """The changes of a flap `{after_seconds?, period_seconds, for_seconds}`."""
    unknown = set(body) - {"period_seconds", "for_seconds", "after_seconds", "backend"}
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {', '.join(sorted(unknown))}")
    period = _positive(body.get("period_seconds"), f"{what}.period_seconds")
    length = _positive(body.get("for_seconds"), f"{what}.for_seconds")
    return flap_changes(base, timed(body, now, what), period, length)
