"""Gather a rebalance's inputs: IBM's snapshot, Slurm's queue and associations, the ledger's recent usage.

IBM (through `IBMClient` only), as qauvern 0.14 reads it:

* `list_instances(plan_id)`: every instance of the plan with its allocation and limit (unmanaged ones too:
  their allocation is fixed and counts against the budget);
* `account_plan`: budget, unallocated seconds, plan limit; `analytics_usage(plan=)` over the plan's period
  (`planner.period.account_window`: the last 28 days, or the Flex contract so far): the plan-wide usage that
  decides the over-budget regime;
* per managed instance: `instance_usage` (IBM's figure over the instance's period, with `usage_period` and
  `usage_limit_reached`), analytics over the last 14d/7d/3d/24h, per-day usage (for net grants) and, with
  a target, the usage since the balance period began. The instance's period (`planner.period.usage_window`:
  IBM's `usage_period`, else its plan's rule with the config's Flex contract and IBM's creation time) goes
  into the snapshot for the reports.

A configured instance that is missing from the plan or archived (allocation 0), or whose usage cannot be
read, is an error: the run stops before planning (qauvern 0.14 treated it as unmanaged, silently moving its
allocation into the "unmanaged" bucket).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from qauvern_hpc.config import Config
from qauvern_hpc.core.errors import ConfigError, QauvernError, ServiceUnavailable
from qauvern_hpc.ibm import IBMClient
from qauvern_hpc.ibm.units import rate_of, valid_rate
from qauvern_hpc.planner.model import (
    AccountSnapshot,
    DemandSignal,
    InstanceSettings,
    InstanceSnapshot,
    PlanOptions,
    UnknownInstanceError,
)
from qauvern_hpc.planner.period import UsageWindow, account_window, usage_window
from qauvern_hpc.planner.window import daily_usage_lookback_days
from qauvern_hpc.rebalance.demand import QueueSummary, aggregate_pending, demand_signals
from qauvern_hpc.rebalance.gcpause import gc_paused
from qauvern_hpc.rebalance.settings import LeftOut, instance_settings, left_out, plan_options
from qauvern_hpc.slurm.sacctmgr import Association, Sacctmgr
from qauvern_hpc.slurm.squeue import PendingJob, pending_jobs

log = logging.getLogger("qauvern_hpc.rebalance")

IBM_WORKERS = 8


@dataclass
class Gathered:
    now: float
    today: date
    account: AccountSnapshot
    settings: list[InstanceSettings]
    options: PlanOptions
    queue: QueueSummary | None
    recent_seconds: dict[str, float]
    demand: dict[str, DemandSignal] | None
    associations: list[Association] = field(default_factory=list)
    tres_names: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)  # configured instances of other plans


def _instance_snapshot(
    client: IBMClient,
    cfg: Config,
    s: InstanceSettings,
    listed: Any,
    now: datetime,
    today: date,
) -> InstanceSnapshot:
    account_id = cfg.ibm.account_id
    alloc, limit = listed.extensions.usage_allocation_seconds, listed.extensions.instance_limit_seconds
    try:
        usage = client.instance_usage(s.crn)
        windows = {}
        for key, days in (("14d", 14), ("7d", 7), ("3d", 3), ("24h", 1)):
            windows[key] = client.analytics_usage(
                instance=s.crn, account_id=account_id, start=now - timedelta(days=days), end=now
            )
        daily: dict[date, int] = {}
        if s.net_grants:
            lookback = daily_usage_lookback_days(s.net_grants, today)
            daily = client.daily_usage(
                s.crn, account_id=account_id, start=today - timedelta(days=lookback), end=today
            )
        period_used = None
        if s.target_usage_seconds is not None and s.balance_period is not None:
            start = datetime.combine(s.balance_period.start_date, datetime.min.time(), UTC)
            period_used = (
                client.analytics_usage(instance=s.crn, account_id=account_id, start=start, end=now)
                if start < now
                else 0
            )
    except QauvernError as exc:
        raise ServiceUnavailable(
            f"instance {s.name} ({s.crn}): its usage cannot be read: {exc}",
            hint="an instance whose usage is unknown cannot be planned safely; nothing was changed",
        ) from exc
    window = instance_window(cfg, s.crn, usage.usage_period, listed.created, now)
    return InstanceSnapshot(
        crn=s.crn,
        name=s.name,
        allocation_seconds=alloc,
        limit_seconds=limit,
        consumed_28d_seconds=usage.consumed_seconds,
        consumed_14d_seconds=windows["14d"],
        consumed_7d_seconds=windows["7d"],
        consumed_3d_seconds=windows["3d"],
        consumed_24h_seconds=windows["24h"],
        daily_usage=daily,
        balance_period_consumed_seconds=period_used,
        window=window,
        ibm_limit_reached=usage.limit_reached,
        consumed_ru=usage.consumed_ru,
        usage_unit=usage.unit,
        ru_rate=rate_of(listed) or valid_rate(cfg.ibm.resource_units_per_second),
    )


def _period_from_instances(cfg: Config) -> bool:
    return cfg.ibm.plan == "flex" and cfg.ibm.contract_start is None


def plan_usage_window(cfg: Config, snaps: list[InstanceSnapshot] | None, now: datetime) -> UsageWindow:
    """The period the plan-wide usage counts over. A Flex account without ibm.contract_start takes the
    contract from IBM's usage_period of its instances (the earliest start)."""
    ibm_told = [x.window for x in snaps or () if x.window is not None and x.window.source == "ibm"]
    if _period_from_instances(cfg) and ibm_told:
        return min(ibm_told, key=lambda w: w.start)
    return account_window(
        cfg.ibm.plan, now=now, contract_start=cfg.ibm.contract_start, contract_end=cfg.ibm.contract_end
    )


def _plan_consumed(
    client: IBMClient, cfg: Config, snaps: list[InstanceSnapshot] | None, now: datetime
) -> int:
    window = plan_usage_window(cfg, snaps, now)
    return client.analytics_usage(
        plan=cfg.ibm.plan, account_id=cfg.ibm.account_id, start=window.start, end=window.counted_until(now)
    )


def instance_window(
    cfg: Config, crn: str, period: Any, created: datetime | None, now: datetime
) -> UsageWindow:
    """The period an instance's usage counts over: IBM's `usage_period` (`period`), else its plan's rule."""
    ic = next((i for i in cfg.instances if i.crn == crn), None)
    return usage_window(
        cfg.plan_of(ic.name) if ic is not None else cfg.ibm.plan,
        now=now,
        ibm_start=period.start if period is not None else None,
        ibm_end=period.end if period is not None else None,
        contract_start=cfg.ibm.contract_start,
        contract_end=cfg.ibm.contract_end,
        created_at=created,
        who=f"instance {ic.name if ic is not None else crn}",
    )


def ibm_snapshot(
    client: IBMClient, cfg: Config, settings: list[InstanceSettings], *, now: datetime, today: date
) -> AccountSnapshot:
    plan_id = cfg.ibm.plan_id
    listed = client.list_instances(plan_id)
    by_crn: dict[str, Any] = {}
    for inst in listed:
        by_crn.setdefault(inst.crn, inst)
    missing = [s for s in settings if s.crn not in by_crn]
    if missing:
        raise UnknownInstanceError(
            "configured instance(s) not in the account's "
            f"{cfg.ibm.plan} plan: "
            + ", ".join(f"{s.name} ({s.crn})" for s in missing)
            + " (unknown, deleted, or in another plan/account)"
        )
    archived = [s for s in settings if by_crn[s.crn].extensions.usage_allocation_seconds == 0]
    if archived:
        raise ConfigError(
            "configured instance(s) archived (allocation 0): "
            + ", ".join(f"{s.name} ({s.crn})" for s in archived)
            + "; remove them from the config or give them an allocation"
        )
    plan = client.account_plan(cfg.ibm.account_id, plan_id)
    # the plan-wide usage is read first (as qauvern 0.14 does) unless its period comes from the instances
    consumed = None if _period_from_instances(cfg) else _plan_consumed(client, cfg, None, now)
    managed = {s.crn for s in settings}
    with ThreadPoolExecutor(max_workers=min(IBM_WORKERS, max(1, len(settings)))) as pool:
        futures = [
            pool.submit(
                _instance_snapshot,
                client,
                cfg,
                s,
                by_crn[s.crn],
                now,
                today,
            )
            for s in settings
        ]
        snaps = [f.result() for f in futures]
    if consumed is None:
        consumed = _plan_consumed(client, cfg, snaps, now)
    others = [
        InstanceSnapshot(
            crn=i.crn,
            name=i.name,
            allocation_seconds=i.extensions.usage_allocation_seconds,
            limit_seconds=i.extensions.instance_limit_seconds,
            consumed_28d_seconds=0,
        )
        for crn, i in by_crn.items()
        if crn not in managed
    ]
    return AccountSnapshot(
        allocation_budget_seconds=plan.budget_seconds,
        unallocated_seconds=max(0, plan.unallocated_seconds),
        consumed_seconds=consumed,
        instances=(*snaps, *others),
        limit_seconds=plan.limit_seconds,
        account_id=cfg.ibm.account_id,
    )


def recent_ledger_seconds(cfg: Config, *, now: float) -> dict[str, float]:
    """Instance name -> quantum seconds of runs that ended in the recent window (ledger)."""
    from qauvern_hpc.accounting.ledger import open_ledger

    ledger = open_ledger(cfg.ledger.url)
    try:
        usage = ledger.usage_per_instance(since=int(now - cfg.rebalance.demand.recent_window))
    finally:
        ledger.close()
    return {name: u.quantum_seconds for name, u in usage.items() if name}


def gather(
    cfg: Config,
    client: IBMClient,
    *,
    now: float | None = None,
    sacctmgr: Sacctmgr | None = None,
    squeue: Callable[[], list[PendingJob]] | None = None,
    recent: Callable[[], Mapping[str, float]] | None = None,
) -> Gathered:
    t = time.time() if now is None else now
    moment = datetime.fromtimestamp(t, UTC)
    today = moment.date()
    settings = instance_settings(cfg)
    options = plan_options(cfg)
    account = ibm_snapshot(client, cfg, settings, now=moment, today=today)
    rs = cfg.rebalance
    skipped = left_out(cfg)
    notes: list[str] = [f"{s.name} not planned: {s.reason}" for s in skipped]
    queue: QueueSummary | None = None
    recent_s: dict[str, float] = {}
    demand: dict[str, DemandSignal] | None = None
    names = [i.name for i in cfg.instances]
    # ~10^5 acyclic job tuples and a per-instance summary: collections would only walk the heap
    with gc_paused():
        if rs.demand.enabled:
            if rs.slurm.license_prefix:
                jobs = squeue() if squeue else pending_jobs(cfg.slurm.squeue, clusters=cfg.slurm.cluster)
                queue = aggregate_pending(
                    jobs,
                    rs.slurm.license_prefix,
                    names,
                    now=t,
                    max_job_seconds=rs.demand.max_job_seconds,
                    count_held=rs.demand.count_held,
                )
                if queue.unmapped_jobs:
                    notes.append(
                        f"{queue.unmapped_jobs} pending job(s) carry a {rs.slurm.license_prefix}* license "
                        "of no configured instance (not counted)"
                    )
            else:
                notes.append(
                    "rebalance.slurm.license_prefix is null: pending jobs cannot be mapped, not counted"
                )
            recent_s = dict(recent() if recent else recent_ledger_seconds(cfg, now=t))
            demand = demand_signals(
                queue.by_instance if queue else {}, recent_s, {s.name: s.crn for s in settings}
            )
    mgr = sacctmgr or Sacctmgr(cfg.slurm.sacctmgr, cfg.slurm.cluster)
    associations: list[Association] = []
    tres: set[str] = set()
    if rs.slurm.fairshare or (rs.slurm.gate and rs.slurm.license_prefix):
        associations = mgr.associations()
        tres = mgr.tres_names()
    return Gathered(
        now=t,
        today=today,
        account=account,
        settings=settings,
        options=options,
        queue=queue,
        recent_seconds=recent_s,
        demand=demand,
        associations=associations,
        tres_names=tres,
        notes=notes,
        left_out=skipped,
    )


__all__ = ["Gathered", "gather", "ibm_snapshot", "instance_window", "recent_ledger_seconds"]
