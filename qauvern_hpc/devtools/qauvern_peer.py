"""qauvern 0.14 (PyPI `qauvern`, a test/bench dependency) as a library: our planner inputs as its models.

The simulator's `qauvern` policy and the differential tests both go through `optimizer_for`, so the two
compare the same thing. Instances are passed in settings (config) order, as qauvern's CLI loads them: its
water-fill follows that list.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from datetime import UTC, date, datetime
from types import ModuleType
from typing import Any

from qauvern_hpc.core.errors import UsageError
from qauvern_hpc.planner.model import AccountSnapshot, InstanceSettings, PlanOptions

QAUVERN_VERSION = "0.14."


def import_qauvern() -> tuple[ModuleType, ModuleType, ModuleType]:
    """qauvern's `models`, `optimizer` and `plan` modules; UsageError when it is missing or not 0.14."""
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
    if not version.startswith(QAUVERN_VERSION):
        raise UsageError(
            f"policy 'qauvern' is calibrated on qauvern 0.14, found qauvern {version}",
            hint="pip install 'qauvern==0.14.0'",
        )
    return models, optimizer, plan


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def optimizer_for(
    account: AccountSnapshot,
    settings: Sequence[InstanceSettings],
    options: PlanOptions,
    today: date,
    *,
    plan: str = "PREMIUM",
    account_id: str | None = None,
) -> Any:
    """qauvern's `AllocationOptimizer` over the same account, instances, limits, grants and options."""
    m, o, p = import_qauvern()
    rank = {c.crn: k for k, c in enumerate(settings)}
    ordered = sorted(account.instances, key=lambda s: rank.get(s.crn, len(rank)))
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
        for s in ordered
    )
    configs = [
        m.InstanceConfig(
            name=c.name,
            crn=c.crn,
            target_limit_seconds=c.limit_seconds,
            net_grants=tuple(
                m.NetGrant(
                    start_date=_midnight(g.start_date),
                    net_grant_seconds=g.net_grant_seconds,
                    end_date=_midnight(g.end_date),
                )
                for g in c.net_grants
            ),
        )
        for c in settings
    ]
    account_plan = m.AccountPlan(
        account_id=account_id or account.account_id or "sim",
        plan=getattr(p.Plan, plan),
        allocation_budget_seconds=account.allocation_budget_seconds,
        unallocated_seconds=account.unallocated_seconds,
        consumed_seconds=account.consumed_seconds,
        limit_seconds=None,
        instances=instances,
    )
    return o.AllocationOptimizer(
        account_plan,
        configs,
        options.minimum_allocation_seconds,
        options.allocation_reserve_percent,
        today=today,
    )


__all__ = ["import_qauvern", "optimizer_for"]
