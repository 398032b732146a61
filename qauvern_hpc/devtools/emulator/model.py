"""The emulator's state, as plain pydantic models.

This is the canonical form: what `GET /__emulator/state` returns and what `PUT /__emulator/state` accepts
(after the seed conveniences of `qauvern_hpc.devtools.emulator.seed` are expanded). Runtime objects (sessions,
jobs,
usage events) live here too, so a dump can be restored. Bearer tokens never do.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Resource Controller id of the IBM Quantum service ("quantum-computing").
QUANTUM_RESOURCE_ID = "b6049020-80f4-11eb-a0f7-e35ec9b4054f"


REGIONS = ("us-east", "eu-de")

# IBM's backend status enum; the message says why ("active", "internal", "maintenance", free text). Paused:
# IBM accepts jobs but starts none; offline: not serving either. Only "online" starts jobs.
BackendStatus = Literal["online", "paused", "offline"]
DEFAULT_BACKEND_MESSAGES: dict[str, str] = {"online": "active", "paused": "internal", "offline": "offline"}
SessionMode = Literal["batch", "dedicated"]
SessionState = Literal["open", "active", "inactive", "closed"]
JobStatus = Literal["Queued", "Running", "Completed", "Cancelled", "Cancelled - Ran too long", "Failed"]
FINAL_JOB_STATUSES: frozenset[str] = frozenset(
    {"Completed", "Cancelled", "Cancelled - Ran too long", "Failed"}
)
PENDING_JOB_STATUSES: frozenset[str] = frozenset({"Queued", "Running"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanQuota(_Model):
    plan_id: str
    plan: str = Field(description="plan name, e.g. premium")
    usage_allocation_seconds: int = Field(
        ge=0, description="budget: the most Σ instance allocations may reach"
    )
    usage_limit_seconds: int | None = Field(default=None, ge=0)
    max_ttl: int = Field(default=28800, gt=0, description="cap on a session's max_ttl")
    contract_start: datetime | None = Field(
        default=None, description="Flex: the subscription's start (default: each instance's creation)"
    )
    contract_end: datetime | None = Field(default=None, description="Flex: the subscription's end")

    @field_validator("contract_start", "contract_end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value if value is None else value.astimezone(UTC)
        return value.replace(tzinfo=UTC)


class Account(_Model):
    id: str = Field(min_length=1)
    name: str = ""
    plans: list[PlanQuota] = Field(default_factory=list)


class ApiKey(_Model):
    key: str | None = Field(default=None, min_length=1)
    fingerprint: str | None = None
    account: str
    name: str = ""


def fingerprint(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16]


class ExternalLoad(_Model):
    """Other customers' jobs on a backend: Poisson arrivals, exponential QPU times, one fair-share ratio."""

    rate_per_hour: float = Field(default=0.0, ge=0)
    mean_seconds: float = Field(default=60.0, gt=0)
    ratio: float = Field(default=0.0, ge=0, description="their 28-day usage / allocation (fair-share key)")


class StatusChange(_Model):
    """A scheduled status change; with `for_seconds` the status before it comes back afterwards."""

    at: datetime
    status: BackendStatus
    message: str | None = None
    for_seconds: float | None = Field(default=None, gt=0)
    revert: bool = Field(default=False, description="the way back from a temporary change")

    @model_validator(mode="before")
    @classmethod
    def _old_maintenance(cls, data: Any) -> Any:
        return maintenance_is_paused(data)


class WaitSpike(_Model):
    """A burst of other customers' work: `extra_jobs` queued at `start` (withdrawn at `end` if still queued)
    and/or their arrival rate multiplied by `rate_factor` in [start, end)."""

    start: datetime
    end: datetime
    extra_jobs: int = Field(default=0, ge=0)
    rate_factor: float = Field(default=1.0, ge=0)
    injected: bool = False


class ExternalJob(_Model):
    """A job of another customer: it takes its backend's QPU time but is never shown in our `/v1/jobs`."""

    id: str
    seq: int
    backend: str
    created_at: datetime
    seconds: float = Field(ge=0)
    ratio: float = Field(ge=0)
    spike: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None


def maintenance_is_paused(data: Any) -> Any:
    """Seeds written before IBM's enum said `status: maintenance`: that is paused, message maintenance."""
    if isinstance(data, dict) and data.get("status") == "maintenance":
        data = {**data, "status": "paused"}
        data.setdefault("message", "maintenance")
        data["message"] = data["message"] or "maintenance"
    return data


class Backend(_Model):
    name: str = Field(min_length=1)
    status: BackendStatus = "online"
    message: str | None = Field(default=None, description="None: the status's default message")
    qubits: int = 133
    processor_family: str = "Heron"
    version: str = "1.0.0"
    queue_length: int = Field(default=0, ge=0, description="extra queue length reported (display only)")
    running_job: str | None = None
    running_external: str | None = None
    locked_by_session: str | None = None
    external: ExternalLoad | None = None
    external_next_at: datetime | None = Field(default=None, description="next other-customer arrival")
    external_arrivals: int = Field(default=0, ge=0, description="arrivals drawn so far (random stream)")
    schedule: list[StatusChange] = Field(default_factory=list)
    wait_spikes: list[WaitSpike] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _old_maintenance(cls, data: Any) -> Any:
        return maintenance_is_paused(data)

    @property
    def shown_message(self) -> str:
        return self.message or DEFAULT_BACKEND_MESSAGES[self.status]

    @property
    def busy(self) -> bool:
        return self.running_job is not None or self.running_external is not None


class Instance(_Model):
    name: str
    crn: str
    guid: str
    account: str
    region: str
    plan_id: str
    usage_allocation_seconds: int = Field(ge=0)
    instance_limit_seconds: int | None = Field(default=None, ge=0)
    backends: list[str] | None = None
    resource_group_id: str = "default"
    state: str = "active"
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
    usage_history: dict[date, float] = Field(
        default_factory=dict, description="seeded daily usage in seconds, counted at 00:00 UTC of the day"
    )


class UsageEvent(_Model):
    instance: str
    at: datetime
    seconds: float = Field(ge=0)
    source: Literal["job", "session", "manual"] = "manual"
    ref: str | None = None


class SessionPeriod(_Model):
    start: datetime
    end: datetime | None = None


class SessionTransition(_Model):
    status: SessionState
    timestamp: datetime


class Session(_Model):
    id: str
    instance: str
    backend: str
    mode: SessionMode
    max_ttl: int
    interactive_ttl: int
    created_at: datetime
    state: SessionState = "open"
    state_reason: str | None = None
    accepting_jobs: bool = True
    closing: bool = False
    started_at: datetime | None = None
    activated_at: datetime | None = None
    closed_at: datetime | None = None
    last_job_started: datetime | None = None
    last_job_completed: datetime | None = None
    idle_since: datetime | None = None
    ttl_expired: bool = False
    periods: list[SessionPeriod] = Field(default_factory=list)
    timestamps: list[SessionTransition] = Field(default_factory=list)
    user_id: str = ""


class Job(_Model):
    id: str
    seq: int
    instance: str
    backend: str
    program_id: str
    session_id: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    status: JobStatus = "Queued"
    reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    quantum_seconds: float = Field(ge=0, description="QPU time the job needs to complete")
    fail_after_seconds: float | None = None
    cost: int | None = None
    executions: int = 0
    num_circuits: int = 0
    used_seconds: float = 0.0
    tags: list[str] = Field(default_factory=list)
    runtime: str | None = None
    private: bool = False
    user_id: str = ""


class StateModel(_Model):
    page_size: int = Field(default=100, ge=1, le=1000)
    token_ttl_seconds: int = Field(default=3600, ge=1)
    interactive_ttl_seconds: int = Field(default=60, ge=1)
    open_session_timeout_seconds: int = Field(default=1800, ge=1)
    random_seed: int = Field(default=0, description="seeds other customers' arrivals and QPU times")
    wait_window_seconds: int = Field(default=3600, ge=1, description="trailing window of the wait estimate")
    resource_units_per_second: float = Field(
        default=1.0, gt=0, description="RUs charged per second of usage (IBM documents no fixed rate)"
    )
    time_fields_removed: bool = Field(
        default=False, description="serve RU fields only to versions that carry RUs (IBM's announced removal)"
    )
    accounts: list[Account] = Field(default_factory=list)
    api_keys: list[ApiKey] = Field(default_factory=list)
    backends: list[Backend] = Field(default_factory=list)
    instances: list[Instance] = Field(default_factory=list)
    usage_events: list[UsageEvent] = Field(default_factory=list)
    sessions: list[Session] = Field(default_factory=list)
    jobs: list[Job] = Field(default_factory=list)
    external_jobs: list[ExternalJob] = Field(default_factory=list)
