"""Shared rendering of the read-only admin commands (`show`, `instances`, `analyze`, `create`): the console,
JSON, durations, the account summary table. Not a command itself; what they read from IBM is in
`qauvern_hpc.ops.account`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from qauvern_hpc.core.units import format_seconds, to_qau
from qauvern_hpc.planner.admin_report import AccountSummary, format_fairness

if TYPE_CHECKING:
    import argparse

    from rich.console import Console

    from qauvern_hpc.config import Config

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


def period_text(row: Any) -> str:
    """An instance row's usage period, with IBM's limit-reached flag."""
    text = row.usage_period["label"] if row.usage_period else "-"
    return text + (" [red](limit reached)[/red]" if row.limit_reached else "")


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
    t.add_row("Usage period", s.usage_period)
    t.add_row("Consumed (all instances)", dur(s.consumed_seconds))
    t.add_row("Consumed (configured)", dur(s.configured_consumed_seconds))
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
    "console",
    "dur",
    "emit_json",
    "fairness_markup",
    "limit_text",
    "load_admin_config",
    "period_text",
    "print_account",
    "summary_dict",
]


def load_admin_config(args: Any) -> Config:
    """The site config for an admin command. Key files are checked only if a key is read from them."""
    from qauvern_hpc.config import load_config

    return load_config(args.config, check_key_files=False)
