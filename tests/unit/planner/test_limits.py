"""Effective limits and net-grant attribution (`qauvern_hpc.planner.limits`) and the window helpers
(`rolling`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qauvern_hpc.planner.limits import attribute_usage, effective_limit, limit_reached, resolve_limit
from qauvern_hpc.planner.model import LimitBreakdown, NetGrant, PlanInputError
from qauvern_hpc.planner.window import (
    DAILY_USAGE_LOOKBACK_DAYS,
    ROLLING_WINDOW_DAYS,
    daily_usage_lookback_days,
    grant_is_active,
    grant_removable_on,
    grant_still_credits,
    in_window,
    usage_between,
    usage_in_last_days,
    window_start,
)

D = date


# --------------------------------------------------------------------------------------------- rolling


def test_window_is_closed_29_dates() -> None:
    today = D(2026, 4, 2)
    assert window_start(today) == D(2026, 3, 5)
    assert in_window(D(2026, 3, 5), today)
    assert in_window(today, today)
    assert not in_window(D(2026, 3, 4), today)
    assert not in_window(D(2026, 4, 3), today)
    assert sum(in_window(today - timedelta(days=k), today) for k in range(40)) == ROLLING_WINDOW_DAYS + 1


def test_grant_predicates() -> None:
    g = NetGrant(D(2026, 3, 1), D(2026, 3, 11), 100)
    assert not grant_is_active(g, D(2026, 2, 28))
    assert grant_is_active(g, D(2026, 3, 1))
    assert grant_is_active(g, D(2026, 3, 10))
    assert not grant_is_active(g, D(2026, 3, 11))  # end exclusive
    assert not grant_still_credits(g, D(2026, 2, 28))  # not started
    assert grant_still_credits(g, D(2026, 3, 11))
    assert grant_still_credits(g, D(2026, 4, 7))
    assert grant_removable_on(g) == D(2026, 4, 8)
    assert not grant_still_credits(g, D(2026, 4, 8))


def test_lookback_follows_the_oldest_crediting_grant() -> None:
    today = D(2026, 5, 1)
    assert daily_usage_lookback_days([], today) == DAILY_USAGE_LOOKBACK_DAYS
    long = NetGrant(D(2026, 1, 1), D(2026, 6, 1), 10)
    assert daily_usage_lookback_days([long], today) == (today - D(2026, 1, 1)).days
    retired = NetGrant(D(2025, 1, 1), D(2025, 2, 1), 10)
    assert daily_usage_lookback_days([retired], today) == DAILY_USAGE_LOOKBACK_DAYS


def test_usage_sums() -> None:
    daily = {D(2026, 3, 1): 5, D(2026, 3, 2): 7, D(2026, 3, 5): 11}
    assert usage_between(daily, D(2026, 3, 1), D(2026, 3, 5)) == 12
    assert usage_in_last_days(daily, D(2026, 3, 5), 4) == 18


def test_grant_defaults_and_input_checks() -> None:
    g = NetGrant.starting(D(2026, 5, 1), 360000)
    assert g.end_date == D(2026, 5, 29)
    aware = NetGrant.starting(datetime(2026, 5, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5))), 10)
    assert aware.start_date == D(2026, 5, 2)  # converted to UTC
    with pytest.raises(PlanInputError, match="time zone"):
        NetGrant.starting(datetime(2026, 5, 1), 10)
    with pytest.raises(PlanInputError, match="> 0"):
        NetGrant(D(2026, 5, 1), D(2026, 5, 2), 0)
    with pytest.raises(PlanInputError, match="after start_date"):
        NetGrant(D(2026, 5, 1), D(2026, 5, 1), 10)
    assert NetGrant(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 3, tzinfo=UTC), 1).end_date == D(
        2026, 5, 3
    )


# --------------------------------------------------------------------------------------------- attribution


def test_soonest_expiring_grant_pays_first() -> None:
    late = NetGrant(D(2026, 3, 1), D(2026, 4, 1), 100)
    soon = NetGrant(D(2026, 3, 2), D(2026, 3, 20), 30)
    att = attribute_usage([late, soon], {D(2026, 3, 5): 50}, today=D(2026, 3, 10))
    assert att.credited_seconds == (20, 30)
    assert att.remaining_seconds == (80, 0)
    assert att.base_by_day == {D(2026, 3, 5): 0}


def test_ties_break_on_start_then_position() -> None:
    a = NetGrant(D(2026, 3, 2), D(2026, 3, 20), 10)
    b = NetGrant(D(2026, 3, 1), D(2026, 3, 20), 10)
    c = NetGrant(D(2026, 3, 1), D(2026, 3, 20), 10)
    att = attribute_usage([a, b, c], {D(2026, 3, 5): 15}, today=D(2026, 3, 10))
    assert att.credited_seconds == (0, 10, 5)


def test_lifetime_budget_spent_out_of_window_is_not_credited() -> None:
    g = NetGrant(D(2026, 1, 1), D(2026, 5, 1), 1000)
    daily = {D(2026, 1, 10): 300, D(2026, 3, 20): 200, D(2026, 4, 20): 5}
    att = attribute_usage([g], daily, today=D(2026, 4, 1))
    assert att.remaining_seconds == (500,)  # Jan 10 spent budget, Apr 20 is in the future
    assert att.credited_seconds == (200,)  # only Mar 20 is in the window
    assert att.base_by_day == {D(2026, 3, 20): 0}


def test_base_pays_what_grants_do_not_cover() -> None:
    g = NetGrant(D(2026, 3, 5), D(2026, 3, 10), 50)
    daily = {D(2026, 3, 4): 7, D(2026, 3, 6): 80, D(2026, 3, 12): 3}
    att = attribute_usage([g], daily, today=D(2026, 3, 20))
    assert att.base_by_day == {D(2026, 3, 4): 7, D(2026, 3, 6): 30, D(2026, 3, 12): 3}
    assert att.base_before(D(2026, 3, 6)) == 7
    assert att.base_total == 40


# --------------------------------------------------------------------------------------------- resolve_limit


def test_no_base_limit_means_live_limit() -> None:
    assert resolve_limit(None, (), {}, today=D(2026, 3, 1)) is None
    assert effective_limit(None, 700) == 700
    assert effective_limit(None, None) is None
    with pytest.raises(PlanInputError, match="base"):
        resolve_limit(None, (NetGrant(D(2026, 3, 1), D(2026, 3, 2), 1),), {}, today=D(2026, 3, 1))


def test_no_crediting_grant_is_just_the_base() -> None:
    future = NetGrant(D(2026, 6, 1), D(2026, 7, 1), 100)
    retired = NetGrant(D(2025, 1, 1), D(2025, 2, 1), 100)
    b = resolve_limit(10, (future, retired), {D(2026, 3, 1): 99}, today=D(2026, 3, 10))
    assert b == LimitBreakdown(base_seconds=10)
    assert b is not None and b.total_seconds == 10 and not b.shaped_by_grant


@pytest.mark.parametrize(
    ("used", "limit_at_expiry"),
    [(40, 50), (100, 110), (105, 110), (110, 110), (120, 110)],
)
def test_readme_grant_spent_on_its_last_day(used: int, limit_at_expiry: int) -> None:
    g = NetGrant(D(2026, 3, 1), D(2026, 3, 11), 100)
    b = resolve_limit(10, (g,), {D(2026, 3, 10): used}, today=D(2026, 3, 11))
    assert b is not None and b.total_seconds == limit_at_expiry


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (D(2026, 3, 10), 110),
        (D(2026, 3, 11), 110),
        (D(2026, 4, 2), 110),
        (D(2026, 4, 3), 40),
        (D(2026, 4, 6), 10),
    ],
)
def test_vector_09_decay(today: date, expected: int) -> None:
    g = NetGrant(D(2026, 3, 1), D(2026, 3, 11), 100)
    b = resolve_limit(10, (g,), {D(2026, 3, 5): 70, D(2026, 3, 8): 50}, today=today)
    assert b is not None and b.total_seconds == expected


@pytest.mark.parametrize(
    ("today", "expected"), [(D(2026, 3, 5), 110), (D(2026, 4, 2), 110), (D(2026, 4, 3), 10)]
)
def test_readme_105_used_on_one_day(today: date, expected: int) -> None:
    g = NetGrant(D(2026, 3, 1), D(2026, 3, 11), 100)
    b = resolve_limit(10, (g,), {D(2026, 3, 5): 105}, today=today)
    assert b is not None and b.total_seconds == expected


def test_vector_10_lifetime_budget_terms() -> None:
    g = NetGrant(D(2026, 3, 1), D(2026, 5, 1), 1000)
    daily = {D(2026, 3, 5): 600}
    b = resolve_limit(100, (g,), daily, today=D(2026, 4, 3))
    assert b == LimitBreakdown(100, 0, 400, 0, D(2026, 3, 1))
    b = resolve_limit(100, (g,), daily, today=D(2026, 3, 5))
    assert b == LimitBreakdown(100, 600, 400, 0, D(2026, 3, 1))
    b = resolve_limit(100, (g,), daily, today=D(2026, 5, 1))
    assert b is not None and b.total_seconds == 100


def test_pre_boost_overage_forgives_old_debt_while_active_only() -> None:
    """300 s used before the grant (base 100): 200 s of debt is forgiven while the grant is active."""
    g = NetGrant(D(2026, 3, 10), D(2026, 3, 20), 500)
    daily = {D(2026, 3, 2): 300, D(2026, 3, 12): 50}
    b = resolve_limit(100, (g,), daily, today=D(2026, 3, 15))
    assert b == LimitBreakdown(100, 50, 450, 200, D(2026, 3, 10))
    after = resolve_limit(100, (g,), daily, today=D(2026, 3, 20))
    assert after == LimitBreakdown(100, 50, 0, 0, None)  # snapped back at expiry


def test_limit_reached_predicate() -> None:
    assert limit_reached(500, 500)
    assert not limit_reached(499, 500)
    assert not limit_reached(10**9, None)
    assert limit_reached(0, 0)


# --------------------------------------------------------------------------------------------- properties

START = D(2026, 1, 1)


@st.composite
def grant_worlds(draw: st.DrawFn) -> tuple[int, tuple[NetGrant, ...], dict[date, int], date]:
    base = draw(st.integers(0, 500))
    grants = []
    for _ in range(draw(st.integers(0, 4))):
        s = START + timedelta(days=draw(st.integers(0, 120)))
        grants.append(NetGrant(s, s + timedelta(days=draw(st.integers(1, 80))), draw(st.integers(1, 1000))))
    days = draw(st.lists(st.integers(0, 150), max_size=30, unique=True))
    daily = {START + timedelta(days=d): draw(st.integers(0, 400)) for d in days}
    today = START + timedelta(days=draw(st.integers(0, 160)))
    return base, tuple(grants), daily, today


@settings(max_examples=200, deadline=None)
@given(grant_worlds())
def test_grants_never_leave_an_instance_worse_off(
    world: tuple[int, tuple[NetGrant, ...], dict[date, int], date],
) -> None:
    base, grants, daily, today = world
    b = resolve_limit(base, grants, daily, today=today)
    assert b is not None
    assert b.total_seconds >= base
    crediting = [g for g in grants if grant_still_credits(g, today)]
    # Grants credit at most what they hold: their funded usage plus their unspent rest.
    assert b.grant_funded_seconds + b.unspent_grant_seconds <= sum(g.net_grant_seconds for g in crediting)
    att = attribute_usage(crediting, daily, today=today)
    for g, credited, rest in zip(crediting, att.credited_seconds, att.remaining_seconds, strict=True):
        assert 0 <= rest <= g.net_grant_seconds
        assert credited <= g.net_grant_seconds - rest


@settings(max_examples=200, deadline=None)
@given(grant_worlds())
def test_retired_grants_keep_paying_never_lowers_the_limit(
    world: tuple[int, tuple[NetGrant, ...], dict[date, int], date],
) -> None:
    base, grants, daily, today = world
    compat = resolve_limit(base, grants, daily, today=today)
    fixed = resolve_limit(base, grants, daily, today=today, retired_grants_keep_paying=True)
    assert compat is not None and fixed is not None
    assert fixed.total_seconds >= compat.total_seconds
    if not any(g.end_date <= window_start(today) and g.start_date <= today for g in grants):
        assert fixed == compat  # no retired grant: the two modes agree


@settings(max_examples=100, deadline=None)
@given(grant_worlds())
def test_credit_decays_without_new_usage(
    world: tuple[int, tuple[NetGrant, ...], dict[date, int], date],
) -> None:
    """With no grant active, tomorrow's limit is never above today's (the credit only rolls off)."""
    base, grants, daily, today = world
    tomorrow = today + timedelta(days=1)
    if any(
        g.start_date <= tomorrow for g in grants if grant_is_active(g, today) or grant_is_active(g, tomorrow)
    ):
        return
    past = {d: s for d, s in daily.items() if d <= today}
    a = resolve_limit(base, grants, past, today=today)
    b = resolve_limit(base, grants, past, today=tomorrow)
    assert a is not None and b is not None
    assert b.total_seconds <= a.total_seconds
