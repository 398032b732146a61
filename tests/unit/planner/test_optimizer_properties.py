"""Properties of the planner over generated accounts, with every extension in play.

* Apply order: writing decreases, then limit-only changes, then increases never takes the account's total
  allocation above max(start, end) at any step, so never above the budget when both ends are within it.
* Hysteresis never adds a violation, and only holds changes smaller than `min_change_seconds`.
* Extensions off (zero demand signals, min_change 0) give exactly the plain plan.
* A consistent snapshot whose floors fit under the cap always yields a valid plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from qauvern_hpc.planner.model import (
    AccountSnapshot,
    BalancePeriod,
    DemandSignal,
    InstanceSettings,
    InstanceSnapshot,
    InstanceWrite,
    NetGrant,
    PlanOptions,
    PlanResult,
    WriteKind,
)
from qauvern_hpc.planner.optimizer import max_intermediate_total, order_writes, plan_allocations

TODAY = date(2026, 3, 10)


@dataclass(frozen=True)
class World:
    account: AccountSnapshot
    settings: tuple[InstanceSettings, ...]
    options: PlanOptions
    demand: dict[str, DemandSignal]

    def plan(
        self, *, min_change_seconds: int | None = None, demand: dict[str, DemandSignal] | None = None
    ) -> PlanResult:
        options = PlanOptions(
            minimum_allocation_seconds=self.options.minimum_allocation_seconds,
            allocation_reserve_percent=self.options.allocation_reserve_percent,
            min_change_seconds=self.options.min_change_seconds
            if min_change_seconds is None
            else min_change_seconds,
        )
        return plan_allocations(
            self.account,
            self.settings,
            today=TODAY,
            options=options,
            demand=self.demand if demand is None else demand,
        )

    @property
    def start_total(self) -> int:
        return sum(i.allocation_seconds for i in self.account.instances)


@st.composite
def worlds(draw: st.DrawFn, consistent: bool | None = None) -> World:
    scale = draw(st.sampled_from([100, 10_000, 1_000_000]))
    n = draw(st.integers(1, 15))
    snaps, configs, demand = [], [], {}
    for i in range(n):
        crn = f"i{i}"
        c28 = draw(st.integers(0, scale))
        h24 = draw(st.integers(0, c28))
        period = BalancePeriod(TODAY - timedelta(days=100), TODAY + timedelta(days=100))
        has_target = draw(st.booleans())
        snaps.append(
            InstanceSnapshot(
                crn,
                crn,
                draw(st.integers(0, 2 * scale)),
                draw(st.one_of(st.none(), st.integers(0, 2 * scale))),
                c28,
                consumed_24h_seconds=h24,
                consumed_3d_seconds=h24,
                daily_usage={TODAY - timedelta(days=3): h24},
                balance_period_consumed_seconds=draw(st.integers(0, 3 * scale)) if has_target else None,
            )
        )
        limit = draw(st.one_of(st.none(), st.integers(0, 2 * scale)))
        grants: tuple[NetGrant, ...] = ()
        if limit is not None and draw(st.booleans()):
            grants = (
                NetGrant(TODAY - timedelta(days=5), TODAY + timedelta(days=5), draw(st.integers(1, scale))),
            )
        configs.append(
            InstanceSettings(
                crn,
                crn,
                limit,
                grants,
                target_usage_seconds=draw(st.integers(0, 3 * scale)) if has_target else None,
                balance_period=period if has_target else None,
            )
        )
        if draw(st.booleans()):
            demand[crn] = DemandSignal(
                queued_seconds=draw(st.integers(0, scale)),
                pending_jobs=draw(st.integers(0, 20)),
                oldest_pending_age_seconds=draw(st.integers(0, 10 * 86400)),
                recent_seconds=draw(st.integers(0, scale)),
            )
    held = sum(s.allocation_seconds for s in snaps)
    budget = held + draw(st.integers(0, 4 * scale))
    is_consistent = draw(st.booleans()) if consistent is None else consistent
    unallocated = budget - held if is_consistent else draw(st.integers(0, 2 * scale))
    used = draw(st.one_of(st.integers(0, max(0, budget - 1)), st.integers(budget, budget + scale)))
    options = PlanOptions(
        minimum_allocation_seconds=draw(st.integers(0, 3600)),
        allocation_reserve_percent=draw(st.floats(0, 50, exclude_max=True)),
        min_change_seconds=draw(st.one_of(st.just(0), st.integers(0, scale))),
    )
    account = AccountSnapshot(budget, unallocated, used, tuple(snaps))
    return World(account, tuple(configs), options, demand)


def _pairs(plan: PlanResult) -> set[tuple[str, str | None]]:
    return {(v.invariant.value, v.crn) for v in plan.violations}


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_apply_order_never_overshoots(world: World) -> None:
    plan = world.plan()
    start = world.start_total + plan.unmanaged_allocation_seconds
    end = plan.total_new_allocation_seconds
    peak = max_intermediate_total(plan.writes, start)
    assert peak == max(start, end)
    budget = world.account.allocation_budget_seconds
    if start <= budget and end <= budget:
        assert peak <= budget
    kinds = [w.kind for w in plan.writes]
    assert kinds == sorted(kinds, key=[WriteKind.DECREASE, WriteKind.LIMIT_ONLY, WriteKind.INCREASE].index)
    assert len({w.crn for w in plan.writes}) == len(plan.writes)  # one write per instance
    for w in plan.writes:
        p = plan.by_crn[w.crn]
        assert (w.allocation_seconds, w.limit_seconds) == (p.new_allocation_seconds, p.new_limit_seconds)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000), st.booleans()), max_size=30))
def test_order_writes_prefix_bound(moves: list[tuple[int, int, bool]]) -> None:
    writes = []
    for i, (before, after, limit_change) in enumerate(moves):
        if before == after and not limit_change:
            continue
        kind = (
            WriteKind.DECREASE
            if after < before
            else WriteKind.INCREASE
            if after > before
            else WriteKind.LIMIT_ONLY
        )
        writes.append(InstanceWrite(kind, f"c{i}", f"c{i}", after, None, before, None))
    start = sum(b for b, _a, _l in moves)
    end = sum(a for _b, a, _l in moves)
    assert max_intermediate_total(order_writes(writes), start) == max(start, end)


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_hysteresis_adds_no_violation(world: World) -> None:
    plain = world.plan(min_change_seconds=0)
    damped = world.plan()
    assert _pairs(damped) <= _pairs(plain)
    for p, q in zip(damped.instances, plain.instances, strict=True):
        assert p.target_allocation_seconds == q.new_allocation_seconds
        if p.hysteresis_held:
            assert (
                0
                < abs(p.target_allocation_seconds - p.current_allocation_seconds)
                < world.options.min_change_seconds
            )
            assert p.new_allocation_seconds == p.current_allocation_seconds
        else:
            assert p.new_allocation_seconds == p.target_allocation_seconds
    assert damped.total_new_allocation_seconds <= max(plain.total_new_allocation_seconds, damped.cap_seconds)


@settings(max_examples=100, deadline=None)
@given(worlds())
def test_zero_demand_is_no_demand(world: World) -> None:
    plain = world.plan(demand={}, min_change_seconds=0)
    zero = world.plan(demand={s.crn: DemandSignal() for s in world.settings}, min_change_seconds=0)
    assert [(p.new_allocation_seconds, p.reason, p.activity_score) for p in zero.instances] == [
        (p.new_allocation_seconds, p.reason, p.activity_score) for p in plain.instances
    ]
    assert _pairs(zero) == _pairs(plain) and zero.writes == plain.writes


@settings(max_examples=150, deadline=None)
@given(worlds(consistent=True))
def test_floors_that_fit_give_a_valid_plan(world: World) -> None:
    plan = world.plan(min_change_seconds=0)
    floors = sum(p.floor_seconds for p in plan.instances)
    if floors + plan.unmanaged_allocation_seconds <= plan.cap_seconds:
        assert plan.ok, plan.violations
