"""`qauvern-hpc rebalance` (alias `optimize`): gather -> plan -> diff -> apply to IBM and Slurm."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from qauvern_hpc.config import Config
    from qauvern_hpc.core.report_units import Units
    from qauvern_hpc.ibm import IBMClient
    from qauvern_hpc.planner.model import PlanResult
    from qauvern_hpc.rebalance.apply import ResumePreview
    from qauvern_hpc.rebalance.journal import JournalStore, Step
    from qauvern_hpc.slurm.sacctmgr import Sacctmgr

READS_API_KEY = True
HELP = "move QAU between instances from IBM usage, Slurm's queue and the ledger; enforce it in Slurm"
DESCRIPTION = """\
Plan new allocations and limits for the configured IBM Quantum instances and apply them.

gather   IBM: allocations, limits, 28d/14d/7d/3d/24h usage, per-day usage for net grants (an instance whose
         usage cannot be read stops the run). Slurm: pending QPU jobs per instance (squeue: count, requested
         time, age, priority; a job's instance is the license job_submit.lua gave it), associations.
         Ledger: finished quantum seconds of the last 24 h that IBM does not show yet.
plan     qauvern 0.14's rules (floors, reserve, water-fill up to each effective limit, net grants, the
         over-budget regime, the same invariants) with the Slurm demand added to each instance's activity
         score (rebalance.demand in the config; every term is shown per instance).
diff     current vs new allocation and limit, Fairshare of the mapped accounts and the gate, and why.
apply    IBM first (decreases, limit-only changes, increases: never over budget), stopping at the first
         failed write; then sacctmgr -i: ungates, Fairshare, gates. An instance whose limit is reached is
         gated: its queued QPU jobs stay PENDING with reason AssocGrpLicense instead of failing at IBM;
         the next run after its usage rolls off ungates it.

Every run that writes keeps a journal (rebalance.state_dir, default slurm.state_dir/rebalance) and holds
a lock there; every applied change is audited in the ledger (who, when, before, after, why). A run that
was killed is finished by the next one: steps already in place are recognised, nothing is applied twice;
if a value it wrote was changed since, the run is abandoned and the new plan starts from the live values.
The plan is shown in --unit (ru, qau, hours or seconds; IBM's allocations and limits are set in seconds,
the plan is made in seconds and converted only for the report); --json keeps every *_seconds field and
adds `unit`, `ru_per_second` and `in_unit`.

--dry-run names such a run and says which of these the next real run will do (`interrupted_runs` in
--json). `--rollback RUN_ID` restores what that run changed."""
EPILOG = """\
examples:
  qauvern-hpc rebalance --dry-run               show the plan and the changes, apply nothing
  qauvern-hpc rebalance --dry-run --json        the same for scripts
  qauvern-hpc rebalance --yes                   apply without asking (cron, systemd timers)
  qauvern-hpc rebalance --history               the last runs and their status
  qauvern-hpc rebalance --rollback 20260105T100000Z-a1b2c3 --yes
  qauvern-hpc optimize --dry-run                the same command under qauvern's name

Without --yes the command asks on a terminal and refuses to apply when not on one.

exit codes: 0 applied (or nothing to do, or dry run), 1 a write failed or the plan breaks an invariant
(nothing written), 2 bad usage (e.g. no --yes without a terminal), 3 invalid config, 4 IBM, squeue,
sacctmgr or the ledger unavailable, 5 another rebalance holds the lock."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qauvern_hpc.commands.admin_common import add_unit_argument

    parser.add_argument("--dry-run", action="store_true", help="plan and show, change nothing")
    parser.add_argument("--yes", "-y", action="store_true", help="apply without asking")
    parser.add_argument("--rollback", metavar="RUN_ID", help="restore the values a previous run changed")
    parser.add_argument(
        "--force", action="store_true", help="with --rollback: also restore values changed since that run"
    )
    parser.add_argument("--history", action="store_true", help="list the recent runs and exit")
    parser.add_argument("--no-slurm", action="store_true", help="plan and apply IBM changes only")
    add_unit_argument(parser)


def _confirm(args: argparse.Namespace, count: int) -> None:
    from qauvern_hpc.core.errors import UsageError

    if args.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"{count} change(s) to apply but stdin is not a terminal: pass --yes to apply (or --dry-run)"
        )
    answer = input(f"apply these {count} change(s)? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("not applied (answer was not yes)")


def _console(args: argparse.Namespace) -> Console:
    from rich.console import Console

    return Console(stderr=bool(args.json), highlight=False, width=None if sys.stdout.isatty() else 160)


class _ConsoleReporter:
    """`rebalance.run.Reporter` on a rich console; with --json only progress and errors (on stderr)."""

    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.quiet = bool(args.json)

    def progress(self, message: str) -> None:
        self.console.print(message)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]{message}[/yellow]")

    def fail(self, message: str) -> None:
        self.console.print(f"[red]{message}[/red]")

    def plan(
        self,
        rows: list[dict[str, Any]],
        plan: PlanResult,
        steps: list[Step],
        warnings: list[str],
        units: Units,
    ) -> None:
        from qauvern_hpc.rebalance.report import print_plan

        if not self.quiet:
            print_plan(self.console, rows, plan, steps, warnings, units)

    def steps(self, steps: list[Step], *, title: str, conflicts: list[str]) -> None:
        from qauvern_hpc.rebalance.report import print_steps

        if self.quiet:
            return
        print_steps(self.console, steps, title=title)
        for c in conflicts:
            self.console.print(f"[red]conflict:[/red] {c}")

    def interrupted(self, preview: ResumePreview) -> None:
        from qauvern_hpc.rebalance.report import print_interrupted

        if not self.quiet:
            print_interrupted(self.console, preview)

    def waiting(self, message: str) -> None:
        from rich.markup import escape

        if not self.quiet:
            self.console.print(f"[yellow]{escape(message)}[/yellow]")

    def confirm(self, count: int) -> None:
        _confirm(self.args, count)


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.config import load_config
    from qauvern_hpc.rebalance import run as runs
    from qauvern_hpc.rebalance.journal import JournalStore
    from qauvern_hpc.rebalance.settings import state_dir

    cfg = load_config(args.config)
    store = JournalStore(state_dir(cfg))
    console = _console(args)
    if args.history:
        return _history(args, store, console)
    old = store.load(args.rollback) if args.rollback else None
    client, mgr = _clients(args, cfg)
    options = runs.RunOptions(
        str(args.config), dry_run=bool(args.dry_run), no_slurm=bool(args.no_slurm), unit=args.unit
    )
    reporter = _ConsoleReporter(args, console)
    if old is not None:
        result = runs.rollback(
            cfg, options, store, old, force=args.force, ibm=client, slurm=mgr, reporter=reporter
        )
    else:
        result = runs.rebalance(cfg, options, store, ibm=client, slurm=mgr, reporter=reporter)
    if args.json:
        print(json.dumps(result.doc, indent=2))
    if result.error is not None:
        raise result.error
    return result.exit_code


def _history(args: argparse.Namespace, store: JournalStore, console: Console) -> int:
    runs = store.all()[-20:]
    if args.json:
        print(json.dumps([{k: v for k, v in j.to_dict().items() if k != "steps"} for j in runs], indent=2))
        return 0
    if not runs:
        console.print(f"no runs in {store.runs}")
    for j in runs:
        done = sum(1 for s in j.steps if s.state == "done")
        console.print(
            f"{j.run_id}  {j.kind:<9} {j.status:<9} {done}/{len(j.steps)} steps  {j.actor}"
            + (f"  rollback of {j.rollback_of}" if j.rollback_of else "")
            + (f"  ({j.error})" if j.error else "")
        )
    return 0


def _clients(args: argparse.Namespace, cfg: Config) -> tuple[IBMClient, Sacctmgr]:
    from qauvern_hpc.config.ibm_access import client_from_config
    from qauvern_hpc.slurm.sacctmgr import Sacctmgr

    return client_from_config(cfg, args), Sacctmgr(cfg.slurm.sacctmgr, cfg.slurm.cluster)
