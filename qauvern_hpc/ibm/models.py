"""Typed views of the IBM responses qauvern-hpc reads. Extra fields are ignored; the fields we need are
checked (types, presence, non-negative seconds). All durations are whole seconds."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, NonNegativeInt, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


def _int_or_none(v: Any) -> Any:
    # The Resource Controller returns numbers, qauvern and the RC docs use strings.
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    return v


class InstanceExtensions(_Model):
    usage_allocation_seconds: NonNegativeInt = 0
    instance_limit_seconds: NonNegativeInt | None = None

    _coerce = field_validator("usage_allocation_seconds", "instance_limit_seconds", mode="before")(
        _int_or_none
    )


class Instance(_Model):
    crn: str = Field(validation_alias=AliasChoices("id", "crn"))
    name: str
    region_id: str | None = None
    resource_plan_id: str | None = None
    extensions: InstanceExtensions = InstanceExtensions()

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


class InstanceUsage(_Model):
    consumed_seconds: NonNegativeInt = Field(validation_alias="usage_consumed_seconds")
    allocation_seconds: NonNegativeInt | None = Field(None, validation_alias="usage_allocation_seconds")
    limit_seconds: NonNegativeInt | None = Field(None, validation_alias="usage_limit_seconds")
    limit_reached: bool | None = Field(None, validation_alias="usage_limit_reached")

    _coerce = field_validator("consumed_seconds", mode="before")(
        lambda v: int(v) if isinstance(v, float) else v
    )


class AnalyticsUsage(_Model):
    usage_ms: float = Field(ge=0, validation_alias="usage")


class DailyBucket(_Model):
    interval_start: datetime
    usage_ms: float = Field(ge=0, validation_alias="usage")


class DailyUsage(_Model):
    data: list[DailyBucket]


class PlanInfo(_Model):
    budget_seconds: NonNegativeInt = Field(validation_alias="usage_allocation_seconds")
    unallocated_seconds: int = Field(validation_alias="unallocated_usage_seconds")
    limit_seconds: NonNegativeInt | None = Field(None, validation_alias="usage_limit_seconds")
    plan_id: str | None = None


class AccountPlan(PlanInfo):
    account_id: str = ""


class AccountPlans(_Model):
    plans: list[PlanInfo] = Field(min_length=1)


class Session(_Model):
    id: str
    backend: str | None = Field(None, validation_alias=AliasChoices("backend_name", "backend"))
    mode: str | None = None
    state: str | None = None
    accepting_jobs: bool | None = None
    max_ttl: int | None = None
    started_at: datetime | None = None
    closed_at: datetime | None = None
    elapsed_seconds: float | None = Field(None, ge=0, validation_alias="elapsed_time")


class JobUsage(_Model):
    quantum_seconds: float | None = Field(None, ge=0)
    seconds: float | None = Field(None, ge=0)


class RuntimeJob(_Model):
    id: str
    status: str | None = None
    backend: str | None = None
    session_id: str | None = None
    created: datetime | None = None
    usage: JobUsage | None = None

    @property
    def quantum_seconds(self) -> float | None:
        return self.usage.quantum_seconds if self.usage else None


class JobList(_Model):
    jobs: list[RuntimeJob]
    count: int | None = None


class BackendStatus(_Model):
    name: str | None = Field(None, validation_alias=AliasChoices("backend_name", "name"))
    state: bool | None = None
    status: str | None = None
    message: str | None = None
    length_queue: int | None = None


class Token(_Model):
    access_token: str
    expires_in: float | None = None
    expiration: float | None = None


def day_of(bucket: DailyBucket) -> date:
    return bucket.interval_start.date()
