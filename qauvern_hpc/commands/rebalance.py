"""`qauvern-hpc rebalance` (alias `optimize`): gather -> plan -> diff -> apply to IBM and Slurm."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

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
    parser.add_argument("--dry-run", action="store_true", help="plan and show, change nothing")
    parser.add_argument("--yes", "-y", action="store_true", help="apply without asking")
    parser.add_argument("--rollback", metavar="RUN_ID", help="restore the values a previous run changed")
    parser.add_argument(
        "--force", action="store_true", help="with --rollback: also restore values changed since that run"
    )
    parser.add_argument("--history", action="store_true", help="list the recent runs and exit")
    parser.add_argument("--no-slurm", action="store_true", help="plan and apply IBM changes only")


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    sudo = os.environ.get("SUDO_USER")
    who = f"{user} (sudo by {sudo})" if sudo and sudo != user else user
    return f"{who}@{socket.gethostname()}"


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


def _state_dir(cfg: Any) -> Path:
    from qauvern_hpc.rebalance.settings import state_dir

    return state_dir(cfg)


def _console(args: argparse.Namespace) -> Any:
    from rich.console import Console

    return Console(stderr=bool(args.json), highlight=False, width=None if sys.stdout.isatty() else 160)


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.config import load_config
    from qauvern_hpc.rebalance.journal import JournalStore

    cfg = load_config(args.config)
    store = JournalStore(_state_dir(cfg))
    console = _console(args)
    if args.history:
        return _history(args, store, console)
    if args.rollback:
        return _rollback(args, cfg, store, console)
    return _rebalance(args, cfg, store, console)


def _history(args: argparse.Namespace, store: Any, console: Any) -> int:
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


def _clients(args: argparse.Namespace, cfg: Any) -> tuple[Any, Any, Any]:
    from qauvern_hpc.ibm.factory import client_from_config
    from qauvern_hpc.slurm.sacctmgr import Sacctmgr

    return client_from_config(cfg, args), Sacctmgr(cfg.slurm.sacctmgr, cfg.slurm.cluster), None


def _open_ledger(cfg: Any) -> Any:
    from qauvern_hpc.accounting.ledger import open_ledger

    return open_ledger(cfg.ledger.url)


def _read_live(client: Any, cfg: Any) -> Any:
    from qauvern_hpc.rebalance.apply import live_ibm_values

    return lambda: live_ibm_values(client.list_instances(cfg.ibm.plan_id))


def _finish_interrupted(
    args: argparse.Namespace, cfg: Any, store: Any, client: Any, mgr: Any, ledger: Any, console: Any
) -> list[dict[str, Any]]:
    from qauvern_hpc.rebalance.apply import execute

    out: list[dict[str, Any]] = []
    for j in store.unfinished():
        console.print(
            f"[yellow]finishing interrupted run {j.run_id} ({j.kind}, started by {j.actor})[/yellow]"
        )
        outcome = execute(
            j,
            store,
            ibm=client,
            slurm=None if args.no_slurm else mgr,
            audit=ledger,
            actor=actor(),
            read_live_ibm=_read_live(client, cfg),
            resume=True,
            progress=lambda m: console.print(f"  {m}"),
        )
        out.append(
            {
                "run_id": j.run_id,
                "status": j.status,
                "error": j.error,
                "applied": [s.id for s in outcome.applied],
                "found_in_place": [s.id for s in outcome.confirmed],
            }
        )
        if outcome.failed is not None or (j.status == "applying"):
            from qauvern_hpc.core.errors import QauvernError

            raise outcome.error or QauvernError(
                f"interrupted run {j.run_id} could not be finished: {j.error}"
            )
    return out


def _preview_interrupted(
    args: argparse.Namespace, cfg: Any, store: Any, client: Any, mgr: Any, console: Any
) -> list[dict[str, Any]]:
    """--dry-run: say which unfinished runs the journal holds and what the next real run will do with them
    (the same comparison with the live values as `_finish_interrupted`, without writing)."""
    from rich.markup import escape

    from qauvern_hpc.rebalance.apply import IBM, live_ibm_values, preview_resume
    from qauvern_hpc.rebalance.report import interrupted_json, print_interrupted

    runs = store.unfinished()
    if not runs:
        return []
    holder = store.lock_holder()
    if holder is not None:  # not interrupted: running now, or its process still holds the lock
        out: list[dict[str, Any]] = []
        for j in runs:
            message = (
                f"unfinished {j.kind} run {j.run_id} (started by {j.actor or 'unknown'}): another rebalance "
                f"holds the lock ({holder}), so it may be running now; a real run now would stop (exit 5)"
            )
            out.append(
                {"run_id": j.run_id, "kind": j.kind, "actor": j.actor, "created_at": j.created_at,
                 "status": j.status, "next_run": "wait", "lock_holder": holder, "message": message}
            )  # fmt: skip
            if not args.json:
                console.print(f"[yellow]{escape(message)}[/yellow]")
        return out
    todo = [s for j in runs for s in j.steps if s.state not in ("done", "skipped")]
    live_ibm = (
        live_ibm_values(client.list_instances(cfg.ibm.plan_id)) if any(s.kind == IBM for s in todo) else {}
    )
    live_slurm = None if args.no_slurm else (mgr.associations() if any(s.kind != IBM for s in todo) else [])
    previews = [preview_resume(j, live_ibm, live_slurm) for j in runs]
    if not args.json:
        for p in previews:
            print_interrupted(console, p)
    return [interrupted_json(p) for p in previews]


def _rebalance(args: argparse.Namespace, cfg: Any, store: Any, console: Any) -> int:
    import contextlib

    from qauvern_hpc.planner.optimizer import plan_allocations
    from qauvern_hpc.rebalance.apply import build_steps, execute
    from qauvern_hpc.rebalance.enforce import SlurmPlan, plan_slurm
    from qauvern_hpc.rebalance.gather import gather
    from qauvern_hpc.rebalance.gcpause import gc_paused
    from qauvern_hpc.rebalance.journal import Journal, new_run_id
    from qauvern_hpc.rebalance.report import instance_rows, plan_json, print_plan, step_dict

    client, mgr, _ = _clients(args, cfg)
    lock = contextlib.nullcontext() if args.dry_run else store.lock()
    with client, lock:
        ledger: Any = None if args.dry_run else _open_ledger(cfg)
        try:
            resumed = (
                [] if args.dry_run else _finish_interrupted(args, cfg, store, client, mgr, ledger, console)
            )
            interrupted = _preview_interrupted(args, cfg, store, client, mgr, console) if args.dry_run else []
            g = gather(cfg, client, sacctmgr=mgr)
            with gc_paused():  # pure and bounded; see rebalance.gcpause
                plan = plan_allocations(
                    g.account, g.settings, today=g.today, options=g.options, demand=g.demand
                )
                slurm = (
                    SlurmPlan((), {}, ())
                    if args.no_slurm
                    else plan_slurm(cfg, plan, g.associations, g.tres_names)
                )
                steps = build_steps(plan, slurm)
                names = {i.crn: i.name for i in cfg.instances}
                rows = instance_rows(plan, slurm, g.queue, g.recent_seconds, names)
            warnings = [w.message for w in plan.warnings] + list(slurm.warnings) + list(g.notes)
            doc = plan_json(plan, rows, steps, slurm, g.notes)
            doc["dry_run"] = bool(args.dry_run)
            doc["resumed_runs"] = resumed
            if args.dry_run:
                doc["interrupted_runs"] = interrupted
            if g.queue is not None:
                doc["pending_jobs"] = {
                    "total": g.queue.total_jobs,
                    "qpu": g.queue.qpu_jobs,
                    "unmapped": g.queue.unmapped_jobs,
                }
            if not args.json:
                print_plan(console, rows, plan, steps, warnings)
            if not plan.ok:
                doc["status"] = "refused"
                if args.json:
                    print(json.dumps(doc, indent=2))
                console.print("[red]the plan breaks an invariant: nothing applied[/red]")
                return 1
            if args.dry_run or not steps:
                doc["status"] = "dry_run" if args.dry_run else "nothing_to_do"
                if args.json:
                    print(json.dumps(doc, indent=2))
                return 0
            _confirm(args, len(steps))
            journal = Journal(
                run_id=new_run_id(),
                kind="rebalance",
                actor=actor(),
                created_at=time.time(),
                steps=steps,
                summary={
                    "today": plan.today.isoformat(),
                    "config": str(args.config),
                    "instances": {
                        r["instance"]: {"allocation_seconds": r["allocation_seconds"], "why": r["why"]}
                        for r in rows
                    },
                },
            )
            store.save(journal)
            console.print(f"run {journal.run_id}: applying {len(steps)} change(s)")
            outcome = execute(
                journal,
                store,
                ibm=client,
                slurm=None if args.no_slurm else mgr,
                audit=ledger,
                actor=journal.actor,
                read_live_ibm=_read_live(client, cfg),
                progress=lambda m: console.print(f"  {m}"),
            )
            doc["run_id"] = journal.run_id
            doc["status"] = journal.status
            doc["steps"] = [step_dict(s) for s in journal.steps]
            doc["error"] = journal.error
            if args.json:
                print(json.dumps(doc, indent=2))
            if outcome.ok:
                console.print(f"run {journal.run_id}: completed")
                return 0
            console.print(f"[red]run {journal.run_id}: {journal.status}: {journal.error}[/red]")
            err = outcome.error
            return err.exit_code if err is not None and err.exit_code != 0 else 1
        finally:
            if ledger is not None:
                ledger.close()


def _rollback(args: argparse.Namespace, cfg: Any, store: Any, console: Any) -> int:
    from qauvern_hpc.core.errors import QauvernError
    from qauvern_hpc.rebalance.apply import execute, live_ibm_values, rollback_steps
    from qauvern_hpc.rebalance.journal import Journal, new_run_id
    from qauvern_hpc.rebalance.report import print_steps, step_dict

    old = store.load(args.rollback)
    client, mgr, _ = _clients(args, cfg)
    lock = contextlib_null() if args.dry_run else store.lock("rollback")
    with client, lock:
        live_ibm = live_ibm_values(client.list_instances(cfg.ibm.plan_id))
        needs_slurm = any(s.kind != "ibm" for s in old.steps)
        live_slurm = mgr.associations() if needs_slurm else []
        steps, conflicts = rollback_steps(old, live_ibm, live_slurm, force=args.force)
        doc: dict[str, Any] = {
            "rollback_of": old.run_id,
            "dry_run": bool(args.dry_run),
            "conflicts": conflicts,
            "steps": [step_dict(s) for s in steps],
        }
        if not args.json:
            print_steps(console, steps, title=f"rollback of {old.run_id}")
            for c in conflicts:
                console.print(f"[red]conflict:[/red] {c}")
        if conflicts:
            doc["status"] = "refused"
            if args.json:
                print(json.dumps(doc, indent=2))
            raise QauvernError(
                f"{len(conflicts)} value(s) changed since run {old.run_id}: nothing restored",
                hint="--force restores them anyway",
            )
        if args.dry_run or not steps:
            doc["status"] = "dry_run" if args.dry_run else "nothing_to_do"
            if args.json:
                print(json.dumps(doc, indent=2))
            return 0
        _confirm(args, len(steps))
        ledger = _open_ledger(cfg)
        try:
            journal = Journal(
                run_id=new_run_id(),
                kind="rollback",
                actor=actor(),
                created_at=time.time(),
                steps=steps,
                rollback_of=old.run_id,
            )
            store.save(journal)
            outcome = execute(
                journal,
                store,
                ibm=client,
                slurm=mgr,
                audit=ledger,
                actor=journal.actor,
                read_live_ibm=_read_live(client, cfg),
                progress=lambda m: console.print(f"  {m}"),
            )
        finally:
            ledger.close()
        doc.update(run_id=journal.run_id, status=journal.status, error=journal.error)
        doc["steps"] = [step_dict(s) for s in journal.steps]
        if args.json:
            print(json.dumps(doc, indent=2))
        if outcome.ok:
            console.print(f"run {journal.run_id}: rolled back {old.run_id}")
            return 0
        console.print(f"[red]run {journal.run_id}: {journal.status}: {journal.error}[/red]")
        return 1


def contextlib_null() -> Any:
    import contextlib

    return contextlib.nullcontext()
