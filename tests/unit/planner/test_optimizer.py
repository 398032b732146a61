"""The allocation planner's core rules (qauvern 0.14 semantics), checked on hand-computed cases.

The differential tests check the same rules against qauvern itself; these pin the numbers down so a failure
says which rule broke.
"""

from __future__ import annotations

from datetime import date

import pytest

from qauvern_hpc.planner.model import (
    AccountSnapshot,
    CeilingSource,
    DemandSignal,
    DuplicateInstanceError,
    FloorSource,
    InstanceSettings,
    InstanceSnapshot,
    Invariant,
    NetGrant,
    PlanInputError,
    PlanOptions,
    UnknownInstanceError,
    WarningKind,
    WriteKind,
)
from qauvern_hpc.planner.optimizer import (
    plan_allocations,
    reserve_seconds,
    score_breakdown,
    usage_activity_score,
    validate_allocations,
    water_fill,
)

TODAY = date(2026, 3, 10)


def snap(
    crn: str,
    alloc: int,
    c28: int = 0,
    *,
    live: int | None = None,
    h24: int = 0,
    d3: int = 0,
    d7: int = 0,
    d14: int = 0,
) -> InstanceSnapshot:
    return InstanceSnapshot(crn, crn, alloc, live, c28, d14, d7, d3, h24)


def account(
    budget: int, *instances: InstanceSnapshot, unallocated: int | None = None, used: int = 0
) -> AccountSnapshot:
    if unallocated is None:
        unallocated = budget - sum(i.allocation_seconds for i in instances)
    return AccountSnapshot(budget, unallocated, used, instances)


def cfg(*crns: str, limit: int | None = None) -> tuple[InstanceSettings, ...]:
    return tuple(InstanceSettings(c, c, limit) for c in crns)


# --------------------------------------------------------------------------------------------- activity score


def test_activity_score_terms() -> None:
    assert usage_activity_score(snap("a", 60)) == 0.0
    assert usage_activity_score(snap("a", 60, 28)) == 2.0
    assert usage_activity_score(snap("a", 60, h24=3)) == 96.0
    one_second_today = snap("a", 60, 1, h24=1, d3=1, d7=1, d14=1)
    assert usage_activity_score(one_second_today) == pytest.approx(32 + 16 / 3 + 8 / 7 + 4 / 14 + 2 / 28)
    parts = score_breakdown(one_second_today)
    assert parts["usage_24h"] == 32.0 and parts["usage_28d"] == pytest.approx(2 / 28)
    assert parts["total"] == parts["usage_score"] == usage_activity_score(one_second_today)


# --------------------------------------------------------------------------------------------- water-fill


def test_water_fill_proportional_and_truncated() -> None:
    alloc = [0, 0, 0]
    handed = water_fill([0, 1, 2], [1.0, 1.0, 1.0], alloc, [None, None, None], 100)
    assert alloc == [33, 33, 33] and handed == 99  # int() truncation; the 1 s left rounds to 0 -> stop


def test_water_fill_redistributes_what_capped_instances_cannot_take() -> None:
    alloc = [60, 60]
    handed = water_fill([0, 1], [1.0, 1.0], alloc, [500, None], 2000)
    assert alloc == [500, 1620] and handed == 2000


def test_water_fill_leaves_leftover_when_all_capped() -> None:
    alloc = [60, 60]
    assert water_fill([0, 1], [5.0, 1.0], alloc, [100, 200], 10_000) == 180
    assert alloc == [100, 200]


def test_water_fill_skips_full_and_zero_score() -> None:
    alloc = [500, 60]
    assert water_fill([0, 1], [1.0, 0.0], alloc, [500, None], 1000) == 0
    assert alloc == [500, 60]


# --------------------------------------------------------------------------------------------- plans


def test_proportional_split_of_the_pool() -> None:
    acc = account(10_000, snap("a", 60, h24=1), snap("b", 60, h24=3))
    plan = plan_allocations(acc, cfg("a", "b"), today=TODAY)
    assert [p.new_allocation_seconds for p in plan.instances] == [60 + 2470, 60 + 7410]
    assert plan.pool_seconds == plan.distributable_seconds == 9880
    assert plan.awarded_seconds == 9880
    assert plan.ok and not plan.warnings


def test_inactive_instance_gives_allocation_back() -> None:
    """Any 28-day usage makes an instance active; only an instance with no usage at all is inactive."""
    acc = account(10_000, snap("idle", 5000), snap("busy", 1000, 900, h24=50))
    plan = plan_allocations(acc, cfg("idle", "busy"), today=TODAY)
    idle, busy = plan.instances
    assert idle.new_allocation_seconds == 60 and idle.reason == "Inactive — pinned to config minimum"
    assert idle.floor_source is FloorSource.MINIMUM and not idle.active and idle.activity_score == 0.0
    assert busy.new_allocation_seconds == 10_000 - 60
    assert busy.reason.startswith("Active (score ")


def test_all_inactive_frees_allocation_to_unallocated() -> None:
    acc = account(10_000, snap("a", 4000), snap("b", 4000))
    plan = plan_allocations(acc, cfg("a", "b"), today=TODAY)
    assert [p.new_allocation_seconds for p in plan.instances] == [60, 60]
    assert plan.total_new_allocation_seconds == 120
    assert plan.awarded_seconds == 0


def test_minimum_zero_floors_at_one_second() -> None:
    acc = account(10_000, snap("a", 4000))
    plan = plan_allocations(acc, cfg("a"), today=TODAY, options=PlanOptions(minimum_allocation_seconds=0))
    assert plan.instances[0].new_allocation_seconds == 1  # 0 would archive the instance
    assert plan.ok


def test_reserve_is_a_fraction_of_the_total_budget() -> None:
    acc = account(10_000, snap("a", 2000, h24=1), snap("b", 3000))
    plan = plan_allocations(
        acc, cfg("a", "b"), today=TODAY, options=PlanOptions(allocation_reserve_percent=20)
    )
    assert plan.reserve_seconds == 2000 == reserve_seconds(10_000, 20)
    assert plan.total_new_allocation_seconds == 8000 == plan.cap_seconds
    assert plan.ok


def test_unmanaged_allocation_stays_and_counts() -> None:
    """Budget 10000: managed hold 3000, 2000 unallocated -> 5000 held by instances outside the config."""
    acc = account(10_000, snap("a", 1000, h24=1), snap("b", 2000), unallocated=2000)
    plan = plan_allocations(acc, cfg("a", "b"), today=TODAY)
    assert plan.unmanaged_allocation_seconds == 5000
    assert plan.by_crn["a"].new_allocation_seconds == 1000 + 2000 + 1940
    assert plan.total_new_allocation_seconds == 10_000


def test_snapshot_instances_without_settings_are_unmanaged() -> None:
    acc = account(10_000, snap("a", 1000, h24=1), snap("other", 2000), unallocated=7000)
    plan = plan_allocations(acc, cfg("a"), today=TODAY)
    assert [p.crn for p in plan.instances] == ["a"]
    assert plan.unmanaged_allocation_seconds == 2000
    assert plan.by_crn["a"].new_allocation_seconds == 8000


def test_inconsistent_snapshot_never_invents_headroom() -> None:
    acc = account(10_000, snap("a", 8000, h24=1), unallocated=5000)  # 13000 > budget
    plan = plan_allocations(acc, cfg("a"), today=TODAY)
    assert plan.unmanaged_allocation_seconds == 0
    assert [v.invariant for v in plan.violations] == [Invariant.BUDGET_CAP]


def test_limit_caps_the_share_and_the_rest_flows_on() -> None:
    acc = account(10_000, snap("a", 60, h24=1), snap("b", 60, h24=1))
    settings = (InstanceSettings("a", "a", 500), InstanceSettings("b", "b"))
    plan = plan_allocations(acc, settings, today=TODAY)
    a, b = plan.instances
    assert a.new_allocation_seconds == 500 and a.reason.endswith("— capped at limit")
    assert a.ceiling_source is CeilingSource.LIMIT
    assert b.new_allocation_seconds == 10_000 - 500
    assert a.limit_changed and a.new_limit_seconds == 500  # the live limit was None


def test_limit_reached_is_excluded_whatever_its_score() -> None:
    acc = account(10_000, snap("hog", 1000, 800, live=800, h24=800), snap("b", 1000, h24=1))
    plan = plan_allocations(acc, cfg("hog", "b"), today=TODAY)
    hog, b = plan.instances
    assert hog.limit_reached and hog.new_allocation_seconds == 800
    assert hog.reason == "Limit reached — pinned to 28d usage"
    assert b.new_allocation_seconds == 10_000 - 800
    assert plan.limit_reached == {"hog"}


def test_limit_change_only_when_configured_and_different() -> None:
    acc = account(
        10_000, snap("none", 100, live=700), snap("same", 100, live=500), snap("diff", 100, live=500)
    )
    settings = (
        InstanceSettings("none", "none"),
        InstanceSettings("same", "same", 500),
        InstanceSettings("diff", "diff", 900),
    )
    plan = plan_allocations(acc, settings, today=TODAY)
    assert set(plan.limit_changes) == {"diff"}
    assert plan.by_crn["none"].effective_limit_seconds == 700  # live limit caps, never written
    assert plan.by_crn["none"].new_limit_seconds == 700


def test_tightened_limit_below_usage_is_written_and_no_error() -> None:
    acc = account(10_000, snap("a", 2000, 1500, live=3000, h24=10))
    plan = plan_allocations(acc, (InstanceSettings("a", "a", 1000),), today=TODAY)
    a = plan.instances[0]
    assert a.limit_reached and a.new_allocation_seconds == 1500 and a.new_limit_seconds == 1000
    assert plan.ok  # the floor wins over the limit; no actionable error


def test_net_grant_lifts_a_reached_limit() -> None:
    daily = {date(2026, 3, 5): 600}
    s = InstanceSnapshot("a", "a", 1000, 100, 600, 600, 600, 0, 0, daily)
    grant = NetGrant(date(2026, 3, 1), date(2026, 5, 1), 1000)
    plan = plan_allocations(account(10_000, s), (InstanceSettings("a", "a", 100, (grant,)),), today=TODAY)
    a = plan.instances[0]
    assert a.effective_limit_seconds == 1100 and not a.limit_reached and a.limit_changed
    assert a.limit_breakdown is not None and a.limit_breakdown.unspent_grant_seconds == 400
    assert a.new_allocation_seconds == 1100


# --------------------------------------------------------------------------------------------- over budget


def test_over_budget_regime_readme() -> None:
    acc = account(
        1000,
        snap("i1", 400, 500, live=500, h24=10),
        snap("i2", 300, 400, live=1000, h24=10),
        snap("i3", 300, 300, live=1000, h24=10),
        used=1200,
    )
    plan = plan_allocations(acc, cfg("i1", "i2", "i3"), today=TODAY)
    assert plan.over_allocation_budget
    assert [p.new_allocation_seconds for p in plan.instances] == [60, 400, 300]
    assert [p.ceiling_source for p in plan.instances] == [CeilingSource.USAGE] * 3


def test_over_budget_unused_and_low_usage_warn() -> None:
    acc = account(
        1000, snap("unused", 200), snap("low", 200, 20, h24=20), snap("big", 400, 900, h24=1), used=1000
    )
    plan = plan_allocations(acc, cfg("unused", "low", "big"), today=TODAY)
    assert [p.new_allocation_seconds for p in plan.instances] == [60, 20, 900]
    assert {(w.kind, w.crn) for w in plan.warnings} == {
        (WarningKind.ABOVE_USAGE, "unused"),
        (WarningKind.BELOW_MINIMUM, "low"),
    }
    assert plan.by_crn["low"].reason.endswith("— pinned to 28d usage")


def test_zero_budget_is_always_over() -> None:
    acc = AccountSnapshot(0, 0, 0, (snap("a", 0),))
    assert acc.over_allocation_budget
    plan = plan_allocations(acc, cfg("a"), today=TODAY)
    assert plan.over_allocation_budget


# --------------------------------------------------------------------------------------------- validation


def test_each_invariant_is_reported_structurally() -> None:
    acc = account(
        10_000,
        snap("floor", 500, 400),
        snap("min", 500),
        snap("limit", 500, live=600),
        snap("zero", 500),
        unallocated=8000,
    )
    settings = cfg("floor", "min", "limit", "zero")
    proposed = {"floor": 300, "min": 30, "limit": 900, "zero": 0}
    found = {(v.invariant, v.crn) for v in validate_allocations(acc, settings, proposed, today=TODAY)}
    assert found == {
        (Invariant.USAGE_FLOOR, "floor"),
        (Invariant.MINIMUM, "min"),
        (Invariant.LIMIT, "limit"),
        (Invariant.MINIMUM, "zero"),
        (Invariant.NO_ARCHIVING, "zero"),
    }
    over = validate_allocations(acc, settings, {"min": 9000, "limit": 600}, today=TODAY)
    assert [(v.invariant, v.crn, v.value, v.bound) for v in over] == [
        (Invariant.BUDGET_CAP, None, 10_600, 10_000)
    ]


def test_validation_over_budget_flags_allocation_above_usage() -> None:
    acc = account(1000, snap("a", 500, 300), snap("b", 100, 30), used=2000)
    found = validate_allocations(acc, cfg("a", "b"), {"a": 400, "b": 20}, today=TODAY)
    assert {(v.invariant, v.crn) for v in found} == {(Invariant.USAGE_FLOOR, "a"), (Invariant.MINIMUM, "b")}


def test_validation_rejects_unknown_proposals() -> None:
    with pytest.raises(UnknownInstanceError):
        validate_allocations(account(100, snap("a", 60)), cfg("a"), {"zz": 1}, today=TODAY)


# --------------------------------------------------------------------------------------------- input errors


def test_duplicate_and_unknown_instances_are_refused() -> None:
    acc = account(1000, snap("a", 60), snap("b", 60))
    with pytest.raises(DuplicateInstanceError, match="configured twice"):
        plan_allocations(acc, cfg("a", "a"), today=TODAY)
    with pytest.raises(DuplicateInstanceError, match="twice in the account snapshot"):
        plan_allocations(account(1000, snap("a", 60), snap("a", 60)), cfg("a"), today=TODAY)
    with pytest.raises(UnknownInstanceError, match="missing-one"):
        plan_allocations(acc, cfg("a", "missing-one"), today=TODAY)
    with pytest.raises(UnknownInstanceError, match="demand"):
        plan_allocations(acc, cfg("a"), today=TODAY, demand={"b": DemandSignal(pending_jobs=1)})
    assert issubclass(DuplicateInstanceError, ValueError)
    assert issubclass(UnknownInstanceError, ValueError)


def test_bad_values_are_refused() -> None:
    with pytest.raises(PlanInputError, match="need limit_seconds"):
        InstanceSettings("a", net_grants=(NetGrant(date(2026, 1, 1), date(2026, 1, 2), 1),))
    with pytest.raises(PlanInputError, match="negative"):
        snap("a", -1)
    with pytest.raises(PlanInputError, match=r"\[0, 100\)"):
        PlanOptions(allocation_reserve_percent=100)
    with pytest.raises(PlanInputError, match="balance_period"):
        InstanceSettings("a", target_usage_seconds=10)
    with pytest.raises(PlanInputError, match="finite"):
        DemandSignal(queued_seconds=float("nan"))


# --------------------------------------------------------------------------------------------- writes


def test_writes_carry_both_fields_in_apply_order() -> None:
    acc = account(
        10_000,
        snap("up", 1000, h24=5),
        snap("lim", 2000, 2000, live=3000, h24=1),
        snap("down", 3000),
    )
    settings = (
        InstanceSettings("up", "up"),
        InstanceSettings("lim", "lim", 2000),
        InstanceSettings("down", "down"),
    )
    plan = plan_allocations(acc, settings, today=TODAY)
    assert [(w.kind, w.crn) for w in plan.writes] == [
        (WriteKind.DECREASE, "down"),
        (WriteKind.LIMIT_ONLY, "lim"),
        (WriteKind.INCREASE, "up"),
    ]
    lim = plan.writes[1]
    assert (lim.allocation_seconds, lim.limit_seconds, lim.previous_limit_seconds) == (2000, 2000, 3000)
    down = plan.writes[0]
    assert down.limit_seconds is None and down.allocation_delta_seconds == 60 - 3000


def test_water_fill_sums_scores_in_config_order() -> None:
    """Float addition is not associative: the sum of scores follows the candidates' (config) order, as in
    qauvern, so shares are bit-identical. 1e16 + 1 + 1 == 1e16, but 1 + 1 + 1e16 == 1e16 + 2."""
    scores = [1e16, 1.0, 1.0]
    big_first = [0, 0, 0]
    water_fill([0, 1, 2], scores, big_first, [None, None, None], 1_000_000)
    big_last = [0, 0, 0]
    water_fill([1, 2, 0], scores, big_last, [None, None, None], 1_000_000)
    assert big_first[0] == 1_000_000
    assert big_last[0] == 999_999
