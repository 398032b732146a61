"""The fair demand signal (planner.demand): need against entitlement, a flat presence term, volume capped,
presence only over budget; and how the planner feeds it entitlements and limits."""

from __future__ import annotations

from datetime import date

import pytest

from qauvern_hpc.planner.demand import demand_terms, entitlements
from qauvern_hpc.planner.model import (
    AccountSnapshot,
    BalancePeriod,
    DemandSignal,
    DemandWeights,
    InstanceSettings,
    InstanceSnapshot,
    PlanInputError,
)
from qauvern_hpc.planner.optimizer import explain_score, plan_allocations
from qauvern_hpc.rebalance.demand import aggregate_pending, demand_signals
from qauvern_hpc.slurm.squeue import PendingJob, parse_licenses

TODAY = date(2026, 3, 10)
DAY = 86400
W = DemandWeights()


def snap(crn: str, alloc: int = 60, c28: int = 0, h24: int = 0) -> InstanceSnapshot:
    return InstanceSnapshot(crn, crn, alloc, None, c28, c28, c28, h24, h24)


def account(budget: int, *instances: InstanceSnapshot, used: int = 0) -> AccountSnapshot:
    return AccountSnapshot(budget, budget - sum(i.allocation_seconds for i in instances), used, instances)


def test_no_need_no_points() -> None:
    assert demand_terms(snap("a"), DemandSignal(), W, entitlement_seconds=1000)["demand_score"] == 0.0
    assert demand_terms(snap("a"), DemandSignal(), W, over_budget=True)["demand_score"] == 0.0


def test_a_course_with_one_job_and_no_usage_is_never_starved() -> None:
    t = demand_terms(
        snap("course"), DemandSignal(queued_seconds=60, pending_jobs=1), W, entitlement_seconds=1e4
    )
    assert t["fairness_factor"] == 4.0  # no usage yet: the clamp's maximum
    assert t["demand_volume"] == 32 * 60 * 4.0
    assert t["demand_presence"] == 1920.0
    # even a job with no time request counts (presence)
    assert demand_terms(snap("c"), DemandSignal(pending_jobs=1), W)["demand_score"] == 1920.0


def test_need_counts_work_in_flight_at_ibm() -> None:
    # a project whose partition never queues in Slurm: nothing pending, work waiting at IBM
    sig = DemandSignal(inflight_seconds=300, oldest_wait_seconds=DAY)
    t = demand_terms(snap("p"), sig, W, entitlement_seconds=1e6)
    assert t["need_seconds"] == 300 and t["age_factor"] == 2.0  # the IBM wait ages it too
    assert t["demand_score"] == 32 * 300 * 4.0 * 2.0 + 1920


def test_past_its_entitlement_an_instance_weighs_less_per_second() -> None:
    sig = DemandSignal(queued_seconds=1000, pending_jobs=5)
    at = demand_terms(snap("a", c28=10_000), sig, W, entitlement_seconds=10_000)  # rho 1
    twice = demand_terms(snap("b", c28=20_000), sig, W, entitlement_seconds=10_000)  # rho 2
    assert at["fairness_factor"] == 1.0 and twice["fairness_factor"] == 0.5
    assert twice["demand_volume"] == at["demand_volume"] / 2
    # unreported ledger usage counts in the position
    late = demand_terms(
        snap("c", c28=10_000),
        DemandSignal(queued_seconds=1000, recent_seconds=10_000),
        W,
        entitlement_seconds=10_000,
    )
    assert late["usage_ratio"] == 2.0


def test_volume_is_capped_by_headroom_and_entitlement() -> None:
    big = DemandSignal(queued_seconds=1_000_000, pending_jobs=500)
    t = demand_terms(snap("a", c28=500), big, W, limit_seconds=2000, entitlement_seconds=50_000)
    assert t["counted_need_seconds"] == 1500  # limit - usage
    t = demand_terms(snap("a"), big, W, entitlement_seconds=50_000)
    assert t["counted_need_seconds"] == 50_000


def test_over_budget_is_presence_only() -> None:
    big = DemandSignal(queued_seconds=50_000, pending_jobs=100)
    small = DemandSignal(pending_jobs=1)
    tb = demand_terms(snap("big", c28=10_000), big, W, over_budget=True, entitlement_seconds=10_000)
    ts = demand_terms(snap("small", c28=10_000), small, W, over_budget=True, entitlement_seconds=10_000)
    assert tb["demand_score"] == ts["demand_score"] == 1920.0  # same position: volume makes no difference
    # unreported usage moves the position but earns no points of its own over budget
    late = demand_terms(
        snap("l", c28=10_000),
        DemandSignal(pending_jobs=1, recent_seconds=10_000),
        W,
        over_budget=True,
        entitlement_seconds=10_000,
    )
    assert late["demand_recent"] == 0.0 and late["demand_score"] == 1920.0 / 2
    under = demand_terms(snap("u", c28=2_500), small, W, over_budget=True, entitlement_seconds=10_000)
    assert under["demand_score"] == 1920.0 * 4  # behind its entitlement: louder


def test_entitlements_given_then_target_then_limits_then_even() -> None:
    period = BalancePeriod(date(2026, 1, 1), date(2026, 4, 1))  # 90 days
    s = [InstanceSettings("a"), InstanceSettings("b", target_usage_seconds=9000, balance_period=period)]
    assert entitlements(1000, s, [None, None], [0.0, 0.0]) == [500.0, 9000 * 28 / 90]
    assert entitlements(1000, s, [None, None], [70.0, 0.0])[0] == 70.0
    s2 = [InstanceSettings("a"), InstanceSettings("b")]
    assert entitlements(1000, s2, [100, 300], [0.0, 0.0]) == [250.0, 750.0]
    assert entitlements(1000, s2, [100, None], [0.0, 0.0]) == [500.0, 500.0]
    assert entitlements(1000, [], [], []) == []


def test_weights_are_checked() -> None:
    with pytest.raises(PlanInputError):
        DemandWeights(fairness_min=5.0, fairness_max=4.0)
    with pytest.raises(PlanInputError):
        DemandWeights(fairness_min=0.0)


def test_planner_gives_the_small_project_a_share_against_a_big_backlog() -> None:
    # under budget, both used half their entitlement (50,000 of 100,000 each): the big backlog's volume is
    # capped at its entitlement, the small project still gets need + presence, and both are active
    acc = account(200_000, snap("big", 50_000, 50_000), snap("small", 50_000, 0))
    demand = {
        "big": DemandSignal(queued_seconds=10_000_000, pending_jobs=5000),
        "small": DemandSignal(queued_seconds=600, pending_jobs=1),
    }
    plan = plan_allocations(
        acc, (InstanceSettings("big"), InstanceSettings("small")), today=TODAY, demand=demand
    )
    big, small = plan.by_crn["big"], plan.by_crn["small"]
    assert big.active and small.active
    assert big.score_breakdown["counted_need_seconds"] == 100_000  # its entitlement, not its backlog
    assert big.score_breakdown["fairness_factor"] == 2.0  # rho 0.5
    assert small.score_breakdown["demand_score"] == 32 * 600 * 4 + 1920
    assert "presence 1920.0" in explain_score(small.score_breakdown)


def test_planner_uses_the_effective_limit_for_headroom() -> None:
    acc = account(100_000, snap("a", 2000, 1500))
    plan = plan_allocations(
        acc,
        (InstanceSettings("a", limit_seconds=2000),),
        today=TODAY,
        demand={"a": DemandSignal(queued_seconds=10_000, pending_jobs=3)},
    )
    assert plan.by_crn["a"].score_breakdown["counted_need_seconds"] == 500
    assert plan.by_crn["a"].score_breakdown["entitlement_seconds"] == 100_000  # budget x its limit share


def test_running_jobs_count_as_need_in_flight() -> None:
    # rebalance.demand: the statistics of running QPU jobs (squeue -t RUNNING) become inflight_seconds
    running = [
        PendingJob(str(i), "u", "a", "p", "", parse_licenses("qpu_lab:1"), 600, 1000, 10, "None")
        for i in (1, 2)
    ]
    stats = aggregate_pending(running, "qpu_", ["lab", "idle"], now=2000.0, max_job_seconds=500)
    sig = demand_signals({}, {}, {"lab": "crn-lab", "idle": "crn-idle"}, inflight=stats.by_instance)
    assert sig["crn-lab"] == DemandSignal(inflight_seconds=1000.0)
    assert sig["crn-lab"].present and not sig["crn-idle"].present
