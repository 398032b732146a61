"""The fair demand signal (extension a): how an instance's need for QPU time adds to its activity score.
Pure, standard library only.

Need = QPU seconds of its Slurm-pending jobs + its work in flight at IBM (`DemandSignal.need_seconds`),
weighed against its entitlement E (its share of the budget per 28 days) through its position
rho = (28-day usage + usage IBM does not report yet) / E:

* under budget: `w_q * min(need, limit headroom, E) * clamp(1 / max(rho, rho_min), f_min, f_max) * age
  + w_0 * [need > 0] + w_r * unreported`;
* over budget: `w_0 * [need > 0] * clamp(1 / rho, f_min, f_max) * age` (presence only: docs/simulation.md
  measured that queue volume must not drive the over-budget split).

`age = 1 + a * min(oldest wait in days, in Slurm or at IBM, max_days)`. Weights: `model.DemandWeights`.
Invariants: no need and nothing unreported -> 0 points (an idle instance stays inactive); the volume term
never counts more than the instance's headroom under its limit nor more than its entitlement, so a big
backlog cannot buy more than its share; an instance with any need gets at least the presence term (never
starved: a course with one job and no usage gets `w_0`, plus `w_q * need * f_max` under budget).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from qauvern_hpc.planner.model import (
    GRANT_DEFAULT_DAYS,
    DemandSignal,
    DemandWeights,
    InstanceSettings,
    InstanceSnapshot,
)

_DAY = 86400.0


def entitlements(
    budget_seconds: int,
    settings: Sequence[InstanceSettings],
    limits: Sequence[int | None],
    given: Sequence[float],
) -> list[float]:
    """Each instance's entitlement (seconds per 28 days), in `settings` order: `given` when > 0, else its
    balance-period target pro rata (target x 28 days / period days), else the budget split by effective
    limits (when every instance has one), else the budget split evenly."""
    n = len(settings)
    if n == 0:
        return []
    all_limited = all(lim is not None and lim > 0 for lim in limits)
    total_limits = sum(lim or 0 for lim in limits)
    out: list[float] = []
    for s, lim, g in zip(settings, limits, given, strict=True):
        if g > 0:
            out.append(float(g))
        elif s.target_usage_seconds is not None and s.balance_period is not None:
            days = (s.balance_period.end_date - s.balance_period.start_date).days
            out.append(s.target_usage_seconds * GRANT_DEFAULT_DAYS / max(1, days))
        elif all_limited and total_limits > 0:
            out.append(budget_seconds * (lim or 0) / total_limits)
        else:
            out.append(budget_seconds / n)
    return out


def demand_terms(
    snapshot: InstanceSnapshot,
    demand: DemandSignal,
    weights: DemandWeights,
    *,
    over_budget: bool = False,
    limit_seconds: int | None = None,
    entitlement_seconds: float = 0.0,
) -> dict[str, float]:
    """Every term of the fair demand score (breakdown keys; `demand_score` is what the score gains).
    `entitlement_seconds` is used when the signal gives none; with neither, rho is unknown and the
    fairness factor is 1."""
    w = weights
    need = demand.need_seconds
    present = 1.0 if demand.present else 0.0
    unreported = max(0.0, float(demand.recent_seconds) - snapshot.consumed_24h_seconds)
    ent = demand.entitlement_seconds if demand.entitlement_seconds > 0 else entitlement_seconds
    used = snapshot.consumed_28d_seconds + unreported
    rho = used / ent if ent > 0 else -1.0  # -1: unknown
    if rho < 0:
        fair = 1.0
    elif over_budget:
        fair = min(w.fairness_max, max(w.fairness_min, 1.0 / rho if rho > 0 else math.inf))
    else:
        fair = min(w.fairness_max, max(w.fairness_min, 1.0 / max(rho, w.fairness_min_ratio)))
    oldest = max(demand.oldest_pending_age_seconds, demand.oldest_wait_seconds)
    age_factor = 1.0 + w.age_boost_per_day * min(oldest / _DAY, w.age_boost_max_days)
    counted = need
    if limit_seconds is not None:
        counted = min(counted, max(0.0, float(limit_seconds - snapshot.consumed_28d_seconds)))
    if ent > 0:
        counted = min(counted, ent)
    if over_budget:
        volume = 0.0
        presence = w.pending_job_weight * present * fair * age_factor
        recent = 0.0
    else:
        volume = w.queued_seconds_weight * counted * fair * age_factor
        presence = w.pending_job_weight * present
        recent = w.recent_seconds_weight * unreported
    queue = volume + presence
    return {
        "queued_seconds": float(demand.queued_seconds),
        "pending_jobs": float(demand.pending_jobs),
        "inflight_seconds": float(demand.inflight_seconds),
        "need_seconds": need,
        "counted_need_seconds": 0.0 if over_budget else counted,
        "entitlement_seconds": float(ent),
        "usage_ratio": rho,
        "fairness_factor": fair,
        "oldest_pending_age_hours": oldest / 3600.0,
        "age_factor": age_factor,
        "demand_volume": volume,
        "demand_presence": presence,
        "demand_queue": queue,
        "unreported_recent_seconds": unreported,
        "demand_recent": recent,
        "demand_score": queue + recent,
    }


def explain_demand(parts: Mapping[str, float]) -> str:
    """The demand part of `optimizer.explain_score`, e.g.
    ` + need 12800.0 (2 jobs, 100s pending + 0s in flight, used 0% of entitlement, x4.00 fair, x1.00 age)
    + presence 1920.0 + unreported 0.0 (0s)`."""
    rho = parts.get("usage_ratio", -1.0)
    position = f"used {rho:.0%} of entitlement" if rho >= 0 else "no entitlement known"
    return (
        f" + need {parts['demand_volume']:.1f} ({parts['pending_jobs']:.0f} jobs, "
        f"{parts['queued_seconds']:.0f}s pending + {parts['inflight_seconds']:.0f}s in flight, {position}, "
        f"x{parts['fairness_factor']:.2f} fair, x{parts['age_factor']:.2f} age, "
        f"oldest {parts['oldest_pending_age_hours']:.1f}h)"
        f" + presence {parts['demand_presence']:.1f}"
        f" + unreported {parts['demand_recent']:.1f} ({parts['unreported_recent_seconds']:.0f}s)"
    )


__all__ = ["demand_terms", "entitlements", "explain_demand"]
