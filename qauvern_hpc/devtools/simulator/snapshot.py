"""What IBM reports of one instance at a simulated instant, as the planner's `InstanceSnapshot`. Pure.

Usage is kept in hourly buckets (an hour leaves a window as a whole); the per-day usage is given only
as far back as the instance's net grants need (as `qauvern-hpc rebalance` reads it from IBM).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from qauvern_hpc.planner.model import InstanceSettings, InstanceSnapshot
from qauvern_hpc.planner.window import daily_usage_lookback_days

HOUR = 3600
DAY = 86400


def window_sum(hourly: Sequence[int], hours: int, k: int) -> int:
    """Usage over the `hours` buckets up to and including bucket `k`."""
    return sum(hourly[max(0, k - hours) : k + 1])


def instance_snapshot(
    st: InstanceSettings,
    allocation: int,
    limit: int | None,
    consumed_28d: int,
    hourly: Sequence[int],
    daily: Sequence[int],
    t: int,
    start: datetime,
) -> InstanceSnapshot:
    """The instance at `t` seconds after `start`: allocation, limit, 28-day usage, the 14d/7d/3d/24h
    windows and the per-day usage its net grants look back on."""
    k = t // HOUR
    today_index = t // DAY
    today = (start + timedelta(seconds=t)).date()
    per_day = {}
    if st.net_grants:
        back = daily_usage_lookback_days(st.net_grants, today)
        for d in range(max(0, today_index - back), today_index):
            if daily[d]:
                per_day[start.date() + timedelta(days=d)] = daily[d]
    return InstanceSnapshot(
        crn=st.crn,
        name=st.name,
        allocation_seconds=allocation,
        limit_seconds=limit,
        consumed_28d_seconds=consumed_28d,
        consumed_14d_seconds=window_sum(hourly, 14 * 24, k),
        consumed_7d_seconds=window_sum(hourly, 7 * 24, k),
        consumed_3d_seconds=window_sum(hourly, 3 * 24, k),
        consumed_24h_seconds=window_sum(hourly, 24, k),
        daily_usage=per_day,
    )


__all__ = ["instance_snapshot", "window_sum"]
