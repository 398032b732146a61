"""Our extensions to the qauvern rules, each on its own: (a) Slurm demand, (b) balance-period target,
(c) hysteresis. Each is off by default; `test_optimizer_properties.py` checks that "off" changes nothing."""

from __future__ import annotations

from datetime import date

import pytest

from qauvern_hpc.planner.model import (
    AccountSnapshot,
    BalancePeriod,
    CeilingSource,
    DemandSignal,
    DemandWeights,
    InstanceSettings,
    InstanceSnapshot,
    Invariant,
    PlanInputError,
    PlanOptions,
)
from qauvern_hpc.planner.optimizer import (
    explain_score,
    plan_allocations,
    score_breakdown,
    validate_allocations,
)

TODAY = date(2026, 3, 10)
DAY = 86400


def snap(
    crn: str,
    alloc: int,
    c28: int = 0,
    *,
    live: int | None = None,
    h24: int = 0,
    period_used: int | None = None,
) -> InstanceSnapshot:
    return InstanceSnapshot(
        crn, crn, alloc, live, c28, c28, c28, h24, h24, balance_period_consumed_seconds=period_used
    )


def account(budget: int, *instances: InstanceSnapshot, used: int = 0) -> AccountSnapshot:
    return AccountSnapshot(budget, budget - sum(i.allocation_seconds for i in instances), used, instances)


def cfg(*crns: str) -> tuple[InstanceSettings, ...]:
    return tuple(InstanceSettings(c, c) for c in crns)


# --------------------------------------------------------------------------------------------- (a) demand


def test_queued_jobs_make_an_unused_instance_active() -> None:
    acc = account(100_000, snap("used", 60, h24=10), snap("queued", 60))
    without = plan_allocations(acc, cfg("used", "queued"), today=TODAY)
    assert not without.by_crn["queued"].active
    assert without.by_crn["queued"].new_allocation_seconds == 60

    demand = {"queued": DemandSignal(queued_seconds=100)}
    plan = plan_allocations(acc, cfg("used", "queued"), today=TODAY, demand=demand)
    queued, used = plan.by_crn["queued"], plan.by_crn["used"]
    assert queued.active
    # usage score of "used": 10 s in 24h and 3d -> 320 + 53.33..; demand of "queued": 100 s * 32 * 4 (no
    # usage against an entitlement of 100,000 / 2: the fairness factor's maximum) + 1920 (presence) = 14720
    assert queued.activity_score == 14720.0
    pool = 100_000 - 120
    assert queued.new_allocation_seconds == 60 + int(14720.0 / (14720.0 + used.activity_score) * pool)
    assert "incl. demand 14720.0" in queued.reason


def test_nothing_queued_and_nothing_recent_gives_allocation_back() -> None:
    acc = account(100_000, snap("idle", 50_000), snap("busy", 1000, 500, h24=100))
    demand = {"idle": DemandSignal(), "busy": DemandSignal(pending_jobs=3)}
    plan = plan_allocations(acc, cfg("idle", "busy"), today=TODAY, demand=demand)
    assert plan.by_crn["idle"].new_allocation_seconds == 60
    assert plan.by_crn["idle"].reason == "Inactive — pinned to config minimum"


def test_breakdown_terms_and_weights() -> None:
    s = snap("a", 60, h24=5)
    demand = DemandSignal(
        queued_seconds=100, pending_jobs=2, oldest_pending_age_seconds=DAY, recent_seconds=20
    )
    parts = score_breakdown(s, demand, DemandWeights())
    assert parts["age_factor"] == 2.0  # 1 + 1.0/day * 1 day
    # no entitlement given to score_breakdown: fairness factor 1; the presence term is not aged
    assert parts["demand_volume"] == 32 * 100 * 2.0 and parts["demand_presence"] == 1920
    assert parts["demand_queue"] == 32 * 100 * 2.0 + 1920
    assert parts["unreported_recent_seconds"] == 15.0  # 20 in our ledger, IBM already reports 5
    assert parts["demand_recent"] == 32 * 15.0
    assert parts["demand_score"] == parts["demand_queue"] + parts["demand_recent"]
    assert parts["total"] == parts["usage_score"] + parts["demand_score"]
    text = explain_score(parts)
    assert (
        text.startswith("usage ")
        and "2 jobs" in text
        and "x2.00" in text
        and text.endswith(f"{parts['total']:.1f}")
    )

    custom = DemandWeights(
        queued_seconds_weight=1, pending_job_weight=0, age_boost_per_day=0, recent_seconds_weight=0
    )
    parts = score_breakdown(s, demand, custom)
    assert parts["demand_score"] == 100.0


def test_age_boost_is_capped() -> None:
    w = DemandWeights(age_boost_per_day=0.5, age_boost_max_days=4)
    old = score_breakdown(snap("a", 60), DemandSignal(pending_jobs=1, oldest_pending_age_seconds=30 * DAY), w)
    assert old["age_factor"] == 3.0


def test_older_queue_gets_a_bigger_share() -> None:
    acc = account(100_000, snap("fresh", 60), snap("stale", 60))
    demand = {
        "fresh": DemandSignal(queued_seconds=600, pending_jobs=1),
        "stale": DemandSignal(queued_seconds=600, pending_jobs=1, oldest_pending_age_seconds=3 * DAY),
    }
    plan = plan_allocations(acc, cfg("fresh", "stale"), today=TODAY, demand=demand)
    assert plan.by_crn["stale"].new_allocation_seconds > 3 * plan.by_crn["fresh"].new_allocation_seconds


def test_ledger_only_counts_what_ibm_does_not_report_yet() -> None:
    s = snap("a", 60, h24=500)
    assert score_breakdown(s, DemandSignal(recent_seconds=400))["demand_score"] == 0.0
    assert score_breakdown(snap("b", 60), DemandSignal(recent_seconds=400))["demand_score"] == 32 * 400


def test_demand_does_not_revive_a_reached_limit() -> None:
    acc = account(100_000, snap("full", 1000, 1000, live=1000), snap("other", 60, h24=1))
    demand = {"full": DemandSignal(queued_seconds=10_000, pending_jobs=50)}
    plan = plan_allocations(acc, cfg("full", "other"), today=TODAY, demand=demand)
    assert plan.by_crn["full"].limit_reached and not plan.by_crn["full"].active
    assert plan.by_crn["full"].new_allocation_seconds == 1000


def test_zero_demand_changes_nothing() -> None:
    acc = account(100_000, snap("a", 5000, 300, h24=7), snap("b", 6000, 1000), snap("c", 100))
    base = plan_allocations(acc, cfg("a", "b", "c"), today=TODAY)
    zero = plan_allocations(acc, cfg("a", "b", "c"), today=TODAY, demand={c: DemandSignal() for c in "abc"})
    assert [(p.new_allocation_seconds, p.reason, p.activity_score) for p in zero.instances] == [
        (p.new_allocation_seconds, p.reason, p.activity_score) for p in base.instances
    ]


def test_over_budget_demand_can_be_left_out() -> None:
    # Over budget (28-day usage >= budget): every allocation is capped at the instance's own usage and the
    # score only decides which instances are active. By default the queue still counts there (the biggest
    # backlog wins); with when_over_budget=False the IBM usage score alone decides.
    acc = account(
        100_000, snap("big", 50_000, 50_000, h24=100), snap("small", 50_000, 50_000, h24=100), used=100_000
    )
    assert acc.over_allocation_budget
    demand = {
        "big": DemandSignal(queued_seconds=50_000, pending_jobs=100),
        "small": DemandSignal(pending_jobs=1),
    }
    base = plan_allocations(acc, cfg("big", "small"), today=TODAY)
    default = plan_allocations(acc, cfg("big", "small"), today=TODAY, demand=demand)
    assert default.by_crn["big"].activity_score > base.by_crn["big"].activity_score
    assert "incl. demand" in default.by_crn["big"].reason
    options = PlanOptions(demand_weights=DemandWeights(when_over_budget=False))
    off = plan_allocations(acc, cfg("big", "small"), today=TODAY, demand=demand, options=options)
    assert [(p.new_allocation_seconds, p.activity_score) for p in off.instances] == [
        (p.new_allocation_seconds, p.activity_score) for p in base.instances
    ]
    assert "demand" not in off.by_crn["big"].reason
    # under budget the demand counts either way
    under = account(1_000_000, snap("big", 50_000, 50_000, h24=100), snap("small", 50_000, 50_000, h24=100))
    assert not under.over_allocation_budget
    counted = plan_allocations(under, cfg("big", "small"), today=TODAY, demand=demand, options=options)
    assert counted.by_crn["big"].activity_score > counted.by_crn["small"].activity_score


# --------------------------------------------------------------------------------------------- (b) target

PERIOD = BalancePeriod(date(2026, 1, 1), date(2027, 1, 1))


def target(
    crn: str, seconds: int, period: BalancePeriod = PERIOD, limit: int | None = None
) -> InstanceSettings:
    return InstanceSettings(crn, crn, limit, target_usage_seconds=seconds, balance_period=period)


def test_target_caps_at_window_usage_plus_what_the_period_still_allows() -> None:
    acc = account(100_000, snap("t", 500, 1000, h24=10, period_used=3000), snap("o", 500, h24=1))
    plan = plan_allocations(acc, (target("t", 5000), InstanceSettings("o", "o")), today=TODAY)
    t = plan.by_crn["t"]
    assert t.target_cap_seconds == 1000 + (5000 - 3000)
    assert t.new_allocation_seconds == 3000 and t.ceiling_source is CeilingSource.TARGET
    assert t.reason.endswith("— capped at balance-period target")
    assert plan.by_crn["o"].new_allocation_seconds == 100_000 - 3000
    assert plan.ok


def test_a_lower_limit_still_wins() -> None:
    acc = account(100_000, snap("t", 500, 1000, h24=10, period_used=0))
    plan = plan_allocations(acc, (target("t", 50_000, limit=2000),), today=TODAY)
    assert plan.by_crn["t"].new_allocation_seconds == 2000
    assert plan.by_crn["t"].ceiling_source is CeilingSource.LIMIT


def test_target_reached_holds_the_instance_at_its_floor() -> None:
    acc = account(100_000, snap("t", 9000, 800, h24=50, period_used=5000), snap("o", 500, h24=1))
    plan = plan_allocations(acc, (target("t", 5000), InstanceSettings("o", "o")), today=TODAY)
    t = plan.by_crn["t"]
    assert t.target_reached and not t.active and not t.limit_reached
    assert t.new_allocation_seconds == 800 and t.reason == "Target reached — pinned to 28d usage"
    assert t.new_limit_seconds is None  # the target is soft: limits are left alone


@pytest.mark.parametrize("today", [date(2025, 12, 31), date(2027, 1, 1)])
def test_target_applies_only_inside_its_period(today: date) -> None:
    acc = account(100_000, snap("t", 500, 1000, h24=10, period_used=99_999))
    plan = plan_allocations(acc, (target("t", 5000),), today=today)
    assert plan.by_crn["t"].target_cap_seconds is None
    assert plan.by_crn["t"].new_allocation_seconds == 100_000


def test_target_needs_the_period_usage() -> None:
    acc = account(100_000, snap("t", 500, 1000))
    with pytest.raises(PlanInputError, match="balance_period_consumed_seconds"):
        plan_allocations(acc, (target("t", 5000),), today=TODAY)


def test_target_is_idempotent_across_runs() -> None:
    """Anchored on usage, not on the current allocation: re-planning from the new state changes nothing
    (qauvern 0.4's `allocation + (target - consumed)` grew on every run)."""
    acc = account(100_000, snap("t", 500, 1000, h24=10, period_used=3000), snap("o", 500, h24=1))
    settings = (target("t", 5000), InstanceSettings("o", "o"))
    first = plan_allocations(acc, settings, today=TODAY)
    again_snaps = tuple(
        snap(
            p.crn,
            p.new_allocation_seconds,
            s.consumed_28d_seconds,
            h24=s.consumed_24h_seconds,
            period_used=3000,
        )
        for p, s in zip(first.instances, acc.instances, strict=True)
    )
    second = plan_allocations(account(100_000, *again_snaps), settings, today=TODAY)
    assert not second.allocation_changes


def test_target_invariant() -> None:
    acc = account(100_000, snap("t", 500, 1000, period_used=3000))
    found = validate_allocations(acc, (target("t", 5000),), {"t": 3500}, today=TODAY)
    assert [(v.invariant, v.bound) for v in found] == [(Invariant.TARGET, 3000)]


def test_target_changes_nothing_over_budget() -> None:
    acc = account(10_000, snap("t", 500, 1000, h24=10, period_used=3000), used=10_000)
    plan = plan_allocations(acc, (target("t", 5000),), today=TODAY)
    assert plan.by_crn["t"].new_allocation_seconds == 1000
    assert plan.by_crn["t"].ceiling_source is CeilingSource.USAGE


# --------------------------------------------------------------------------------------------- (c) hysteresis


def test_small_changes_are_held_large_ones_emitted() -> None:
    # "a" would lose 40 s (inactive, 100 -> 60); "b" gains it all plus the unallocated 5000.
    acc = AccountSnapshot(20_000, 5000, 0, (snap("a", 100), snap("b", 14_900, 10_000, h24=1)))
    plan = plan_allocations(acc, cfg("a", "b"), today=TODAY, options=PlanOptions(min_change_seconds=100))
    assert plan.by_crn["b"].new_allocation_seconds == 14_900 + 5000 + 40
    # Holding "a" at 100 would need 40 s that "b" was given: over the cap, so the decrease is emitted.
    assert not plan.by_crn["a"].hysteresis_held and plan.by_crn["a"].new_allocation_seconds == 60
    assert plan.ok

    # Start near the plan's own answer: "a" 30 s above it, "b" 30 s below. Both moves are held.
    start = AccountSnapshot(20_000, 30, 0, (snap("a", 100, h24=1), snap("b", 19_870, h24=10)))
    goal = plan_allocations(start, cfg("a", "b"), today=TODAY)
    ga, gb = (p.new_allocation_seconds for p in goal.instances)
    near = AccountSnapshot(
        20_000, 20_000 - ga - gb, 0, (snap("a", ga + 30, h24=1), snap("b", gb - 30, h24=10))
    )
    off = plan_allocations(near, cfg("a", "b"), today=TODAY)
    assert [w.allocation_delta_seconds for w in off.writes] == [-30, 30]
    held = plan_allocations(near, cfg("a", "b"), today=TODAY, options=PlanOptions(min_change_seconds=100))
    assert all(p.hysteresis_held for p in held.instances)
    assert not held.writes and held.ok
    a = held.by_crn["a"]
    assert (a.target_allocation_seconds, a.new_allocation_seconds) == (ga, ga + 30)
    assert "below min_change_seconds" in a.reason
    big = plan_allocations(near, cfg("a", "b"), today=TODAY, options=PlanOptions(min_change_seconds=30))
    assert len(big.writes) == 2  # a change of exactly min_change_seconds is emitted


def test_a_small_decrease_is_held_when_it_fits() -> None:
    acc = AccountSnapshot(20_000, 0, 0, (snap("a", 100), snap("b", 19_900, 10_000, live=19_900, h24=1)))
    settings = (InstanceSettings("a", "a"), InstanceSettings("b", "b", 19_900))
    plan = plan_allocations(acc, settings, today=TODAY, options=PlanOptions(min_change_seconds=100))
    a = plan.by_crn["a"]
    assert a.target_allocation_seconds == 60 and a.new_allocation_seconds == 100 and a.hysteresis_held
    assert plan.ok and not plan.writes


def test_hysteresis_never_holds_an_invalid_value() -> None:
    # Under budget: current 950 is below the 28-day usage 1000 -> the +50 increase must go through.
    acc = AccountSnapshot(10_000, 9050 - 60, 0, (snap("a", 950, 1000), snap("b", 60)))
    plan = plan_allocations(acc, cfg("a", "b"), today=TODAY, options=PlanOptions(min_change_seconds=100))
    assert plan.by_crn["a"].new_allocation_seconds >= 1000 and not plan.by_crn["a"].hysteresis_held
    # Over budget: holding 420 > usage 400 would break the usage invariant -> the -20 is emitted.
    over = AccountSnapshot(1000, 0, 5000, (snap("c", 420, 400, h24=5),))
    plan = plan_allocations(over, cfg("c"), today=TODAY, options=PlanOptions(min_change_seconds=100))
    assert plan.by_crn["c"].new_allocation_seconds == 400 and plan.ok
