"""One `rebalance` or `rollback` run: plan -> dry run, or journal + execute -> a result the command renders.

Invariants:
- A dry run writes nothing: no lock, no ledger, no journal; it previews what the next real run would do
  with unfinished runs (`interrupted_runs`).
- A real run holds the journal lock for its whole length, finishes interrupted runs before it plans, and
  writes its journal before the first change (`execute` records every step in it).
- Both kinds end the same way (`_dry_run_or_apply`): nothing to do or a dry run -> a status and exit 0;
  otherwise confirm, journal, execute, and report the journal's final state.
- The result is a value (`RunResult`): the JSON document, the exit code, and an error for the command to
  raise once the document is shown. Only the `Reporter` talks to the user while the run goes on.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from qauvern_hpc.core.errors import QauvernError
from qauvern_hpc.rebalance.apply import IBM, Outcome, ResumePreview, execute, live_ibm_values
from qauvern_hpc.rebalance.journal import Journal, JournalStore, Step, new_run_id
from qauvern_hpc.rebalance.report import step_dict

if TYPE_CHECKING:
    from qauvern_hpc.accounting.ledger.base import Ledger
    from qauvern_hpc.config import Config
    from qauvern_hpc.core.report_units import Units
    from qauvern_hpc.ibm import IBMClient
    from qauvern_hpc.planner.model import PlanResult
    from qauvern_hpc.slurm.sacctmgr import Sacctmgr


class Reporter(Protocol):
    """What a run shows while it goes on (the command renders it; with --json most of it is silent)."""

    def progress(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def fail(self, message: str) -> None: ...
    def plan(
        self,
        rows: list[dict[str, Any]],
        plan: PlanResult,
        steps: list[Step],
        warnings: list[str],
        units: Units,
    ) -> None: ...
    def steps(self, steps: list[Step], *, title: str, conflicts: list[str]) -> None: ...
    def interrupted(self, preview: ResumePreview) -> None: ...
    def waiting(self, message: str) -> None: ...
    def confirm(self, count: int) -> None:
        """Return to apply; raise UsageError to refuse."""


@dataclass(frozen=True)
class RunOptions:
    config_path: str  # recorded in the journal's summary
    dry_run: bool = False
    no_slurm: bool = False
    unit: str | None = None  # --unit of the report (`core.report_units`); None: report.unit, else IBM's


@dataclass
class RunResult:
    doc: dict[str, Any]  # the --json document
    exit_code: int = 0
    error: QauvernError | None = None  # raise after showing `doc`


@dataclass
class _Run:
    """The live handles of one run."""

    cfg: Config
    options: RunOptions
    store: JournalStore
    ibm: IBMClient
    slurm: Sacctmgr
    reporter: Reporter
    ledger: Ledger | None = field(default=None)

    def read_live_ibm(self) -> dict[str, dict[str, int | None]]:
        return live_ibm_values(self.ibm.list_instances(self.cfg.ibm.plan_id))

    def execute(self, journal: Journal, *, resume: bool = False) -> Outcome:
        """Apply (or, `resume`, finish) `journal`; every change is audited in the ledger."""
        assert self.ledger is not None, "a run that writes has its ledger open"
        return execute(
            journal,
            self.store,
            ibm=self.ibm,
            slurm=None if self.options.no_slurm else self.slurm,
            audit=self.ledger,
            actor=actor() if resume else journal.actor,
            read_live_ibm=self.read_live_ibm,
            resume=resume,
            progress=lambda m: self.reporter.progress(f"  {m}"),
        )


def actor() -> str:
    """Who runs this: `user (sudo by admin)@host`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    sudo = os.environ.get("SUDO_USER")
    who = f"{user} (sudo by {sudo})" if sudo and sudo != user else user
    return f"{who}@{socket.gethostname()}"


def _open_ledger(cfg: Config) -> Ledger:
    from qauvern_hpc.accounting.ledger import open_ledger

    return open_ledger(cfg.ledger.url)


@contextlib.contextmanager
def _ledger_for(run: _Run) -> Iterator[None]:
    run.ledger = None if run.options.dry_run else _open_ledger(run.cfg)
    try:
        yield
    finally:
        if run.ledger is not None:
            run.ledger.close()


def _dry_run_or_apply(
    run: _Run,
    doc: dict[str, Any],
    steps: list[Step],
    new_journal: Callable[[], Journal],
    *,
    done: str,
    failure_exit: Callable[[Outcome], int],
) -> RunResult:
    """The ending both kinds share: `doc["status"]` says what happened; `done` completes "run ID: " on
    success, `failure_exit` gives the exit code of a run that did not complete."""
    if run.options.dry_run or not steps:
        doc["status"] = "dry_run" if run.options.dry_run else "nothing_to_do"
        return RunResult(doc)
    run.reporter.confirm(len(steps))
    journal = new_journal()
    run.store.save(journal)
    outcome = run.execute(journal)
    doc.update(run_id=journal.run_id, status=journal.status, error=journal.error)
    doc["steps"] = [step_dict(s) for s in journal.steps]
    if outcome.ok:
        run.reporter.progress(f"run {journal.run_id}: {done}")
        return RunResult(doc)
    run.reporter.fail(f"run {journal.run_id}: {journal.status}: {journal.error}")
    return RunResult(doc, failure_exit(outcome))


def _error_exit(outcome: Outcome) -> int:
    """A failed rebalance exits with its error's code (4: IBM or Slurm unavailable), else 1."""
    err = outcome.error
    return err.exit_code if err is not None and err.exit_code != 0 else 1


def _finish_interrupted(run: _Run) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for j in run.store.unfinished():
        run.reporter.warn(f"finishing interrupted run {j.run_id} ({j.kind}, started by {j.actor})")
        outcome = run.execute(j, resume=True)
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
            raise outcome.error or QauvernError(
                f"interrupted run {j.run_id} could not be finished: {j.error}"
            )
    return out


def _preview_interrupted(run: _Run) -> list[dict[str, Any]]:
    """--dry-run: say which unfinished runs the journal holds and what the next real run will do with them
    (the same comparison with the live values as `_finish_interrupted`, without writing)."""
    from qauvern_hpc.rebalance.apply import preview_resume
    from qauvern_hpc.rebalance.report import interrupted_json

    runs = run.store.unfinished()
    if not runs:
        return []
    holder = run.store.lock_holder()
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
            run.reporter.waiting(message)
        return out
    todo = [s for j in runs for s in j.steps if s.state not in ("done", "skipped")]
    live_ibm = run.read_live_ibm() if any(s.kind == IBM for s in todo) else {}
    live_slurm = (
        None
        if run.options.no_slurm
        else (run.slurm.associations() if any(s.kind != IBM for s in todo) else [])
    )
    previews = [preview_resume(j, live_ibm, live_slurm) for j in runs]
    for p in previews:
        run.reporter.interrupted(p)
    return [interrupted_json(p) for p in previews]


def rebalance(
    cfg: Config,
    options: RunOptions,
    store: JournalStore,
    *,
    ibm: IBMClient,
    slurm: Sacctmgr,
    reporter: Reporter,
) -> RunResult:
    """gather -> plan -> diff -> (dry run | journal + apply)."""
    from qauvern_hpc.planner.optimizer import plan_allocations
    from qauvern_hpc.rebalance.apply import build_steps
    from qauvern_hpc.rebalance.enforce import SlurmPlan, plan_slurm
    from qauvern_hpc.rebalance.gather import gather
    from qauvern_hpc.rebalance.gcpause import gc_paused
    from qauvern_hpc.rebalance.report import instance_rows, plan_json, plan_units

    run = _Run(cfg, options, store, ibm, slurm, reporter)
    lock = contextlib.nullcontext() if options.dry_run else store.lock(ledger_url=cfg.ledger.url)
    with ibm, lock, _ledger_for(run):
        resumed = [] if options.dry_run else _finish_interrupted(run)
        interrupted = _preview_interrupted(run) if options.dry_run else []
        g = gather(cfg, ibm, sacctmgr=slurm)
        with gc_paused():  # pure and bounded; see rebalance.gcpause
            plan = plan_allocations(g.account, g.settings, today=g.today, options=g.options, demand=g.demand)
            slurm_plan = (
                SlurmPlan((), {}, ())
                if options.no_slurm
                else plan_slurm(cfg, plan, g.associations, g.tres_names)
            )
            steps = build_steps(plan, slurm_plan)
            names = {i.crn: i.name for i in cfg.instances}
            units = plan_units(options.unit, cfg.report.unit, g.account)
            ibm_ru = {i.crn: i.consumed_ru for i in g.account.instances}
            rows = instance_rows(plan, slurm_plan, g.queue, g.recent_seconds, names, units, ibm_ru)
        warnings = [w.message for w in plan.warnings] + list(slurm_plan.warnings) + list(g.notes)
        doc = plan_json(plan, rows, steps, slurm_plan, g.notes, g.left_out, units)
        doc["dry_run"] = options.dry_run
        doc["resumed_runs"] = resumed
        if options.dry_run:
            doc["interrupted_runs"] = interrupted
        if g.queue is not None:
            doc["pending_jobs"] = {
                "total": g.queue.total_jobs,
                "qpu": g.queue.qpu_jobs,
                "unmapped": g.queue.unmapped_jobs,
            }
        reporter.plan(rows, plan, steps, warnings, units)
        if not plan.ok:
            doc["status"] = "refused"
            reporter.fail("the plan breaks an invariant: nothing applied")
            return RunResult(doc, 1)

        def new_journal() -> Journal:
            journal = Journal(
                run_id=new_run_id(),
                kind="rebalance",
                actor=actor(),
                created_at=time.time(),
                steps=steps,
                summary={
                    "today": plan.today.isoformat(),
                    "config": options.config_path,
                    "instances": {
                        r["instance"]: {"allocation_seconds": r["allocation_seconds"], "why": r["why"]}
                        for r in rows
                    },
                },
            )
            reporter.progress(f"run {journal.run_id}: applying {len(steps)} change(s)")
            return journal

        return _dry_run_or_apply(run, doc, steps, new_journal, done="completed", failure_exit=_error_exit)


def rollback(
    cfg: Config,
    options: RunOptions,
    store: JournalStore,
    old: Journal,
    *,
    force: bool,
    ibm: IBMClient,
    slurm: Sacctmgr,
    reporter: Reporter,
) -> RunResult:
    """Restore the values run `old` changed (refused when they changed since, unless `force`)."""
    from qauvern_hpc.rebalance.apply import rollback_steps

    # A rollback restores Slurm values too, whatever --no-slurm says (as it always did).
    run = _Run(
        cfg, RunOptions(options.config_path, options.dry_run, no_slurm=False), store, ibm, slurm, reporter
    )
    lock = contextlib.nullcontext() if options.dry_run else store.lock("rollback", ledger_url=cfg.ledger.url)
    with ibm, lock:
        live_ibm = run.read_live_ibm()
        live_slurm = slurm.associations() if any(s.kind != IBM for s in old.steps) else []
        steps, conflicts = rollback_steps(old, live_ibm, live_slurm, force=force)
        doc: dict[str, Any] = {
            "rollback_of": old.run_id,
            "dry_run": options.dry_run,
            "conflicts": conflicts,
            "steps": [step_dict(s) for s in steps],
        }
        reporter.steps(steps, title=f"rollback of {old.run_id}", conflicts=conflicts)
        if conflicts:
            doc["status"] = "refused"
            error = QauvernError(
                f"{len(conflicts)} value(s) changed since run {old.run_id}: nothing restored",
                hint="--force restores them anyway",
            )
            return RunResult(doc, error.exit_code, error)

        def new_journal() -> Journal:
            run.ledger = _open_ledger(cfg)
            return Journal(
                run_id=new_run_id(),
                kind="rollback",
                actor=actor(),
                created_at=time.time(),
                steps=steps,
                rollback_of=old.run_id,
            )

        try:
            return _dry_run_or_apply(
                run, doc, steps, new_journal, done=f"rolled back {old.run_id}", failure_exit=lambda _: 1
            )
        finally:
            if run.ledger is not None:
                run.ledger.close()
