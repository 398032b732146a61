"""The scheduler: which job runs on which backend, when jobs end, and the session life cycle time drives.

Time is lazy: there is no background thread. `run_until(now)` replays the events that fell due (job ends,
session open timeouts, `max_ttl`, interactive TTL) in time order, ties broken by kind (job end, open
timeout, max_ttl, idle), so a manual clock gives fully deterministic runs and a real clock behaves like wall
time.

Invariants: a backend runs at most one job at a time (`running_job`); a dedicated session that is running
holds its backend (`locked_by_session`): only its jobs start until it goes inactive or closes, and its
locked wall-clock period is charged when it ends. Otherwise the queued job of the instance with the lowest
(28-day usage / allocation) starts first, FIFO (by `seq`) among equals (IBM's fair share). A job whose
instance has reached its `instance_limit_seconds` fails instead of starting. Jobs outside dedicated sessions
are charged their QPU time when they end. Not thread-safe: call under `EmulatorState`'s lock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from qauvern_hpc.devtools.emulator.model import (
    Backend,
    Job,
    JobStatus,
    Session,
    SessionPeriod,
    SessionState,
    SessionTransition,
)
from qauvern_hpc.devtools.emulator.store import Store
from qauvern_hpc.devtools.emulator.usage import Usage

Event = tuple[datetime, int, str, str]  # (when, tie-break rank, kind, job or session id)


class Scheduler:
    """Backends, queues and session state changes over a `Store`, charging through `Usage`."""

    def __init__(self, store: Store, usage: Usage) -> None:
        self._s = store
        self._usage = usage

    # ------------------------------------------------------------------ events

    def run_until(self, now: datetime) -> None:
        """Apply every event due at or before `now`, oldest first."""
        for _ in range(1_000_000):
            ev = self._next_event()
            if ev is None or ev[0] > now:
                return
            at, _, kind, ident = ev
            if kind == "job_end":
                j = self._s.jobs[ident]
                _, status, reason = self._run_plan(j)
                self.finish_job(j, at, status, reason)
            elif kind == "open_timeout":
                self.close(
                    self._s.sessions[ident],
                    at,
                    f"no job was submitted within {self._s.m.open_session_timeout_seconds} s",
                    cancel_queued=True,
                )
            elif kind == "max_ttl":
                s = self._s.sessions[ident]
                s.ttl_expired = True
                self.close(s, at, "the session reached its max_ttl", cancel_queued=True)
            elif kind == "idle":
                self._deactivate(self._s.sessions[ident], at)
        raise RuntimeError("the emulator's scheduler did not settle")

    def _run_plan(self, j: Job) -> tuple[float, JobStatus, str | None]:
        """How long a started job holds the QPU and how it ends."""
        options: list[tuple[float, JobStatus, str | None]] = [(j.quantum_seconds, "Completed", None)]
        if j.fail_after_seconds is not None:
            options.append((j.fail_after_seconds, "Failed", j.reason or "the job failed (emulated failure)"))
        if j.cost is not None:
            options.append(
                (float(j.cost), "Cancelled - Ran too long", "the job exceeded its maximum execution time")
            )
        return min(options, key=lambda o: o[0])

    def _next_event(self) -> Event | None:
        best: Event | None = None

        def consider(ev: Event) -> None:
            nonlocal best
            if best is None or ev[:2] < best[:2]:
                best = ev

        for b in self._s.m.backends:
            if b.running_job is not None:
                j = self._s.jobs[b.running_job]
                assert j.started_at is not None
                consider((j.started_at + timedelta(seconds=self._run_plan(j)[0]), 0, "job_end", j.id))
        timeout = self._s.m.open_session_timeout_seconds
        for s in self._s.m.sessions:
            if s.state == "closed":
                continue
            if s.state == "open" and not s.closing and not self._s.session_jobs(s.id):
                consider((s.created_at + timedelta(seconds=timeout), 1, "open_timeout", s.id))
            if s.started_at is not None and not s.ttl_expired:
                consider((s.started_at + timedelta(seconds=s.max_ttl), 2, "max_ttl", s.id))
            if s.state == "active" and s.idle_since is not None and not self._s.pending(s):
                consider((s.idle_since + timedelta(seconds=s.interactive_ttl), 3, "idle", s.id))
        return best

    # ------------------------------------------------------------------ queues

    def queue_order(self, b: Backend, at: datetime) -> list[str]:
        """Ids of the jobs queued on `b`, in the order they would start."""
        queued = [j for j in self._s.m.jobs if j.backend == b.name and j.status == "Queued"]
        if b.locked_by_session is not None:
            own = sorted((j for j in queued if j.session_id == b.locked_by_session), key=lambda j: j.seq)
            rest = [j for j in queued if j.session_id != b.locked_by_session]
        else:
            own, rest = [], queued
        ratios = {crn: self._usage.ratio(crn, at) for crn in {j.instance for j in rest}}
        rest.sort(key=lambda j: (ratios[j.instance], j.seq))
        return [j.id for j in own + rest]

    def dispatch(self, b: Backend, at: datetime) -> None:
        """Start queued jobs on `b` while it is online and idle."""
        while b.status == "online" and b.running_job is None:
            queued = [j for j in self._s.m.jobs if j.backend == b.name and j.status == "Queued"]
            if b.locked_by_session is not None:
                queued = [j for j in queued if j.session_id == b.locked_by_session]
                if not queued:
                    return
                job = min(queued, key=lambda j: j.seq)
            else:
                if not queued:
                    return
                ratios = {crn: self._usage.ratio(crn, at) for crn in {j.instance for j in queued}}
                job = min(queued, key=lambda j: (ratios[j.instance], j.seq))
            inst = self._s.instances[job.instance]
            limit = inst.instance_limit_seconds
            if limit is not None and self._usage.rolling(inst.crn, at) >= limit:
                self.end_unstarted(job, at, "Failed", f"the instance reached its usage limit of {limit} s")
                continue
            self._start_job(job, b, at)

    def _start_job(self, j: Job, b: Backend, at: datetime) -> None:
        j.status = "Running"
        j.started_at = at
        b.running_job = j.id
        s = self._s.sessions.get(j.session_id) if j.session_id else None
        if s is None:
            return
        if s.started_at is None:
            s.started_at = at
        s.last_job_started = at
        s.idle_since = None
        if s.state != "active":
            if s.activated_at is None:
                s.activated_at = at
            _transition(s, "active", at)
        if s.mode == "dedicated" and b.locked_by_session is None:
            b.locked_by_session = s.id
            s.periods.append(SessionPeriod(start=at))

    def finish_job(self, j: Job, at: datetime, status: JobStatus, reason: str | None) -> None:
        """End a running job: free its backend, charge it (outside dedicated sessions), start the next."""
        assert j.started_at is not None
        j.status = status
        j.reason = reason
        j.finished_at = at
        j.used_seconds = max(0.0, (at - j.started_at).total_seconds())
        b = self._s.backends[j.backend]
        if b.running_job == j.id:
            b.running_job = None
        s = self._s.sessions.get(j.session_id) if j.session_id else None
        if s is None or s.mode != "dedicated":
            self._usage.record(j.instance, at, j.used_seconds, "job", j.id)
        if s is not None:
            s.last_job_completed = at
            self._after_session_job(s, at)
        self.dispatch(b, at)

    def end_unstarted(self, j: Job, at: datetime, status: JobStatus, reason: str) -> None:
        """End a job that never started (nothing is charged)."""
        j.status = status
        j.reason = reason
        j.finished_at = at
        j.used_seconds = 0.0
        s = self._s.sessions.get(j.session_id) if j.session_id else None
        if s is not None:
            self._after_session_job(s, at)

    # ------------------------------------------------------------------ sessions

    def _after_session_job(self, s: Session, at: datetime) -> None:
        if self._s.pending(s):
            return
        if not s.accepting_jobs or s.closing:
            self.mark_closed(s, at, s.state_reason or "closed by the user")
        elif s.state == "active":
            s.idle_since = at

    def close(self, s: Session, at: datetime, reason: str, *, cancel_queued: bool) -> None:
        """Stop accepting jobs (cancelling queued ones if asked); close now or when the running job ends."""
        s.accepting_jobs = False
        s.state_reason = reason
        if cancel_queued:
            for j in self._s.session_jobs(s.id):
                if j.status == "Queued":
                    j.status, j.reason, j.finished_at, j.used_seconds = "Cancelled", reason, at, 0.0
        if any(j.status == "Running" for j in self._s.session_jobs(s.id)):
            s.closing = True
            return
        self.mark_closed(s, at, reason)

    def _release_lock(self, s: Session, at: datetime) -> None:
        b = self._s.backends.get(s.backend)
        if b is None or b.locked_by_session != s.id:
            return
        b.locked_by_session = None
        if s.periods and s.periods[-1].end is None:
            period = s.periods[-1]
            period.end = at
            self._usage.record(s.instance, at, (at - period.start).total_seconds(), "session", s.id)
        self.dispatch(b, at)

    def mark_closed(self, s: Session, at: datetime, reason: str) -> None:
        s.accepting_jobs = False
        s.closing = False
        s.idle_since = None
        s.closed_at = at
        _transition(s, "closed", at, reason)
        self._release_lock(s, at)

    def _deactivate(self, s: Session, at: datetime) -> None:
        s.idle_since = None
        _transition(s, "inactive", at, "no job was submitted within the interactive TTL")
        self._release_lock(s, at)


def _transition(s: Session, state: SessionState, at: datetime, reason: str | None = None) -> None:
    if s.state != state:
        s.state = state
        s.timestamps.append(SessionTransition(status=state, timestamp=at))
    if reason is not None:
        s.state_reason = reason
