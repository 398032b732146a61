"""Typed views of the IBM responses qauvern-hpc reads.

Tolerant of what we do not read (extra fields are ignored), strict about what we do: a missing field, a wrong
type or a negative duration fails validation, and the client turns that into `IBMResponseError` naming the
call. Durations are seconds. Numbers the Resource Controller may send as decimal strings ("3600") are accepted
as integers; fractional seconds where we want whole seconds are refused, except where IBM is known to send
floats (usage counters, which are truncated).

Units (docs/ibm-platform.md): IBM bills in resource units (RUs) and still sends the old time fields beside
them; it has announced their removal. Usage models therefore read the RU fields first and the time fields
where present, both optional, and require at least one of the two; `unit` says which one the account's
figures are in ("ru" when IBM sends RUs). IBM documents no account-wide rate between RUs and seconds; the
client converts an RU-only reply at the instance's own rate (`units`), and a figure so converted says so
(`seconds_from_ru`). Without a rate, asking for seconds IBM did not send raises `TimeFieldsMissing`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, model_validator

from qauvern_hpc.ibm.errors import TimeFieldsMissing
from qauvern_hpc.ibm.units import to_seconds

Unit = Literal["ru", "seconds"]
"""The unit an account's usage is reported in: resource units, or (before RUs) seconds."""


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

ResourceUnits = Annotated[float, Field(ge=0), BeforeValidator(_int_text), BeforeValidator(_no_bool)]
"""Non-negative resource units (RUs): IBM sends floats."""


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
    """Both seconds keys must be present (qauvern indexes them); a null limit means none is set. The RU
    figures (`usage_allocation_ru`, `instance_limit_ru`) are read where IBM sends them."""

    usage_allocation_seconds: Seconds
    instance_limit_seconds: Seconds | None
    usage_allocation_ru: ResourceUnits | None = None
    instance_limit_ru: ResourceUnits | None = None


class Instance(_Model):
    """One ``resources[]`` entry of ``GET /v2/resource_instances``. An allocation of 0 = archived."""

    crn: str = Field(min_length=1, validation_alias=AliasChoices("id", "crn"))
    name: str
    guid: str | None = None
    state: str | None = None
    region_id: str | None = None
    resource_plan_id: str | None = None
    created_at: str | None = None
    extensions: InstanceExtensions

    @property
    def created(self) -> datetime | None:
        """When the instance was created (None when IBM did not say, or not in ISO 8601)."""
        return _parse_time(self.created_at)

    @property
    def allocation_seconds(self) -> int:
        return self.extensions.usage_allocation_seconds

    @property
    def limit_seconds(self) -> int | None:
        return self.extensions.instance_limit_seconds

    @property
    def allocation_ru(self) -> float | None:
        return self.extensions.usage_allocation_ru

    @property
    def limit_ru(self) -> float | None:
        return self.extensions.instance_limit_ru

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


# ----- API versions ----------------------------------------------------------------------------------------


class ApiVersion(_Model):
    """One entry of ``GET /v1/versions``: older replies list bare version strings."""

    version: str = Field(min_length=1)
    status: str | None = None
    sunset_date: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_string(cls, data: Any) -> Any:
        return {"version": data} if isinstance(data, str) else data


class ApiVersions(_Model):
    versions: list[ApiVersion]


# ----- usage and accounts ----------------------------------------------------------------------------------


class UsagePeriod(_Model):
    """The window an instance's usage counts over (IBM's ``usage_period``; it depends on the plan). Kept as
    IBM wrote it; `start` and `end` parse it (None when absent or not ISO 8601)."""

    start_time: str | None = None
    end_time: str | None = None

    @property
    def start(self) -> datetime | None:
        return _parse_time(self.start_time)

    @property
    def end(self) -> datetime | None:
        return _parse_time(self.end_time)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class InstanceUsage(_Model):
    """``GET /v1/instances/usage``: the instance's usage over its `usage_period` (28 days rolling on Premium
    and Open), in RUs (``*_ru``, from IBM-API-Version 2026-04-15) and in seconds while IBM still sends them.

    `consumed_seconds` (and `allocation_seconds`, `limit_seconds`) keep their old meaning; when IBM sent no
    seconds, `consumed_seconds` raises `TimeFieldsMissing` rather than guess. `consumed`, `allocation` and
    `limit` give the figure in `unit`, the unit IBM reports the account in.
    """

    reported_consumed_seconds: CounterSeconds | None = Field(validation_alias="usage_consumed_seconds")
    allocation_seconds: Seconds | None = Field(None, validation_alias="usage_allocation_seconds")
    limit_seconds: Seconds | None = Field(None, validation_alias="usage_limit_seconds")
    consumed_ru: ResourceUnits | None = Field(None, validation_alias="usage_consumed_ru")
    allocation_ru: ResourceUnits | None = Field(None, validation_alias="usage_allocation_ru")
    limit_ru: ResourceUnits | None = Field(None, validation_alias="usage_limit_ru")
    limit_reached: bool | None = Field(None, validation_alias="usage_limit_reached")
    usage_period: UsagePeriod | None = None
    instance_id: str | None = None
    plan_id: str | None = None
    _rate: Callable[[], float | None] | None = PrivateAttr(None)
    """Not IBM's: how to learn the instance's RUs-per-second rate (`units`), asked only when seconds are
    wanted and IBM sent RUs only; the client sets it (`with_rate_source`)."""

    def with_rate_source(self, rate: Callable[[], float | None]) -> InstanceUsage:
        """This usage, converting RUs to seconds at `rate()` when `consumed_seconds` needs it."""
        out = self.model_copy()
        out._rate = rate
        return out

    @model_validator(mode="before")
    @classmethod
    def _ru_stands_in_for_seconds(cls, data: Any) -> Any:
        """The consumed seconds are required unless IBM sent the consumed RUs instead."""
        ru_only = isinstance(data, dict) and "usage_consumed_seconds" not in data
        if ru_only and data.get("usage_consumed_ru") is not None:
            return {**data, "usage_consumed_seconds": None}
        return data

    @model_validator(mode="after")
    def _some_usage(self) -> InstanceUsage:
        if self.reported_consumed_seconds is None and self.consumed_ru is None:
            raise ValueError("usage_consumed_seconds is null and there is no usage_consumed_ru")
        return self

    @property
    def consumed_seconds(self) -> int:
        """IBM's consumed seconds (truncated); when IBM sent RUs only, the RUs at the instance's rate
        (`with_rate_source`, see `units`), else `TimeFieldsMissing`."""
        if self.reported_consumed_seconds is not None:
            return self.reported_consumed_seconds
        rate = self._rate() if self.consumed_ru is not None and self._rate is not None else None
        if self.consumed_ru is not None and rate:
            return int(to_seconds(self.consumed_ru, rate))
        raise TimeFieldsMissing("GET /v1/instances/usage", "usage_consumed_seconds")

    @property
    def seconds_from_ru(self) -> bool:
        """True when `consumed_seconds` is converted from RUs (IBM sent no seconds)."""
        return self.reported_consumed_seconds is None

    @property
    def unit(self) -> Unit:
        return "ru" if self.consumed_ru is not None else "seconds"

    @property
    def consumed(self) -> float:
        """Usage over the period in `unit`."""
        if self.consumed_ru is not None:
            return self.consumed_ru
        return float(self.consumed_seconds)

    @property
    def allocation(self) -> float | None:
        """The allocation in `unit` (None when IBM sent none in that unit)."""
        if self.unit == "ru":
            return self.allocation_ru
        return None if self.allocation_seconds is None else float(self.allocation_seconds)

    @property
    def limit(self) -> float | None:
        """The limit in `unit` (None: no limit, or none sent in that unit)."""
        if self.unit == "ru":
            return self.limit_ru
        return None if self.limit_seconds is None else float(self.limit_seconds)


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
    """A job's ``usage``: RUs in `resource_units` (``value``, from IBM-API-Version 2026-04-15) and, while IBM
    sends it, the charged time in `quantum_seconds` (``quantum_seconds`` up to 2026-02-15,
    ``qpu_charge_time_seconds`` from 2026-03-15). `status` is IBM's ``complete`` | ``pending``."""

    quantum_seconds: FloatSeconds | None = Field(
        None, validation_alias=AliasChoices("quantum_seconds", "qpu_charge_time_seconds")
    )
    seconds: FloatSeconds | None = None
    resource_units: ResourceUnits | None = Field(
        None, validation_alias=AliasChoices("value", "resource_units")
    )
    status: str | None = None
    seconds_from_ru: bool = Field(False, exclude=True)
    """Not IBM's: `quantum_seconds` was converted from `resource_units` (`with_rate`)."""

    def with_rate(self, rate: float | None) -> JobUsage:
        """This usage with `quantum_seconds` filled in from the RUs at `rate` when IBM sent RUs only."""
        if self.quantum_seconds is not None or self.resource_units is None or not rate:
            return self
        seconds = to_seconds(self.resource_units, rate)
        return self.model_copy(update={"quantum_seconds": seconds, "seconds_from_ru": True})

    @property
    def unit(self) -> Unit | None:
        """The unit IBM charged the job in (None: IBM gave no usage yet)."""
        if self.resource_units is not None:
            return "ru"
        return "seconds" if self.quantum_seconds is not None else None

    @property
    def charged(self) -> float | None:
        """The charge in `unit`: RUs first, else seconds."""
        return self.resource_units if self.resource_units is not None else self.quantum_seconds


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
        """The charged time, where IBM still sends it."""
        return self.usage.quantum_seconds if self.usage else None

    @property
    def resource_units(self) -> float | None:
        """The charge in RUs (IBM-API-Version 2026-04-15 and later)."""
        return self.usage.resource_units if self.usage else None


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
