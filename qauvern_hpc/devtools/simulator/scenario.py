"""What the site config does not say but a simulation needs: the account and the world around it.

The site config (`config.yaml`) gives the instances, their limits and net grants, the QPU resources and
the mapping rules, the minimum, the reserve and the rebalance settings. A *scenario* (YAML, every key
optional) adds::

    start_date: 2026-01-05          # t = 0 of the simulation (default: midnight UTC of the first job)
    budget: 12qau                   # the account's allocation budget per 28 days (default: sum of limits)
    allocations:                    # the initial allocations (default: budget split in proportion to the
      physics: 3qau                 #   instances' limits, or equally when none has a limit)
    backends:                       # the IBM backends are shared with other customers' instances
      default:
        model: queue                # or hourly (the old model: external work waiting per hour)
        external: {rate_per_hour: 9, mean_seconds: 300, ratio: 1.0, diurnal: 0.5, peak_hour: 15}
        random_outages: {per_week: 1, mean_hours: 2, status: paused, message: maintenance}
        exposes_wait: true          # IBM returns wait_time_seconds for it
      ibm_fez:
        outages: [{start: 2026-01-20T06:00:00Z, hours: 4, status: offline, message: upgrade}]
    slurm:
      slots: {quantum: 16}          # QPU jobs running at once per partition (others pend in Slurm)
      default_slots: 16             # partitions not listed (null: no limit)
    resubmit_delay: 1h              # a job that failed at IBM (limit) or timed out is resubmitted after this
    slice: 5m                       # fair-share decision granularity on a backend
    admission:                      # the admission controller of qauvern-hpc (its settings, and how often)
      enabled: true
      every: 30s
      max_ibm_wait_seconds: 600

External load, `model: queue` (the shipped scenario): other customers' jobs arrive on each backend as a
seeded Poisson process of `rate_per_hour` x a diurnal factor `1 + diurnal x cos(2 pi (h - peak_hour) / 24)`
(h = UTC hour), each with exponentially distributed work of mean `mean_seconds`, and wait in one FIFO
queue with the fair-share ratio `ratio`. IBM runs whichever has the lowest ratio: our instance with the
lowest consumed/allocated, or the head of the external queue. Backends go down (status paused or offline
with a message) on a seeded calendar: `random_outages` (Poisson, `per_week`, exponential length of mean
`mean_hours`) plus explicit `outages`; nothing runs while a backend is down. What the admission controller
reads is what IBM exposes: status, message, `length_queue` (every customer's waiting jobs) and, when
`exposes_wait`, the p50/p95 of created -> running over the jobs started in the trailing hour.

External load, `model: hourly` (the model of the tables before co-scheduling): in each hour a backend has
other customers' work waiting with probability `external_busy` (seeded); that work has the fair-share
ratio `external_fairness`. IBM runs the instance with the lowest consumed/allocated first, so while
external work waits, our instances whose 28-day usage / allocation is above `external_fairness` do not
get the backend. This is what makes allocations matter at all: with no
external load, the account's instances only reorder among themselves.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qauvern_hpc.config import Config, Seconds
from qauvern_hpc.core.errors import UsageError


class ScenarioError(UsageError):
    """The scenario file is missing or invalid."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExternalJobs(_Model):
    """Other customers' jobs on a backend (`model: queue`)."""

    rate_per_hour: float = Field(9.0, ge=0)
    mean_seconds: float = Field(300.0, gt=0)
    ratio: float = Field(1.0, gt=0, description="their fair-share consumed/allocated")
    diurnal: float = Field(0.0, ge=0, le=1, description="amplitude of the daily cycle of the rate")
    peak_hour: float = Field(15.0, ge=0, lt=24, description="UTC hour of the highest rate")


class ExternalJobsPatch(_Model):
    rate_per_hour: float | None = Field(None, ge=0)
    mean_seconds: float | None = Field(None, gt=0)
    ratio: float | None = Field(None, gt=0)
    diurnal: float | None = Field(None, ge=0, le=1)
    peak_hour: float | None = Field(None, ge=0, lt=24)


DownStatus = Literal["paused", "offline"]


class Outage(_Model):
    start: datetime
    hours: float = Field(gt=0)
    status: DownStatus = "paused"
    message: str = "maintenance"


class RandomOutages(_Model):
    per_week: float = Field(0.0, ge=0)
    mean_hours: float = Field(2.0, gt=0)
    status: DownStatus = "paused"
    message: str = "maintenance"


class BackendLoad(_Model):
    model: Literal["hourly", "queue"] = "hourly"
    # model: hourly
    external_fairness: float = Field(1.0, gt=0, description="other customers' consumed/allocated")
    external_busy: float = Field(0.85, ge=0, le=1, description="share of hours with external work waiting")
    # model: queue
    external: ExternalJobs = Field(default_factory=ExternalJobs)
    # both models
    outages: tuple[Outage, ...] = ()
    random_outages: RandomOutages = Field(default_factory=RandomOutages)
    exposes_wait: bool = True


class BackendLoadPatch(_Model):
    model: Literal["hourly", "queue"] | None = None
    external_fairness: float | None = Field(None, gt=0)
    external_busy: float | None = Field(None, ge=0, le=1)
    external: ExternalJobsPatch | None = None
    outages: tuple[Outage, ...] | None = None
    random_outages: RandomOutages | None = None
    exposes_wait: bool | None = None


class AdmissionModel(_Model):
    """The admission controller of `qauvern-hpc`: on or off, its period and its settings (the fields of
    `qauvern_hpc.admission.model.AdmissionSettings`; unknown ones are refused when the setup is built)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    enabled: bool = True
    every: Seconds = 30


class SlurmModel(_Model):
    slots: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    default_slots: Annotated[int, Field(ge=1)] | None = 16


class Scenario(_Model):
    start_date: date | None = None
    budget: Seconds | None = None
    allocations: dict[str, Seconds] = Field(default_factory=dict)
    backends: dict[str, BackendLoadPatch] = Field(default_factory=dict)
    slurm: SlurmModel = Field(default_factory=SlurmModel)
    resubmit_delay: Seconds = 3600
    slice: Seconds = 300
    admission: AdmissionModel = Field(default_factory=AdmissionModel)

    @field_validator("slice")
    @classmethod
    def _slice(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    # -- resolution against the site config -------------------------------------------------------------

    def backend_load(self, backend: str) -> BackendLoad:
        merged = BackendLoad().model_dump()
        for key in ("default", backend):
            patch = self.backends.get(key)
            if patch is not None:
                d = patch.model_dump(exclude_none=True)
                merged["external"] = {**merged["external"], **d.pop("external", {})}
                merged.update(d)
        return BackendLoad.model_validate(merged)

    def slots_for(self, partition: str) -> int | None:
        return self.slurm.slots.get(partition, self.slurm.default_slots)

    def budget_for(self, cfg: Config) -> int:
        if self.budget is not None:
            return self.budget
        limits = [i.limit_seconds for i in cfg.instances if i.limit_seconds is not None]
        if not limits:
            raise ScenarioError(
                "the scenario sets no budget and no instance has limit_seconds to derive one from "
                "(set budget: in the scenario)"
            )
        return sum(limits)

    def initial_allocations(self, cfg: Config, budget: int, minimum: int) -> dict[str, int]:
        names = [i.name for i in cfg.instances]
        unknown = sorted(set(self.allocations) - set(names))
        if unknown:
            raise ScenarioError(
                f"scenario allocations name unknown instance(s) {', '.join(unknown)} "
                f"(configured: {', '.join(names)})"
            )
        if self.allocations:
            out = {n: self.allocations.get(n, max(1, minimum)) for n in names}
        else:
            weights = [float(i.limit_seconds or 0) for i in cfg.instances]
            if not any(weights):
                weights = [1.0] * len(names)
            total = sum(weights)
            out = {n: max(1, minimum, int(budget * w / total)) for n, w in zip(names, weights, strict=True)}
        for n, v in out.items():
            if v <= 0:
                raise ScenarioError(f"scenario allocation of {n} must be > 0 (0 archives an instance)")
        if sum(out.values()) > budget:
            raise ScenarioError(
                f"initial allocations total {sum(out.values())}s, above the budget {budget}s "
                "(lower them or raise budget:)"
            )
        return out

    def start_for(self, first_submit: datetime) -> date:
        if self.start_date is not None:
            return self.start_date
        return first_submit.astimezone(UTC).date()


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top)"


def parse_scenario(text: str, name: str = "scenario") -> Scenario:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{name}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(f"{name}: the scenario must be a mapping of keys (budget:, allocations:, ...)")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        lines = [f"{name}: {_where(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ScenarioError("invalid scenario:\n" + "\n".join(lines)) from None


def load_scenario(path: str | Path | None) -> Scenario:
    """The scenario at `path`, or the defaults when `path` is None."""
    if path is None:
        return Scenario()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{p}: scenario file not found") from None
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read the scenario: {exc.strerror or exc}") from None
    return parse_scenario(text, str(p))


__all__ = [
    "AdmissionModel",
    "BackendLoad",
    "ExternalJobs",
    "Outage",
    "RandomOutages",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_scenario",
]
