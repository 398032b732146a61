"""`qauvern-hpc report`: a self-contained HTML usage report (or its figures as JSON) from the usage ledger."""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from qauvern_hpc.commands.admin_common import date_option
from qauvern_hpc.core.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from qauvern_hpc.config import Config
    from qauvern_hpc.core.report_units import Units
    from qauvern_hpc.reports.model import Window

HELP = "an HTML usage report for directors and project leads (usage, shares, forecast, waits, top jobs)"
DESCRIPTION = """\
Write one self-contained HTML file (charts inline, no script, nothing fetched: it opens offline and can be
mailed) from the usage ledger `collect` fills: each instance's rolling 28-day usage against its allocation
and limit, usage per day by account, user or instance; each project's (instance's) share of the usage
against its entitlement (its allocation's share); when each instance reaches its limit at its last 7 days'
pace (over its plan's period from the config: the rolling 28 days, or without roll-off the Flex contract
or, Pay-As-You-Go, everything since creation); the rebalancer's changes and why (its audit log); Slurm
pending times and how the QPU job runs ended; the top jobs and users. Allocations come from the
rebalancer's audit log, limits from it or the config: the report asks neither IBM nor Slurm anything.

Window: the last --period (a duration, default 28d, or a month YYYY-MM), or --since [--until]. A job run
belongs to the window its job ended in. --unit as in `usage` (RUs where IBM gave them or a rate is known).
With --json the gathered figures are printed (seconds as stored); --html then writes the page as well."""
EPILOG = """\
examples:
  qauvern-hpc report --html /srv/www/qpu/report.html               the last 28 days, by account
  qauvern-hpc report --html nov.html --period 2026-11 --by user     one calendar month, by user
  qauvern-hpc report --html q4.html --since 2026-10-01 --until 2027-01-01 --by instance --unit qau
  qauvern-hpc --json report --period 7d                             the figures, no page

exit codes: 0 written, 2 bad usage (window, options; matplotlib missing for --html), 3 invalid config,
4 the ledger cannot be opened."""

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qauvern_hpc.commands.admin_common import add_unit_argument
    from qauvern_hpc.reports.gather import BY

    parser.add_argument("--html", metavar="FILE", help="write the report here")
    parser.add_argument("--by", choices=BY, default="account", help="break usage down by (default: account)")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--period", help="the last DURATION (default 28d) or a calendar month YYYY-MM")
    window.add_argument("--since", help="from DATE (ISO 8601, UTC unless it says)")
    parser.add_argument("--until", help="to DATE (with --since; default: now)")
    parser.add_argument("--title", default="QPU usage report", help="the page's title")
    add_unit_argument(parser)


def window_of(args: argparse.Namespace, now: float) -> Window:
    """The report's window from --period / --since / --until."""
    from qauvern_hpc.core.units import parse_seconds
    from qauvern_hpc.reports.model import Window, time_text

    if args.until and not args.since:
        raise UsageError("--until needs --since", hint="or --period YYYY-MM for a calendar month")
    if args.since:
        since = date_option(args.since, "--since")
        until = date_option(args.until, "--until") if args.until else None
        if until is not None and until <= since:
            raise UsageError("--until must be after --since")
        end = int(now) if until is None else until
        label = f"{time_text(since)} .. {time_text(until) if until else 'now'}"
        return Window(since, end, label, until is None)
    period = args.period or "28d"
    month = _MONTH.match(period)
    if month:
        year, mon = int(month.group(1)), int(month.group(2))
        if not 1 <= mon <= 12:
            raise UsageError(f"--period: no month {mon} in {period!r}")
        start = datetime(year, mon, 1, tzinfo=UTC)
        stop = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
        return Window(int(start.timestamp()), int(stop.timestamp()), start.strftime("%B %Y"), False)
    try:
        span = parse_seconds(period)
    except ValueError as exc:
        raise UsageError(f"--period: {exc} (a duration such as 28d, or a month such as 2026-11)") from None
    if span <= 0:
        raise UsageError("--period must be longer than 0")
    return Window(int(now - span), int(now), f"last {period}", True)


def _units(args: argparse.Namespace, cfg: Config, has_ru: bool) -> Units:
    """--unit, else report.unit, else ru when the ledger holds RUs (as `usage`); RU rate: the config's."""
    from qauvern_hpc.commands.admin_common import report_units

    rate = cfg.ibm.resource_units_per_second
    return report_units(args, cfg, ["ru"] if has_ru else [], {i.name: rate for i in cfg.instances})


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.accounting.ledger import open_ledger
    from qauvern_hpc.config import load_config_full
    from qauvern_hpc.ops.periods import config_periods
    from qauvern_hpc.reports.gather import gather
    from qauvern_hpc.reports.periods import plan_forecasts

    if not args.html and not args.json:
        raise UsageError("nothing to write", hint="--html FILE, or --json for the figures")
    cfg = load_config_full(args.config, check_key_files=False).config
    window = window_of(args, time.time())
    limits = {i.name: i.limit_seconds for i in cfg.instances}
    started = time.monotonic()
    with open_ledger(cfg.ledger.url) as ledger:
        data = gather(ledger, window, by=args.by, limits=limits)
        periods = config_periods(cfg, data.generated_at)
        if not periods.all_rolling:  # Flex, Pay-As-You-Go: the forecast over the period, no roll-off
            data = plan_forecasts(ledger, data, {n: periods.of(n) for n in data.forecasts})
    has_ru = any(r.resource_units is not None for r in data.by_rows)
    units = _units(args, cfg, has_ru)
    out: Path | None = None
    if args.html:
        from qauvern_hpc.core.files import atomic_write
        from qauvern_hpc.reports.html import render

        out = Path(args.html)
        if out.is_dir():
            raise UsageError(f"--html {out} is a directory", hint="name the file to write, e.g. report.html")
        atomic_write(out, render(data, units, title=args.title), mode=0o644)
    seconds = time.monotonic() - started
    if args.json:
        doc = {"unit": units.to_dict(), "html": str(out) if out else None, **data.to_dict()}
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(f"wrote {out} ({data.totals['jobs']} job runs, {window.label}, {seconds:.1f} s)")
    return ExitCode.OK
