"""Typed views of the IBM responses qauvern-hpc reads.

Tolerant of what we do not read (extra fields are ignored), strict about what we do: a missing field, a wrong
type or a negative duration fails validation, and the client turns that into `IBMResponseError` naming the
call. Durations are seconds. Numbers the Resource Controller may send as decimal strings ("3600") are
accepted as integers; fractional seconds where we want whole seconds are refused, except where IBM is known to
send floats (usage counters, which are truncated).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


def _int_text(v: Any) -> Any:
    """ "3600" -> 3600 (the RC documents strings for parameters, and some views echo them)."""
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v.strip())
    return v


def _truncate(v: Any) -> Any:
    """A float counter -> whole seconds, truncated (12.9 -> 12); strings as in `_int_text`."""
    v = _int_text(v)
    if isinstance(v, float) and v == v and v not in (float("inf"), float("-inf")):
        return int(v)
    return v


def _null_is_zero(v: Any) -> Any:
    return 0 if v is None else v


def _no_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("expected a number, not a boolean")
    return v


Seconds = Annotated[int, Field(ge=0), BeforeValidator(_int_text), BeforeValidator(_no_bool)]
"""Whole non-negative seconds; decimal strings accepted."""

CounterSeconds = Annotated[int, Field(ge=0), BeforeValidator(_truncate), BeforeValidator(_no_bool)]
"""Whole non-negative seconds from a counter that may be fractional (truncated)."""

Millis = Annotated[float, Field(ge=0), BeforeValidator(_null_is_zero), BeforeValidator(_no_bool)]
"""Analytics milliseconds; ``null`` means none (0), as qauvern reads it."""

FloatSeconds = Annotated[float, Field(ge=0), BeforeValidator(_no_bool)]


# ----- IAM -------------------------------------------------------------------------------------------------


class Token(_Model):
    """IAM ``POST /identity/token`` reply. `expires_in` (seconds) or `expiration` (epoch seconds)."""

    access_token: str = Field(min_length=1)
    token_type: str | None = None
    expires_in: float | None = Field(None, gt=0)
    expiration: float | None = Field(None, gt=0)

    def __repr__(self) -> str:
        return (
            f"Token(token_type={self.token_type!r}, expires_in={self.expires_in!r}, access_token=<redacted>)"
        )

    __str__ = __repr__


# ----- Resource Controller ---------------------------------------------------------------------------------


class InstanceExtensions(_Model):
    """Both keys must be present (qauvern indexes them); a null limit means none is set."""

    usage_allocation_seconds: Seconds
    instance_limit_seconds: Seconds | None


class Instance(_Model):
    """One ``resources[]`` entry of ``GET /v2/resource_instances``. An allocation of 0 = archived."""

    crn: str = Field(min_length=1, validation_alias=AliasChoices("id", "crn"))
    name: str
    guid: str | None = None
    state: str | None = None
    region_id: str | None = None
    resource_plan_id: str | None = None
    extensions: InstanceExtensions

    @property
    def allocation_seconds(self) -> int:
        return self.extensions.usage_allocation_seconds

    @property
    def limit_seconds(self) -> int | None:
        return self.extensions.instance_limit_seconds

    @property
    def archived(self) -> bool:
        return self.extensions.usage_allocation_seconds == 0


class InstancePage(_Model):
    resources: list[Instance]
    next_url: str | None = None


class CreatedInstance(_Model):
    """``POST /v2/resource_instances`` reply (only what qauvern reads: id, name, state)."""

    crn: str = Field(min_length=1, validation_alias=AliasChoices("id", "crn"))
    name: str
    guid: str | None = None
    state: str | None = None


# ----- usage and accounts ----------------------------------------------------------------------------------


class InstanceUsage(_Model):
    """``GET /v1/instances/usage``: `consumed_seconds` is the 28-day rolling usage (truncated to seconds)."""

    consumed_seconds: CounterSeconds = Field(validation_alias="usage_consumed_seconds")
    allocation_seconds: Seconds | None = Field(None, validation_alias="usage_allocation_seconds")
    limit_seconds: Seconds | None = Field(None, validation_alias="usage_limit_seconds")
    limit_reached: bool | None = Field(None, validation_alias="usage_limit_reached")
    instance_id: str | None = None
    plan_id: str | None = None


class AnalyticsUsage(_Model):
    """``GET /v1/analytics/usage``: milliseconds."""

    usage_ms: Millis = Field(validation_alias="usage")


class DailyBucket(_Model):
    interval_start: datetime
    usage_ms: Millis = Field(validation_alias="usage")


class DailyUsage(_Model):
    """``GET /v1/analytics/usage_grouped_by_date``."""

    data: list[DailyBucket]


class PlanInfo(_Model):
    """One ``plans[]`` entry of ``GET /v1/accounts/{id}``.

    `unallocated_seconds` may be negative: an account whose budget shrank below what is allocated.
    """

    budget_seconds: Seconds = Field(
        validation_alias=AliasChoices("usage_allocation_seconds", "budget_seconds")
    )
    unallocated_seconds: Annotated[int, BeforeValidator(_int_text), BeforeValidator(_no_bool)] = Field(
        validation_alias=AliasChoices("unallocated_usage_seconds", "unallocated_seconds")
    )
    limit_seconds: Seconds | None = Field(
        None, validation_alias=AliasChoices("usage_limit_seconds", "limit_seconds")
    )
    plan_id: str | None = None


class AccountPlan(PlanInfo):
    """The plan of an account: its budget, what is not allocated to instances yet, and its limit."""

    account_id: str = ""


class AccountPlans(_Model):
    plans: list[PlanInfo] = Field(min_length=1)


# ----- sessions, jobs, backends ----------------------------------------------------------------------------


class Session(_Model):
    """``GET /v1/sessions/{id}`` (and the ``POST /v1/sessions`` reply).

    `state` is open | active | inactive | closed; `elapsed_seconds` is IBM's ``elapsed_time``, the session's
    usage so far in seconds.
    """

    id: str = Field(min_length=1)
    backend: str | None = Field(None, validation_alias=AliasChoices("backend_name", "backend"))
    mode: str | None = None
    state: str | None = None
    state_reason: str | None = None
    accepting_jobs: bool | None = None
    max_ttl: Seconds | None = None
    active_ttl: Seconds | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    closed_at: datetime | None = None
    elapsed_seconds: FloatSeconds | None = Field(None, validation_alias=AliasChoices("elapsed_time"))

    @property
    def closed(self) -> bool:
        return self.state == "closed"


class JobUsage(_Model):
    """A job's ``usage``: `quantum_seconds` is what IBM charges for it."""

    quantum_seconds: FloatSeconds | None = None
    seconds: FloatSeconds | None = None


class RuntimeJob(_Model):
    """One job (``GET /v1/jobs`` entry or ``GET /v1/jobs/{id}``).

    `status` is IBM's Queued | Running | Completed | Cancelled | Failed (read from ``status``, or from
    ``state.status`` when the top-level field is absent); `reason` is ``state.reason``.
    """

    id: str = Field(min_length=1)
    status: str | None = None
    reason: str | None = None
    backend: str | None = None
    session_id: str | None = None
    created: datetime | None = None
    usage: JobUsage | None = None

    @model_validator(mode="before")
    @classmethod
    def _state_object(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("state"), dict):
            state = data["state"]
            data = dict(data)
            if data.get("status") is None and state.get("status") is not None:
                data["status"] = state.get("status")
            if data.get("reason") is None and state.get("reason") is not None:
                data["reason"] = state.get("reason")
        return data

    @property
    def state(self) -> str | None:
        """Alias of `status`."""
        return self.status

    @property
    def quantum_seconds(self) -> float | None:
        return self.usage.quantum_seconds if self.usage else None


class JobList(_Model):
    jobs: list[RuntimeJob]
    count: int | None = Field(None, ge=0)


class JobMetrics(_Model):
    """``GET /v1/jobs/{id}/metrics`` (only the usage)."""

    usage: JobUsage


class BackendStatus(_Model):
    """``GET /v1/backends/{name}/status``."""

    name: str | None = Field(None, validation_alias=AliasChoices("backend_name", "name"))
    state: bool | None = None
    status: str | None = None
    message: str | None = None
    length_queue: int | None = Field(None, ge=0)
    backend_version: str | None = None

    @property
    def operational(self) -> bool:
        """What qrmi's ``is_accessible()`` checks: status online or active."""
        return (self.status or "").lower() in ("online", "active")


# ----- what an admission controller reads (issue 12) --------------------------------------------------------

WaitSeconds = Annotated[int, Field(ge=0), BeforeValidator(_truncate), BeforeValidator(_no_bool)]


class WaitTime(_Model):
    """A device's ``wait_time_seconds``: how long jobs waited before they started running, over IBM's
    trailing window (whole seconds); null when no job started in it."""

    average: WaitSeconds | None = None
    p50: WaitSeconds | None = None
    p95: WaitSeconds | None = None


class DeviceStatus(_Model):
    """A device's ``status``: `name` is IBM's online | paused | offline, `reason` says why ("active",
    "internal", "maintenance", free text)."""

    name: str = Field(min_length=1)
    reason: str | None = None


class BackendDevice(_Model):
    """One entry of ``GET /v1/backends`` (``devices[]``)."""

    name: str = Field(min_length=1)
    status: DeviceStatus
    queue_length: int | None = Field(None, ge=0)
    qubits: int | None = Field(None, ge=0)
    wait_time_seconds: WaitTime | None = None

    @property
    def serving(self) -> bool:
        """Starts jobs: online (paused accepts jobs but starts none; offline does neither)."""
        return self.status.name.lower() == "online"


class BackendList(_Model):
    devices: list[BackendDevice]


class JobQueueMetrics(_Model):
    """The queue part of ``GET /v1/jobs/{id}/metrics`` (all optional: IBM fills them while a job queues)."""

    estimated_start_time: datetime | None = None
    estimated_completion_time: datetime | None = None
    position_in_queue: int | None = Field(None, ge=0)
    position_in_provider: int | None = Field(None, ge=0)
