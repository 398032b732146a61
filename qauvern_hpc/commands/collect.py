"""`qauvern-hpc collect`: attribute every quantum second to the Slurm job that spent it (the usage ledger)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from qauvern_hpc.core.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from rich.status import Status

    from qauvern_hpc.accounting.collector import CollectReport

READS_API_KEY = True  # for --reconcile's analytics and instances without a key file of their own
HELP = "collect finished QPU jobs from sacct and their IBM usage into the usage ledger"
DESCRIPTION = """\
Read the QPU jobs from Slurm accounting and their quantum seconds from IBM, and store one ledger row per
job run and QPU resource: cluster, job id (array and het components, requeued runs distinct), user,
account, partition, QOS, resource, instance, IBM session, submit/start/end, wall and quantum seconds, state.

Incremental and idempotent: each cluster has a high-water mark; a run reads the jobs that ended since then
(minus --overlap, for records slurmdbd stored late) and the QPU jobs running now, and the mark moves only
together with the rows it covers (one transaction: if sacct or slurmdbd fails half-way, nothing of that pull
is stored). A job whose usage IBM has not finalized yet (session open, IBM jobs still queued) is stored as
pending and revisited by every later run; re-running never counts a second twice.

IBM's rules decide a job's seconds: a batch session is the sum of its jobs' quantum seconds (failed and
cancelled jobs count the time they held the QPU), a dedicated session is wall clock until it closed.

Several clusters sharing one slurmdbd feed one ledger: list them in the config (slurm.cluster) or pass
--cluster (sacct -M).

--reconcile compares, per instance, the seconds the ledger attributed with what IBM's analytics say the
instance used in the same window; the difference (work done with the instance outside Slurm, or jobs not
collected yet) is shown, not hidden.

--dry-run does all of it (sacct, IBM) in one ledger transaction that is rolled back at the end: the summary
says what a real run would store, and nothing is stored. Progress goes to stderr on a terminal, or with -v."""
EPILOG = """\
examples:
  qauvern-hpc collect                          incremental pull (cron: every 10-15 minutes)
  qauvern-hpc collect --reconcile              and compare with IBM's per-instance usage (28 days)
  qauvern-hpc collect --since 2026-11-01       re-read from a date (the high-water mark is not moved)
  qauvern-hpc collect --no-ibm                 Slurm side only; IBM's seconds on a later run
  qauvern-hpc --json collect                   a summary for scripts
  qauvern-hpc -v collect --dry-run             what a run would store, with progress; stores nothing

exit codes: 0 collected, 4 slurmdbd/sacct or IBM unavailable (whatever was collected is kept; runs IBM
could not be asked about stay pending), 5 another collect is running, 3 invalid config (also: runs of an
instance the config does not know, or without a key to ask IBM with; they stay pending)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster",
        action="append",
        help="cluster to read (repeatable; default: slurm.cluster of the config, else sacct's default)",
    )
    parser.add_argument(
        "--since",
        help="re-read jobs that ended since DATE (ISO 8601) or DURATION ago (e.g. 7d); no mark moves",
    )
    parser.add_argument(
        "--overlap",
        default="15m",
        help="re-read this much before the high-water mark (default 15m)",
    )
    parser.add_argument("--no-ibm", action="store_true", help="do not ask IBM for usage this run")
    parser.add_argument(
        "--reconcile", action="store_true", help="compare attributed seconds per instance with IBM's usage"
    )
    parser.add_argument("--window", default="28d", help="the --reconcile window, ending now (default 28d)")
    parser.add_argument(
        "--dry-run", action="store_true", help="do everything in a transaction that is rolled back"
    )


def parse_since(text: str, now: float) -> int:
    """An ISO date/datetime (UTC unless it says otherwise), or a duration before `now`."""
    from qauvern_hpc.core.units import parse_seconds

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            return int(now - parse_seconds(text))
        except ValueError:
            raise UsageError(f"--since: not a date or duration: {text!r} (try 2026-11-01 or 7d)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


class _ProgressSink:
    """Progress on stderr: a live status line on a terminal, plain lines with -v, else nothing."""

    def __init__(self, verbose: bool) -> None:
        self._status: Status | None = None
        self._lines = verbose and not sys.stderr.isatty()
        if sys.stderr.isatty():
            from rich.console import Console

            self._status = Console(stderr=True).status("collect: starting")

    def __enter__(self) -> _ProgressSink:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()

    def __call__(self, message: str) -> None:
        if self._status is not None:
            self._status.update(f"collect: {message}")
        elif self._lines:
            print(f"collect: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.accounting.collect import CollectOptions, InstanceClients, collect
    from qauvern_hpc.accounting.collector import LOCAL_CLUSTER
    from qauvern_hpc.config import load_config_full
    from qauvern_hpc.config.ibm_access import endpoints_from_config
    from qauvern_hpc.core.units import parse_seconds
    from qauvern_hpc.ibm.factory import resolve_api_key

    cfg = load_config_full(args.config).config
    now = time.time()
    try:
        overlap = parse_seconds(args.overlap)
        window = parse_seconds(args.window)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    options = CollectOptions(
        clusters=tuple(args.cluster or cfg.slurm.cluster or [LOCAL_CLUSTER]),
        now=now,
        overlap=overlap,
        window=window,
        since=parse_since(args.since, now) if args.since else None,
        ibm=not args.no_ibm,
        reconcile=bool(args.reconcile),
        dry_run=bool(getattr(args, "dry_run", False)),
    )
    clients = InstanceClients(
        cfg,
        endpoints_from_config(cfg, staging=bool(args.staging)),
        admin_key=lambda: resolve_api_key(args, cfg.ibm.api_key_file),
    )
    with _ProgressSink(bool(getattr(args, "verbose", 0))) as progress:
        result = collect(cfg, options, clients, progress=progress)
    _print(result.report, as_json=bool(args.json))
    if result.error is not None:
        raise result.error
    return ExitCode.OK


def _print(report: CollectReport, *, as_json: bool) -> None:
    doc = report.to_dict()
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    from qauvern_hpc.core.units import format_seconds

    console = Console()
    t = Table(title="Slurm accounting pulled")
    for col in ("cluster", "window (UTC)", "jobs read", "QPU jobs", "running", "rows changed", "s"):
        t.add_column(col)
    for p in doc["clusters"]:
        window = f"{collector_when(p['start'])} .. {collector_when(p['end'])}"
        t.add_row(
            p["cluster"],
            window,
            str(p["records"]),
            str(p["qpu_records"]),
            str(p["running"]),
            str(p["changed"]),
            f"{p['seconds']:.1f}",
        )
    console.print(t)
    console.print(
        f"IBM: {doc['sessions']} session(s) read, {doc['finalized']} run(s) final, {doc['updated']} updated, "
        f"{doc['no_session']} without a session (0 s), {doc['still_pending']} still pending"
    )
    if doc.get("job_mode"):
        console.print(
            f"job mode: {doc['job_mode']} run(s) looked at, {doc['job_mode_ibm_jobs']} IBM job(s) charged to "
            "them (the instance's jobs on the backend created while each ran)"
        )
    for item in doc.get("job_mode_overlaps", []):
        console.print(f"[yellow]not attributed: {item} (stays pending)[/yellow]")
    if doc["reconciliation"]:
        t = Table(title="Reconciliation with IBM (per instance, same window)")
        for col in ("instance", "attributed", "IBM", "unattributed", "pending runs"):
            t.add_column(col)
        for r in doc["reconciliation"]:
            if r.get("ibm_seconds") is None:
                t.add_row(r["instance"], format_seconds(r["attributed_seconds"]), "?", r.get("error", ""), "")
                continue
            t.add_row(
                r["instance"],
                format_seconds(r["attributed_seconds"]),
                format_seconds(r["ibm_seconds"]),
                ("-" if r["unattributed_seconds"] < 0 else "") + format_seconds(r["unattributed_seconds"]),
                str(r["pending_runs"]),
            )
        console.print(t)
    for err in (*doc["pull_errors"], *doc["errors"]):
        console.print(f"[yellow]not collected: {err}[/yellow]")
    for item in doc["unresolved"]:
        console.print(f"[yellow]cannot attribute: {item}[/yellow]")
    if doc["dry_run"]:
        console.print("[bold]dry run: nothing was stored[/bold]")


def collector_when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M")
