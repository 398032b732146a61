"""Shared I/O of the read-only admin commands (`show`, `instances`, `analyze`): reading instances and their
28-day usage from IBM, the account summary, the console. Not a command itself."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from qauvern_hpc.core.errors import ExitCode, QauvernError
from qauvern_hpc.core.units import format_seconds, to_qau
from qauvern_hpc.planner.admin_report import (
    AccountSummary,
    account_summary,
    fairness,
    format_fairness,
    standing,
)

if TYPE_CHECKING:
    import argparse

    from rich.console import Console

    from qauvern_hpc.config import Config
    from qauvern_hpc.ibm import IBMClient

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
        out["utilization_percent"] = None if f is None else round(f * 100, 2)
        out["standing"] = (
            standing(self.consumed_28d_seconds, self.allocation_seconds)
            if self.consumed_28d_seconds is not None and self.allocation_seconds is not None
            else None
        )
        return out


def _region(crn: str) -> str:
    parts = crn.split(":")
    return parts[5] if len(parts) > 5 else "?"


def read_instances(
    client: IBMClient, cfg: Config, *, include_unconfigured: bool = False
) -> list[InstanceRow]:
    """Configured instances (config order), then, if asked, the plan's other instances; with 28-day usage.

    Only the Resource Controller list and `GET /v1/instances/usage` are called: no account or analytics
    call, so a key without account-admin rights works. A row's `error` says why a figure is missing.
    """
    listed = client.list_instances(cfg.ibm.plan_id)
    by_crn: dict[str, Any] = {}
    for inst in listed:
        by_crn.setdefault(inst.crn, inst)
    rows: list[InstanceRow] = []
    for ic in cfg.instances:
        got = by_crn.get(ic.crn)
        if got is None:
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
    wanted = [r for r in rows if r.error is None]

    def usage(row: InstanceRow) -> None:
        try:
            row.consumed_28d_seconds = client.instance_usage(row.crn).consumed_seconds
        except QauvernError as exc:
            row.error = f"usage cannot be read: {exc}"

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
    moment = now or datetime.now(UTC)
    plan = client.account_plan(cfg.ibm.account_id, cfg.ibm.plan_id)
    consumed = client.analytics_usage(
        plan=cfg.ibm.plan, account_id=cfg.ibm.account_id, start=moment - timedelta(days=28), end=moment
    )
    configured = [
        (r.allocation_seconds or 0, r.consumed_28d_seconds or 0)
        for r in rows
        if r.configured and r.error is None
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
    )


# ----------------------------------------------------------------------------------------------- output


def console(args: argparse.Namespace) -> Console:
    from rich.console import Console

    return Console(stderr=bool(args.json), highlight=False, width=None if sys.stdout.isatty() else 160)


def emit_json(doc: object) -> None:
    print(json.dumps(doc, indent=2, sort_keys=False, default=str))


def dur(seconds: int | None) -> str:
    """`12.5h (0.47 QAU)`-style durations for tables; '-' for unknown."""
    if seconds is None:
        return "-"
    return (
        f"{format_seconds(seconds)} ({to_qau(seconds):.2f} QAU)"
        if seconds >= 9600
        else format_seconds(seconds)
    )


def limit_text(seconds: int | None) -> str:
    return "none" if seconds is None else dur(seconds)


def fairness_markup(value: float | None, *, over_budget: bool = False) -> str:
    """qauvern's colours: under budget <0.5 green, <1 yellow, else red; over budget >=1 green, else yellow."""
    text = format_fairness(value)
    f = math_inf(value)
    if over_budget:
        colour = "green" if f >= 1.0 else "yellow"
    else:
        colour = "green" if f < 0.5 else ("yellow" if f < 1.0 else "red")
    return f"[{colour}]{text}[/{colour}]"


def math_inf(value: float | None) -> float:
    return float("inf") if value is None else value


def print_account(con: Console, s: AccountSummary) -> None:
    from rich.table import Table

    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("Account", s.account_id)
    t.add_row("Plan", s.plan)
    t.add_row("Allocation budget", dur(s.budget_seconds))
    t.add_row("Unallocated", dur(s.unallocated_seconds))
    t.add_row("Consumed, 28 days (all instances)", dur(s.consumed_seconds))
    t.add_row("Consumed, 28 days (configured)", dur(s.configured_consumed_seconds))
    if s.over_allocation_budget:
        t.add_row(
            "[red]Over allocation budget[/red]",
            f"[red]consumed {dur(s.consumed_seconds)} >= budget {dur(s.budget_seconds)}: allocations are "
            "capped at usage[/red]",
        )
    if s.unmanaged_allocation_seconds:
        t.add_row("Held by unconfigured instances", dur(s.unmanaged_allocation_seconds))
    if s.reserve_percent:
        t.add_row("Reserve", f"{s.reserve_percent:g}% = {dur(s.reserve_seconds)}")
    t.add_row("Available for rebalancing", dur(s.available_seconds))
    t.add_row("Plan limit", "unlimited" if s.limit_seconds is None else dur(s.limit_seconds))
    con.print(t)


def summary_dict(s: AccountSummary) -> dict[str, Any]:
    return asdict(s)


__all__ = [
    "InstanceRow",
    "console",
    "dur",
    "emit_json",
    "fairness_markup",
    "limit_text",
    "print_account",
    "problems_exit_code",
    "read_account",
    "read_instances",
    "summary_dict",
]
