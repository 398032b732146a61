"""What the admission controller reads each period: IBM (backend status and queue, instance usage and limit)
and Slurm (pending and running jobs per pair license), turned into an `Observation` for `decide`.

Invariants:
* The pairs are the compiled policy's `pair_licenses` (what job_submit.lua adds), one per (instance, backend);
  a pair's fail mode is its resources' (`closed` wins when two resources share a backend).
* IBM is read as a whole: if any call fails, `read_ibm` raises and the caller keeps the previous views with
  their old `observed_at` (so `decide` sees how stale they are); nothing here guesses a value.
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

    def backend_status(self, crn: str, backend: str) -> Any: ...


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


def backend_view(name: str, raw: Any, now: float) -> BackendView:
    """IBM's `/v1/backends/{name}/status` answer -> a BackendView (unknown status names count as paused)."""
    status_text = str(getattr(raw, "status", None) or "").strip().lower()
    status, default_message = _STATUS.get(status_text, ("paused", status_text or "unknown"))
    message = str(getattr(raw, "message", None) or default_message)
    if getattr(raw, "state", None) is False and status == "online":
        status, message = (
            "paused",
            message if message.lower() not in ("active", "available") else "not active",
        )
    if status_text == "maintenance" and message.lower() in ("active", "available"):
        message = "maintenance"
    queue = getattr(raw, "length_queue", None)
    p50 = getattr(raw, "wait_p50_seconds", None)
    p95 = getattr(raw, "wait_p95_seconds", None)
    return BackendView(
        name=name,
        status=status,
        message=message,
        length_queue=int(queue or 0),
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


def read_ibm(
    client: IbmReader, specs: Sequence[PairSpec], now: float
) -> tuple[dict[str, BackendView], dict[str, InstanceView]]:
    """Every backend's status (asked through the first instance that uses it) and every instance's usage.
    Raises whatever the client raises: the caller holds the previous views."""
    backends: dict[str, BackendView] = {}
    instances: dict[str, InstanceView] = {}
    for spec in specs:
        if spec.instance not in instances:
            instances[spec.instance] = instance_view(spec.instance, client.instance_usage(spec.crn), now)
        if spec.backend not in backends:
            backends[spec.backend] = backend_view(
                spec.backend, client.backend_status(spec.crn, spec.backend), now
            )
    return backends, instances


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
    *,
    now: float,
    ibm_read_at: float | None,
) -> Observation:
    """The Observation of one period. `backends`/`instances` are this period's views, or the last good ones
    (with their old timestamps) when IBM could not be read."""
    pairs = []
    for s in specs:
        j = jobs.get(s.license, PairJobs())
        pairs.append(
            PairView(
                instance=s.instance,
                backend=s.backend,
                fail_mode=s.fail_mode,
                pending=j.pending,
                running=j.running,
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
