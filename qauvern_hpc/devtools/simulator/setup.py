"""Site config + scenario + trace -> the simulation's input. Pure apart from nothing: no I/O here.

Each trace row is mapped with the same code the prolog and `qauvern-hpc map` use
(`qauvern_hpc.policy.mapping.decide` on the policy compiled from the config): the rule that allows it gives
the
instance, its resource gives the IBM backend. A row the rules refuse never runs and is counted as refused.
Every mapped job also gets its *pair* (instance, backend): the Slurm license the admission controller caps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta

from qauvern_hpc.admission.model import AdmissionSettings
from qauvern_hpc.config import Config
from qauvern_hpc.devtools.simulator.scenario import BackendLoad, Scenario, ScenarioError
from qauvern_hpc.devtools.simulator.trace import TraceJob
from qauvern_hpc.planner.limits import effective_limit, resolve_limit
from qauvern_hpc.planner.model import InstanceSettings, PlanOptions
from qauvern_hpc.policy.compiled import Policy
from qauvern_hpc.policy.mapping import JobIdentity, decide
from qauvern_hpc.rebalance.settings import instance_settings, plan_options

DAY = 86400


@dataclass(frozen=True, slots=True)
class SimJob:
    """One trace row, mapped. `instance`/`backend` are indices, or -1 when the rules refused the job."""

    index: int
    line: int
    project: str  # the Slurm account
    partition: str  # the first partition named (slot accounting)
    instance: int
    backend: int
    submit: int  # seconds since the simulation start
    quantum_seconds: int
    wall_limit_seconds: int
    refused: str = ""  # the refusal message
    pair: int = -1  # index into SimSetup.pairs, -1 when refused


@dataclass(frozen=True, slots=True)
class SimSetup:
    start: datetime  # t = 0, midnight UTC
    duration: int  # seconds simulated
    budget: int
    instance_names: tuple[str, ...]
    settings: tuple[InstanceSettings, ...]  # config order
    options: PlanOptions
    initial_allocations: tuple[int, ...]
    initial_limits: tuple[int | None, ...]
    backend_names: tuple[str, ...]
    backend_loads: tuple[BackendLoad, ...]
    partitions: tuple[str, ...]
    partition_slots: tuple[int | None, ...]
    jobs: tuple[SimJob, ...]
    resubmit_delay: int
    slice_seconds: int
    demand_enabled: bool
    gate_enabled: bool
    max_job_seconds: int
    recent_window: int
    pairs: tuple[tuple[int, int], ...] = ()  # (instance, backend) in order of first appearance
    admission_enabled: bool = True
    admission_every: int = 30
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)

    @property
    def days(self) -> float:
        return self.duration / DAY

    @property
    def purchased_seconds(self) -> float:
        """What the account paid for over the simulated span (budget per 28 days, pro rata)."""
        return self.budget * self.duration / (28 * DAY)


def build_setup(
    cfg: Config,
    policy: Policy,
    trace: Sequence[TraceJob],
    scenario: Scenario,
    *,
    days: float | None = None,
) -> SimSetup:
    """Map the trace and resolve the scenario against the config. Raises ScenarioError / UsageError."""
    if not cfg.instances:
        raise ScenarioError("the config has no instances: nothing to simulate")
    if not trace:
        raise ScenarioError("the trace has no jobs")
    start_date = scenario.start_for(trace[0].submit_time)
    start = datetime(start_date.year, start_date.month, start_date.day, tzinfo=UTC)
    if trace[0].submit_time < start:
        raise ScenarioError(
            f"trace line {trace[0].line}: submitted {trace[0].submit_time.isoformat()}, "
            f"before the scenario's start_date {start_date.isoformat()}"
        )
    if days is None:
        span = (trace[-1].submit_time - start).total_seconds()
        duration = (int(span) // DAY + 1) * DAY
    else:
        if days <= 0:
            raise ScenarioError(f"--days must be greater than 0, got {days}")
        duration = round(days * DAY)
    budget = scenario.budget_for(cfg)
    options = plan_options(cfg)
    allocations = scenario.initial_allocations(cfg, budget, options.minimum_allocation_seconds)
    settings = tuple(instance_settings(cfg))
    names = tuple(i.name for i in cfg.instances)
    inst_index = {n: k for k, n in enumerate(names)}
    limits: list[int | None] = []
    for s in settings:
        bd = resolve_limit(s.limit_seconds, s.net_grants, {}, today=start_date)
        limits.append(effective_limit(bd, None) if bd is not None else None)

    backends: list[str] = []
    pairs: list[tuple[int, int]] = []
    partitions: list[str] = []
    jobs: list[SimJob] = []
    memo: dict[tuple[str, str, str, str, str], tuple[int, int, str]] = {}
    horizon = start + timedelta(seconds=duration)
    for n, row in enumerate(trace):
        if row.submit_time >= horizon:
            break
        key = (row.user, row.account, row.partition, row.qos, row.qpu)
        hit = memo.get(key)
        if hit is None:
            d = decide(policy, JobIdentity(row.user, row.account, row.partition, row.qos), [row.qpu])
            if d.allowed and d.instance is not None and d.resources:
                backend = d.resources[0].backend
                if backend not in backends:
                    backends.append(backend)
                hit = (inst_index[d.instance], backends.index(backend), "")
            else:
                hit = (-1, -1, d.message)
            memo[key] = hit
        pair = -1
        if hit[0] >= 0:
            if (hit[0], hit[1]) not in pairs:
                pairs.append((hit[0], hit[1]))
            pair = pairs.index((hit[0], hit[1]))
        part = row.partition.split(",")[0].strip()
        if part not in partitions:
            partitions.append(part)
        jobs.append(
            SimJob(
                index=n,
                line=row.line,
                project=row.account,
                partition=part,
                instance=hit[0],
                backend=hit[1],
                submit=int((row.submit_time - start).total_seconds()),
                quantum_seconds=row.quantum_seconds,
                wall_limit_seconds=row.wall_limit_seconds,
                refused=hit[2],
                pair=pair,
            )
        )
    rs = cfg.rebalance
    prefix_ok = bool(rs.slurm.license_prefix)
    return SimSetup(
        start=start,
        duration=duration,
        budget=budget,
        instance_names=names,
        settings=settings,
        options=options,
        initial_allocations=tuple(allocations[n] for n in names),
        initial_limits=tuple(limits),
        backend_names=tuple(backends),
        backend_loads=tuple(scenario.backend_load(b) for b in backends),
        partitions=tuple(partitions),
        partition_slots=tuple(scenario.slots_for(p) for p in partitions),
        jobs=tuple(jobs),
        resubmit_delay=scenario.resubmit_delay,
        slice_seconds=scenario.slice,
        demand_enabled=rs.demand.enabled and prefix_ok,
        gate_enabled=rs.slurm.gate and prefix_ok,
        max_job_seconds=rs.demand.max_job_seconds,
        recent_window=rs.demand.recent_window,
        pairs=tuple(pairs),
        admission_enabled=scenario.admission.enabled,
        admission_every=scenario.admission.every,
        admission=admission_settings(scenario),
    )


def admission_settings(scenario: Scenario) -> AdmissionSettings:
    """The scenario's `admission:` keys other than enabled/every, as the controller's settings."""
    extra = dict(scenario.admission.model_extra or {})
    known = {f.name for f in fields(AdmissionSettings)}
    unknown = sorted(set(extra) - known)
    if unknown:
        raise ScenarioError(
            f"scenario admission: unknown setting(s) {', '.join(unknown)} (known: enabled, every, "
            f"{', '.join(sorted(known))})"
        )
    if scenario.admission.every <= 0:
        raise ScenarioError("scenario admission.every must be greater than 0")
    try:
        return AdmissionSettings(**extra)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"scenario admission: {exc}") from None


__all__ = ["DAY", "SimJob", "SimSetup", "admission_settings", "build_setup"]
