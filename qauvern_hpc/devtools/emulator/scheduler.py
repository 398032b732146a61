"""The scheduler: which job runs on which backend, when jobs end, and the session life cycle time drives.

Time is lazy: there is no background thread. `run_until(now)` replays the events that fell due (job ends,
session open timeouts, `max_ttl`, interactive TTL) in time order, ties broken by kind (job end, open
timeout, max_ttl, idle), so a manual clock gives fully deterministic runs and a real clock behaves like wall
time.

Backends also change status (`status.py`: scheduled changes, reverts, flaps; kind rank 4) and other
customers' jobs arrive (`external.py`: wait spikes rank 4, arrivals rank 5).

Invariants: only an online backend starts jobs; it runs at most one job at a time (`running_job`, or
`running_external` for another customer's); a dedicated session that is running holds its backend
(`locked_by_session`): only its jobs start until it goes inactive or closes, and its locked wall-clock
period is charged when it ends. Otherwise the queued job of the instance with the lowest (28-day usage /
allocation; other customers: their seeded `ratio`) starts first, oldest first among equals (IBM's fair
share; ours before others' at the same instant, ours by `seq`). A job whose
instance has reached its `instance_limit_seconds` fails instead of starting. Jobs outside dedicated sessions
are charged their QPU time when they end. Not thread-safe: call under `EmulatorState`'s lock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from qauvern_hpc.devtools.emulator import status as backend_status
from qauvern_hpc.devtools.emulator.external import OtherCustomers
from qauvern_hpc.devtools.emulator.model import (
    Backend,
    ExternalJob,
    Job,
    JobStatus,
    Session,
    SessionPeriod,
    SessionState,
    SessionTransition,
    WaitSpike,
)
from qauvern_hpc.devtools.emulator.store import Store
from qauvern_hpc.devtools.emulator.usage import Usage

Event = tuple[datetime, int, str, str]  # (when, tie-break rank, kind, job, session or backend id)
QueueKey = tuple[float, datetime, int, int]  # (fair-share ratio, created, ours 0 / others' 1, seq)


class Scheduler:
    """Backends, queues and session state changes over a `Store`, charging through `Usage`."""

    def __init__(self, store: Store, usage: Usage) -> None:
        self._s = store
        self._usage = usage
        self.others = OtherCustomers(store)

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
            else:
                self._backend_event(kind, self._s.backends[ident], at)
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

    def _backend_event(self, kind: str, b: Backend, at: datetime) -> None:
        if kind == "external_end":
            assert b.running_external is not None
            x = self.others.find(b.running_external)
            x.finished_at = at
            b.running_external = None
        elif kind == "status":
            change = min(b.schedule, key=lambda c: c.at)
            b.schedule.remove(change)
            backend_status.apply_change(b, change, at)
        elif kind == "spike_start":
            self.others.spike_start(b, min((w for w in b.wait_spikes if not w.injected), key=_start), at)
        elif kind == "spike_end":
            self.others.spike_end(b, min(b.wait_spikes, key=lambda w: w.end), at)
        elif kind == "arrival":
            self.others.arrive(b, at)
        self.dispatch(b, at)

    def _backend_events(self, b: Backend) -> list[Event]:
        out: list[Event] = []
        if b.running_external is not None:
            x = self.others.find(b.running_external)
            assert x.started_at is not None
            out.append((x.started_at + timedelta(seconds=x.seconds), 0, "external_end", b.name))
        if b.schedule:
            out.append((min(c.at for c in b.schedule), 4, "status", b.name))
        pending = [w.start for w in b.wait_spikes if not w.injected]
        if pending:
            out.append((min(pending), 4, "spike_start", b.name))
        if b.wait_spikes:
            out.append((min(w.end for w in b.wait_spikes), 4, "spike_end", b.name))
        if b.external_next_at is not None:
            out.append((b.external_next_at, 5, "arrival", b.name))
        return out

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
            for ev in self._backend_events(b):
                consider(ev)
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

    def _candidates(self, b: Backend, at: datetime) -> list[tuple[QueueKey, Job | ExternalJob]]:
        """The jobs queued on `b` that may start next, with their fair-share keys, in start order."""
        queued = [j for j in self._s.m.jobs if j.backend == b.name and j.status == "Queued"]
        if b.locked_by_session is not None:
            own = [j for j in queued if j.session_id == b.locked_by_session]
            return [((0.0, j.created_at, 0, j.seq), j) for j in sorted(own, key=lambda j: j.seq)]
        ratios = {crn: self._usage.ratio(crn, at) for crn in {j.instance for j in queued}}
        out: list[tuple[QueueKey, Job | ExternalJob]] = [
            ((ratios[j.instance], j.created_at, 0, j.seq), j) for j in queued
        ]
        out += [((x.ratio, x.created_at, 1, x.seq), x) for x in self.others.queued(b)]
        return sorted(out, key=lambda kj: kj[0])

    def queue_order(self, b: Backend, at: datetime) -> list[str]:
        """Ids of the jobs queued on `b` (ours and other customers'), in the order they would start."""
        order = [j.id for _, j in self._candidates(b, at)]
        if b.locked_by_session is not None:
            locked = set(order)
            rest = [j for j in self._s.m.jobs if j.backend == b.name and j.status == "Queued"]
            rest = [j for j in rest if j.id not in locked]
            ratios = {crn: self._usage.ratio(crn, at) for crn in {j.instance for j in rest}}
            keyed = [((ratios[j.instance], j.created_at, 0, j.seq), j.id) for j in rest]
            keyed += [((x.ratio, x.created_at, 1, x.seq), x.id) for x in self.others.queued(b)]
            order += [i for _, i in sorted(keyed)]
        return order

    def estimate(self, j: Job, at: datetime) -> tuple[int | None, datetime | None]:
        """A queued job's 1-based position on its backend and when it would start if nothing else arrived
        (None while the backend is not online or the job waits behind another dedicated session)."""
        b = self._s.backends[j.backend]
        order = self.queue_order(b, at)
        if j.id not in order:
            return None, None
        position = order.index(j.id) + 1
        if b.status != "online" or (b.locked_by_session not in (None, j.session_id)):
            return position, None
        seconds = {x.id: x.seconds for x in self.others.queued(b)}
        wait = 0.0
        if b.running_job is not None:
            running = self._s.jobs[b.running_job]
            assert running.started_at is not None
            wait = self._run_plan(running)[0] - (at - running.started_at).total_seconds()
        elif b.running_external is not None:
            x = self.others.find(b.running_external)
            assert x.started_at is not None
            wait = x.seconds - (at - x.started_at).total_seconds()
        for ident in order[: position - 1]:
            wait += seconds[ident] if ident in seconds else self._run_plan(self._s.jobs[ident])[0]
        return position, at + timedelta(seconds=max(0.0, wait))

    def dispatch(self, b: Backend, at: datetime) -> None:
        """Start queued jobs on `b` while it is online and idle."""
        while b.status == "online" and not b.busy:
            candidates = self._candidates(b, at)
            if not candidates:
                return
            job = candidates[0][1]
            if isinstance(job, ExternalJob):
                job.started_at = at
                b.running_external = job.id
                continue
            inst = self._s.instances[job.instance]
            limit = inst.instance_limit_seconds
            if limit is not None and self._usage.counted(inst.crn, at) >= limit:
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


def _start(w: WaitSpike) -> datetime:
    return w.start
