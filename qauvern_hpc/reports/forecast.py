"""When does an instance reach its usage limit at its current pace? Pure.

IBM counts an instance's usage against its limit over a rolling 28-day window (Premium, Open): usage older
than 28 days leaves the window while new usage enters it. So the forecast is not "limit minus usage over
the pace": on each coming day the oldest day of the window drops out and one day at the current pace
comes in. After 28 days the window holds only days at the pace (28 x pace), so a limit not reached by
then is never reached at that pace.

The pace is the mean daily usage of the last `pace_days` days (7 by default). No pace (nothing used in
those days) and a limit not reached yet: never.

Flex and Pay-As-You-Go have no roll-off (docs/ibm-platform.md, "Plans and their periods"): a Flex instance's
usage counts over the whole contract and a Pay-As-You-Go instance's since its creation, so nothing leaves
the figure and it only grows. `forecast_no_rolloff` projects it as a straight line: the limit is reached
on the first day `used + day x pace` holds it; on Flex, not after the contract ends (never, then); on
Pay-As-You-Go the limit is a cost limit and reaching it stops the instance for good.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

WINDOW_DAYS = 28
PACE_DAYS = 7

Status = Literal["reached", "on_pace", "never", "no_limit", "no_usage"]


@dataclass(frozen=True)
class Forecast:
    """`status`: reached (the window already holds the limit), on_pace (reached in `days` days), never (not
    at this pace), no_limit (no limit known), no_usage (nothing used in the window, nothing to project)."""

    status: Status
    used_seconds: float  # the rolling window's usage now
    limit_seconds: float | None
    pace_seconds_per_day: float
    days: int | None = None  # on_pace: whole days from the last full day until the limit is reached
    period: str | None = (
        None  # the plan period `used_seconds` counts over, when it does not roll (Flex, PAYG)
    )

    def to_dict(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "status": self.status,
            "used_seconds": round(self.used_seconds, 3),
            "limit_seconds": self.limit_seconds,
            "pace_seconds_per_day": round(self.pace_seconds_per_day, 3),
            "days": self.days,
        }
        if self.period is not None:
            doc["period"] = self.period
        return doc


def pace(daily: Sequence[float], pace_days: int = PACE_DAYS) -> float:
    """Mean usage per day over the last `pace_days` entries of `daily` (missing days count as 0)."""
    if pace_days <= 0:
        raise ValueError("pace_days must be positive")
    return sum(daily[-pace_days:]) / pace_days if daily else 0.0


def forecast_limit(
    daily: Sequence[float],
    limit_seconds: float | None,
    *,
    pace_days: int = PACE_DAYS,
    window_days: int = WINDOW_DAYS,
) -> Forecast:
    """Project the rolling window forward at the current pace.

    `daily`: usage per day, oldest first, ending with the last full day (earlier than the window's days
    are ignored; fewer days than the window count as 0 before them). Returns on the first coming day whose
    window holds at least `limit_seconds`.
    """
    if window_days <= 0:
        raise ValueError("window_days must be positive")
    window = [0.0] * max(0, window_days - len(daily)) + [float(v) for v in daily[-window_days:]]
    used = sum(window)
    speed = pace(daily, pace_days)
    if limit_seconds is None:
        return Forecast("no_limit", used, None, speed)
    if used >= limit_seconds:
        return Forecast("reached", used, limit_seconds, speed)
    if used <= 0 and speed <= 0:
        return Forecast("no_usage", used, limit_seconds, speed)
    if speed <= 0:
        return Forecast("never", used, limit_seconds, speed)
    for day in range(1, window_days + 1):
        # after `day` days: the oldest `day` days have left, `day` days at the pace have come in
        if sum(window[day:]) + speed * day >= limit_seconds:
            return Forecast("on_pace", used, limit_seconds, speed, day)
    return Forecast("never", used, limit_seconds, speed)


def forecast_no_rolloff(
    used_seconds: float,
    daily: Sequence[float],
    limit_seconds: float | None,
    *,
    days_left: int | None,
    period: str,
    pace_days: int = PACE_DAYS,
) -> Forecast:
    """Project a usage that nothing leaves (Flex, Pay-As-You-Go; see the module docstring).

    `used_seconds`: the usage over the period up to the last full day; `daily`: usage per day ending with
    that day (for the pace); `days_left`: whole days from then until the period ends (Flex: the contract's
    end; None: no end). `period` labels the result."""
    speed = pace(daily, pace_days)
    used = float(used_seconds)
    if limit_seconds is None:
        return Forecast("no_limit", used, None, speed, period=period)
    if used >= limit_seconds:
        return Forecast("reached", used, limit_seconds, speed, period=period)
    if used <= 0 and speed <= 0:
        return Forecast("no_usage", used, limit_seconds, speed, period=period)
    if speed <= 0:
        return Forecast("never", used, limit_seconds, speed, period=period)
    day = max(1, math.ceil((limit_seconds - used) / speed))
    if days_left is not None and day > days_left:
        return Forecast("never", used, limit_seconds, speed, period=period)  # the contract ends first
    return Forecast("on_pace", used, limit_seconds, speed, day, period=period)


__all__ = ["PACE_DAYS", "WINDOW_DAYS", "Forecast", "forecast_limit", "forecast_no_rolloff", "pace"]
