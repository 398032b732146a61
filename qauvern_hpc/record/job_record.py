"""The job record: `{state_dir}/jobs/{jobid}.json`, written by the prolog, updated by the epilog and
`release-pending`, read by them and by the operators' tools.

Invariants:
- The file format is the one the hooks always wrote (one JSON object, sorted keys, a trailing newline):
  `to_json` writes the same keys, optional ones (`ended_at`, `slurm_exit_code`, a resource's `closed_at`,
  `close_error`, `close_note`, `cancel_error`, `cancelled_jobs`) only when they are set.
- Reading is tolerant: a key that is missing or of the wrong type takes its default, keys this code does not
  know are kept and written back unchanged; only a file that is not a JSON object is refused (ValueError).
- Records are frozen: a change is a new record (`dataclasses.replace`), written by the caller.

Standard library only (hot path: the prolog and the epilog import it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

FORMAT = 1

_RECORD_KEYS = frozenset(
    ("format", "job_id", "user", "account", "partition", "qos", "requested", "prepared_at", "resources",
     "error", "rule", "instance", "ended_at", "slurm_exit_code")
)  # fmt: skip
_RESOURCE_KEYS = frozenset(
    ("resource", "instance", "crn", "backend", "session_mode", "session_id", "api_key_file", "closed_at",
     "close_error", "close_note", "cancel_error", "cancelled_jobs")
)  # fmt: skip


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _opt_float(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _extra(data: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in known}


@dataclass(frozen=True)
class ResourceRecord:
    """One QPU resource of a job and the IBM session opened for it (`session_id` None: none was opened)."""

    resource: str
    instance: str = ""
    crn: str = ""
    backend: str = ""
    session_mode: str = ""
    session_id: str | None = None
    api_key_file: str | None = None
    closed_at: float | None = None
    close_error: str | None = None
    close_note: str | None = None
    cancel_error: str | None = None
    cancelled_jobs: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_open(self) -> bool:
        """A session was opened and is not known to be closed."""
        return bool(self.session_id) and not self.closed_at

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(
            resource=self.resource,
            instance=self.instance,
            crn=self.crn,
            backend=self.backend,
            session_mode=self.session_mode,
            session_id=self.session_id,
            api_key_file=self.api_key_file,
        )
        for key in ("closed_at", "close_error", "close_note", "cancel_error"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.cancelled_jobs:
            out["cancelled_jobs"] = list(self.cancelled_jobs)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResourceRecord:
        jobs = data.get("cancelled_jobs")
        return cls(
            resource=_str(data, "resource"),
            instance=_str(data, "instance"),
            crn=_str(data, "crn"),
            backend=_str(data, "backend"),
            session_mode=_str(data, "session_mode"),
            session_id=_opt_str(data, "session_id"),
            api_key_file=_opt_str(data, "api_key_file"),
            closed_at=_opt_float(data, "closed_at"),
            close_error=_opt_str(data, "close_error"),
            close_note=_opt_str(data, "close_note"),
            cancel_error=_opt_str(data, "cancel_error"),
            cancelled_jobs=tuple(str(j) for j in jobs) if isinstance(jobs, list) else (),
            extra=_extra(data, _RESOURCE_KEYS),
        )


@dataclass(frozen=True)
class JobRecord:
    """What the prolog decided and opened for one job, and what the epilog and release did with it."""

    job_id: str
    user: str = ""
    account: str = ""
    partition: str = ""
    qos: str = ""
    requested: str = ""  # the job's --qpu request, as the SPANK plugin passed it
    prepared_at: float | None = None
    resources: tuple[ResourceRecord, ...] = ()
    error: str | None = None
    rule: str | None = None
    instance: str | None = None
    ended_at: float | None = None  # set by the epilog
    slurm_exit_code: str | None = None
    format: int = FORMAT
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def open_sessions(self) -> tuple[ResourceRecord, ...]:
        return tuple(r for r in self.resources if r.is_open)

    def with_resource(self, resource: ResourceRecord) -> JobRecord:
        return replace(self, resources=(*self.resources, resource))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(
            format=self.format,
            job_id=self.job_id,
            user=self.user,
            account=self.account,
            partition=self.partition,
            qos=self.qos,
            requested=self.requested,
            prepared_at=self.prepared_at,
            resources=[r.to_dict() for r in self.resources],
            error=self.error,
            rule=self.rule,
            instance=self.instance,
        )
        if self.ended_at is not None:
            out["ended_at"] = self.ended_at
        if self.slurm_exit_code is not None:
            out["slurm_exit_code"] = self.slurm_exit_code
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, job_id: str = "") -> JobRecord:
        """`job_id` is used when the record names none (an older or partial record)."""
        resources = data.get("resources")
        fmt = data.get("format")
        return cls(
            job_id=_str(data, "job_id") or job_id,
            user=_str(data, "user"),
            account=_str(data, "account"),
            partition=_str(data, "partition"),
            qos=_str(data, "qos"),
            requested=_str(data, "requested"),
            prepared_at=_opt_float(data, "prepared_at"),
            resources=tuple(
                ResourceRecord.from_dict(r)
                for r in (resources if isinstance(resources, list) else ())
                if isinstance(r, dict)
            ),
            error=_opt_str(data, "error"),
            rule=_opt_str(data, "rule"),
            instance=_opt_str(data, "instance"),
            ended_at=_opt_float(data, "ended_at"),
            slurm_exit_code=_opt_str(data, "slurm_exit_code"),
            format=fmt if isinstance(fmt, int) and not isinstance(fmt, bool) else FORMAT,
            extra=_extra(data, _RECORD_KEYS),
        )

    @classmethod
    def from_json(cls, text: str, *, job_id: str = "") -> JobRecord:
        """Raises ValueError when `text` is not a JSON object."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("job record: not a JSON object")
        return cls.from_dict(data, job_id=job_id)
