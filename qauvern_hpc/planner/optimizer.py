"""The allocation plan: how much QAU time each managed IBM Quantum instance should hold. Pure.

With no extension switched on, `plan_allocations` re-derives qauvern 0.14's optimizer (same allocations,
limit changes, limit-reached set, invariants and warnings; `tests/unit/test_differential_qauvern.py`
checks this against the real package). Our own code, written from qauvern's README and behaviour.

The rules, in order
-------------------
1. **Effective limit** per managed instance (`limits.resolve_limit`): the config's base limit plus net
   grants; with no configured limit, the live IBM limit (which is then never written).
   **Limit reached**: 28-day usage >= effective limit, or IBM reports `usage_limit_reached` (a
   Pay-As-You-Go cost limit; our extension, off when the snapshot carries no such flag). "28-day usage"
   is IBM's figure over the instance's plan period (`planner.period`: the Flex contract, Pay-As-You-Go
   since creation); with the rolling 28 days every rule below is qauvern 0.14's.
2. **Regime**: the account is *over budget* when its plan-wide 28-day usage >= the allocation budget.
3. **Floor** (`m = max(1, minimum_allocation_seconds)`, `c` = 28-day usage): under budget `max(c, m)`
   (a tie counts as usage); over budget `c` when `0 < c < m`, else `m`.
   **Ceiling**: under budget the effective limit (or none); over budget `c` (keeps fairness >= 1).
4. Every managed instance starts at its floor. **Pool** = `max(0, unallocated + sum(allocation - floor))`;
   **reserve** = `int(budget * percent / 100)` of the *total* budget; distributable = `max(0, pool -
   reserve)`. Unmanaged allocation is neither in the pool nor moved.
5. **Active** instances (activity score > 0, limit not reached) share the distributable pool by
   **water-fill** in config order: each round every candidate gets `int(score / sum(scores) * remaining)`
   (remaining as of the round's start), cut to its ceiling; capped ones leave; the loop ends when nothing
   is left, no candidate is left, or a round hands out 0 (what truncation leaves stays unallocated).
6. **Activity score** = 24h*2^5 + (3d/3)*2^4 + (7d/7)*2^3 + (14d/14)*2^2 + (28d/28)*2^1 (each term only
   when its usage > 0), summed in that order as floats.
7. **Changes**: an allocation change where the new value differs; a limit change only when a breakdown
   exists and its total differs from the live limit. **Writes** in apply order: decreases, limit-only
   changes, increases, one write per instance carrying both fields, so stopping at the first failed write
   never leaves the account above its budget.

Invariants (`validate_allocations`; `PlanResult.violations`; the executor refuses to write when any fails):
budget cap `sum(new) + unmanaged <= budget - reserve`; usage floor (under budget `new >= c`; over budget
`new > c` only if the floor forces it); minimum (`new >= minimum`, over budget `new >= c` when `0 < c < m`);
limit (`new <= effective limit` unless the floor forces more); no archiving (`new != 0`). Over budget,
warnings (never blocking) note `new < minimum` or else `new > c`.

Our extensions (each off by default, so the above holds bit for bit when they are off)
--------------------------------------------------------------------------------------
a. **Fair demand** (`demand=` per CRN, weights in `PlanOptions.demand_weights`): adds the instance's need
   (Slurm-pending + in-flight work) weighed against its entitlement, plus a flat presence term, to the
   score (`planner.demand`; presence only while over budget). An instance with jobs waiting or in flight
   but no usage yet becomes active and gets a share before IBM's analytics show anything; one with no need
   and nothing recent stays inactive and gives its allocation back. `score_breakdown` holds every term.
   `DemandWeights.when_over_budget=False` leaves it out while the account is over budget (see there).
b. **Balance-period target** (`InstanceSettings.target_usage_seconds` + `balance_period`): see
   `_target_cap` below. While today is inside the period, remaining = `max(0, target - used in period)`;
   the allocation is capped (under budget) at `c + remaining`: what already counts in the 28-day window
   plus what the instance may still use this period. Remaining 0 = **target reached**: held at its floor
   and out of the water-fill (the soft counterpart of limit reached; the limit is left alone).
c. **Hysteresis** (`PlanOptions.min_change_seconds`): an allocation change smaller than this is not
   emitted, provided holding the current value breaks no invariant (an increase is held only if the current
   value is still valid; a decrease only if, in addition, the total stays within the cap).

qauvern 0.14 quirks we reproduce (tests in `test_differential_qauvern.py`)
-------------------------------------------------------------------------
* The reserve is `int(budget * percent / 100)` in floating point: 33.3 % of 3000 s is 998 s, not 999 s.
* A grant that stops crediting leaves the attribution, so the days it paid for are charged again to a
  longer overlapping grant: the limit can drop with no new usage. `PlanOptions.retired_grants_keep_paying`
  (off by default) fixes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date

from qauvern_hpc.planner.demand import demand_terms, entitlements, explain_demand
from qauvern_hpc.planner.limits import effective_limit, limit_reached, resolve_limit
from qauvern_hpc.planner.model import (
    AccountSnapshot,
    CeilingSource,
    DemandSignal,
    DemandWeights,
    DuplicateInstanceError,
    FloorSource,
    InstancePlan,
    InstanceSettings,
    InstanceSnapshot,
    InstanceWrite,
    PlanInputError,
    PlanOptions,
    PlanResult,
    UnknownInstanceError,
    Violation,
    WriteKind,
)
from qauvern_hpc.planner.validation import PlanContext, PlanRow, instance_violations, violations, warnings

# (breakdown key, snapshot attribute, days in the bucket, weight of one second of daily rate)
_USAGE_BUCKETS: tuple[tuple[str, str, float, float], ...] = (
    ("usage_24h", "consumed_24h_seconds", 1.0, 2.0**5),
    ("usage_3d", "consumed_3d_seconds", 3.0, 2.0**4),
    ("usage_7d", "consumed_7d_seconds", 7.0, 2.0**3),
    ("usage_14d", "consumed_14d_seconds", 14.0, 2.0**2),
    ("usage_28d", "consumed_28d_seconds", 28.0, 2.0**1),
)
_DAY = 86400.0
_FLOOR_LABEL = {FloorSource.USAGE: "28d usage", FloorSource.MINIMUM: "config minimum"}
_CAP_LABEL = {
    CeilingSource.LIMIT: "limit",
    CeilingSource.USAGE: "28d usage",
    CeilingSource.TARGET: "balance-period target",
}


# --------------------------------------------------------------------------------------------- scores


def usage_activity_score(snapshot: InstanceSnapshot) -> float:
    """qauvern 0.14's activity score from IBM's usage buckets (recent seconds weigh far more)."""
    score = 0.0
    for _key, attr, days, weight in _USAGE_BUCKETS:
        seconds: int = getattr(snapshot, attr)
        if seconds > 0:
            score += seconds / days * weight
    return score


def score_breakdown(
    snapshot: InstanceSnapshot,
    demand: DemandSignal | None = None,
    weights: DemandWeights | None = None,
    *,
    over_budget: bool = False,
    limit_seconds: int | None = None,
    entitlement_seconds: float = 0.0,
) -> dict[str, float]:
    """Every term of the activity score, for admins. `total` is the score the planner uses.

    Keys: `usage_24h` .. `usage_28d` (points per bucket), `usage_score` (their sum); with a demand signal
    also the fair demand terms (`planner.demand.demand_terms`: need, entitlement, fairness and age factors,
    `demand_volume`, `demand_presence`, `demand_recent`, `demand_score`); then `total`.
    """
    parts: dict[str, float] = {}
    score = 0.0
    for key, attr, days, weight in _USAGE_BUCKETS:
        seconds: int = getattr(snapshot, attr)
        term = seconds / days * weight if seconds > 0 else 0.0
        parts[key] = term
        if seconds > 0:
            score += term
    parts["usage_score"] = score
    total = score
    if demand is not None:
        terms = demand_terms(
            snapshot,
            demand,
            weights if weights is not None else DemandWeights(),
            over_budget=over_budget,
            limit_seconds=limit_seconds,
            entitlement_seconds=entitlement_seconds,
        )
        parts.update(terms)
        if terms["demand_score"] > 0:
            total = score + terms["demand_score"]
    parts["total"] = total
    return parts


def explain_score(breakdown: Mapping[str, float]) -> str:
    """One line for admins, e.g. `usage 188.6 (24h 160.0 + 3d 21.3 ...) + need 3840.0 (...) = 4028.6`."""
    usage_terms = " + ".join(
        f"{key.removeprefix('usage_')} {breakdown[key]:.1f}"
        for key, *_ in _USAGE_BUCKETS
        if breakdown.get(key, 0.0) > 0
    )
    text = f"usage {breakdown.get('usage_score', 0.0):.1f}"
    if usage_terms:
        text += f" ({usage_terms})"
    if "demand_score" in breakdown:
        text += explain_demand(breakdown)
    return f"{text} = {breakdown.get('total', 0.0):.1f}"


# ------------------------------------------------------------------------------------------- building blocks


def reserve_seconds(budget_seconds: int, reserve_percent: float) -> int:
    """The held-back part of the total budget, truncated the way qauvern does (float product, then int)."""
    return int(budget_seconds * reserve_percent / 100)


def _below_cap(value: int, cap: int | None) -> bool:
    return cap is None or value < cap


def water_fill(
    candidates: Sequence[int],
    scores: Sequence[float],
    allocations: list[int],
    caps: Sequence[int | None],
    pool: int,
) -> int:
    """Share `pool` among `candidates` (indices, in config order) in proportion to `scores`.

    Mutates `allocations`; returns the seconds handed out. Each round gives each candidate
    `int(score / sum(scores of candidates) * remaining)`, cut to its cap; a candidate that reaches its cap
    leaves; the loop stops when a round hands out nothing. Truncation leftovers stay unallocated.

    The sum of scores is taken in config order (float addition is not associative, and the split must be
    bit-identical to qauvern's). Within a round, each candidate's share depends only on its own score, so
    candidates are visited by descending score and the round stops at the first share that truncates to 0:
    every lower score truncates to 0 too (IEEE division and multiplication are monotonic). The long tail of
    rounds that hand out a second or two then costs almost nothing, whatever the number of instances.
    """
    remaining = pool
    current = [i for i in candidates if _below_cap(allocations[i], caps[i])]
    by_score = sorted(current, key=lambda i: -scores[i])
    total = sum([scores[i] for i in current])
    while remaining > 0 and current and total > 0:
        handed = 0
        capped: list[int] = []
        for i in by_score:
            want = int(scores[i] / total * remaining)
            if want <= 0:
                break  # lower scores get 0 as well
            cap = caps[i]
            if cap is None:
                allocations[i] += want
                handed += want
                continue
            give = min(want, cap - allocations[i])
            allocations[i] += give
            handed += give
            if allocations[i] >= cap:
                capped.append(i)
        remaining -= handed
        if handed == 0:
            break
        if capped:
            gone = set(capped)
            current = [i for i in current if i not in gone]
            by_score = [i for i in by_score if i not in gone]
            total = sum([scores[i] for i in current])
    return pool - remaining


def _index_inputs(
    account: AccountSnapshot,
    settings: Sequence[InstanceSettings],
    demand: Mapping[str, DemandSignal] | None,
) -> dict[str, InstanceSnapshot]:
    snaps: dict[str, InstanceSnapshot] = {}
    for snap in account.instances:
        if snap.crn in snaps:
            raise DuplicateInstanceError(f"instance {snap.crn} appears twice in the account snapshot")
        snaps[snap.crn] = snap
    seen: set[str] = set()
    missing: list[str] = []
    for s in settings:
        if s.crn in seen:
            raise DuplicateInstanceError(
                f"instance {s.crn} ({s.label}) is configured twice; each CRN may appear once"
            )
        seen.add(s.crn)
        if s.crn not in snaps:
            missing.append(f"{s.label} ({s.crn})" if s.name else s.crn)
    if missing:
        raise UnknownInstanceError(
            f"configured instance(s) not in the account snapshot: {', '.join(missing)} "
            "(unknown, archived, or in another plan)"
        )
    if demand:
        unknown = sorted(crn for crn in demand if crn not in seen)
        if unknown:
            raise UnknownInstanceError(f"demand given for instance(s) not managed here: {', '.join(unknown)}")
    return snaps


def _target_cap(settings: InstanceSettings, snap: InstanceSnapshot, today: date) -> int | None:
    """Balance-period target (extension b): the most this instance should hold, or None (no target).

    While `today` is in the period, `remaining = max(0, target - used in the period)` and the cap is
    `consumed_28d + remaining`: the allocation already "spent" in the window plus what the period budget
    still allows. qauvern <= 0.4 used `allocation + (target - consumed_28d)`, which grows with every run
    (it is relative to the current allocation) and mixes the 28-day and period figures; ours depends on
    usage only, so re-planning is idempotent.
    """
    if settings.target_usage_seconds is None or settings.balance_period is None:
        return None
    if not settings.balance_period.contains(today):
        return None
    used = snap.balance_period_consumed_seconds
    if used is None:
        raise PlanInputError(
            f"{settings.label}: target_usage_seconds is set but the snapshot has no "
            "balance_period_consumed_seconds (usage since the period started)"
        )
    remaining = max(0, settings.target_usage_seconds - used)
    return snap.consumed_28d_seconds + remaining


def _add_demand(
    rows: list[PlanRow], demand: Mapping[str, DemandSignal], budget: int, over: bool, weights: DemandWeights
) -> None:
    """Extension a: each row's score gains its fair demand terms (entitlements need every row's limit)."""
    given = [demand[r.settings.crn].entitlement_seconds if r.settings.crn in demand else 0.0 for r in rows]
    ents = entitlements(budget, [r.settings for r in rows], [r.limit for r in rows], given)
    for r, ent in zip(rows, ents, strict=True):
        signal = demand.get(r.settings.crn)
        if signal is None:
            continue
        r.parts = score_breakdown(
            r.snap, signal, weights, over_budget=over, limit_seconds=r.limit, entitlement_seconds=ent
        )
        r.score = r.parts["total"]
        r.active = r.score > 0 and not r.reached and not r.target_reached


def _prepare(
    account: AccountSnapshot,
    settings: Sequence[InstanceSettings],
    today: date,
    options: PlanOptions,
    demand: Mapping[str, DemandSignal] | None,
) -> PlanContext:
    snaps = _index_inputs(account, settings, demand)
    over = account.over_allocation_budget
    minimum = options.minimum_allocation_seconds
    m = max(1, minimum)
    rows: list[PlanRow] = []
    for s in settings:
        snap = snaps[s.crn]
        c = snap.consumed_28d_seconds
        breakdown = resolve_limit(
            s.limit_seconds,
            s.net_grants,
            snap.daily_usage,
            today=today,
            retired_grants_keep_paying=options.retired_grants_keep_paying,
        )
        limit = effective_limit(breakdown, snap.limit_seconds)
        reached = limit_reached(c, limit) or snap.ibm_limit_reached is True
        target_cap = _target_cap(s, snap, today)
        target_reached = target_cap is not None and target_cap <= c
        if over:
            floor, fsrc = (c, FloorSource.USAGE) if 0 < c < m else (m, FloorSource.MINIMUM)
            ceiling: int | None = c
            csrc: CeilingSource | None = CeilingSource.USAGE
        else:
            floor, fsrc = (c, FloorSource.USAGE) if c >= m else (m, FloorSource.MINIMUM)
            ceiling, csrc = (limit, CeilingSource.LIMIT) if limit is not None else (None, None)
            if target_cap is not None and (ceiling is None or target_cap < ceiling):
                ceiling, csrc = target_cap, CeilingSource.TARGET
        parts = score_breakdown(snap)  # the demand terms are added below, once every limit is known
        score = parts["total"]
        rows.append(
            PlanRow(
                settings=s,
                snap=snap,
                breakdown=breakdown,
                limit=limit,
                reached=reached,
                target_cap=target_cap,
                target_reached=target_reached,
                floor=floor,
                floor_source=fsrc,
                ceiling=ceiling,
                ceiling_source=csrc,
                parts=parts,
                score=score,
                active=score > 0 and not reached and not target_reached,
                label=s.name or snap.name or s.crn,
            )
        )
    budget = account.allocation_budget_seconds
    if demand and (not over or options.demand_weights.when_over_budget):
        _add_demand(rows, demand, budget, over, options.demand_weights)
    managed = {s.crn for s in settings}
    loaded = sum(x.allocation_seconds for x in account.instances)
    # Unmanaged = snapshot instances without settings + whatever the snapshot does not hold. The clamp keeps
    # an inconsistent snapshot (allocations changed mid-fetch) from inventing headroom.
    unmanaged = sum(x.allocation_seconds for x in account.instances if x.crn not in managed) + max(
        0, budget - account.unallocated_seconds - loaded
    )
    return PlanContext(
        rows=rows,
        over=over,
        minimum=minimum,
        budget=budget,
        reserve=reserve_seconds(budget, options.allocation_reserve_percent),
        unmanaged=unmanaged,
        unallocated=account.unallocated_seconds,
        today=today,
        options=options,
    )


# --------------------------------------------------------------------------------------------- validation


def validate_allocations(
    account: AccountSnapshot,
    settings: Sequence[InstanceSettings],
    proposed: Mapping[str, int],
    *,
    today: date,
    options: PlanOptions | None = None,
) -> tuple[Violation, ...]:
    """Check proposed allocations (CRN -> seconds; missing = unchanged) against every invariant.

    Limits are those the plan would write (the resolved effective limit, else the live one).
    """
    ctx = _prepare(account, settings, today, options or PlanOptions(), None)
    unknown = sorted(set(proposed) - {r.snap.crn for r in ctx.rows})
    if unknown:
        raise UnknownInstanceError(
            f"proposed allocation for instance(s) not managed here: {', '.join(unknown)}"
        )
    values = [proposed.get(r.snap.crn, r.snap.allocation_seconds) for r in ctx.rows]
    return tuple(violations(ctx, values))


def _reason(row: PlanRow, value: int) -> str:
    floor_label = _FLOOR_LABEL[row.floor_source]
    if row.reached:
        snap = row.snap
        if not limit_reached(snap.consumed_28d_seconds, row.limit):  # IBM says so, our figures do not
            over = f" over {snap.window.label}" if snap.window is not None else ""
            return f"Limit reached (IBM reports usage_limit_reached{over}) — pinned to {floor_label}"
        return f"Limit reached — pinned to {floor_label}"
    if row.target_reached:
        return f"Target reached — pinned to {floor_label}"
    if not row.active:
        return f"Inactive — pinned to {floor_label}"
    if "demand_score" in row.parts and row.parts["total"] != row.parts["usage_score"]:
        score_text = f"score {row.score:.1f} incl. demand {row.parts['demand_score']:.1f}"
    else:
        score_text = f"score {row.score:.1f}"
    text = f"Active ({score_text}, fairness {row.snap.fairness:.2f})"
    if row.ceiling is not None and row.ceiling_source is not None:
        if row.floor >= row.ceiling:
            text += f" — pinned to {floor_label}"
        elif value >= row.ceiling:
            text += f" — capped at {_CAP_LABEL[row.ceiling_source]}"
    return text


def _apply_hysteresis(ctx: PlanContext, min_change: int) -> None:
    """Hold the current value where the change is below `min_change` and holding it is valid."""
    total = sum(r.target for r in ctx.rows) + ctx.unmanaged
    small = [
        r
        for r in ctx.rows
        if r.target != r.snap.allocation_seconds and abs(r.target - r.snap.allocation_seconds) < min_change
    ]
    # Increases first: holding one only lowers the total.
    for row in small:
        current = row.snap.allocation_seconds
        if current < row.target and not instance_violations(ctx, row, current):
            row.new, row.held = current, True
            total -= row.target - current
    for row in small:
        current = row.snap.allocation_seconds
        fits = total + (current - row.target) <= ctx.cap
        if current > row.target and fits and not instance_violations(ctx, row, current):
            row.new, row.held = current, True
            total += current - row.target


def order_writes(writes: Iterable[InstanceWrite]) -> tuple[InstanceWrite, ...]:
    """Apply order: decreases, then limit-only changes, then increases (stable within each group)."""
    rank = {WriteKind.DECREASE: 0, WriteKind.LIMIT_ONLY: 1, WriteKind.INCREASE: 2}
    return tuple(sorted(writes, key=lambda w: rank[w.kind]))


def _writes(plans: Sequence[InstancePlan]) -> tuple[InstanceWrite, ...]:
    out: list[InstanceWrite] = []
    for p in plans:
        if not p.changed:
            continue
        if p.new_allocation_seconds < p.current_allocation_seconds:
            kind = WriteKind.DECREASE
        elif p.new_allocation_seconds > p.current_allocation_seconds:
            kind = WriteKind.INCREASE
        else:
            kind = WriteKind.LIMIT_ONLY
        out.append(
            InstanceWrite(
                kind=kind,
                crn=p.crn,
                name=p.name,
                allocation_seconds=p.new_allocation_seconds,
                limit_seconds=p.new_limit_seconds,
                previous_allocation_seconds=p.current_allocation_seconds,
                previous_limit_seconds=p.current_limit_seconds,
            )
        )
    return order_writes(out)


def plan_allocations(
    account: AccountSnapshot,
    settings: Sequence[InstanceSettings],
    *,
    today: date,
    options: PlanOptions | None = None,
    demand: Mapping[str, DemandSignal] | None = None,
) -> PlanResult:
    """Plan new allocations and limits for the managed instances (`settings`, in config order).

    Raises `PlanInputError` (a ValueError) for duplicate CRNs, settings or demand naming an instance the
    snapshot lacks, or a target without its period usage.
    """
    opts = options or PlanOptions()
    ctx = _prepare(account, settings, today, opts, demand)
    rows = ctx.rows
    allocations = [r.floor for r in rows]
    pool = max(0, ctx.unallocated + sum(r.snap.allocation_seconds - r.floor for r in rows))
    distributable = max(0, pool - ctx.reserve)
    awarded = 0
    active = [i for i, r in enumerate(rows) if r.active]
    if active and distributable > 0:
        awarded = water_fill(
            active, [r.score for r in rows], allocations, [r.ceiling for r in rows], distributable
        )
    for row, value in zip(rows, allocations, strict=True):
        row.target = row.new = value
    if opts.min_change_seconds > 0:
        _apply_hysteresis(ctx, opts.min_change_seconds)
    plans = tuple(
        InstancePlan(
            crn=r.snap.crn,
            name=r.label,
            current_allocation_seconds=r.snap.allocation_seconds,
            target_allocation_seconds=r.target,
            new_allocation_seconds=r.new,
            current_limit_seconds=r.snap.limit_seconds,
            new_limit_seconds=r.limit if r.breakdown is not None else r.snap.limit_seconds,
            effective_limit_seconds=r.limit,
            limit_breakdown=r.breakdown,
            limit_reached=r.reached,
            active=r.active,
            activity_score=r.score,
            score_breakdown=r.parts,
            fairness=r.snap.fairness,
            floor_seconds=r.floor,
            floor_source=r.floor_source,
            ceiling_seconds=r.ceiling,
            ceiling_source=r.ceiling_source,
            reason=_reason(r, r.target)
            + (
                f" (held at {r.new}s: change of {abs(r.target - r.new)}s is below min_change_seconds)"
                if r.held
                else ""
            ),
            consumed_28d_seconds=r.snap.consumed_28d_seconds,
            target_cap_seconds=r.target_cap,
            target_reached=r.target_reached,
            hysteresis_held=r.held,
            window=r.snap.window,
        )
        for r in rows
    )
    values = [r.new for r in rows]
    return PlanResult(
        today=today,
        over_allocation_budget=ctx.over,
        allocation_budget_seconds=ctx.budget,
        reserve_seconds=ctx.reserve,
        unmanaged_allocation_seconds=ctx.unmanaged,
        pool_seconds=pool,
        distributable_seconds=distributable,
        awarded_seconds=awarded,
        instances=plans,
        violations=tuple(violations(ctx, values)),
        warnings=tuple(warnings(ctx, values)),
        writes=_writes(plans),
    )


def max_intermediate_total(writes: Sequence[InstanceWrite], start_total: int) -> int:
    """The highest total allocation reached while applying `writes` in order, starting from `start_total`."""
    peak = total = start_total
    for w in writes:
        total += w.allocation_delta_seconds
        peak = max(peak, total)
    return peak


__all__ = [
    "explain_score",
    "max_intermediate_total",
    "order_writes",
    "plan_allocations",
    "reserve_seconds",
    "score_breakdown",
    "usage_activity_score",
    "validate_allocations",
    "water_fill",
]
