"""The site config -> the planner's inputs (`InstanceSettings`, `PlanOptions`). Pure.

Config order is kept (it is the water-fill order). Only the instances of `ibm.plan` are planned: IBM's
allocation budget is per plan, so an instance on another plan (`instances[].plan`) has no share of it to move;
`left_out` says which instances that leaves out and why. Duplicate CRNs and unknown keys are refused when the
config loads (`qauvern_hpc.config`); `instance_settings` checks CRNs again so a config built in code cannot
slip one through.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qauvern_hpc.config import Config, DemandConfig
from qauvern_hpc.planner.model import (
    BalancePeriod,
    DemandWeights,
    DuplicateInstanceError,
    InstanceSettings,
    NetGrant,
    PlanOptions,
)


@dataclass(frozen=True)
class LeftOut:
    """A configured instance the rebalancer does not plan."""

    name: str
    crn: str
    plan: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "crn": self.crn, "plan": self.plan, "reason": self.reason}


def left_out(cfg: Config) -> list[LeftOut]:
    """The configured instances on a plan other than `ibm.plan`, in config order, with the reason."""
    out = []
    for inst in cfg.instances:
        plan = cfg.plan_of(inst.name)
        if plan == cfg.ibm.plan:
            continue
        why = f"other plan ({plan}): IBM's allocation budget is per plan; this run plans {cfg.ibm.plan}"
        if plan == "open":
            why = "Open plan: no allocation to move (IBM's allocation budget is per plan)"
        out.append(LeftOut(inst.name, inst.crn, plan, why))
    return out


def instance_settings(cfg: Config) -> list[InstanceSettings]:
    period = None
    bp = cfg.rebalance.balance_period
    if bp is not None:
        period = BalancePeriod(bp.start_date, bp.end_date)
    out: list[InstanceSettings] = []
    seen: dict[str, str] = {}
    for inst in cfg.instances:
        if cfg.plan_of(inst.name) != cfg.ibm.plan:
            continue  # see left_out
        if inst.crn in seen:
            raise DuplicateInstanceError(
                f"duplicate CRN: instances '{seen[inst.crn]}' and '{inst.name}' are the same IBM instance"
            )
        seen[inst.crn] = inst.name
        grants = tuple(NetGrant(g.start_date, g.end, g.net_grant_seconds) for g in inst.net_grants)
        out.append(
            InstanceSettings(
                crn=inst.crn,
                name=inst.name,
                limit_seconds=inst.limit_seconds,
                net_grants=grants,
                target_usage_seconds=inst.target_usage_seconds,
                balance_period=period if inst.target_usage_seconds is not None else None,
            )
        )
    return out


def demand_weights(d: DemandConfig) -> DemandWeights:
    return DemandWeights(
        queued_seconds_weight=d.queued_seconds_weight,
        pending_job_weight=d.pending_job_weight,
        age_boost_per_day=d.age_boost_per_day,
        age_boost_max_days=d.age_boost_max_days,
        recent_seconds_weight=d.recent_seconds_weight,
        when_over_budget=d.when_over_budget,
        fairness_min_ratio=d.fairness_min_ratio,
        fairness_min=d.fairness_min,
        fairness_max=d.fairness_max,
    )


def plan_options(cfg: Config) -> PlanOptions:
    return PlanOptions(
        minimum_allocation_seconds=cfg.minimum_allocation_seconds,
        allocation_reserve_percent=cfg.allocation_reserve_percent,
        min_change_seconds=cfg.rebalance.min_change_seconds,
        demand_weights=demand_weights(cfg.rebalance.demand),
        retired_grants_keep_paying=cfg.rebalance.retired_grants_keep_paying,
    )


def state_dir(cfg: Config) -> Path:
    """The rebalancer's journal and lock: `rebalance.state_dir`, else `<slurm.state_dir>/rebalance`."""
    return Path(cfg.rebalance.state_dir or Path(cfg.slurm.state_dir) / "rebalance")


__all__ = ["LeftOut", "demand_weights", "instance_settings", "left_out", "plan_options", "state_dir"]
