"""What the read-only admin commands (`show`, `instances`, `analyze`) compute from IBM's figures. Pure.

* **fairness** = 28-day usage / allocation (IBM's fair share runs the lowest first); `None` when undefined
  (allocation 0 and usage > 0, shown as "inf"), 0.0 when both are 0.
* **standing** of an instance against its allocation (the usage IBM expects over 28 days):
  `over` when fairness > 1 (it used more than its allocation: lowest priority at IBM), `under` when
  fairness < 0.5 (plenty of headroom: highest priority; qauvern's green), else `on target`.
* **balance-period pace** (instances with `target_usage_seconds` and `rebalance.balance_period`): the
  target pro-rated to the elapsed part of the period; `ahead` above it by more than the tolerance, `behind`
  below it by more, else `on pace`; `reached` once the whole target is used.
* **trend** of per-day usage: the last `span` days against the `span` before them.
* **account summary**: qauvern's `show` lines (budget, unallocated, consumed, held by unconfigured
  instances, reserve and what is left to rebalance).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from qauvern_hpc.planner.optimizer import reserve_seconds

OVER = "over"
UNDER = "under"
ON_TARGET = "on target"
UNDER_FAIRNESS = 0.5
_SPARK = "▁▂▃▄▅▆▇█"
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def fairness(consumed: int, allocation: int) -> float | None:
    """consumed / allocation; None for a used instance with allocation 0 (infinite), 0.0 for neither."""
    if allocation > 0:
        return consumed / allocation
    return None if consumed > 0 else 0.0


def format_fairness(value: float | None) -> str:
    return "inf" if value is None or math.isinf(value) else f"{value:.2f}"


def standing(consumed: int, allocation: int) -> str:
    f = fairness(consumed, allocation)
    if f is None or f > 1.0:
        return OVER
    if f < UNDER_FAIRNESS:
        return UNDER
    return ON_TARGET


@dataclass(frozen=True)
class Pace:
    target_seconds: int
    used_seconds: int
    expected_seconds: int  # the target pro-rated to today
    elapsed_fraction: float
    status: str  # ahead | behind | on pace | reached | not started | ended


def pace(target: int, used: int, start: date, end: date, today: date, *, tolerance: float = 0.10) -> Pace:
    """How `used` compares with `target` spread evenly over [start, end) (end exclusive), as of `today`."""
    length = max(1, (end - start).days)
    elapsed = min(max((today - start).days, 0), length)
    fraction = elapsed / length
    expected = round(target * fraction)
    if today < start:
        status = "not started"
    elif used >= target > 0:
        status = "reached"
    elif today >= end:
        status = "ended"
    elif used > expected * (1 + tolerance):
        status = "ahead"
    elif used < expected * (1 - tolerance):
        status = "behind"
    else:
        status = "on pace"
    return Pace(target, used, expected, fraction, status)


@dataclass(frozen=True)
class Trend:
    recent_seconds: int  # the last `span` days
    previous_seconds: int  # the `span` days before them
    change: float | None  # (recent - previous) / previous; None when previous is 0
    label: str  # up | down | flat | new | idle

    @property
    def text(self) -> str:
        if self.change is None:
            return self.label
        return f"{self.label} {self.change * 100:+.0f}%"


def trend(daily: Mapping[date, int], today: date, *, span: int = 7, flat: float = 0.10) -> Trend:
    """Usage of the `span` days before `today` (today excluded) against the `span` days before those."""
    recent = sum(daily.get(today - timedelta(days=d), 0) for d in range(1, span + 1))
    previous = sum(daily.get(today - timedelta(days=d), 0) for d in range(span + 1, 2 * span + 1))
    if previous == 0:
        return Trend(recent, previous, None, "new" if recent > 0 else "idle")
    change = (recent - previous) / previous
    label = "flat" if abs(change) <= flat else ("up" if change > 0 else "down")
    return Trend(recent, previous, change, label)


def day_range(start: date, end: date) -> list[date]:
    """The days of [start, end)."""
    return [start + timedelta(days=n) for n in range((end - start).days)]


def sparkline(values: Sequence[int]) -> str:
    """One block character per value, scaled to the largest; a zero day is a space-like lowest bar."""
    top = max(values, default=0)
    if top <= 0:
        return _SPARK[0] * len(values)
    return "".join(_SPARK[min(len(_SPARK) - 1, int(v / top * (len(_SPARK) - 1) + 0.5))] for v in values)


@dataclass(frozen=True)
class AccountSummary:
    account_id: str
    plan: str
    budget_seconds: int
    unallocated_seconds: int
    consumed_seconds: int  # plan-wide over `usage_period`, every instance
    configured_consumed_seconds: int
    configured_allocation_seconds: int
    unmanaged_allocation_seconds: int  # held by instances the config does not list
    over_allocation_budget: bool
    reserve_percent: float
    reserve_seconds: int
    available_seconds: int  # what a rebalance could hand out now (pool above floors, minus the reserve)
    limit_seconds: int | None
    usage_period: str = "rolling 28 days"  # what `consumed_seconds` counts over (the plan's period)


def account_summary(
    *,
    account_id: str,
    plan: str,
    budget: int,
    unallocated: int,
    consumed: int,
    limit: int | None,
    configured: Sequence[tuple[int, int]],
    minimum: int,
    reserve_percent: float,
    usage_period: str = "rolling 28 days",
) -> AccountSummary:
    """`configured` = (allocation, 28-day usage) of each configured instance. Floors as in the planner:
    under budget `max(usage, m)`, over budget `usage if 0 < usage < m else m` (`m = max(1, minimum)`)."""
    over = consumed >= budget
    m = max(1, minimum)
    held = sum(a for a, _ in configured)
    floors = sum((c if 0 < c < m else m) if over else max(c, m) for _, c in configured)
    reserve = reserve_seconds(budget, reserve_percent)
    pool = max(0, unallocated + held - floors)
    return AccountSummary(
        account_id=account_id,
        plan=plan,
        budget_seconds=budget,
        unallocated_seconds=unallocated,
        consumed_seconds=consumed,
        configured_consumed_seconds=sum(c for _, c in configured),
        configured_allocation_seconds=held,
        unmanaged_allocation_seconds=max(0, budget - unallocated - held),
        over_allocation_budget=over,
        reserve_percent=reserve_percent,
        reserve_seconds=reserve,
        available_seconds=max(0, pool - reserve),
        limit_seconds=limit,
        usage_period=usage_period,
    )


def config_name(ibm_name: str, taken: set[str]) -> str:
    """A config-safe instance name (letters, digits, _ . -; at most 64) from IBM's name, unique in `taken`."""
    base = _NAME_BAD.sub("-", ibm_name.strip()).strip("-.") or "instance"
    base = base[:60]
    name, n = base, 2
    while name in taken:
        name = f"{base}-{n}"
        n += 1
    taken.add(name)
    return name


__all__ = [
    "ON_TARGET",
    "OVER",
    "UNDER",
    "AccountSummary",
    "Pace",
    "Trend",
    "account_summary",
    "config_name",
    "day_range",
    "fairness",
    "format_fairness",
    "pace",
    "sparkline",
    "standing",
    "trend",
]
