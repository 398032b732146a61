"""Working state of one planning run and the invariants a plan must keep. Pure.

`PlanRow`/`PlanContext` are what `optimizer.plan_allocations` computes per instance and for the account;
`violations` checks allocations against the invariants listed in `optimizer`'s docstring (budget cap,
usage floor, minimum, limit, no archiving), and `warnings` gives the over-budget notes that never block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from qauvern_hpc.planner.model import (
    CeilingSource,
    FloorSource,
    InstanceSettings,
    InstanceSnapshot,
    Invariant,
    LimitBreakdown,
    PlanOptions,
    PlanWarning,
    Violation,
    WarningKind,
)


@dataclass(slots=True)
class PlanRow:
    """Working state for one managed instance (internal)."""

    settings: InstanceSettings
    snap: InstanceSnapshot
    breakdown: LimitBreakdown | None
    limit: int | None  # effective limit
    reached: bool
    target_cap: int | None
    target_reached: bool
    floor: int
    floor_source: FloorSource
    ceiling: int | None
    ceiling_source: CeilingSource | None
    parts: dict[str, float]
    score: float
    active: bool
    label: str = ""
    target: int = 0
    new: int = 0
    held: bool = False


@dataclass(slots=True)
class PlanContext:
    rows: list[PlanRow]
    over: bool
    minimum: int  # as configured
    budget: int
    reserve: int
    unmanaged: int
    unallocated: int
    today: date
    options: PlanOptions

    @property
    def cap(self) -> int:
        return self.budget - self.reserve


def instance_violations(ctx: PlanContext, row: PlanRow, value: int) -> list[Violation]:
    out: list[Violation] = []
    c = row.snap.consumed_28d_seconds
    who = f"{row.label} ({row.snap.crn})"
    if not ctx.over and value < c:
        out.append(
            Violation(
                Invariant.USAGE_FLOOR,
                row.snap.crn,
                f"{who}: allocation {value}s is below its 28-day usage {c}s",
                value,
                c,
            )
        )
    if ctx.over and value > c and value > row.floor:
        out.append(
            Violation(
                Invariant.USAGE_FLOOR,
                row.snap.crn,
                f"{who}: allocation {value}s is above its 28-day usage {c}s while the account is over budget",
                value,
                c,
            )
        )
    if ctx.over and row.floor_source is FloorSource.USAGE:
        if value < c:
            out.append(
                Violation(
                    Invariant.MINIMUM,
                    row.snap.crn,
                    f"{who}: allocation {value}s is below its 28-day usage {c}s, which stands in for the "
                    f"minimum {ctx.minimum}s while the account is over budget",
                    value,
                    c,
                )
            )
    elif value < ctx.minimum:
        out.append(
            Violation(
                Invariant.MINIMUM,
                row.snap.crn,
                f"{who}: allocation {value}s is below the minimum {ctx.minimum}s",
                value,
                ctx.minimum,
            )
        )
    if row.limit is not None and value > row.limit and value > row.floor:
        out.append(
            Violation(
                Invariant.LIMIT,
                row.snap.crn,
                f"{who}: allocation {value}s is above its effective limit {row.limit}s",
                value,
                row.limit,
            )
        )
    if value == 0:
        out.append(
            Violation(Invariant.NO_ARCHIVING, row.snap.crn, f"{who}: allocation 0 would archive it", 0, 1)
        )
    if row.target_cap is not None and value > row.target_cap and value > row.floor:
        out.append(
            Violation(
                Invariant.TARGET,
                row.snap.crn,
                f"{who}: allocation {value}s is above its balance-period target cap {row.target_cap}s",
                value,
                row.target_cap,
            )
        )
    return out


def _budget_violation(ctx: PlanContext, values: Sequence[int]) -> Violation | None:
    total = sum(values) + ctx.unmanaged
    if total <= ctx.cap:
        return None
    usage_floors = sum(r.floor for r in ctx.rows if r.floor_source is FloorSource.USAGE)
    minimum_floors = sum(r.floor for r in ctx.rows if r.floor_source is FloorSource.MINIMUM)
    drivers = [f"28-day usage holds {usage_floors}s", f"minimums hold {minimum_floors}s"]
    if ctx.unmanaged:
        drivers.append(f"unmanaged instances hold {ctx.unmanaged}s")
    if ctx.reserve:
        drivers.append(f"the reserve withholds {ctx.reserve}s")
    if ctx.over:
        drivers.append("the account is over its allocation budget")
    message = (
        f"allocations total {total}s (managed + unmanaged), above the cap of {ctx.cap}s "
        f"(budget {ctx.budget}s - reserve {ctx.reserve}s) by {total - ctx.cap}s; " + ", ".join(drivers)
    )
    return Violation(Invariant.BUDGET_CAP, None, message, total, ctx.cap)


def violations(ctx: PlanContext, values: Sequence[int]) -> list[Violation]:
    out: list[Violation] = []
    budget = _budget_violation(ctx, values)
    if budget is not None:
        out.append(budget)
    for row, value in zip(ctx.rows, values, strict=True):
        out.extend(instance_violations(ctx, row, value))
    return out


def warnings(ctx: PlanContext, values: Sequence[int]) -> list[PlanWarning]:
    if not ctx.over:
        return []
    out: list[PlanWarning] = []
    for row, value in zip(ctx.rows, values, strict=True):
        c = row.snap.consumed_28d_seconds
        if value < ctx.minimum:
            out.append(
                PlanWarning(
                    WarningKind.BELOW_MINIMUM,
                    row.snap.crn,
                    f"{row.label}: allocation {value}s is below the minimum {ctx.minimum}s so that fairness "
                    "stays >= 1.0 while the account is over budget",
                )
            )
        elif value > c:
            out.append(
                PlanWarning(
                    WarningKind.ABOVE_USAGE,
                    row.snap.crn,
                    f"{row.label}: allocation {value}s is above its 28-day usage {c}s (fairness < 1.0) while "
                    "the account is over budget",
                )
            )
    return out
