"""Apply a journal's steps to IBM and Slurm: in order, stop at the first failure, audit every change.

Per step: mark it `started` (journal saved) -> write (IBM PATCH or sacctmgr -i) -> audit entry in the
ledger (who, when, before, after, why; `after.step` is the step id) -> mark it `done` (journal saved).
A crash between any two of these is repaired by `execute(..., resume=True)`: every unfinished step is
compared with the live value first (IBM's instance list, Slurm's associations):

* live == after: it reached IBM/Slurm before the crash; it is marked done, and audited only if its audit
  entry is missing (so nothing is applied or audited twice);
* live == before: not applied yet; it is applied now;
* anything else: someone else changed it since the plan; the run is abandoned, nothing more is written,
  and the next plan starts from what is live.

Test hook: `QAUVERN_HPC_REBALANCE_CRASH=POINT[:N]` ends the process (exit 75, no clean-up, like a kill)
at the N-th time (default 1st) it reaches POINT: `after-ibm-write` (the PATCH returned, nothing recorded
yet), `before-slurm` (every IBM step recorded, no sacctmgr run yet), `after-slurm-write`,
`between-clusters` (every Slurm step of one cluster recorded, none of the next cluster's started).

Several clusters: the Slurm steps come grouped per cluster (`enforce.by_cluster`), each naming its
cluster, and the live value a resumed step is compared with is that cluster's association: a run killed
in the middle of cluster A finishes A's remaining steps and then B's; one killed between A and B finds
A's steps done and writes B's only.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from qauvern_hpc.core.errors import QauvernError
from qauvern_hpc.planner.model import PlanResult
from qauvern_hpc.rebalance.enforce import FAIRSHARE, GATE, SlurmPlan
from qauvern_hpc.rebalance.journal import (
    ABANDONED,
    COMPLETED,
    DONE,
    FAILED,
    RUN_FAILED,
    SKIPPED,
    STARTED,
    Journal,
    JournalStore,
    Step,
)
from qauvern_hpc.slurm.sacctmgr import Association

IBM = "ibm"
CRASH_ENV = "QAUVERN_HPC_REBALANCE_CRASH"
CRASH_EXIT = 75


class IBMWriter(Protocol):
    def update_instance(self, crn: str, *, allocation_seconds: int, limit_seconds: int | None) -> None: ...


class SlurmWriter(Protocol):
    def associations(self) -> list[Association]: ...
    def set_fairshare(self, account: str, cluster: str, value: int) -> None: ...
    def set_grp_tres(self, account: str, cluster: str, tres: str, value: int | None) -> None: ...


class Auditor(Protocol):
    def record_audit(
        self,
        run_id: str,
        actor: str,
        action: str,
        *,
        before: Any = None,
        after: Any = None,
        reason: str | None = None,
        at: float | None = None,
    ) -> int: ...

    def audit_entries(self, run_id: str | None = None) -> list[Any]: ...


class FaultHook:
    """Crash on purpose at a named point (tests only; see the module docstring)."""

    def __init__(self, spec: str | None = None) -> None:
        spec = os.environ.get(CRASH_ENV, "") if spec is None else spec
        point, _, n = spec.partition(":")
        self.point = point.strip()
        self.at = int(n) if n.strip().isdigit() else 1
        self.seen = 0

    def hit(self, point: str) -> None:
        if not self.point or point != self.point:
            return
        self.seen += 1
        if self.seen == self.at:
            sys.stdout.flush()
            sys.stderr.write(f"qauvern-hpc rebalance: {CRASH_ENV}={self.point}:{self.at}: crashing now\n")
            sys.stderr.flush()
            os._exit(CRASH_EXIT)


# ------------------------------------------------------------------------------------------ building steps


def ibm_value(allocation: int, limit: int | None) -> dict[str, int | None]:
    return {"allocation_seconds": int(allocation), "limit_seconds": None if limit is None else int(limit)}


def build_steps(plan: PlanResult, slurm: SlurmPlan) -> list[Step]:
    """The steps of a rebalance run: IBM writes in the plan's apply order, then the Slurm changes."""
    reasons = {p.crn: p.reason for p in plan.instances}
    kinds: dict[Any, str] = {}  # WriteKind -> its text (an enum's .value is a slow property)
    steps: list[Step] = []
    for n, w in enumerate(plan.writes, 1):
        kind = kinds.get(w.kind)
        if kind is None:
            kind = kinds[w.kind] = w.kind.value
        limit, previous_limit = w.limit_seconds, w.previous_limit_seconds
        steps.append(
            Step(
                f"ibm:{n}:{w.name}",
                IBM,
                {"crn": w.crn, "name": w.name},
                {
                    "allocation_seconds": int(w.previous_allocation_seconds),
                    "limit_seconds": None if previous_limit is None else int(previous_limit),
                },
                {
                    "allocation_seconds": int(w.allocation_seconds),
                    "limit_seconds": None if limit is None else int(limit),
                },
                f"{kind}: {reasons.get(w.crn, '')}",
            )
        )
    for c in slurm.changes:
        target: dict[str, Any] = {"cluster": c.cluster, "account": c.account}
        if c.tres:
            target["tres"] = c.tres
        steps.append(
            Step(id=f"slurm:{c.key}", kind=c.kind, target=target, before=c.before, after=c.after, why=c.why)
        )
    return steps


def rollback_steps(
    old: Journal,
    live_ibm: dict[str, dict[str, int | None]],
    live_slurm: Sequence[Association],
    *,
    force: bool,
) -> tuple[list[Step], list[str]]:
    """Steps restoring what `old` changed, from the live values; and conflicts (live value is neither what
    `old` wrote nor what it found). With `force` conflicting values are restored too."""
    ibm_steps: list[Step] = []
    slurm_steps: list[Step] = []
    conflicts: list[str] = []
    for s in reversed(old.steps):
        if s.state not in (DONE, STARTED, FAILED):
            continue
        live = live_value(s, live_ibm, live_slurm)
        if live == s.before:
            continue  # never applied, or already restored
        if live != s.after and not force:
            conflicts.append(
                f"{describe_target(s)}: now {fmt_value(live)}, run {old.run_id} set {fmt_value(s.after)} "
                f"(from {fmt_value(s.before)}); changed since"
            )
            continue
        step = Step(
            id=f"rollback:{s.id}",
            kind=s.kind,
            target=dict(s.target),
            before=live,
            after=s.before,
            why=f"rollback of {old.run_id} ({s.id})",
        )
        (ibm_steps if s.kind == IBM else slurm_steps).append(step)

    def rank(step: Step) -> int:
        a, b = step.after["allocation_seconds"], (step.before or {}).get("allocation_seconds")
        if b is None or a == b:
            return 1
        return 0 if a < b else 2

    ibm_steps.sort(key=rank)
    return ibm_steps + slurm_steps, conflicts


# ------------------------------------------------------------------------------------------ live values


def live_ibm_values(instances: Iterable[Any]) -> dict[str, dict[str, int | None]]:
    """CRN -> {"allocation_seconds", "limit_seconds"} from `IBMClient.list_instances()` rows."""
    return {
        i.crn: ibm_value(i.extensions.usage_allocation_seconds, i.extensions.instance_limit_seconds)
        for i in instances
    }


def live_value(
    step: Step, live_ibm: dict[str, dict[str, int | None]], live_slurm: Sequence[Association]
) -> Any:
    if step.kind == IBM:
        return live_ibm.get(step.target["crn"])
    for a in live_slurm:
        if a.is_account and a.cluster == step.target["cluster"] and a.account == step.target["account"]:
            if step.kind == FAIRSHARE:
                return a.fairshare
            return a.grp_tres.get(step.target["tres"])
    return "<no association>"


def describe_target(step: Step) -> str:
    t = step.target
    if step.kind == IBM:
        return f"instance {t.get('name') or t['crn']}"
    if step.kind == FAIRSHARE:
        return f"account {t['account']} Fairshare ({t['cluster']})"
    return f"account {t['account']} GrpTRES {t.get('tres')} ({t['cluster']})"


def fmt_value(v: Any) -> str:
    if isinstance(v, dict) and "allocation_seconds" in v:
        lim = v.get("limit_seconds")
        return f"allocation {v['allocation_seconds']}s, limit {'none' if lim is None else f'{lim}s'}"
    return "unset" if v is None else str(v)


# ------------------------------------------------------------------------------------------ resume preview

FINISH = "finish"
ABANDON = "abandon"
STUCK = "stuck"


@dataclass(frozen=True)
class ResumePreview:
    """What `execute(journal, resume=True)` would do with an unfinished run, given the live values now.

    `action`: FINISH (every unfinished step is in place or still at its `before`: the in-place ones are
    marked done, the others applied), ABANDON (a step's live value is neither: nothing more is written and
    the run is abandoned; `conflict` says which), or STUCK (a step's live value cannot be read, e.g. Slurm's
    with --no-slurm: the run stops with an error and stays unfinished)."""

    journal: Journal
    action: str
    found_in_place: tuple[Step, ...]
    to_apply: tuple[Step, ...]
    conflict: str | None = None

    @property
    def steps_done(self) -> int:
        return sum(1 for s in self.journal.steps if s.state in (DONE, SKIPPED))

    @property
    def message(self) -> str:
        j = self.journal
        head = (
            f"interrupted {j.kind} run {j.run_id} (started by {j.actor or 'unknown'}, "
            f"{self.steps_done}/{len(j.steps)} steps done)"
        )
        todo = f"{len(self.found_in_place)} step(s) found in place, {len(self.to_apply)} to apply"
        if self.action == FINISH:
            return (
                f"{head}: the next run finishes it first ({todo}), then plans again from the live values "
                "(the plan below is from the values as they are now)"
            )
        if self.action == ABANDON:
            return (
                f"{head}: the next run abandons it ({self.conflict}), writes nothing for it and plans from "
                "the live values"
            )
        return (
            f"{head}: the next run cannot finish it ({self.conflict}): it stops with an error, the run "
            f"unfinished ({todo} before that step)"
        )


def preview_resume(
    journal: Journal,
    live_ibm: dict[str, dict[str, int | None]] | None,
    live_slurm: Sequence[Association] | None,
) -> ResumePreview:
    """The resume walk of `execute` without writing anything. `None`: those live values cannot be read."""
    in_place: list[Step] = []
    to_apply: list[Step] = []

    def done(action: str, conflict: str | None = None) -> ResumePreview:
        return ResumePreview(journal, action, tuple(in_place), tuple(to_apply), conflict)

    for step in journal.steps:
        if step.state in (DONE, SKIPPED):
            continue
        if step.kind == IBM:
            if live_ibm is None:
                return done(STUCK, f"{describe_target(step)}: IBM's live values cannot be read")
            live = live_value(step, live_ibm, [])
        else:
            if live_slurm is None:
                return done(
                    STUCK, f"{describe_target(step)}: Slurm's live values are not read with --no-slurm"
                )
            live = live_value(step, {}, live_slurm)
        if live == step.after:
            in_place.append(step)
        elif live == step.before:
            to_apply.append(step)
        else:
            return done(
                ABANDON,
                f"{describe_target(step)} is {fmt_value(live)}, neither the planned before "
                f"({fmt_value(step.before)}) nor after ({fmt_value(step.after)}): changed by someone else",
            )
    return done(FINISH)


# ------------------------------------------------------------------------------------------ executing


@dataclass
class Outcome:
    journal: Journal
    applied: list[Step] = field(default_factory=list)
    confirmed: list[Step] = field(default_factory=list)  # found already in place
    failed: Step | None = None
    error: QauvernError | None = None

    @property
    def ok(self) -> bool:
        return self.journal.status == COMPLETED


def _write(step: Step, ibm: IBMWriter | None, slurm: SlurmWriter | None) -> None:
    if step.kind == IBM:
        if ibm is None:
            raise QauvernError("no IBM client to apply an instance change")
        after = step.after
        ibm.update_instance(
            step.target["crn"],
            allocation_seconds=after["allocation_seconds"],
            limit_seconds=after["limit_seconds"],
        )
        return
    if slurm is None:
        raise QauvernError("no sacctmgr to apply a Slurm change")
    t = step.target
    if step.kind == FAIRSHARE:
        slurm.set_fairshare(t["account"], t["cluster"], int(step.after))
    elif step.kind == GATE:
        slurm.set_grp_tres(t["account"], t["cluster"], t["tres"], step.after)
    else:
        raise QauvernError(f"unknown step kind {step.kind!r}")


def _action(step: Step) -> str:
    if step.kind == IBM:
        return "ibm.update_instance"
    if step.kind == GATE:
        return "slurm.gate" if step.after == 0 else "slurm.ungate"
    return f"slurm.{step.kind}"


def execute(
    journal: Journal,
    store: JournalStore,
    *,
    ibm: IBMWriter | None,
    slurm: SlurmWriter | None,
    audit: Auditor,
    actor: str,
    read_live_ibm: Callable[[], dict[str, dict[str, int | None]]] | None = None,
    resume: bool = False,
    fault: FaultHook | None = None,
    clock: Callable[[], float] = time.time,
    progress: Callable[[str], None] | None = None,
) -> Outcome:
    """Run (or resume) the journal's steps. Never raises for a failed write: the outcome says."""
    fault = fault or FaultHook()
    out = Outcome(journal)
    say = progress or (lambda _m: None)
    live_ibm: dict[str, dict[str, int | None]] | None = None
    live_slurm: list[Association] | None = None
    audited: set[str] = set()
    if resume:
        for e in audit.audit_entries(journal.run_id):
            after = getattr(e, "after", None)
            if isinstance(after, dict) and isinstance(after.get("step"), str):
                audited.add(after["step"])

    def record(step: Step, note: str | None = None) -> None:
        audit.record_audit(
            journal.run_id,
            actor,
            _action(step),
            before={"target": step.target, "value": step.before},
            after={"step": step.id, "target": step.target, "value": step.after},
            reason=step.why + (f" [{note}]" if note else ""),
            at=clock(),
        )

    def finish(status: str, error: str | None = None) -> Outcome:
        journal.status = status
        journal.error = error
        journal.finished_at = clock()
        store.save(journal)
        return out

    slurm_started = False
    last_cluster: str | None = None
    for step in journal.steps:
        if step.kind != IBM:
            cluster = str(step.target.get("cluster", ""))
            if last_cluster is not None and cluster != last_cluster and step.state not in (DONE, SKIPPED):
                fault.hit("between-clusters")
            last_cluster = cluster
        if step.state in (DONE, SKIPPED):
            continue
        if step.kind != IBM and not slurm_started:
            slurm_started = True
            fault.hit("before-slurm")
        if resume or step.state in (STARTED, FAILED):
            try:
                if step.kind == IBM:
                    if live_ibm is None:
                        if read_live_ibm is None:
                            raise QauvernError("cannot read IBM's live values to resume")
                        live_ibm = read_live_ibm()
                    live = live_value(step, live_ibm, [])
                else:
                    if live_slurm is None:
                        if slurm is None:
                            raise QauvernError("cannot read Slurm's live values to resume")
                        live_slurm = slurm.associations()
                    live = live_value(step, {}, live_slurm)
            except QauvernError as exc:
                out.error = exc
                return finish(journal.status, f"could not read live values to resume: {exc}")
            if live == step.after:
                if step.id not in audited:
                    record(step, "found in place when resuming an interrupted run")
                step.state, step.at, step.note = DONE, clock(), "found in place after an interrupted run"
                store.save(journal)
                out.confirmed.append(step)
                say(f"{describe_target(step)}: already {fmt_value(step.after)} (interrupted run)")
                continue
            if live != step.before:
                msg = (
                    f"{describe_target(step)} is {fmt_value(live)}, neither the planned before "
                    f"({fmt_value(step.before)}) nor after ({fmt_value(step.after)}): "
                    "changed by someone else; "
                    "run abandoned, the next plan starts from the live values"
                )
                step.note = msg
                say(msg)
                return finish(ABANDONED, msg)
        step.state, step.at = STARTED, clock()
        store.save(journal)
        try:
            _write(step, ibm, slurm)
        except QauvernError as exc:
            step.state, step.at, step.note = FAILED, clock(), str(exc)
            out.failed, out.error = step, exc
            audit.record_audit(
                journal.run_id,
                actor,
                _action(step) + ".failed",
                before={"target": step.target, "value": step.before},
                after={"failed_step": step.id, "target": step.target, "value": step.after},
                reason=f"{step.why} [failed: {exc}]",
                at=clock(),
            )
            say(f"{describe_target(step)}: FAILED: {exc}")
            return finish(RUN_FAILED, f"{step.id}: {exc}")
        fault.hit("after-ibm-write" if step.kind == IBM else "after-slurm-write")
        record(step)
        step.state, step.at = DONE, clock()
        store.save(journal)
        out.applied.append(step)
        say(f"{describe_target(step)}: {fmt_value(step.before)} -> {fmt_value(step.after)}")
    if not slurm_started:
        fault.hit("before-slurm")
    return finish(COMPLETED)


__all__ = [
    "ABANDON",
    "CRASH_ENV",
    "CRASH_EXIT",
    "FINISH",
    "IBM",
    "STUCK",
    "Auditor",
    "FaultHook",
    "IBMWriter",
    "Outcome",
    "ResumePreview",
    "SlurmWriter",
    "build_steps",
    "describe_target",
    "execute",
    "fmt_value",
    "live_ibm_values",
    "live_value",
    "preview_resume",
    "rollback_steps",
]
