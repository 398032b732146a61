"""What the admission controller reads each period: IBM (backend status and queue, instance usage and limit)
and Slurm (pending and running jobs per pair license), turned into an `Observation` for `decide`.

Invariants:
* The pairs are the compiled policy's `pair_licenses` (what job_submit.lua adds), one per (instance, backend);
  a pair's fail mode is its resources' (`closed` wins when two resources share a backend).
* IBM is read as a whole (per instance: usage, our pending jobs, the backend list with status, queue and
  wait estimate): if any call fails, `read_ibm` raises and the caller keeps the previous views with their
  old `observed_at` (so `decide` sees how stale they are); nothing here guesses a value.
* Every pending job that is not held counts as pending (also those waiting for a begin time or a
  dependency: their cap must be in place before they become eligible).
* What `decide` learns from (`Learnt` per pair: jobs that IBM started and their wait, jobs that finished
  and their quantum seconds) comes only from our own jobs as IBM lists them: `JobTracker` keeps the
  previous period's `GET /v1/jobs?pending=true` per instance and diffs it with the new one (a job that
  went Queued -> Running started between the two reads: its wait is taken at the midpoint; a job that left
  the list finished, and its final status and `usage.quantum_seconds` are read through its session's job
  list). Each sample is delivered once: the tracker moves on only when the whole IBM read succeeded, and a
  final state IBM does not show yet is retried for a few periods, then given up.
* No writes: this module only reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from qauvern_hpc.admission.model import (
    BackendStatus,
    BackendView,
    FailMode,
    InstanceView,
    Observation,
    PairView,
)
from qauvern_hpc.core.errors import QauvernError
from qauvern_hpc.policy.compiled import Policy
from qauvern_hpc.slurm.squeue import LicenseJob

# IBM's status names -> the three the controller knows, with the message to use when IBM gives none.
_STATUS: dict[str, tuple[BackendStatus, str]] = {
    "online": ("online", "active"),
    "active": ("online", "active"),
    "paused": ("paused", "paused"),
    "maintenance": ("paused", "maintenance"),
    "internal": ("paused", "internal"),
    "offline": ("offline", "offline"),
}


@dataclass(frozen=True)
class PairSpec:
    """One pair the controller manages (from the compiled policy)."""

    instance: str
    backend: str
    license: str
    fail_mode: FailMode
    crn: str

    @property
    def tres(self) -> str:
        return f"license/{self.license}"


class IbmReader(Protocol):
    """The IBMClient calls the controller makes (read only)."""

    def instance_usage(self, crn: str) -> Any: ...

    def backends(self, crn: str, *, with_wait: bool = True) -> list[Any]: ...

    def pending_jobs(self, crn: str, backend: str | None = None, *, page_size: int = 100) -> list[Any]: ...

    def session_jobs(self, crn: str, session_id: str, *, page_size: int = 100) -> list[Any]: ...


def pair_specs(policy: Policy) -> list[PairSpec]:
    """The pairs of `policy.pair_licenses`, in policy order, one per license."""
    out: dict[str, PairSpec] = {}
    for instance, by_resource in policy.pair_licenses.items():
        crn = policy.instances[instance].crn
        for res_name, lic in by_resource.items():
            res = policy.resources[res_name]
            mode: FailMode = "closed" if res.fail_mode == "closed" else "open"
            old = out.get(lic)
            if old is not None:
                mode = "closed" if "closed" in (old.fail_mode, mode) else "open"
            out[lic] = PairSpec(instance, res.backend, lic, mode, crn)
    return list(out.values())


def backend_view(device: Any, now: float) -> BackendView:
    """One `GET /v1/backends` device (IBMClient.backends) -> a BackendView; unknown status names count as
    paused (IBM accepts jobs but we do not know that it runs them)."""
    st = getattr(device, "status", None)
    status_text = str(getattr(st, "name", None) or "").strip().lower()
    status, default_message = _STATUS.get(status_text, ("paused", status_text or "unknown"))
    message = str(getattr(st, "reason", None) or default_message)
    if status_text == "maintenance" and message.lower() in ("active", "available"):
        message = "maintenance"
    wait = getattr(device, "wait_time_seconds", None)
    p50 = getattr(wait, "p50", None)
    p95 = getattr(wait, "p95", None)
    return BackendView(
        name=str(device.name),
        status=status,
        message=message,
        length_queue=int(getattr(device, "queue_length", None) or 0),
        wait_p50_seconds=float(p50) if p50 is not None else None,
        wait_p95_seconds=float(p95) if p95 is not None else None,
        observed_at=now,
    )


def instance_view(name: str, raw: Any, now: float) -> InstanceView:
    """IBM's `/v1/instances/usage` answer -> an InstanceView."""
    limit = getattr(raw, "limit_seconds", None)
    consumed = float(getattr(raw, "consumed_seconds", 0) or 0)
    reached = getattr(raw, "limit_reached", None)
    if reached is None:
        reached = limit is not None and consumed >= limit
    return InstanceView(
        name=name,
        consumed_seconds=consumed,
        allocation_seconds=int(getattr(raw, "allocation_seconds", None) or 0),
        limit_seconds=int(limit) if limit is not None else None,
        limit_reached=bool(reached),
        observed_at=now,
    )


@dataclass(frozen=True)
class IbmJobs:
    """Our own jobs of one pair at IBM (`GET /v1/jobs?pending=true`)."""

    queued: int = 0
    running: int = 0
    oldest_queued_age: float | None = None


@dataclass(frozen=True)
class Learnt:
    """What one period learnt about one pair from our own IBM jobs (the PairView fields of the same names)."""

    done_jobs: int = 0
    done_quantum_seconds: float = 0.0
    started_jobs: int = 0
    started_wait_seconds: float = 0.0
    lost_jobs: int = 0
    lost_wait_seconds: float = 0.0  # the longest, not a sum

    def __add__(self, other: Learnt) -> Learnt:
        return Learnt(
            self.done_jobs + other.done_jobs,
            self.done_quantum_seconds + other.done_quantum_seconds,
            self.started_jobs + other.started_jobs,
            self.started_wait_seconds + other.started_wait_seconds,
            self.lost_jobs + other.lost_jobs,
            max(self.lost_wait_seconds, other.lost_wait_seconds),
        )


@dataclass(frozen=True)
class IbmRead:
    backends: dict[str, BackendView]
    instances: dict[str, InstanceView]
    jobs: dict[str, IbmJobs]  # pair license -> our jobs at IBM
    learnt: dict[str, Learnt] = field(default_factory=dict)  # pair license -> learnt since the last read


FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "canceled", "error"})


@dataclass(frozen=True)
class _Seen:
    """One of our pending IBM jobs as a read listed it."""

    license: str
    queued: bool
    created: float | None
    session_id: str | None


@dataclass(frozen=True)
class _Gone:
    """A job that left the pending list, until IBM shows its final state (through its session)."""

    crn: str
    job: _Seen
    wait_if_ran: float | None  # its created -> running wait, if it left while Queued and did run
    tries: int = 0


def _epoch(moment: Any) -> float | None:
    return float(moment.timestamp()) if moment is not None else None


def _quantum_seconds(job: Any) -> float | None:
    q = getattr(job, "quantum_seconds", None)
    if q is None:
        q = getattr(getattr(job, "usage", None), "quantum_seconds", None)
    return float(q) if q is not None else None


class JobTracker:
    """Our pending IBM jobs of the previous read, per instance, to learn service and wait times from the
    difference with the next read (only what IBM lists; nothing ahead of `now`)."""

    def __init__(self, max_tries: int = 5) -> None:
        self.max_tries = max_tries  # periods a gone job's final state is looked for before it is given up
        self.seen: dict[str, tuple[float, dict[str, _Seen]]] = {}  # instance -> (read at, job id -> job)
        self.gone: dict[str, _Gone] = {}  # job id -> a job that left the pending list, final state unread

    def update(
        self,
        client: IbmReader,
        listed: Mapping[str, tuple[str, list[Any]]],
        lic_of: Mapping[tuple[str, str], str],
        now: float,
    ) -> dict[str, Learnt]:
        """Diff this read (`listed`: instance -> (crn, pending jobs)) with the previous one and read the final
        state of the jobs that left. Returns what was learnt per pair license; never raises for a final
        state it cannot read (retried next period)."""
        learnt: dict[str, Learnt] = {}

        def add(lic: str, item: Learnt) -> None:
            learnt[lic] = learnt.get(lic, Learnt()) + item

        gone = dict(self.gone)
        seen: dict[str, tuple[float, dict[str, _Seen]]] = {}
        for instance, (crn, jobs) in listed.items():
            prev = self.seen.get(instance)
            cur: dict[str, _Seen] = {}
            for job in jobs:
                jid = getattr(job, "id", None)
                lic = lic_of.get((instance, str(getattr(job, "backend", "") or "")))
                if not jid or lic is None:
                    continue
                queued = str(getattr(job, "status", "")).lower() != "running"
                created = _epoch(getattr(job, "created", None))
                sid = getattr(job, "session_id", None)
                cur[str(jid)] = _Seen(lic, queued, created, str(sid) if sid else None)
                gone.pop(str(jid), None)  # listed (again)
                if prev is None or queued or created is None:
                    continue
                before = prev[1].get(str(jid))
                if before is None or before.queued:  # started between the two reads: take the midpoint
                    start = (max(created, prev[0]) + now) / 2.0
                    add(lic, Learnt(started_jobs=1, started_wait_seconds=max(0.0, start - created)))
            if prev is not None:
                for jid, was in prev[1].items():
                    if jid in cur:
                        continue
                    wait = None
                    if was.queued and was.created is not None:
                        wait = max(0.0, (max(was.created, prev[0]) + now) / 2.0 - was.created)
                    gone[jid] = _Gone(crn, was, wait)
            seen[instance] = (now, cur)

        by_session: dict[tuple[str, str], list[str]] = {}
        for jid, g in list(gone.items()):
            if g.job.session_id is None:  # no session: IBM's job list by session cannot show it
                del gone[jid]
            else:
                by_session.setdefault((g.crn, g.job.session_id), []).append(jid)
        for (crn, sid), ids in sorted(by_session.items()):
            try:
                final = {str(getattr(j, "id", "")): j for j in client.session_jobs(crn, sid)}
            except (QauvernError, OSError, ValueError):
                final = {}
            for jid in ids:
                g = gone.pop(jid)
                j = final.get(jid)
                status = str(getattr(j, "status", "") or "").lower()
                if status not in FINAL_STATUSES:
                    if g.tries + 1 < self.max_tries:
                        gone[jid] = _Gone(g.crn, g.job, g.wait_if_ran, g.tries + 1)
                    continue
                q = _quantum_seconds(j)
                if q is None or (q <= 0.0 and status != "completed"):
                    if g.wait_if_ran is not None and status in ("cancelled", "canceled"):
                        # cancelled while Queued (Slurm's wall limit or scancel): how long IBM kept it
                        add(g.job.license, Learnt(lost_jobs=1, lost_wait_seconds=g.wait_if_ran))
                    continue  # cancelled or failed before it ran: nothing else to learn
                add(g.job.license, Learnt(done_jobs=1, done_quantum_seconds=q))
                if g.wait_if_ran is not None:
                    add(g.job.license, Learnt(started_jobs=1, started_wait_seconds=g.wait_if_ran))
        self.seen, self.gone = seen, gone
        return learnt


def read_ibm(
    client: IbmReader, specs: Sequence[PairSpec], now: float, tracker: JobTracker | None = None
) -> IbmRead:
    """Per instance: its usage, its pending jobs and (until every backend is seen) IBM's backend list with
    status, queue length and wait estimate. Raises whatever the client raises: the caller holds the
    previous views. With a `tracker`, once everything was read: what its jobs teach (`IbmRead.learnt`)."""
    wanted = {s.backend for s in specs}
    backends: dict[str, BackendView] = {}
    instances: dict[str, InstanceView] = {}
    jobs: dict[str, IbmJobs] = {}
    listed: dict[str, tuple[str, list[Any]]] = {}
    lic_of = {(s.instance, s.backend): s.license for s in specs}
    for spec in specs:
        if spec.instance in instances:
            continue
        instances[spec.instance] = instance_view(spec.instance, client.instance_usage(spec.crn), now)
        if not wanted.issubset(backends):
            for device in client.backends(spec.crn, with_wait=True):
                if device.name in wanted and device.name not in backends:
                    backends[device.name] = backend_view(device, now)
        queued: dict[str, list[float]] = {}
        running: dict[str, int] = {}
        pending = list(client.pending_jobs(spec.crn))
        listed[spec.instance] = (spec.crn, pending)
        for job in pending:
            lic = lic_of.get((spec.instance, str(getattr(job, "backend", "") or "")))
            if lic is None:
                continue
            if str(getattr(job, "status", "")).lower() == "running":
                running[lic] = running.get(lic, 0) + 1
            else:
                created = getattr(job, "created", None)
                age = max(0.0, now - created.timestamp()) if created is not None else 0.0
                queued.setdefault(lic, []).append(age)
        for lic in set(queued) | set(running):
            ages = queued.get(lic, [])
            jobs[lic] = IbmJobs(len(ages), running.get(lic, 0), max(ages) if ages else None)
    missing = sorted(wanted - set(backends))
    if missing:
        raise ValueError(f"IBM does not list backend(s) {', '.join(missing)}")
    learnt = tracker.update(client, listed, lic_of, now) if tracker is not None else {}
    return IbmRead(backends, instances, jobs, learnt)


@dataclass(frozen=True)
class PairJobs:
    pending: int = 0
    running: int = 0
    oldest_pending_age: float | None = None


def jobs_per_license(jobs: Iterable[LicenseJob], licenses: Iterable[str], now: float) -> dict[str, PairJobs]:
    """Per pair license: Slurm jobs pending (that Slurm may start by itself) and running that hold it."""
    wanted = {lic.lower() for lic in licenses}
    pending: dict[str, int] = {}
    running: dict[str, int] = {}
    oldest: dict[str, float] = {}
    for job in jobs:
        for name, _count in job.licenses:
            lic = name.lower()
            if lic not in wanted:
                continue
            if job.state == "RUNNING":
                running[lic] = running.get(lic, 0) + 1
            elif job.counts_as_demand:
                pending[lic] = pending.get(lic, 0) + 1
                if job.submit_epoch is not None:
                    age = max(0.0, now - job.submit_epoch)
                    oldest[lic] = max(oldest.get(lic, 0.0), age)
    return {
        lic: PairJobs(pending.get(lic, 0), running.get(lic, 0), oldest.get(lic)) for lic in sorted(wanted)
    }


def observation(
    specs: Sequence[PairSpec],
    jobs: Mapping[str, PairJobs],
    backends: Mapping[str, BackendView],
    instances: Mapping[str, InstanceView],
    ibm_jobs: Mapping[str, IbmJobs],
    *,
    now: float,
    ibm_read_at: float | None,
    learnt: Mapping[str, Learnt] | None = None,
) -> Observation:
    """The Observation of one period. `backends`/`instances`/`ibm_jobs` are this period's IBM reads, or the
    last good ones (with their old timestamps) when IBM could not be read; `learnt` is what was learnt
    since the previous decision (given once: a held read learns nothing new)."""
    pairs = []
    for s in specs:
        j = jobs.get(s.license, PairJobs())
        at_ibm = ibm_jobs.get(s.license, IbmJobs())
        lt = (learnt or {}).get(s.license, Learnt())
        pairs.append(
            PairView(
                instance=s.instance,
                backend=s.backend,
                fail_mode=s.fail_mode,
                pending=j.pending,
                running=j.running,
                ibm_queued=at_ibm.queued,
                ibm_running=at_ibm.running,
                oldest_ibm_queued_age=at_ibm.oldest_queued_age,
                oldest_pending_age=j.oldest_pending_age,
                done_jobs=lt.done_jobs,
                done_quantum_seconds=lt.done_quantum_seconds,
                started_jobs=lt.started_jobs,
                started_wait_seconds=lt.started_wait_seconds,
                lost_jobs=lt.lost_jobs,
                lost_wait_seconds=lt.lost_wait_seconds,
            )
        )
    return Observation(
        now=now,
        backends=dict(backends),
        instances=dict(instances),
        pairs=tuple(pairs),
        ibm_read_at=ibm_read_at,
    )


def views_to_json(
    backends: Mapping[str, BackendView], instances: Mapping[str, InstanceView]
) -> dict[str, Any]:
    return {
        "backends": {n: asdict(b) for n, b in backends.items()},
        "instances": {n: asdict(i) for n, i in instances.items()},
    }


def views_from_json(data: Mapping[str, Any]) -> tuple[dict[str, BackendView], dict[str, InstanceView]]:
    """The views a previous run saved (a restarted controller holds them like a running one would)."""
    backends = {str(n): BackendView(**b) for n, b in (data.get("backends") or {}).items()}
    instances = {str(n): InstanceView(**i) for n, i in (data.get("instances") or {}).items()}
    return backends, instances


__all__ = [
    "IbmJobs",
    "IbmRead",
    "IbmReader",
    "JobTracker",
    "Learnt",
    "PairJobs",
    "PairSpec",
    "backend_view",
    "instance_view",
    "jobs_per_license",
    "observation",
    "pair_specs",
    "read_ibm",
    "views_from_json",
    "views_to_json",
]
