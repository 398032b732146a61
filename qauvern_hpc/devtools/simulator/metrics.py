"""The figures of a simulation run and the small statistics behind them. Pure.

* `used_share`: quantum seconds the account's jobs consumed / the seconds it purchased over the span
  (budget per 28 days, pro rata). It can exceed 1 when backends are idle enough to run over allocation.
* `wasted_seconds`: purchased time left unused while work was queued. The account buys
  `rate = budget / 28 days` QPU-seconds per second; over every stretch of time in which at least one of its
  jobs was waiting (pending or gated in Slurm, waiting at IBM, or waiting to be resubmitted) and its 28-day
  usage was below the budget, `max(0, rate - backends serving it) x duration` is counted.
* `wait_median` / `wait_p95`: submit -> quantum work done, per job; a job not done when the run ends counts
  with its wait so far (a lower bound; `jobs_unfinished` says how many).
* `limit_hit_jobs`: jobs that failed at IBM at least once because their instance was at its limit
  (`limit_failures` counts every such failure); `timeouts`: attempts that reached their wall limit.
* `held_wait_seconds`: Slurm slot time held by running QPU jobs while IBM did not serve them (queued at
  IBM, backend down, behind other customers or our other instances): per attempt, its length minus the
  quantum seconds served in it. `held_wait_slot_hours` in hours.
* per project (`projects[p]`): `wait_median_seconds`, `wait_p95_seconds`, `timeouts`, `held_wait_seconds`;
  `worst_project_p95_seconds` is the largest project p95.
* `bound_*` (set by the runner, from `bound.py`, the same for every policy on a trace and seed): the
  provable lower bound of the median / p95 wait, and the clairvoyant SRPT reference (not a bound).
* `jain`: Jain's fairness index of consumed/entitled per project (Slurm account). A project's entitlement
  is its max-min fair share of the purchased time, capped at what it asked for (its jobs' quantum seconds):
  1.0 = every project got the same fraction of its fair share.
* `allocation_changes`: instance allocations changed (summed over runs); `rebalances_changed`: runs that
  changed at least one; `moved_seconds`: the sum of |change|.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks; NaN when empty."""
    xs = sorted(values)
    if not xs:
        return math.nan
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def jain_index(xs: Sequence[float]) -> float:
    """(sum x)^2 / (n * sum x^2): 1.0 when all equal, 1/n when one takes everything; NaN when empty/zero."""
    if not xs:
        return math.nan
    sq = sum(x * x for x in xs)
    if sq == 0:
        return math.nan
    return sum(xs) ** 2 / (len(xs) * sq)


def maxmin_shares(total: float, demands: Mapping[str, float]) -> dict[str, float]:
    """Max-min fair split of `total` among the keys, none getting more than its demand."""
    out = {k: 0.0 for k in demands}
    open_keys = sorted(k for k, d in demands.items() if d > 0)
    left = float(total)
    while open_keys and left > 1e-9:
        share = left / len(open_keys)
        satisfied = [k for k in open_keys if demands[k] - out[k] <= share]
        if not satisfied:
            for k in open_keys:
                out[k] += share
            break
        for k in satisfied:
            left -= demands[k] - out[k]
            out[k] = demands[k]
        open_keys = [k for k in open_keys if k not in satisfied]
    return out


@dataclass(slots=True)
class Series:
    """Per-instance time series for plots (days since start; seconds)."""

    days: list[float] = field(default_factory=list)
    allocation: dict[str, list[int]] = field(default_factory=dict)
    usage_28d: dict[str, list[int]] = field(default_factory=dict)
    limit: dict[str, list[int | None]] = field(default_factory=dict)


@dataclass(slots=True)
class RunResult:
    policy: str
    days: float
    rebalance_every_hours: float
    seed: int
    budget_seconds: int
    purchased_seconds: float
    used_seconds: int
    wasted_seconds: int
    jobs_total: int
    jobs_refused: int
    jobs_done: int
    jobs_unfinished: int
    wait_median_seconds: float
    wait_p95_seconds: float
    limit_hit_jobs: int
    limit_failures: int
    timeouts: int
    held_wait_seconds: int
    worst_project_p95_seconds: float
    admissions: int  # admission decisions made
    jain: float
    rebalances: int
    rebalances_changed: int
    rebalances_refused: int
    allocation_changes: int
    moved_seconds: int
    instances: dict[str, dict[str, Any]]
    projects: dict[str, dict[str, Any]]
    series: Series = field(default_factory=Series)
    bound: dict[str, float] | None = None  # bound.Bound.figures() of the trace and seed
    waits: list[float] = field(default_factory=list)  # per mapped job, by trace row (not in to_dict)

    @property
    def held_wait_slot_hours(self) -> float:
        return self.held_wait_seconds / 3600

    @property
    def used_share(self) -> float:
        return self.used_seconds / self.purchased_seconds if self.purchased_seconds else math.nan

    @property
    def wasted_share(self) -> float:
        return self.wasted_seconds / self.purchased_seconds if self.purchased_seconds else math.nan

    def figures(self) -> dict[str, Any]:
        """The headline figures (JSON-ready; NaN -> None)."""

        def clean(v: float) -> float | None:
            return None if isinstance(v, float) and math.isnan(v) else round(v, 4)

        return {
            "used_share": clean(self.used_share),
            "used_seconds": self.used_seconds,
            "purchased_seconds": round(self.purchased_seconds),
            "wasted_seconds": self.wasted_seconds,
            "wasted_share": clean(self.wasted_share),
            "wait_median_seconds": clean(self.wait_median_seconds),
            "wait_p95_seconds": clean(self.wait_p95_seconds),
            "jobs_total": self.jobs_total,
            "jobs_refused": self.jobs_refused,
            "jobs_done": self.jobs_done,
            "jobs_unfinished": self.jobs_unfinished,
            "limit_hit_jobs": self.limit_hit_jobs,
            "limit_failures": self.limit_failures,
            "timeouts": self.timeouts,
            "held_wait_slot_hours": round(self.held_wait_slot_hours, 2),
            "worst_project_p95_seconds": clean(self.worst_project_p95_seconds),
            "admissions": self.admissions,
            "jain": clean(self.jain),
            "rebalances": self.rebalances,
            "rebalances_changed": self.rebalances_changed,
            "rebalances_refused": self.rebalances_refused,
            "allocation_changes": self.allocation_changes,
            "moved_seconds": self.moved_seconds,
            **(self.bound or {}),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "days": self.days,
            "rebalance_every_hours": self.rebalance_every_hours,
            "seed": self.seed,
            "budget_seconds": self.budget_seconds,
            **self.figures(),
            "instances": self.instances,
            "projects": self.projects,
        }


def project_figures(
    purchased_seconds: float,
    demand_by_project: Mapping[str, float],
    used_by_project: Mapping[str, int],
    by_project: Mapping[str, tuple[list[float], list[int]]],
) -> tuple[dict[str, dict[str, Any]], list[float]]:
    """Per project: demand, max-min entitlement, use, waits (median, p95), timeouts and held seconds
    (`by_project`: the project's job waits and its [timeouts, held seconds]); and every project's
    used/entitled ratio, for Jain's index."""
    entitled = maxmin_shares(purchased_seconds, dict(demand_by_project))
    ratios: list[float] = []
    projects: dict[str, dict[str, Any]] = {}
    for p in sorted(demand_by_project):
        used = used_by_project.get(p, 0)
        ent = entitled[p]
        ratios.append(used / ent if ent > 0 else 0.0)
        pw, pc = by_project[p]
        projects[p] = {
            "demand_seconds": int(demand_by_project[p]),
            "entitled_seconds": round(ent),
            "used_seconds": used,
            "jobs": len(pw),
            "wait_median_seconds": percentile(pw, 50),
            "wait_p95_seconds": percentile(pw, 95),
            "timeouts": pc[0],
            "held_wait_seconds": pc[1],
        }
    return projects, ratios


__all__ = [
    "RunResult",
    "Series",
    "jain_index",
    "maxmin_shares",
    "percentile",
    "project_figures",
]
