"""`qauvern-hpc usage`: who spent the quantum time (from the usage ledger `collect` fills)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from qauvern_hpc.commands.admin_common import date_option
from qauvern_hpc.core.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from qauvern_hpc.accounting.ledger.models import UsageRow
    from qauvern_hpc.config import Config
    from qauvern_hpc.core.report_units import Units
    from qauvern_hpc.planner.period import LedgerPeriod

HELP = "quantum usage per user, account, partition, instance, resource or cluster (from the ledger)"
DESCRIPTION = """\
Sum the quantum seconds the collector attributed to Slurm jobs, grouped by one dimension, over a window:
by default the period IBM's limits count over, an explicit --window, --since/--until, or the balance
period of the config (rebalance.balance_period). A job run belongs to the window its job ended in; runs
still going count only in a window that is open at the end (no --until).

The default period follows the instances' plans (from the config: this report asks IBM nothing): the
rolling 28 days (Premium, Open), the Flex contract (ibm.contract_start .. contract_end), everything since
creation (Pay-As-You-Go: all the ledger holds). When the instances' periods differ, --by instance counts
each row over its own instance's period (the `period` column); other groupings count the rolling 28 days
and say so.

--unit: ru (resource units: IBM's own RUs, which the ledger stores for batch sessions' runs; a group with a
run that has none, e.g. a dedicated session's, shows n/a: this report asks IBM nothing, and the ledger's
seconds are not turned into RUs at a guessed rate), qau (1 QAU = 1600 minutes = 96,000 s), hours or
seconds. Default: the config's report.unit, else ru when the ledger holds RUs for a run of the window (IBM
reports the account in RUs), else hours. --json and --csv keep quantum_seconds, quantum_hours and qau and
add resource_units, unit and in_unit.

--by cluster: the Slurm cluster each run was collected from (slurm.cluster / collect --cluster); runs
collected without a cluster name show an empty key.

`pending` marks seconds IBM has not finalized yet (session still open or its
jobs still queued); they are included as reported so far."""
EPILOG = """\
examples:
  qauvern-hpc usage                               per account, over the plans' period
  qauvern-hpc usage --by user --window 7d
  qauvern-hpc usage --by instance --since 2026-11-01 --until 2026-12-01
  qauvern-hpc usage --by account --balance-period
  qauvern-hpc usage --by resource --csv > usage.csv
  qauvern-hpc usage --by cluster                  several clusters collected into one ledger
  qauvern-hpc --json usage --by user

exit codes: 0 ok, 2 bad usage, 3 invalid config, 4 the ledger cannot be opened."""

DIMENSIONS = ("user", "account", "partition", "instance", "resource", "qos", "cluster")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qauvern_hpc.commands.admin_common import add_unit_argument

    parser.add_argument("--by", choices=DIMENSIONS, default="account", help="group by (default: account)")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--window", help="the last DURATION, e.g. 28d (the default), 7d, 12h")
    window.add_argument("--since", help="from DATE (ISO 8601, UTC unless it says)")
    window.add_argument("--balance-period", action="store_true", help="the config's rebalance.balance_period")
    parser.add_argument("--until", help="to DATE (default: now, open-ended)")
    parser.add_argument("--csv", action="store_true", help="CSV on stdout")
    add_unit_argument(parser)


def window(args: argparse.Namespace, cfg: Config, now: float) -> tuple[int | None, int | None, str]:
    """(since, until, label) from the options."""
    from qauvern_hpc.core.units import parse_seconds

    until = date_option(args.until, "--until") if args.until else None
    if args.balance_period:
        period = cfg.rebalance.balance_period
        if period is None:
            raise UsageError("the config has no rebalance.balance_period", hint="use --window or --since")
        since, until = int(period.start_date.timestamp()), int(period.end_date.timestamp())
        return since, until, f"balance period {period.start_date:%Y-%m-%d} .. {period.end_date:%Y-%m-%d}"
    if args.since:
        since = date_option(args.since, "--since")
    else:
        try:
            span = parse_seconds(args.window or "28d")
        except ValueError as exc:
            raise UsageError(f"--window: {exc}") from None
        since = int(now - span)
        if not args.until:
            return since, None, f"last {args.window or '28d'}"
    if until is not None and until <= since:
        raise UsageError("--until must be after the start of the window")
    label = f"{_fmt(since)} .. {_fmt(until) if until else 'now'}"
    return since, until, label


def _fmt(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M")


def ledger_unit(args: argparse.Namespace, cfg: Config, rows: list[UsageRow]) -> Units:
    """--unit, else report.unit, else ru when the ledger holds RUs for a run here. No rates: RUs are
    IBM's own figures only (a group with a run without RUs is n/a)."""
    from qauvern_hpc.commands.admin_common import report_units

    billed = ["ru" if r.runs_without_ru < r.jobs else None for r in rows]
    return report_units(args, cfg, billed)


def rows_for(rows: list[UsageRow], dimension: str, units: Units) -> list[dict[str, Any]]:
    """The report's rows: the ledger's seconds (also in hours and QAU), its RUs, and the figure in `units`."""
    from qauvern_hpc.core.units import QAU_SECONDS

    return [
        {
            dimension: row.key,
            "jobs": row.jobs,
            "quantum_seconds": round(row.quantum_seconds, 3),
            "quantum_hours": round(row.quantum_seconds / 3600, 4),
            "qau": round(row.quantum_seconds / QAU_SECONDS, 6),
            "wall_seconds": row.wall_seconds,
            "resource_units": None if row.resource_units is None else round(row.resource_units, 3),
            "runs_without_ru": row.runs_without_ru,
            "in_unit": units.value(row.quantum_seconds, ru=row.resource_units),
        }
        for row in rows
    ]


def explicit_window(args: argparse.Namespace) -> bool:
    """The admin chose the window (else the plans' periods decide)."""
    return bool(args.window or args.since or args.until or args.balance_period)


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.accounting.ledger import open_ledger
    from qauvern_hpc.config import load_config_full
    from qauvern_hpc.ops.periods import config_periods, usage_per_instance_period

    if args.csv and args.json:
        raise UsageError("--csv and --json are mutually exclusive")
    cfg = load_config_full(args.config, check_key_files=False).config
    now = time.time()
    since, until, label = window(args, cfg, now)
    periods = None if explicit_window(args) else config_periods(cfg, now)
    if periods is not None and periods.all_rolling:
        periods = None  # qauvern 0.14's case: the rolling 28 days, as it always was
    shared = periods.shared if periods is not None else None
    if shared is not None:
        since, until, label = shared.since, shared.until, f"{shared.label} ({shared.plan} plan period)"
    row_periods: list[LedgerPeriod] | None = None
    note = None
    with open_ledger(cfg.ledger.url) as ledger:
        if periods is not None and shared is None and args.by == "instance":
            per_row, waiting = usage_per_instance_period(ledger, periods)
            raw = [r for r, _ in per_row]
            row_periods = [p for _, p in per_row]
            label = "each instance's plan period"
        else:
            raw = ledger.usage_by(args.by, since, until)
            pending = ledger.usage_per_instance(since, until).values()
            waiting = sum(u.pending_runs for u in pending)
    if periods is not None and shared is None and row_periods is None:
        kinds = "; ".join(f"{name}: {p.label}" for name, p in periods.by_instance.items())
        note = (
            f"the instances' plans count usage over different periods ({kinds}): this table counts the "
            "rolling 28 days; --by instance counts each instance over its own, or choose the window with "
            "--window, --since/--until or --balance-period"
        )
    units = ledger_unit(args, cfg, raw)
    rows = rows_for(raw, args.by, units)
    if row_periods is not None:
        for r, p in zip(rows, row_periods, strict=True):
            r["period"] = p.label
    if args.json:
        win: dict[str, Any] = {"since": since, "until": until, "label": label}
        if shared is not None:
            win["period"] = shared.to_dict()
        if row_periods is not None:
            win = {"since": None, "until": None, "label": label}
            win["periods"] = {r.key: p.to_dict() for r, p in zip(raw, row_periods, strict=True)}
        if note is not None:
            win["note"] = note
        doc = {"by": args.by, "unit": units.unit, "window": win}
        print(json.dumps({**doc, "rows": rows}, indent=2))
        return ExitCode.OK
    if args.csv:
        fields = [args.by, "jobs", "quantum_seconds", "quantum_hours", "qau", "wall_seconds"]
        extra = ["period"] if row_periods is not None else []
        writer = csv.DictWriter(sys.stdout, fieldnames=[*fields, "resource_units", "unit", "in_unit", *extra])
        writer.writeheader()
        writer.writerows(
            {
                **{k: r[k] for k in fields},
                "resource_units": r["resource_units"],
                "unit": units.unit,
                "in_unit": r["in_unit"],
                **{k: r[k] for k in extra},
            }
            for r in rows
        )
        if note is not None:
            print(f"qauvern-hpc usage: {note}", file=sys.stderr)
        return ExitCode.OK
    _table(args, rows, raw, units, label, waiting, with_period=row_periods is not None)
    if note is not None:
        print(f"Note: {note}")
    return ExitCode.OK


def _table(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    raw: list[UsageRow],
    units: Units,
    label: str,
    waiting: int,
    *,
    with_period: bool,
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Quantum usage by {args.by}, {label}")
    for col, justify in ((args.by, "left"), ("jobs", "right"), (units.unit, "right"), ("share", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    if with_period:
        table.add_column("period", justify="left")
    total = sum(r["quantum_seconds"] for r in rows) or 1.0
    for r, row in zip(rows, raw, strict=True):
        table.add_row(
            r[args.by] or "-",
            str(r["jobs"]),
            units.text(row.quantum_seconds, ru=row.resource_units),
            f"{100 * r['quantum_seconds'] / total:.1f} %",
            *([r["period"]] if with_period else []),
        )
    Console().print(table)
    if waiting:
        print(f"{waiting} run(s) still await IBM's final figure (included as reported so far)")
    missing = sum(r.runs_without_ru for r in raw)
    if units.unit == "ru" and missing:
        print(
            f"{missing} run(s) have no RUs from IBM (dedicated sessions, or collected before IBM reported "
            "RUs): their groups show n/a; --unit hours or qau shows every run"
        )
