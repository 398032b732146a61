"""Job-mode runs (the Open plan): which IBM jobs a Slurm run is charged, and the collector's step for them.

A run in job mode opened no IBM session (its AdminComment says `name@!job`, the ledger `mode = 'job'`), so
there is no session to read; IBM's `GET /v1/jobs` lists the instance's jobs by backend and creation time
instead. The rule:

- A run R of instance I whose resource is backend B (the resource's `backend` in the config, else its name)
  is charged the IBM jobs of I on B that belong to no session and were created while R ran: from R's start
  to the end of its last second, `[start, end + 1)` in epoch seconds (Slurm's times are whole seconds), or
  up to now while R still runs.
- Only when R was the only job-mode run of I on B in that time. Another job-mode run of I on B whose time
  overlaps R's (any cluster, pending or final, as the ledger knows them; `[start, end + 1)` each) makes any
  split a guess: R stays pending, reported as "job mode: overlaps job N on I/B", and is looked at again on
  the next collect (it stays pending for good if the overlap is real). A run whose resource the config no
  longer knows counts as possibly on B.
- The charge is IBM's job-mode rule: each job's own usage, summed (quantum seconds, and RUs when IBM gave
  RUs for every job; `attribution.attribute_jobs`). It is final once R has ended and every one of those
  jobs is terminal with its usage known.

Limits (documented in docs/ibm-platform.md): jobs submitted through instance I on B outside Slurm while R
ran are charged to R (`collect --reconcile` cannot show them then); the Slurm controller's and IBM's clocks
are taken to agree (NTP); an overlapping run whose AdminComment reached slurmdbd after R became final does
not reopen R (that run itself stays pending as an overlap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from qauvern_hpc.accounting.attribution import Attribution, attribute_jobs
from qauvern_hpc.accounting.ledger.models import JOB_MODE, StoredRun

if TYPE_CHECKING:
    from qauvern_hpc.accounting.ledger.base import Ledger
    from qauvern_hpc.ibm.models import RuntimeJob

#: The IBM filters' bounds are widened by this much (IBM does not say whether they are inclusive); the
#: jobs are then kept by their own `created` time.
SLACK_SECONDS = 60


class IBMJobs(Protocol):
    """What the job-mode step asks IBM (an `IBMClient` has it)."""

    def jobs_created_between(
        self, crn: str, backend: str, after: datetime, before: datetime
    ) -> Sequence[RuntimeJob]: ...


BackendOf = Callable[[str], "str | None"]
"""resource name -> its IBM backend (None: the config does not know the resource)."""


def in_job_mode(row: StoredRun) -> bool:
    return row.mode == JOB_MODE


def run_window(row: StoredRun, now: int) -> tuple[int, int]:
    """[since, until) in epoch seconds: the run's start to the end of its last second (now while it runs)."""
    start = row.start if row.start is not None else now
    return start, (row.end if row.end is not None else now) + 1


def overlapping(
    row: StoredRun, candidates: Sequence[StoredRun], backend_of: BackendOf, *, now: int
) -> list[StoredRun]:
    """The other job-mode runs of the row's instance that may have used its backend while it ran."""
    backend = backend_of(row.resource)
    since, until = run_window(row, now)
    out = []
    for other in candidates:
        if other.key == row.key or not in_job_mode(other) or other.instance != row.instance:
            continue
        if backend_of(other.resource) not in (None, backend):
            continue
        o_since, o_until = run_window(other, now)
        if o_since < until and since < o_until:
            out.append(other)
    return out


def jobs_of_run(jobs: Sequence[RuntimeJob], since: int, until: int) -> list[RuntimeJob]:
    """The listed jobs outside any session created in [since, until)."""
    return [
        j
        for j in jobs
        if j.session_id is None and j.created is not None and since <= _epoch(j.created) < until
    ]


def charge(jobs: Sequence[RuntimeJob], *, ended: bool) -> Attribution:
    """What a sole job-mode run is charged for its IBM jobs (IBM's job-mode rule: each job's own usage)."""
    return attribute_jobs(
        [j.usage.quantum_seconds if j.usage is not None else None for j in jobs],
        [str(j.status or "queued") for j in jobs],
        [j.usage.resource_units if j.usage is not None else None for j in jobs],
        done=ended,
        why="job mode: sum of {n} IBM job(s) created while the run ran",
    )


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def _label(row: StoredRun) -> str:
    return f"{row.cluster}/{row.job_id} run {row.run}"


# -- the collector's step ------------------------------------------------------------------------------


@dataclass
class JobModeResult:
    runs: int = 0  # pending job-mode runs looked at
    ibm_jobs: int = 0  # IBM jobs charged to them
    finalized: int = 0
    updated: int = 0
    overlaps: list[str] = field(default_factory=list)  # runs left pending: another run overlaps
    errors: list[str] = field(default_factory=list)  # IBM could not be read: pending for next time
    unresolved: list[str] = field(default_factory=list)  # config or record problems


def resolve_job_mode(
    ledger: Ledger,
    rows: Sequence[StoredRun],
    clients: Callable[[str], tuple[IBMJobs, str]],
    backend_of: BackendOf,
    *,
    now: int,
) -> JobModeResult:
    """Charge each pending job-mode row in `rows` by the rule above; IBM failures leave rows pending."""
    from qauvern_hpc.core.errors import QauvernError
    from qauvern_hpc.ibm.errors import IBMError

    result = JobModeResult()
    for row in rows:
        if not in_job_mode(row):
            continue
        result.runs += 1
        if not row.instance:
            result.unresolved.append(f"{_label(row)}: AdminComment names no instance")
            continue
        backend = backend_of(row.resource)
        if backend is None:
            result.unresolved.append(
                f"{_label(row)}: job mode: resource {row.resource!r} is not in the config (its backend is "
                "needed to find its IBM jobs)"
            )
            continue
        since, until = run_window(row, now)
        others = overlapping(row, ledger.job_mode_runs(row.instance, since, until - 1), backend_of, now=now)
        if others:
            names = ", ".join(sorted({o.job_id for o in others}))
            result.overlaps.append(
                f"{_label(row)}: job mode: overlaps job {names} on {row.instance}/{backend}"
            )
            continue
        try:
            client, crn = clients(row.instance)
            listed = client.jobs_created_between(
                crn,
                backend,
                datetime.fromtimestamp(since - SLACK_SECONDS, UTC),
                datetime.fromtimestamp(until + SLACK_SECONDS, UTC),
            )
        except (KeyError, QauvernError) as exc:
            if isinstance(exc, IBMError):
                result.errors.append(f"{_label(row)} ({row.instance}/{backend}, job mode): {exc}")
            else:
                message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                result.unresolved.append(f"{_label(row)}: {message}")
            continue
        except OSError as exc:
            result.errors.append(f"{_label(row)} ({row.instance}/{backend}, job mode): {exc}")
            continue
        jobs = jobs_of_run(listed, since, until)
        got = charge(jobs, ended=row.end is not None)
        result.ibm_jobs += len(jobs)
        if ledger.set_usage(row.key, got.quantum_seconds, got.final, resource_units=got.resource_units):
            if got.final:
                result.finalized += 1
            else:
                result.updated += 1
    return result
