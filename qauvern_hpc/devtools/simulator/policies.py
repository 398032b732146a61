"""The allocation policies a simulation compares. Pure (qauvern's optimizer is pure too).

* `static`: the initial allocations never change (a centre without a rebalancer). Live limits follow the
  config's limit and net grants (an admin raising and lowering the limit by hand), so that `static`
  differs from the others only in allocations.
* `qauvern`: the real qauvern 0.14 optimizer (PyPI package `qauvern`, a test/bench dependency, imported
  when the policy is built). Fed exactly what its CLI would read from IBM; when its validation fails it
  writes nothing, as `qauvern optimize` refuses.
* `qauvern-hpc`: `qauvern_hpc.planner.optimizer.plan_allocations` with the site config's options and the Slurm
  demand signal (pending QPU jobs per instance and the ledger's recent usage, as `qauvern-hpc rebalance`
  gathers them), plus the admission controller (`admission = True`: the engine calls the production
  `decide()` every period and caps each pair). With the scenario's admission off, the old gate instead:
  the jobs of an instance whose limit is reached pend in Slurm (caps 0) instead of failing at IBM.
  A plan that breaks an invariant writes nothing.
* `static` and `qauvern` have no admission: a QPU job starts as soon as a Slurm slot is free, which is
  what a centre has without qauvern-hpc.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

from qauvern_hpc.core.errors import UsageError
from qauvern_hpc.devtools.qauvern_peer import import_qauvern, optimizer_for
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
    admission: bool  # the engine runs the admission controller for it

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
    admission = False

    def rebalance(self, view: RebalanceView) -> RebalanceOutcome:
        return RebalanceOutcome(limits=_grant_limits(view))


class QauvernPolicy:
    """The real qauvern 0.14 optimizer, called as a library."""

    name = "qauvern"
    admission = False

    def __init__(self) -> None:
        import_qauvern()  # fail at construction, not mid-simulation

    def rebalance(self, view: RebalanceView) -> RebalanceOutcome:
        opt = optimizer_for(view.account, view.settings, view.options, view.today)
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

    def __init__(self, *, use_demand: bool = True, gate: bool = True, admission: bool = True) -> None:
        self.use_demand = use_demand
        self.gate = gate
        self.admission = admission

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


def make_policy(
    name: str, *, gate: bool = True, use_demand: bool = True, admission: bool = True
) -> SimPolicy:
    """The policy called `name` (one of POLICIES). Raises UsageError for an unknown name."""
    if name == "static":
        return StaticPolicy()
    if name == "qauvern":
        return QauvernPolicy()
    if name == "qauvern-hpc":
        return QauvernHpcPolicy(use_demand=use_demand, gate=gate, admission=admission)
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
