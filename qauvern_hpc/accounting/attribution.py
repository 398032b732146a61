"""How many quantum seconds a Slurm job spent, from the IBM sessions it held. Pure: no I/O.

IBM's rules (seed "Workload usage"):
- batch (and single-job) mode: usage is the sum of the quantum time of the session's jobs; job mode (no
  session, the Open plan): each job's own usage, so a run's charge is the sum over the jobs it submitted
  (`attribute_jobs`; which jobs those are is `qauvern_hpc.accounting.job_mode`'s question);
- dedicated session mode: usage is wall clock from the first job start until the session is closed or goes
  inactive (IBM reports it as the session's `elapsed_time`);
- failed and cancelled jobs count only for the time the QPU was locked (IBM's per-job quantum seconds
  already say so, so they are summed like any other job).

Resource units (docs/ibm-platform.md): a batch session's RUs are the sum of its jobs' RUs when IBM reported
RUs for every job; otherwise (and for dedicated sessions, whose RUs IBM reports per workload, not per
session) they are unknown (None). Seconds and RUs are never converted into each other.

A job's usage is *final* once every session it held is closed and none of its IBM jobs is still queued or
running; until then the collector stores what is known as *pending* and revisits it on later runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TERMINAL_JOB_STATES = frozenset({"completed", "failed", "cancelled", "canceled", "error"})


@dataclass(frozen=True)
class SessionUsage:
    session_id: str
    mode: str  # "batch" | "dedicated"
    state: str  # IBM session state: open, active, inactive, closed
    elapsed_seconds: float | None  # dedicated sessions: IBM's wall-clock usage
    job_quantum_seconds: Sequence[float | None]  # per IBM job in the session (None: not reported yet)
    job_states: Sequence[str]
    job_resource_units: Sequence[float | None] = ()  # per IBM job, where IBM reported RUs


@dataclass(frozen=True)
class Attribution:
    quantum_seconds: float
    final: bool
    why: str
    resource_units: float | None = None  # None: IBM did not report the whole charge in RUs


def attribute(session: SessionUsage) -> Attribution:
    """The quantum seconds one session charged, and whether IBM's figure can still change."""
    closed = session.state.lower() == "closed"
    if session.mode == "dedicated":
        seconds = max(0.0, session.elapsed_seconds or 0.0)
        return Attribution(seconds, closed, "dedicated session: wall clock from first job start to close")
    return attribute_jobs(
        session.job_quantum_seconds,
        session.job_states,
        session.job_resource_units,
        done=closed,
        why="batch: sum of {n} job(s) quantum time",
    )


def attribute_jobs(
    quantum_seconds: Sequence[float | None],
    states: Sequence[str],
    resource_units: Sequence[float | None] = (),
    *,
    done: bool,
    why: str,
) -> Attribution:
    """IBM jobs charged each their own usage (a batch session's jobs; a job-mode run's jobs): the sum of
    their quantum seconds, and of their RUs when IBM gave RUs for every job. Final once `done` (the
    session closed, the run ended), every job is terminal and every job's usage is known. `why` may name
    `{n}`, the number of jobs with a known charge."""
    known = [q for q in quantum_seconds if q is not None]
    missing = len(known) != len(quantum_seconds)
    seconds = float(sum(max(0.0, q) for q in known))
    jobs_done = all(s.lower() in TERMINAL_JOB_STATES for s in states)
    rus = list(resource_units)
    units = None
    if rus and len(rus) == len(quantum_seconds) and all(r is not None for r in rus):
        units = float(sum(max(0.0, r) for r in rus if r is not None))
    return Attribution(seconds, done and jobs_done and not missing, why.format(n=len(known)), units)


def attribute_job(sessions: Sequence[SessionUsage]) -> Attribution:
    """A Slurm job's total over the sessions it held (one per resource)."""
    parts = [attribute(s) for s in sessions]
    if not parts:
        return Attribution(0.0, True, "no session was opened")
    units = [p.resource_units for p in parts]
    return Attribution(
        sum(p.quantum_seconds for p in parts),
        all(p.final for p in parts),
        "; ".join(p.why for p in parts),
        None if any(u is None for u in units) else sum(u for u in units if u is not None),
    )
