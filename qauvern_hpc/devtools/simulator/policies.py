"""The allocation policies a simulation compares. Pure (qauvern's optimizer is pure too).

* `static`: the initial allocations never change (a centre without a rebalancer). Live limits follow the
  config's limit and net grants (an admin raising and lowering the limit by hand), so that `static`
  differs from the others only in allocations.
* `qauvern`: the real qauvern 0.14 optimizer (PyPI package `qauvern`, a test/bench dependency, imported
  when the policy is built). Fed exactly what its CLI would read from IBM; when its validation fails it
  writes nothing, as `qauvern optimize` refuses.
* `qauvern-hpc`: `qauvern_hpc.planner.optimizer.plan_allocations` with the site config's options and the Slurm
  demand signal (pending QPU jobs per instance and the ledger's recent usage, as `qauvern-hpc rebalance`
  gathers them), and, when `rebalance.slurm.gate` is on, the gate: the jobs of an instance whose limit is
  reached pend in Slurm instead of failing at IBM. A plan that breaks an invariant writes nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import ModuleType
from typing import Any, Protocol

from qauvern_hpc.core.errors import UsageError
from qauvern_hpc.planner.limits import effective_limit, resolve_limit
from qauvern_hpc.planner.model import AccountSnapshot, DemandSignal, InstanceSettings, PlanOptions
from qauvern_hpc.planner.optimizer import plan_allocations

POLICIES: tuple[str, ...] = ("static", "qauvern", "qauvern-hpc")


@dataclass(frozen=True, slots=True)
class RebalanceView:
    """What a rebalancer sees at one run (the simulation's IBM snapshot and Slurm queue)."""

    now: datetime
    today: date
    account: AccountSnapshot  # instances in config order
    settings: tuple[InstanceSettings, ...]
    options: PlanOptions
    demand: Mapping[str, DemandSignal]  # by CRN, every instance


@dataclass(frozen=True, slots=True)
class RebalanceOutcome:
    """What a run writes. Empty maps = nothing written; `gated` None = the gate is left as it is."""

    allocations: dict[str, int] = field(default_factory=dict)  # CRN -> new allocation (changed ones)
    limits: dict[str, int | None] = field(default_factory=dict)  # CRN -> new live limit (changed ones)
    gated: frozenset[str] | None = None
    refused: bool = False  # validation failed: nothing written


class SimPolicy(Protocol):
    name: str

    def rebalance(self, view: RebalanceView) -> RebalanceOutcome: ...


def _grant_limits(view: RebalanceView) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    live = {s.crn: s.limit_seconds for s in view.account.instances}
    for s in view.settings:
        snap = next(x for x in view.account.instances if x.crn == s.crn)
        breakdown = resolve_limit(
            s.limit_seconds,
            s.net_grants,
            snap.daily_usage,
            today=view.today,
            retired_grants_keep_paying=view.options.retired_grants_keep_paying,
        )
        new = effective_limit(breakdown, live[s.crn]) if breakdown is not None else live[s.crn]
        if new != live[s.crn]:
            out[s.crn] = new
    return out


class StaticPolicy:
    name = "static"

    def rebalance(self, view: RebalanceView) -> RebalanceOutcome:
        return RebalanceOutcome(limits=_grant_limits(view))


class QauvernPolicy:
    """The real qauvern 0.14 optimizer, called as a library."""

    name = "qauvern"

    def __init__(self) -> None:
        self._m, self._o, self._p = _import_qauvern()

    def rebalance(self, view: RebalanceView) -> RebalanceOutcome:
        m, o, p = self._m, self._o, self._p

        def dt(d: date) -> datetime:
            return datetime(d.year, d.month, d.day, tzinfo=UTC)

        instances = tuple(
            m.InstanceState(
                crn=s.crn,
                name=s.name,
                allocation_seconds=s.allocation_seconds,
                limit_seconds=s.limit_seconds,
                consumed_seconds=s.consumed_28d_seconds,
                detailed_usage=m.InstanceDetailedUsage(
                    consumed_14day=s.consumed_14d_seconds,
                    consumed_7day=s.consumed_7d_seconds,
                    consumed_3day=s.consumed_3d_seconds,
                    consumed_24h=s.consumed_24h_seconds,
                    daily_usage=dict(s.daily_usage),
                ),
            )
            for s in view.account.instances
        )
        configs = [
            m.InstanceConfig(
                name=c.name,
                crn=c.crn,
                target_limit_seconds=c.limit_seconds,
                net_grants=tuple(
                    m.NetGrant(
                        start_date=dt(g.start_date),
                        net_grant_seconds=g.net_grant_seconds,
                        end_date=dt(g.end_date),
                    )
                    for g in c.net_grants
                ),
            )
            for c in view.settings
        ]
        acct = view.account
        plan = m.AccountPlan(
            account_id=acct.account_id or "sim",
            plan=p.Plan.PREMIUM,
            allocation_budget_seconds=acct.allocation_budget_seconds,
            unallocated_seconds=acct.unallocated_seconds,
            consumed_seconds=acct.consumed_seconds,
            limit_seconds=None,
            instances=instances,
        )
        opt = o.AllocationOptimizer(
            plan,
            configs,
            view.options.minimum_allocation_seconds,
            view.options.allocation_reserve_percent,
            today=view.today,
        )
        result = opt.optimize()
        ok, _errors = opt.validate_allocations(result)
        if not ok:
            return RebalanceOutcome(refused=True)
        return RebalanceOutcome(
            allocations={crn: int(c.new) for crn, c in result.allocation_changes.items()},
            limits={crn: (None if c.new is None else int(c.new)) for crn, c in result.limit_changes.items()},
        )


class QauvernHpcPolicy:
    """Ours: qauvern 0.14's rules plus the Slurm demand signal and the gate."""

    name = "qauvern-hpc"

    def __init__(self, *, use_demand: bool = True, gate: bool = True) -> None:
        self.use_demand = use_demand
        self.gate = gate

    def rebalance(self, view: RebalanceView) -> RebalanceOutcome:
        plan = plan_allocations(
            view.account,
            view.settings,
            today=view.today,
            options=view.options,
            demand=view.demand if self.use_demand else None,
        )
        if not plan.ok:
            return RebalanceOutcome(refused=True)
        return RebalanceOutcome(
            allocations={p.crn: p.new_allocation_seconds for p in plan.instances if p.allocation_changed},
            limits={p.crn: p.new_limit_seconds for p in plan.instances if p.limit_changed},
            gated=plan.limit_reached if self.gate else None,
        )


def _import_qauvern() -> tuple[ModuleType, ModuleType, ModuleType]:
    try:
        qauvern: Any = importlib.import_module("qauvern")
        models = importlib.import_module("qauvern.models")
        optimizer = importlib.import_module("qauvern.optimizer")
        plan = importlib.import_module("qauvern.plan")
    except ImportError:
        raise UsageError(
            "policy 'qauvern' runs the real qauvern 0.14 optimizer, and the qauvern package is not installed",
            hint="pip install 'qauvern==0.14.0' (a test/bench dependency: pip install -e '.[test]')",
        ) from None
    version = str(getattr(qauvern, "__version__", "?"))
    if not version.startswith("0.14."):
        raise UsageError(
            f"policy 'qauvern' is calibrated on qauvern 0.14, found qauvern {version}",
            hint="pip install 'qauvern==0.14.0'",
        )
    return models, optimizer, plan


def make_policy(name: str, *, gate: bool = True, use_demand: bool = True) -> SimPolicy:
    """The policy called `name` (one of POLICIES). Raises UsageError for an unknown name."""
    if name == "static":
        return StaticPolicy()
    if name == "qauvern":
        return QauvernPolicy()
    if name == "qauvern-hpc":
        return QauvernHpcPolicy(use_demand=use_demand, gate=gate)
    raise UsageError(f"unknown policy {name!r} (known: {', '.join(POLICIES)}, all)")


__all__ = [
    "POLICIES",
    "QauvernHpcPolicy",
    "QauvernPolicy",
    "RebalanceOutcome",
    "RebalanceView",
    "SimPolicy",
    "StaticPolicy",
    "make_policy",
]
