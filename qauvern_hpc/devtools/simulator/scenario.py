"""What the site config does not say but a simulation needs: the account and the world around it.

The site config (`config.yaml`) gives the instances, their limits and net grants, the QPU resources and
the mapping rules, the minimum, the reserve and the rebalance settings. A *scenario* (YAML, every key
optional) adds::

    start_date: 2026-01-05          # t = 0 of the simulation (default: midnight UTC of the first job)
    budget: 12qau                   # the account's allocation budget per 28 days (default: sum of limits)
    allocations:                    # the initial allocations (default: budget split in proportion to the
      physics: 3qau                 #   instances' limits, or equally when none has a limit)
    backends:                       # the IBM backends are shared with other customers' instances
      default: {external_fairness: 1.0, external_busy: 0.85}
      ibm_fez: {external_busy: 0.95}
    slurm:
      slots: {quantum: 16}          # QPU jobs running at once per partition (others pend in Slurm)
      default_slots: 16             # partitions not listed (null: no limit)
    resubmit_delay: 1h              # a job that failed at IBM (limit) or timed out is resubmitted after this
    slice: 5m                       # fair-share decision granularity on a backend

External load: in each hour a backend has other customers' work waiting with probability `external_busy`
(seeded); that work has the fair-share ratio `external_fairness`. IBM runs the instance with the lowest
consumed/allocated first, so while external work waits, our instances whose 28-day usage / allocation is
above `external_fairness` do not get the backend. This is what makes allocations matter at all: with no
external load, the account's instances only reorder among themselves.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qauvern_hpc.config import Config, Seconds
from qauvern_hpc.core.errors import UsageError


class ScenarioError(UsageError):
    """The scenario file is missing or invalid."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendLoad(_Model):
    external_fairness: float = Field(1.0, gt=0, description="other customers' consumed/allocated")
    external_busy: float = Field(0.85, ge=0, le=1, description="share of hours with external work waiting")


class BackendLoadPatch(_Model):
    external_fairness: float | None = Field(None, gt=0)
    external_busy: float | None = Field(None, ge=0, le=1)


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

    @field_validator("slice")
    @classmethod
    def _slice(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    # -- resolution against the site config -------------------------------------------------------------

    def backend_load(self, backend: str) -> BackendLoad:
        base = BackendLoad()
        for key in ("default", backend):
            patch = self.backends.get(key)
            if patch is not None:
                base = base.model_copy(update=patch.model_dump(exclude_none=True))
        return base

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


__all__ = ["BackendLoad", "Scenario", "ScenarioError", "load_scenario", "parse_scenario"]
