"""What the read-only admin commands (`show`, `instances`) read from IBM: each instance's allocation, limit
and usage over its plan's period (`usage_period`: the rolling 28 days, the Flex contract, Pay-As-You-Go since
creation), and the account summary.

Invariants: only reads; instance usage is read in parallel (at most IBM_WORKERS calls at a time); a row whose
figures cannot be read carries an `error` instead of failing the whole list.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from qauvern_hpc.core.errors import ExitCode, QauvernError
from qauvern_hpc.ibm.crn import crn_or_none
from qauvern_hpc.ibm.units import rate_of, valid_rate
from qauvern_hpc.planner.admin_report import AccountSummary, account_summary, fairness, standing

if TYPE_CHECKING:
    from qauvern_hpc.config import Config
    from qauvern_hpc.core.report_units import Units
    from qauvern_hpc.ibm import IBMClient
    from qauvern_hpc.ibm.models import Instance

IBM_WORKERS = 8


@dataclass
class InstanceRow:
    name: str
    crn: str
    region: str
    allocation_seconds: int | None
    limit_seconds: int | None
    consumed_28d_seconds: int | None
    configured: bool
    error: str | None = None
    usage_period: dict[str, Any] | None = None  # planner.period.UsageWindow.to_dict(): what usage counts over
    limit_reached: bool | None = None  # IBM's usage_limit_reached
    other_plan: str | None = None  # configured, on a plan other than ibm.plan: not read, not totalled
    consumed_ru: float | None = None  # IBM's own RU figure of the usage, when it sent one
    usage_unit: str | None = None  # the unit IBM reported the usage in (ibm.models.InstanceUsage.unit)
    ru_rate: float | None = None  # RUs per second (ibm.units.rate_of, else ibm.resource_units_per_second)

    @property
    def note(self) -> str | None:
        """What to show instead of the figures: "other plan (X)" for an instance of another plan."""
        return f"other plan ({self.other_plan})" if self.other_plan else None

    @property
    def fairness(self) -> float | None:
        if self.consumed_28d_seconds is None or self.allocation_seconds is None:
            return None
        return fairness(self.consumed_28d_seconds, self.allocation_seconds)

    @property
    def utilization(self) -> float | None:
        f = self.fairness
        return None if f is None else f * 100

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        f = self.fairness
        out["fairness"] = f
        out["note"] = self.note
        out["utilization_percent"] = None if f is None else round(f * 100, 2)
        out["standing"] = (
            standing(self.consumed_28d_seconds, self.allocation_seconds)
            if self.consumed_28d_seconds is not None and self.allocation_seconds is not None
            else None
        )
        return out

    def in_unit(self, units: Units) -> dict[str, float | None]:
        """The row's figures in the report's unit (IBM's RUs for the usage where it sent them)."""
        return {
            "allocation": units.value(self.allocation_seconds, self.crn),
            "limit": units.value(self.limit_seconds, self.crn),
            "consumed": units.value(self.consumed_28d_seconds, self.crn, ru=self.consumed_ru),
        }


def _region(crn: str) -> str:
    parsed = crn_or_none(crn)
    return parsed.region if parsed else "?"


def read_instances(
    client: IBMClient, cfg: Config, *, include_unconfigured: bool = False
) -> list[InstanceRow]:
    """Configured instances (config order), then, if asked, the plan's other instances; with 28-day usage.

    Only the Resource Controller list and `GET /v1/instances/usage` are called: no account or analytics
    call, so a key without account-admin rights works. A row's `error` says why a figure is missing.
    """
    listed = client.list_instances(cfg.ibm.plan_id)
    by_crn: dict[str, Instance] = {}
    for inst in listed:
        by_crn.setdefault(inst.crn, inst)
    rows: list[InstanceRow] = []
    for ic in cfg.instances:
        got = by_crn.get(ic.crn)
        plan = cfg.plan_of(ic.name)
        if plan != cfg.ibm.plan:  # listed by plan: IBM's allocation budget (and this list) is per plan
            row = InstanceRow(ic.name, ic.crn, _region(ic.crn), None, None, None, True, other_plan=plan)
            rows.append(row)
        elif got is None:
            rows.append(
                InstanceRow(
                    ic.name,
                    ic.crn,
                    _region(ic.crn),
                    None,
                    None,
                    None,
                    True,
                    f"not in the account's {cfg.ibm.plan} plan (unknown, deleted, or another plan/account)",
                )
            )
        elif got.archived:
            rows.append(
                InstanceRow(ic.name, ic.crn, _region(ic.crn), 0, got.limit_seconds, None, True, "archived")
            )
        else:
            rows.append(
                InstanceRow(
                    ic.name, ic.crn, _region(ic.crn), got.allocation_seconds, got.limit_seconds, None, True
                )
            )
    if include_unconfigured:
        known = {ic.crn for ic in cfg.instances}
        for crn, got in by_crn.items():
            if crn not in known and not got.archived:
                rows.append(
                    InstanceRow(
                        got.name, crn, _region(crn), got.allocation_seconds, got.limit_seconds, None, False
                    )
                )
    fallback = valid_rate(cfg.ibm.resource_units_per_second)
    for row in rows:
        listed_row = by_crn.get(row.crn)
        row.ru_rate = (rate_of(listed_row) if listed_row is not None else None) or fallback
    wanted = [r for r in rows if r.error is None and r.other_plan is None]
    moment = datetime.now(UTC)

    def usage(row: InstanceRow) -> None:
        from qauvern_hpc.rebalance.gather import instance_window

        try:
            got = client.instance_usage(row.crn)
            row.consumed_28d_seconds = got.consumed_seconds
            row.limit_reached = got.limit_reached
            row.consumed_ru, row.usage_unit = got.consumed_ru, got.unit
        except QauvernError as exc:
            row.error = f"usage cannot be read: {exc}"
            return
        listed = by_crn.get(row.crn)
        created = listed.created if listed is not None else None
        try:
            row.usage_period = instance_window(cfg, row.crn, got.usage_period, created, moment).to_dict()
        except QauvernError as exc:
            row.error = f"usage period unknown: {exc}"

    if wanted:
        with ThreadPoolExecutor(max_workers=min(IBM_WORKERS, len(wanted))) as pool:
            list(pool.map(usage, wanted))
    return rows


def problems_exit_code(rows: list[InstanceRow]) -> int:
    """4 when IBM could not tell an instance's usage, 3 when a configured instance is not in the plan."""
    if any(r.error and r.error.startswith("usage cannot be read") for r in rows):
        return ExitCode.UNAVAILABLE
    if any(r.error and r.configured for r in rows):
        return ExitCode.CONFIG
    return ExitCode.OK


def read_account(
    client: IBMClient, cfg: Config, rows: list[InstanceRow], *, now: datetime | None = None
) -> AccountSummary:
    """The account plan (admin rights needed) and plan-wide 28-day usage, summarised with `rows`."""
    from qauvern_hpc.planner.period import account_window

    moment = now or datetime.now(UTC)
    plan = client.account_plan(cfg.ibm.account_id, cfg.ibm.plan_id)
    told = [r.usage_period for r in rows if r.usage_period and r.usage_period["source"] == "ibm"]
    if cfg.ibm.plan == "flex" and cfg.ibm.contract_start is None and told:
        first = min(told, key=lambda p: str(p["start"]))
        window = account_window(
            "flex",
            now=moment,
            contract_start=datetime.fromisoformat(first["start"]),
            contract_end=datetime.fromisoformat(first["end"]) if first["end"] else None,
        )
    else:
        window = account_window(
            cfg.ibm.plan, now=moment, contract_start=cfg.ibm.contract_start, contract_end=cfg.ibm.contract_end
        )
    consumed = client.analytics_usage(
        plan=cfg.ibm.plan,
        account_id=cfg.ibm.account_id,
        start=window.start,
        end=window.counted_until(moment),
    )
    configured = [
        (r.allocation_seconds or 0, r.consumed_28d_seconds or 0)
        for r in rows
        if r.configured and r.error is None and r.other_plan is None
    ]
    return account_summary(
        account_id=cfg.ibm.account_id,
        plan=cfg.ibm.plan,
        budget=plan.budget_seconds,
        unallocated=max(0, plan.unallocated_seconds),
        consumed=consumed,
        limit=plan.limit_seconds,
        configured=configured,
        minimum=cfg.minimum_allocation_seconds,
        reserve_percent=cfg.allocation_reserve_percent,
        usage_period=window.label,
    )
