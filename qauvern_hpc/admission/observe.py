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
* No writes: this module only reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from qauvern_hpc.admission.model import (
    BackendStatus,
    BackendView,
    FailMode,
    InstanceView,
    Observation,
    PairView,
)
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
class IbmRead:
    backends: dict[str, BackendView]
    instances: dict[str, InstanceView]
    jobs: dict[str, IbmJobs]  # pair license -> our jobs at IBM


def read_ibm(client: IbmReader, specs: Sequence[PairSpec], now: float) -> IbmRead:
    """Per instance: its usage, its pending jobs and (until every backend is seen) IBM's backend list with
    status, queue length and wait estimate. Raises whatever the client raises: the caller holds the
    previous views."""
    wanted = {s.backend for s in specs}
    backends: dict[str, BackendView] = {}
    instances: dict[str, InstanceView] = {}
    jobs: dict[str, IbmJobs] = {}
    lic_of = {(s.instance, s.backend): s.license for s in specs}
    for spec in specs:
        if spec.instance in instances:
            continue
        instances[spec.instance] = instance_view(spec.instance, client.instance_usage(spec.crn), now)
        if not wanted.issubset(backends):
            # Without IBM's wait_time_seconds: it is a trailing statistic of jobs that already started, so
            # it lags a sudden queue, and decide prefers it to the queue length when present. Until decide
            # combines both, the queue length (x the learnt service time) is the wait signal.
            for device in client.backends(spec.crn, with_wait=False):
                if device.name in wanted and device.name not in backends:
                    backends[device.name] = backend_view(device, now)
        queued: dict[str, list[float]] = {}
        running: dict[str, int] = {}
        for job in client.pending_jobs(spec.crn):
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
    return IbmRead(backends, instances, jobs)


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
) -> Observation:
    """The Observation of one period. `backends`/`instances`/`ibm_jobs` are this period's IBM reads, or the
    last good ones (with their old timestamps) when IBM could not be read."""
    pairs = []
    for s in specs:
        j = jobs.get(s.license, PairJobs())
        at_ibm = ibm_jobs.get(s.license, IbmJobs())
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
