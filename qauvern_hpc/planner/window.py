"""The 28-day rolling window and the date predicates built on it. Pure; `today` is always an argument.

IBM Quantum measures an instance's usage over a rolling 28-day window. For net-grant attribution (the only
place dates matter to the planner) qauvern 0.14 treats the window generously, as the **closed** range of
calendar dates `[today - 28, today]` (29 dates): usage of a day keeps counting until the day it is 29 days
old. Everything here uses UTC calendar dates.

* A grant is **active** on `start <= today < end`.
* A grant **still credits** while it has started and its end is less than 28 days ago
  (`start <= today` and `end > today - 28`); it becomes removable from the config on `end + 28`.
* Per-day usage must reach back `daily_usage_lookback_days(...)` days (60, or more for older grants that
  still credit: a grant's budget is a lifetime budget, spent from its first day).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta

from qauvern_hpc.planner.model import NetGrant

ROLLING_WINDOW_DAYS = 28
DAILY_USAGE_LOOKBACK_DAYS = 60


def window_start(today: date) -> date:
    """First date of the window that ends on `today` (inclusive on both ends)."""
    return today - timedelta(days=ROLLING_WINDOW_DAYS)


def in_window(day: date, today: date) -> bool:
    return window_start(today) <= day <= today


def grant_is_active(grant: NetGrant, today: date) -> bool:
    return grant.start_date <= today < grant.end_date


def grant_still_credits(grant: NetGrant, today: date) -> bool:
    """Started, and ended (if at all) recently enough that usage it funded may still be in the window."""
    return grant.start_date <= today and grant.end_date > window_start(today)


def grant_removable_on(grant: NetGrant) -> date:
    """The first date on which the grant no longer credits anything."""
    return grant.end_date + timedelta(days=ROLLING_WINDOW_DAYS)


def daily_usage_lookback_days(grants: Iterable[NetGrant], today: date) -> int:
    """How many days of per-day usage the attribution needs: 60, or back to the oldest crediting grant."""
    days = DAILY_USAGE_LOOKBACK_DAYS
    for grant in grants:
        if grant_still_credits(grant, today):
            days = max(days, (today - grant.start_date).days)
    return days


def usage_between(daily_usage: Mapping[date, int], start: date, end: date) -> int:
    """Sum of per-day usage over `[start, end)`."""
    return sum(seconds for day, seconds in daily_usage.items() if start <= day < end)


def usage_in_last_days(daily_usage: Mapping[date, int], today: date, days: int) -> int:
    """Sum of per-day usage over the `days` dates ending with `today` (inclusive)."""
    return usage_between(daily_usage, today - timedelta(days=days - 1), today + timedelta(days=1))
