"""Effective instance limit from a base limit and net grants (qauvern 0.14 semantics). Pure.

Attribution
-----------
Only grants that **still credit** on `today` (see `rolling`) take part. Every grant starts with its whole
`net_grant_seconds` as a lifetime budget. Walking the per-day usage in date order (days after `today` are
ignored), each day's usage is paid first by the grants covering that day (`start <= day < end`), the grant
that ends soonest first (ties: earlier start, then config order), each paying what it still has; the
rest is paid by the base limit. Spending happens on every covered day, in or out of the 28-day window;
only in-window spending (`today - 28 <= day <= today`) is *credited* back to the limit.

Effective limit
---------------
    base + grant_funded + unspent + pre_boost_overage

* `grant_funded`: what the crediting grants paid inside the window (active or expired).
* `unspent`: what the grants active today still hold (an expired grant's rest is forfeit).
* `pre_boost_overage`: while some grant is active, the in-window usage the base paid *before* the earliest
  active grant started, above the base limit — old debt does not eat the boost. It vanishes when no grant is
  active any more.

So an instance is never worse off once a grant has expired than if it had never had it, and the credit
decays day by day as funded usage leaves the window.

Which limit the planner uses
----------------------------
`resolve_limit` returns None when the config sets no limit: the planner then uses the live limit as the cap
and never writes a limit. Otherwise the breakdown's total is the effective limit, written when it differs
from the live one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from qauvern_hpc.planner.model import LimitBreakdown, NetGrant, PlanInputError
from qauvern_hpc.planner.window import grant_is_active, grant_still_credits, window_start


@dataclass(frozen=True, slots=True)
class GrantAttribution:
    """Who paid for the usage. Tuples are indexed like the `grants` passed to `attribute_usage`."""

    credited_seconds: tuple[int, ...]  # paid by each grant inside the window
    remaining_seconds: tuple[int, ...]  # each grant's undrawn lifetime budget
    base_by_day: Mapping[date, int] = field(default_factory=dict)  # in-window usage paid by the base

    def base_before(self, day: date) -> int:
        """In-window usage paid by the base on days strictly before `day`."""
        return sum(seconds for d, seconds in self.base_by_day.items() if d < day)

    @property
    def base_total(self) -> int:
        return sum(self.base_by_day.values())


def attribute_usage(
    grants: Sequence[NetGrant], daily_usage: Mapping[date, int], *, today: date
) -> GrantAttribution:
    """Charge each day's usage to the covering grants, soonest-expiring first, then to the base."""
    remaining = [g.net_grant_seconds for g in grants]
    credited = [0] * len(grants)
    base_by_day: dict[date, int] = {}
    first_in_window = window_start(today)
    # Payment priority: soonest end, then earliest start, then position.
    priority = sorted(range(len(grants)), key=lambda i: (grants[i].end_date, grants[i].start_date, i))
    for day in sorted(d for d in daily_usage if d <= today):
        unpaid = daily_usage[day]
        counted = day >= first_in_window
        for i in priority:
            grant = grants[i]
            if not (grant.start_date <= day < grant.end_date):
                continue
            paid = min(unpaid, remaining[i])
            remaining[i] -= paid
            unpaid -= paid
            if counted:
                credited[i] += paid
        if counted:
            base_by_day[day] = unpaid
    return GrantAttribution(tuple(credited), tuple(remaining), base_by_day)


def resolve_limit(
    base_limit: int | None,
    grants: Sequence[NetGrant],
    daily_usage: Mapping[date, int],
    *,
    today: date,
    retired_grants_keep_paying: bool = False,
) -> LimitBreakdown | None:
    """The effective limit's breakdown, or None when no base limit is configured (use the live one).

    `retired_grants_keep_paying=False` is qauvern 0.14: a grant that no longer credits is left out of the
    attribution altogether, so the days it paid for are charged again to the grants that remain. When an
    old grant overlapped a long one, the long grant's unspent budget (and the effective limit) then drops on
    the day the old grant retires, with no new usage (see the quirk test in
    `tests/unit/test_differential_qauvern.py`). `True` keeps every started grant in the attribution, so
    each day is paid once, by the grant that paid for it all along; retired grants still add nothing (all
    the days they covered are outside the window and their rest is forfeit).
    """
    if base_limit is None:
        if grants:
            raise PlanInputError("net grants need a base limit_seconds")
        return None
    if not any(grant_still_credits(g, today) for g in grants):
        return LimitBreakdown(base_seconds=base_limit)
    if retired_grants_keep_paying:
        paying = [g for g in grants if g.start_date <= today]
    else:
        paying = [g for g in grants if grant_still_credits(g, today)]
    attribution = attribute_usage(paying, daily_usage, today=today)
    active = [i for i, g in enumerate(paying) if grant_is_active(g, today)]
    grant_funded = sum(attribution.credited_seconds)
    unspent = sum(attribution.remaining_seconds[i] for i in active)
    boost_start = min((paying[i].start_date for i in active), default=None)
    overage = 0
    if boost_start is not None:
        overage = max(0, attribution.base_before(boost_start) - base_limit)
    return LimitBreakdown(
        base_seconds=base_limit,
        grant_funded_seconds=grant_funded,
        unspent_grant_seconds=unspent,
        pre_boost_overage_seconds=overage,
        boost_start_date=boost_start,
    )


def effective_limit(breakdown: LimitBreakdown | None, live_limit: int | None) -> int | None:
    """The limit that caps the allocation: the resolved total, else the live IBM limit (None = no limit)."""
    return breakdown.total_seconds if breakdown is not None else live_limit


def limit_reached(consumed_28d_seconds: int, limit: int | None) -> bool:
    """The instance cannot run any more: its 28-day usage has reached its effective limit."""
    return limit is not None and consumed_28d_seconds >= limit
