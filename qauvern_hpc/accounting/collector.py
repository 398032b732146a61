"""`qauvern-hpc collect`: Slurm accounting + IBM session usage -> the usage ledger.

One run, per cluster:

1. **Slurm** (one transaction per cluster): `sacct` for the job runs that ended since the cluster's high-water
   mark (minus an overlap, so a job whose record reached slurmdbd late is not missed), and the QPU jobs
   running now. Only jobs carrying our AdminComment record are stored, one row per run and resource. The
   high-water mark moves only in the transaction that stored the rows: if sacct or slurmdbd fails half-way,
   nothing of that pull is kept and the next run asks again. Re-reading a run is an idempotent upsert.
2. **IBM**: every row whose quantum seconds are not final is joined with its IBM session (`GET
   /v1/sessions/{id}` and the session's jobs) through the instance's API key, and attributed with IBM's
   rules (`qauvern_hpc.accounting.attribution`). A row becomes final once its session is closed and all its
   IBM jobs
   ended; until then it stays pending and is revisited by the next run. A session seen by several rows is
   charged once, over every row that carries it (pending or final), to the earliest run: a requeued job's
   new run first shows the previous run's AdminComment until its own prolog records its session. When a
   row's session changes that way, the ledger resets its usage and the new session is asked for. A row
   whose record names no session (`name@-`: none was opened) is final with 0 s once the run ended. A row
   in job mode (`name@!job`, ledger `mode = 'job'`: the job's IBM jobs ran outside any session, e.g. on
   the Open plan) is charged the instance's IBM jobs on its backend created while it ran, when no other
   job-mode run of that instance and backend overlaps it (`qauvern_hpc.accounting.job_mode`); overlapping
   runs stay pending with the reason.
3. **Reconciliation** (optional): per instance, what the ledger attributed in a window vs what IBM's
   analytics say the instance used; the difference is work done outside Slurm (or not collected yet).

The decisions (windows, grouping, attribution) are pure functions here; the I/O is passed in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from qauvern_hpc.accounting.attribution import SessionUsage, attribute
from qauvern_hpc.accounting.job_mode import BackendOf, IBMJobs, in_job_mode, resolve_job_mode
from qauvern_hpc.accounting.ledger.base import Ledger
from qauvern_hpc.accounting.ledger.models import StoredRun
from qauvern_hpc.core.errors import LockHeld
from qauvern_hpc.core.files import LockBusy

if TYPE_CHECKING:
    from qauvern_hpc.ibm.models import RuntimeJob, Session

log = logging.getLogger("qauvern_hpc.accounting.collector")

#: Re-read this much before the high-water mark: slurmdbd may store a job's end a little late.
DEFAULT_OVERLAP_SECONDS = 15 * 60
#: A ledger with no high-water mark for a cluster starts this far back (IBM's rolling window).
DEFAULT_FIRST_LOOKBACK_SECONDS = 28 * 86400
CRASH_ENV = "QAUVERN_HPC_COLLECT_CRASH"  # tests only: "in-transaction" kills the process before a commit
CRASH_EXIT = 75
LOCAL_CLUSTER = ""  # the high-water key when the config names no cluster (sacct's default cluster)


class IBMSessions(IBMJobs, Protocol):
    """What the collector asks IBM (an `IBMClient` has these)."""

    def get_session(self, crn: str, session_id: str) -> Session: ...

    def session_jobs(self, crn: str, session_id: str) -> Sequence[RuntimeJob]: ...


# -- pure decisions ------------------------------------------------------------------------------------


def pull_window(high_water: int | None, now: int, *, overlap: int, first_lookback: int) -> tuple[int, int]:
    """[start, end] (epoch seconds) of the sacct pull for one cluster."""
    if high_water is None:
        return now - first_lookback, now
    return min(high_water - overlap, now), now


def session_groups(rows: Sequence[StoredRun]) -> dict[tuple[str, str], list[StoredRun]]:
    """Pending rows grouped by (instance, session id); rows without either are left out."""
    groups: dict[tuple[str, str], list[StoredRun]] = defaultdict(list)
    for row in rows:
        if row.instance and row.session_id and not in_job_mode(row):
            groups[(row.instance, row.session_id)].append(row)
    return dict(groups)


def charged_row(rows: Sequence[StoredRun]) -> StoredRun:
    """The row a shared session is charged to: the earliest run that carries it (the run that opened it;
    a later run of a requeued job carries it only until its own prolog records a new session)."""
    return min(rows, key=lambda r: (r.start if r.start is not None else 1 << 62, r.run, r.submit, r.key))


def session_charges(
    carriers: Sequence[StoredRun], seconds: float, final: bool
) -> list[tuple[StoredRun, float, bool]]:
    """What each row carrying one session gets: all of the session's seconds to `charged_row`, 0 to the
    others (so the session counts once however many rows name it)."""
    if not carriers:
        return []
    charged = charged_row(carriers).key
    return [(row, seconds if row.key == charged else 0.0, final) for row in carriers]


def session_unit_charges(carriers: Sequence[StoredRun], resource_units: float | None) -> list[float | None]:
    """The RUs each row of `session_charges` gets, in the same order and by the same rule (None: IBM gave
    no RUs for the session)."""
    if not carriers or resource_units is None:
        return [None] * len(carriers)
    charged = charged_row(carriers).key
    return [resource_units if row.key == charged else 0.0 for row in carriers]


def without_session(rows: Sequence[StoredRun]) -> tuple[list[StoredRun], list[StoredRun]]:
    """Pending rows IBM cannot be asked about: (ended runs that opened no session -> final 0 s,
    rows with a session but no instance -> cannot be resolved; a config or record problem). Rows in job
    mode are in neither (`in_job_mode`)."""
    no_session = [r for r in rows if not r.session_id and r.end is not None and not in_job_mode(r)]
    no_instance = [r for r in rows if r.session_id and not r.instance and not in_job_mode(r)]
    return no_session, no_instance


def session_usage(session: Session, jobs: Sequence[RuntimeJob]) -> SessionUsage:
    """IBM's session and its jobs, as the attribution rules want them."""
    return SessionUsage(
        session_id=str(session.id),
        mode=str(session.mode or "batch"),
        state=str(session.state or "open"),
        elapsed_seconds=session.elapsed_seconds,
        job_quantum_seconds=[(j.usage.quantum_seconds if j.usage is not None else None) for j in jobs],
        job_states=[str(j.status or "queued") for j in jobs],
        # RUs where the usage has them (IBM-API-Version 2026-04-15 and later; older shapes have none)
        job_resource_units=[getattr(j.usage, "resource_units", None) for j in jobs],
    )


# -- results -------------------------------------------------------------------------------------------


@dataclass
class ClusterPull:
    cluster: str
    start: int
    end: int
    records: int = 0  # sacct lines that were jobs
    qpu_records: int = 0
    rows: int = 0
    changed: int = 0
    running: int = 0
    seconds: float = 0.0


@dataclass
class CollectReport:
    pulls: list[ClusterPull] = field(default_factory=list)
    sessions: int = 0
    finalized: int = 0  # rows that became final in this run
    updated: int = 0  # rows whose (pending) seconds changed
    still_pending: int = 0
    no_session: int = 0  # ended runs whose record names no session: final with 0 s
    job_mode: int = 0  # pending runs in job mode looked at (charged by `job_mode`'s rule)
    job_mode_ibm_jobs: int = 0  # IBM jobs charged to them
    job_mode_overlaps: list[str] = field(default_factory=list)  # job-mode runs left pending: overlap
    pull_errors: list[str] = field(default_factory=list)  # clusters whose sacct pull failed (nothing stored)
    errors: list[str] = field(default_factory=list)  # IBM sessions that could not be read (rows stay pending)
    unresolved: list[str] = field(default_factory=list)  # rows no IBM call can settle (config, record)
    reconciliation: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "clusters": [vars(p) for p in self.pulls],
            "sessions": self.sessions,
            "finalized": self.finalized,
            "updated": self.updated,
            "no_session": self.no_session,
            "job_mode": self.job_mode,
            "job_mode_ibm_jobs": self.job_mode_ibm_jobs,
            "job_mode_overlaps": list(self.job_mode_overlaps),
            "still_pending": self.still_pending,
            "pull_errors": list(self.pull_errors),
            "errors": list(self.errors),
            "unresolved": list(self.unresolved),
            "reconciliation": list(self.reconciliation),
        }


# -- I/O steps -----------------------------------------------------------------------------------------


Progress = Callable[[str], None]


def quiet(_: str) -> None:
    return None


def pull_cluster(
    ledger: Ledger,
    cluster: str,
    *,
    now: int,
    sacct: str = "sacct",
    overlap: int = DEFAULT_OVERLAP_SECONDS,
    first_lookback: int = DEFAULT_FIRST_LOOKBACK_SECONDS,
    since: int | None = None,
    env: Mapping[str, str] | None = None,
    progress: Progress = quiet,
) -> ClusterPull:
    """Step 1 for one cluster, in one ledger transaction (all of it or none of it)."""
    from qauvern_hpc.accounting.ledger.ingest import ingest_sacct
    from qauvern_hpc.slurm.run import stream_slurm
    from qauvern_hpc.slurm.sacct import FINISHED_STATES, build_sacct_argv, sacct_env

    started = time.monotonic()
    hw = ledger.get_high_water(cluster)
    if since is not None:
        start, end = since, now
    else:
        start, end = pull_window(hw, now, overlap=overlap, first_lookback=first_lookback)
    clusters = (cluster,) if cluster else ()
    pull = ClusterPull(cluster or "(default)", start, end)
    sacct_environment = {**sacct_env(), **(env or {})}
    finished = build_sacct_argv(start, end, clusters=clusters, states=FINISHED_STATES, sacct=sacct)
    running = build_sacct_argv(now, now, clusters=clusters, states=("RUNNING",), sacct=sacct)
    with ledger.batch():
        for argv, kind in ((finished, "ended"), (running, "running")):
            label = f"{pull.cluster}: jobs {kind} {_when(start)} .. {_when(end)}"
            progress(label)
            with stream_slurm(argv, env=sacct_environment) as lines:
                source = lines if progress is quiet else _counted(lines, label, progress)
                stats = ingest_sacct(ledger, source)
            pull.records += stats.parse.records
            pull.qpu_records += stats.qpu_records
            pull.rows += stats.store.rows
            pull.changed += stats.store.changed
            if kind == "running":
                pull.running = stats.qpu_records
        if since is None:
            ledger.set_high_water(cluster, end)
        if os.environ.get(CRASH_ENV) == "in-transaction":  # tests: die before the commit
            os._exit(CRASH_EXIT)
    pull.seconds = round(time.monotonic() - started, 3)
    return pull


PROGRESS_EVERY = 100_000  # sacct lines between progress messages


def _counted(lines: Iterable[str], label: str, progress: Progress) -> Iterator[str]:
    n = 0
    for n, line in enumerate(lines, 1):
        if n % PROGRESS_EVERY == 0:
            progress(f"{label}: {n:,} lines read")
        yield line
    if n >= PROGRESS_EVERY:
        progress(f"{label}: {n:,} lines read")


def _when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def resolve_usage(
    ledger: Ledger,
    clients: Callable[[str], tuple[IBMSessions, str]],
    *,
    report: CollectReport,
    progress: Progress = quiet,
    backend_of: BackendOf = lambda resource: resource,
    now: int | None = None,
) -> None:
    """Step 2: ask IBM for every pending row's session (or, in job mode, the instance's jobs); store what it
    says. IBM failures leave rows pending.

    `clients(instance)` -> (client, CRN) for an instance name (KeyError for one the config does not know);
    `backend_of(resource)` -> its IBM backend (None: not in the config). Each session is charged once, over
    every ledger row that carries it (`session_charges`).
    """
    from qauvern_hpc.core.errors import QauvernError
    from qauvern_hpc.ibm.errors import IBMError, IBMNotFound

    pending = ledger.pending_usage()
    no_session, no_instance = without_session(pending)
    if no_session:
        with ledger.batch():
            for row in no_session:
                if ledger.set_usage(row.key, 0.0, True):
                    report.no_session += 1
    job_mode_rows = [row for row in pending if in_job_mode(row)]
    if job_mode_rows:
        progress(f"IBM jobs of {len(job_mode_rows)} job-mode run(s)")
        with ledger.batch():
            jm = resolve_job_mode(
                ledger,
                job_mode_rows,
                clients,
                backend_of,
                now=int(time.time()) if now is None else now,
            )
        report.job_mode, report.job_mode_ibm_jobs = jm.runs, jm.ibm_jobs
        report.finalized += jm.finalized
        report.updated += jm.updated
        report.job_mode_overlaps.extend(jm.overlaps)
        report.errors.extend(jm.errors)
        report.unresolved.extend(jm.unresolved)
    for row in no_instance:
        report.unresolved.append(f"{row.cluster}/{row.job_id} run {row.run}: AdminComment names no instance")
    groups = session_groups(pending)
    total = len(groups)
    for n, ((instance, session_id), rows) in enumerate(sorted(groups.items()), 1):
        if n == 1 or n % 25 == 0 or n == total:
            progress(f"IBM sessions: {n}/{total}")
        try:
            client, crn = clients(instance)
        except (KeyError, QauvernError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            report.unresolved.append(f"{instance}/{session_id} ({len(rows)} run(s)): {message}")
            continue
        try:
            session = client.get_session(crn, session_id)
            jobs = list(client.session_jobs(crn, session_id))
        except IBMNotFound:
            # IBM does not know the session (never existed on this instance, or expired long ago):
            # nothing will ever be reported for it.
            session, jobs = None, []
        except (IBMError, OSError) as exc:
            report.errors.append(f"{instance}/{session_id}: {exc}")
            continue
        report.sessions += 1
        units: float | None = None
        if session is None:
            seconds, final = 0.0, True
        else:
            result = attribute(session_usage(session, jobs))
            seconds, final, units = result.quantum_seconds, result.final, result.resource_units
        with ledger.batch():
            carriers = ledger.runs_with_session(instance, session_id) or list(rows)
            charges = session_charges(carriers, seconds, final)
            for (row, value, is_final), ru in zip(
                charges, session_unit_charges(carriers, units), strict=True
            ):
                if ledger.set_usage(row.key, value, is_final, resource_units=ru):
                    if is_final:
                        report.finalized += 1
                    else:
                        report.updated += 1
    report.still_pending = len(ledger.pending_usage())


def reconcile(
    ledger: Ledger,
    ibm_usage: Callable[[str, datetime, datetime], int],
    instances: Sequence[str],
    *,
    since: int,
    until: int,
) -> list[dict[str, Any]]:
    """Step 3: per instance, the ledger's attributed seconds vs IBM's usage from `since` to `until`.

    Slurm's end times are whole seconds, so a job that ended in the second `until` itself (collect runs
    right after it) belongs to the window: the ledger's half-open window ends at `until + 1`."""
    attributed = ledger.usage_per_instance(since, until + 1)
    out = []
    for name in instances:
        mine = attributed.get(name)
        ours = mine.quantum_seconds if mine else 0.0
        try:
            theirs = float(
                ibm_usage(name, datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(until, UTC))
            )
        except Exception as exc:  # reported per instance, not fatal
            out.append({"instance": name, "attributed_seconds": ours, "ibm_seconds": None, "error": str(exc)})
            continue
        out.append(
            {
                "instance": name,
                "attributed_seconds": round(ours, 3),
                "ibm_seconds": theirs,
                "unattributed_seconds": round(theirs - ours, 3),
                "pending_runs": mine.pending_runs if mine else 0,
            }
        )
    return out


@contextlib.contextmanager
def collect_lock(state_dir: str | os.PathLike[str], ledger_url: str | None = None) -> Iterator[None]:
    """One collector at a time: `collect.lock` in `state_dir`, and with a PostgreSQL ledger also the
    database's advisory lock, so collectors on several hosts sharing the ledger never run together
    (`ledger.runlock`). The ledger also serializes writers; this makes a second run say so."""
    from qauvern_hpc.accounting.ledger.runlock import run_lock

    Path(state_dir).mkdir(parents=True, exist_ok=True)
    path = Path(state_dir) / "collect.lock"
    held = contextlib.ExitStack()
    try:
        fd = held.enter_context(run_lock(ledger_url, "collect", path))
    except LockBusy as busy:
        raise LockHeld(
            f"another collect is running ({busy.holder or 'holder unknown'}; lock {busy.path})",
            hint="wait for it, or check for a stuck run",
        ) from None
    with held:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} collect\n".encode(), 0)
        yield
