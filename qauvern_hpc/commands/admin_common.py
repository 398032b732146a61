"""Shared rendering of the read-only admin commands (`show`, `instances`, `analyze`, `create`): the console,
JSON, durations, the account summary table. Not a command itself; what they read from IBM is in
`qauvern_hpc.ops.account`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from qauvern_hpc.core.errors import UsageError
from qauvern_hpc.core.report_units import UNIT_HELP, Units, default_unit
from qauvern_hpc.core.units import format_seconds, to_qau
from qauvern_hpc.planner.admin_report import AccountSummary, format_fairness

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable, Mapping

    from rich.console import Console

    from qauvern_hpc.config import Config

# ----------------------------------------------------------------------------------------------- output


def console(args: argparse.Namespace) -> Console:
    from rich.console import Console

    return Console(stderr=bool(args.json), highlight=False, width=None if sys.stdout.isatty() else 160)


def emit_json(doc: object) -> None:
    print(json.dumps(doc, indent=2, sort_keys=False, default=str))


# ----------------------------------------------------------------------------------------------- units


def date_option(text: str, what: str) -> int:
    """A --since/--until value (ISO 8601; no offset: UTC) -> epoch seconds; `UsageError` naming `what`."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what}: not an ISO date: {text!r} (try 2026-11-01 or 2026-11-01T12:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def add_unit_argument(parser: argparse.ArgumentParser) -> None:
    """`--unit ru|qau|hours|seconds` (`qauvern_hpc.core.report_units`)."""
    parser.add_argument("--unit", choices=("ru", "qau", "hours", "seconds"), help=UNIT_HELP)


def report_units(
    args: argparse.Namespace,
    cfg: Config,
    ibm_units: Iterable[str | None] = (),
    rates: Mapping[str, float | None] | None = None,
) -> Units:
    """The report's unit: --unit, else the config's report.unit, else `default_unit` of what IBM sent."""
    unit = args.unit or default_unit(cfg.report.unit, ibm_units)
    return Units(unit, dict(rates or {}))


def dur(seconds: int | None) -> str:
    """`12.5h (0.47 QAU)`-style durations (`create`'s messages); '-' for unknown."""
    if seconds is None:
        return "-"
    return (
        f"{format_seconds(seconds)} ({to_qau(seconds):.2f} QAU)"
        if seconds >= 9600
        else format_seconds(seconds)
    )


def limit_text(seconds: int | None, units: Units | None = None, key: str | None = None) -> str:
    if seconds is None:
        return "none"
    return dur(seconds) if units is None else units.text(seconds, key)


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


def print_account(con: Console, s: AccountSummary, units: Units) -> None:
    """The account summary in `units` (account-wide figures: the rate every instance shares)."""
    from rich.table import Table

    def dur(seconds: int | None) -> str:
        return units.text(seconds)

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


_SUMMARY_FIGURES = (
    "budget",
    "unallocated",
    "consumed",
    "configured_consumed",
    "configured_allocation",
    "unmanaged_allocation",
    "reserve",
    "available",
    "limit",
)


def summary_dict(s: AccountSummary, units: Units | None = None) -> dict[str, Any]:
    """The summary's seconds fields as they are; with `units`, `in_unit` adds each figure in the unit."""
    out = asdict(s)
    if units is not None:
        out["unit"] = units.unit
        out["in_unit"] = {k: units.value(out[f"{k}_seconds"]) for k in _SUMMARY_FIGURES}
    return out


def summary_from_dict(doc: dict[str, Any]) -> AccountSummary:
    """`summary_dict`'s output back (without what `units` added)."""
    return AccountSummary(**{k: v for k, v in doc.items() if k not in ("unit", "in_unit")})


__all__ = [
    "add_unit_argument",
    "console",
    "dur",
    "emit_json",
    "fairness_markup",
    "limit_text",
    "load_admin_config",
    "period_text",
    "print_account",
    "report_units",
    "summary_dict",
    "summary_from_dict",
]


def load_admin_config(args: Any) -> Config:
    """The site config for an admin command. Key files are checked only if a key is read from them."""
    from qauvern_hpc.config import load_config

    return load_config(args.config, check_key_files=False)
