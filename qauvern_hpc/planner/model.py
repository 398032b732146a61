"""Inputs and outputs of the allocation planner: plain, frozen, standard-library dataclasses.

Pure data. The glue (IBM client + site config -> these, these -> executor) lives elsewhere; nothing here
does I/O, reads a clock or imports pydantic. Every quantity is an integer number of seconds unless the
field says otherwise; dates are UTC calendar dates (`datetime.date`).

Inputs
------
* `AccountSnapshot` + `InstanceSnapshot`: what IBM reports now (allocation, live limit, 28d/14d/7d/3d/24h
  usage, per-day usage for net-grant attribution).
* `InstanceSettings` (+ `NetGrant`, `BalancePeriod`): the config side of one managed instance. Their
  order is the config order, which is the order of the water-fill (it decides who receives a truncated
  second first, exactly as in qauvern 0.14).
* `PlanOptions` (+ `DemandWeights`): account-wide knobs. Every extension is off by default.
* `DemandSignal`: optional per-instance Slurm demand (extension a).

Outputs
-------
* `PlanResult`: per-instance `InstancePlan`s (config order), `Violation`s (the validation invariants),
  `PlanWarning`s (over-budget notes, never blocking) and the `InstanceWrite`s in apply order.

Input errors (duplicate CRNs, a setting naming an instance the snapshot lacks, negative seconds, ...) raise
`PlanInputError`, a `ValueError` (and a `ConfigError`, so the CLI prints it without a traceback).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from qauvern_hpc.core.errors import ConfigError
from qauvern_hpc.planner.period import UsageWindow

GRANT_DEFAULT_DAYS = 28


class PlanInputError(ConfigError, ValueError):
    """The planner's inputs are inconsistent; the message says which value and why."""


class DuplicateInstanceError(PlanInputError):
    """The same CRN appears twice in the settings or in the snapshot."""


class UnknownInstanceError(PlanInputError):
    """A setting (or a demand signal) names an instance the snapshot does not hold."""


def as_utc_date(value: date | datetime, what: str) -> date:
    """A calendar date in UTC. Aware datetimes are converted; naive datetimes are refused."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise PlanInputError(
                f"{what}: {value.isoformat()} has no time zone (give a UTC offset or a date)"
            )
        return value.astimezone(UTC).date()
    if isinstance(value, date):
        return value
    raise PlanInputError(f"{what}: expected a date, got {type(value).__name__}")


def _check_seconds(value: object, what: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlanInputError(f"{what}: expected a whole number of seconds, got {value!r}")
    if value < 0:
        raise PlanInputError(f"{what}: must not be negative, got {value}")


def _check_number(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlanInputError(f"{what}: expected a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise PlanInputError(f"{what}: must be a finite number >= 0, got {value!r}")


# --------------------------------------------------------------------------------------------- config side


@dataclass(frozen=True, slots=True)
class NetGrant:
    """A temporary bonus above `InstanceSettings.limit_seconds`.

    `net_grant_seconds` is a lifetime budget. The grant is active while `start_date <= today < end_date`
    and keeps crediting the limit until the usage it funded leaves the 28-day window (see `limits`).
    Build with `NetGrant.starting(start, seconds)` to get qauvern's default end (start + 28 days).
    """

    start_date: date
    end_date: date
    net_grant_seconds: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "start_date", as_utc_date(self.start_date, "net grant start_date"))
        object.__setattr__(self, "end_date", as_utc_date(self.end_date, "net grant end_date"))
        if isinstance(self.net_grant_seconds, bool) or not isinstance(self.net_grant_seconds, int):
            raise PlanInputError(f"net_grant_seconds: expected whole seconds, got {self.net_grant_seconds!r}")
        if self.net_grant_seconds <= 0:
            raise PlanInputError(f"net_grant_seconds must be > 0, got {self.net_grant_seconds}")
        if self.end_date <= self.start_date:
            raise PlanInputError(
                f"net grant end_date {self.end_date} must be after start_date {self.start_date}"
            )

    @classmethod
    def starting(
        cls, start: date | datetime, net_grant_seconds: int, end: date | datetime | None = None
    ) -> NetGrant:
        start_d = as_utc_date(start, "net grant start_date")
        end_d = start_d + timedelta(days=GRANT_DEFAULT_DAYS) if end is None else as_utc_date(end, "end_date")
        return cls(start_d, end_d, net_grant_seconds)


@dataclass(frozen=True, slots=True)
class BalancePeriod:
    """A budgeting period `[start_date, end_date)` (end exclusive) for `target_usage_seconds`."""

    start_date: date
    end_date: date

    def __post_init__(self) -> None:
        object.__setattr__(self, "start_date", as_utc_date(self.start_date, "balance period start_date"))
        object.__setattr__(self, "end_date", as_utc_date(self.end_date, "balance period end_date"))
        if self.end_date <= self.start_date:
            raise PlanInputError(
                f"balance period end_date {self.end_date} must be after start_date {self.start_date}"
            )

    def contains(self, today: date) -> bool:
        return self.start_date <= today < self.end_date


@dataclass(frozen=True, slots=True)
class InstanceSettings:
    """The config side of one managed instance (qauvern's `instances[]` entry, plus our extensions).

    * `limit_seconds`: the base limit. `None` = the planner never touches the live limit (it still uses
      the live limit as the instance's cap).
    * `net_grants`: require `limit_seconds`.
    * `target_usage_seconds` + `balance_period` (extension b, off when `None`): a soft budget of usage over
      the period; see `optimizer` "Balance-period target".
    """

    crn: str
    name: str = ""
    limit_seconds: int | None = None
    net_grants: tuple[NetGrant, ...] = ()
    target_usage_seconds: int | None = None
    balance_period: BalancePeriod | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.crn, str) or not self.crn:
            raise PlanInputError(f"instance setting: crn must be a non-empty string, got {self.crn!r}")
        who = self.name or self.crn
        _check_seconds(self.limit_seconds, f"{who}: limit_seconds", allow_none=True)
        object.__setattr__(self, "net_grants", tuple(self.net_grants))
        if self.net_grants and self.limit_seconds is None:
            raise PlanInputError(f"{who}: net_grants need limit_seconds (the base the grants add to)")
        _check_seconds(self.target_usage_seconds, f"{who}: target_usage_seconds", allow_none=True)
        if self.target_usage_seconds is not None and self.balance_period is None:
            raise PlanInputError(f"{who}: target_usage_seconds needs a balance_period")

    @property
    def label(self) -> str:
        return self.name or self.crn


@dataclass(frozen=True, slots=True)
class DemandWeights:
    """How an instance's need for QPU time turns into activity-score points (extension a, the fair demand
    signal; `planner.demand` computes it).

    Units: the IBM part of the score counts one second used in the last 24 h as 32 points (2^5 per second
    of daily rate). The defaults put demand on that same scale: work that waits *now* counts like work
    done in the last 24 h.

    Need = QPU seconds of the instance's Slurm-pending jobs + its work in flight at IBM; its position
    rho = (28-day usage + usage IBM does not report yet) / entitlement (its share of the budget). Under budget
    `queued_seconds_weight * min(need, limit headroom, entitlement) * fairness * age + pending_job_weight`
    (the flat presence term, for any need), with fairness = clamp(1 / max(rho, fairness_min_ratio),
    fairness_min, fairness_max): the volume counts, capped, and less for an instance past its entitlement.
    Over budget only `pending_job_weight * clamp(1 / rho, ...) * age` counts (no volume: docs/simulation.md
    measured that volume must not drive the over-budget split).

    * `queued_seconds_weight`: points per second of need (under budget).
    * `pending_job_weight`: the presence term, points for an instance with any need (not per job: a
      per-job count favoured the biggest backlog; 1920 = 60 s at the 24 h rate).
    * `age_boost_per_day` / `age_boost_max_days`: the need is multiplied by
      `1 + age_boost_per_day * min(oldest wait in days (Slurm or IBM), age_boost_max_days)`, so a queue that
      waits grows louder instead of starving.
    * `recent_seconds_weight`: points per second of our ledger's finished quantum time in the last 24 h
      that IBM does not report yet (`max(0, recent_seconds - consumed_24h)`), closing IBM's analytics lag
      (under budget).
    * `fairness_min_ratio`, `fairness_min`, `fairness_max`: the fairness factor's bounds (above).
    * `when_over_budget`: also while the account's 28-day usage is at or above its budget (default; then
      presence only, see above). Off, IBM usage alone picks who gets the usage-capped allocations.
    """

    queued_seconds_weight: float = 32.0
    pending_job_weight: float = 1920.0
    age_boost_per_day: float = 1.0
    age_boost_max_days: float = 7.0
    recent_seconds_weight: float = 32.0
    when_over_budget: bool = True
    fairness_min_ratio: float = 0.25
    fairness_min: float = 0.25
    fairness_max: float = 4.0

    def __post_init__(self) -> None:
        for name in (
            "queued_seconds_weight",
            "pending_job_weight",
            "age_boost_per_day",
            "age_boost_max_days",
            "recent_seconds_weight",
            "fairness_min_ratio",
            "fairness_min",
            "fairness_max",
        ):
            _check_number(getattr(self, name), f"DemandWeights.{name}")
        if not 0 < self.fairness_min <= self.fairness_max:
            raise PlanInputError(
                f"DemandWeights.fairness_min ({self.fairness_min}) must be > 0 and <= fairness_max "
                f"({self.fairness_max})"
            )


@dataclass(frozen=True, slots=True)
class DemandSignal:
    """One instance's need for QPU time, aggregated by the caller (extension a).

    * `queued_seconds`: QPU seconds requested by the instance's Slurm-pending jobs.
    * `pending_jobs`: how many jobs wait for it in Slurm.
    * `oldest_pending_age_seconds`: how long the oldest of them has waited.
    * `recent_seconds`: finished quantum seconds in the last 24 h according to our ledger.
    * `inflight_seconds`: work admitted but not finished at IBM (queued there, or running and not done),
      so an instance whose jobs never queue in Slurm still shows need.
    * `oldest_wait_seconds`: how long the oldest of its jobs queued at IBM has waited.
    * `entitlement_seconds`: its share of the budget per 28 days; 0 = the planner derives it (the
      balance-period target pro rata, else the budget split by limits, else evenly).
    """

    queued_seconds: float = 0.0
    pending_jobs: int = 0
    oldest_pending_age_seconds: float = 0.0
    recent_seconds: float = 0.0
    inflight_seconds: float = 0.0
    oldest_wait_seconds: float = 0.0
    entitlement_seconds: float = 0.0

    def __post_init__(self) -> None:
        _check_number(self.queued_seconds, "DemandSignal.queued_seconds")
        _check_seconds(self.pending_jobs, "DemandSignal.pending_jobs")
        _check_number(self.oldest_pending_age_seconds, "DemandSignal.oldest_pending_age_seconds")
        _check_number(self.recent_seconds, "DemandSignal.recent_seconds")
        _check_number(self.inflight_seconds, "DemandSignal.inflight_seconds")
        _check_number(self.oldest_wait_seconds, "DemandSignal.oldest_wait_seconds")
        _check_number(self.entitlement_seconds, "DemandSignal.entitlement_seconds")

    @property
    def need_seconds(self) -> float:
        """Slurm-pending plus in-flight work."""
        return self.queued_seconds + self.inflight_seconds

    @property
    def present(self) -> bool:
        """Any need at all (a pending job with no time request counts)."""
        return self.pending_jobs > 0 or self.queued_seconds + self.inflight_seconds > 0


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """Account-wide planner knobs. Defaults reproduce qauvern 0.14 (with its CLI default minimum of 60 s).

    * `minimum_allocation_seconds`: the floor; the planner never goes below `max(1, minimum)` (0 archives).
    * `allocation_reserve_percent`: `0 <= x < 100`, a fraction of the *total budget* kept unallocated.
    * `min_change_seconds` (extension c): allocation changes smaller than this are not emitted, as long as
      holding the current value breaks no invariant. 0 = off.
    * `demand_weights` (extension a): used only for instances given a `DemandSignal`.
    * `retired_grants_keep_paying`: fixes a qauvern 0.14 quirk (see `limits.resolve_limit`); off = compat.
    """

    minimum_allocation_seconds: int = 60
    allocation_reserve_percent: float = 0.0
    min_change_seconds: int = 0
    demand_weights: DemandWeights = field(default_factory=DemandWeights)
    retired_grants_keep_paying: bool = False

    def __post_init__(self) -> None:
        _check_seconds(self.minimum_allocation_seconds, "minimum_allocation_seconds")
        pct = self.allocation_reserve_percent
        if isinstance(pct, bool) or not isinstance(pct, int | float) or not (0 <= pct < 100):
            raise PlanInputError(f"allocation_reserve_percent must be in [0, 100), got {pct!r}")
        _check_seconds(self.min_change_seconds, "min_change_seconds")


# --------------------------------------------------------------------------------------------- IBM side


@dataclass(frozen=True, slots=True)
class InstanceSnapshot:
    """One instance as IBM reports it now.

    * `consumed_28d_seconds`: IBM's own 28-day figure (`usage_consumed_seconds`); drives floors, caps and
      the limit-reached test. The 14d/7d/3d/24h figures feed the activity score only.
    * `daily_usage`: whole seconds per UTC day, used only to attribute usage to net grants. qauvern's
      fetch ends at today's midnight (today is never in it); days after `today` are ignored.
    * `balance_period_consumed_seconds`: usage since the balance period started (extension b); needed
      only when the instance's settings carry a target.
    """

    crn: str
    name: str
    allocation_seconds: int
    limit_seconds: int | None
    consumed_28d_seconds: int
    consumed_14d_seconds: int = 0
    consumed_7d_seconds: int = 0
    consumed_3d_seconds: int = 0
    consumed_24h_seconds: int = 0
    daily_usage: Mapping[date, int] = field(default_factory=dict)
    balance_period_consumed_seconds: int | None = None
    window: UsageWindow | None = None  # the period consumed_28d_seconds counts over (None: rolling 28 days)
    ibm_limit_reached: bool | None = None  # IBM's usage_limit_reached (True: IBM runs nothing more)
    # for the reports only (`core.report_units`), never for planning: IBM's RUs of the usage, the unit it
    # reported in, and the instance's RUs per second
    consumed_ru: float | None = None
    usage_unit: str | None = None
    ru_rate: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.crn, str) or not self.crn:
            raise PlanInputError(f"instance snapshot: crn must be a non-empty string, got {self.crn!r}")
        who = self.name or self.crn
        _check_seconds(self.allocation_seconds, f"{who}: allocation_seconds")
        _check_seconds(self.limit_seconds, f"{who}: limit_seconds", allow_none=True)
        for attr in (
            "consumed_28d_seconds",
            "consumed_14d_seconds",
            "consumed_7d_seconds",
            "consumed_3d_seconds",
            "consumed_24h_seconds",
        ):
            _check_seconds(getattr(self, attr), f"{who}: {attr}")
        _check_seconds(
            self.balance_period_consumed_seconds, f"{who}: balance_period_consumed_seconds", allow_none=True
        )

    @property
    def fairness(self) -> float:
        """28-day usage / allocation; inf for a used instance with allocation 0, 0.0 if both are 0."""
        if self.allocation_seconds > 0:
            return self.consumed_28d_seconds / self.allocation_seconds
        return math.inf if self.consumed_28d_seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """The account plan as IBM reports it now.

    * `consumed_seconds`: plan-wide 28-day usage, *including* instances the config does not manage. When it
      reaches `allocation_budget_seconds` the planner switches to the over-budget regime (a budget of 0 is
      always over).
    * `instances`: the instances fetched for this run. Those with `InstanceSettings` are managed; the others
      keep their allocation and count, like any instance absent from the snapshot, as *unmanaged*
      allocation: `max(0, budget - unallocated - sum(managed allocations))`.
    """

    allocation_budget_seconds: int
    unallocated_seconds: int
    consumed_seconds: int
    instances: tuple[InstanceSnapshot, ...]
    limit_seconds: int | None = None
    account_id: str = ""

    def __post_init__(self) -> None:
        _check_seconds(self.allocation_budget_seconds, "allocation_budget_seconds")
        _check_seconds(self.unallocated_seconds, "unallocated_seconds")
        _check_seconds(self.consumed_seconds, "account consumed_seconds")
        _check_seconds(self.limit_seconds, "account limit_seconds", allow_none=True)
        object.__setattr__(self, "instances", tuple(self.instances))

    @property
    def over_allocation_budget(self) -> bool:
        return self.consumed_seconds >= self.allocation_budget_seconds


# --------------------------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class LimitBreakdown:
    """The terms of an effective limit: `base + grant_funded + unspent_grant + pre_boost_overage`."""

    base_seconds: int
    grant_funded_seconds: int = 0
    unspent_grant_seconds: int = 0
    pre_boost_overage_seconds: int = 0
    boost_start_date: date | None = None

    @property
    def total_seconds(self) -> int:
        return (
            self.base_seconds
            + self.grant_funded_seconds
            + self.unspent_grant_seconds
            + self.pre_boost_overage_seconds
        )

    @property
    def shaped_by_grant(self) -> bool:
        return self.total_seconds != self.base_seconds or self.boost_start_date is not None


class FloorSource(StrEnum):
    USAGE = "usage"  # the 28-day usage
    MINIMUM = "minimum"  # max(1, minimum_allocation_seconds)


class CeilingSource(StrEnum):
    LIMIT = "limit"  # the effective limit (under budget)
    USAGE = "usage"  # the 28-day usage (over budget)
    TARGET = "target"  # the balance-period target (extension b, under budget)


class Invariant(StrEnum):
    """What a `Violation` breaks. The first five are qauvern 0.14's invariants; TARGET is ours."""

    BUDGET_CAP = "budget_cap"  # sum(allocations) + unmanaged <= budget - reserve
    USAGE_FLOOR = "usage_floor"  # >= 28d usage (under budget); <= 28d usage unless floor (over budget)
    MINIMUM = "minimum"  # >= minimum (over budget with 0 < usage < minimum: >= usage)
    LIMIT = "limit"  # <= effective limit, unless the floor forces more
    NO_ARCHIVING = "no_archiving"  # != 0
    TARGET = "target"  # <= balance-period target cap, unless the floor forces more


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant. `crn` is None for the account-wide budget cap."""

    invariant: Invariant
    crn: str | None
    message: str
    value: int
    bound: int


class WarningKind(StrEnum):
    BELOW_MINIMUM = "below_minimum"  # over budget: allocation below the minimum (usage below it)
    ABOVE_USAGE = "above_usage"  # over budget: allocation above usage (fairness < 1, unused instance)


@dataclass(frozen=True, slots=True)
class PlanWarning:
    kind: WarningKind
    crn: str
    message: str


class WriteKind(StrEnum):
    DECREASE = "decrease"
    LIMIT_ONLY = "limit_only"
    INCREASE = "increase"


@dataclass(frozen=True, slots=True)
class InstanceWrite:
    """One write to IBM: both fields, always (the one not changing is resent from the live state)."""

    kind: WriteKind
    crn: str
    name: str
    allocation_seconds: int
    limit_seconds: int | None
    previous_allocation_seconds: int
    previous_limit_seconds: int | None

    @property
    def allocation_delta_seconds(self) -> int:
        return self.allocation_seconds - self.previous_allocation_seconds


@dataclass(frozen=True, slots=True)
class InstancePlan:
    """The decision for one managed instance, with everything needed to explain it.

    `target_allocation_seconds` is what the rules ask for; `new_allocation_seconds` is what gets written
    (they differ only when hysteresis held the current value: `hysteresis_held`).
    `score_breakdown` explains `activity_score` term by term (see `optimizer.explain_score`).
    """

    crn: str
    name: str
    current_allocation_seconds: int
    target_allocation_seconds: int
    new_allocation_seconds: int
    current_limit_seconds: int | None
    new_limit_seconds: int | None
    effective_limit_seconds: int | None
    limit_breakdown: LimitBreakdown | None
    limit_reached: bool
    active: bool
    activity_score: float
    score_breakdown: Mapping[str, float]
    fairness: float
    floor_seconds: int
    floor_source: FloorSource
    ceiling_seconds: int | None
    ceiling_source: CeilingSource | None
    reason: str
    consumed_28d_seconds: int
    target_cap_seconds: int | None = None
    target_reached: bool = False
    hysteresis_held: bool = False
    window: UsageWindow | None = None  # the period consumed_28d_seconds counts over (None: rolling 28 days)

    @property
    def allocation_changed(self) -> bool:
        return self.new_allocation_seconds != self.current_allocation_seconds

    @property
    def allocation_delta_seconds(self) -> int:
        return self.new_allocation_seconds - self.current_allocation_seconds

    @property
    def limit_changed(self) -> bool:
        return self.new_limit_seconds != self.current_limit_seconds

    @property
    def changed(self) -> bool:
        return self.allocation_changed or self.limit_changed


@dataclass(frozen=True, slots=True)
class PlanResult:
    """A whole plan. `instances` are in config order; `writes` are in apply order.

    `ok` is False when an invariant is broken: the executor must then refuse to write anything.
    """

    today: date
    over_allocation_budget: bool
    allocation_budget_seconds: int
    reserve_seconds: int
    unmanaged_allocation_seconds: int
    pool_seconds: int  # unallocated + what managed instances hold above their floors (>= 0)
    distributable_seconds: int  # pool - reserve (>= 0)
    awarded_seconds: int  # what the water-fill handed out
    instances: tuple[InstancePlan, ...]
    violations: tuple[Violation, ...]
    warnings: tuple[PlanWarning, ...]
    writes: tuple[InstanceWrite, ...]

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def cap_seconds(self) -> int:
        """What managed + unmanaged allocation may total: budget - reserve."""
        return self.allocation_budget_seconds - self.reserve_seconds

    @property
    def total_new_allocation_seconds(self) -> int:
        """Managed new allocations + unmanaged allocation (what the budget-cap invariant checks)."""
        return sum(p.new_allocation_seconds for p in self.instances) + self.unmanaged_allocation_seconds

    @property
    def by_crn(self) -> dict[str, InstancePlan]:
        return {p.crn: p for p in self.instances}

    @property
    def allocation_changes(self) -> dict[str, InstancePlan]:
        return {p.crn: p for p in self.instances if p.allocation_changed}

    @property
    def limit_changes(self) -> dict[str, InstancePlan]:
        return {p.crn: p for p in self.instances if p.limit_changed}

    @property
    def limit_reached(self) -> frozenset[str]:
        return frozenset(p.crn for p in self.instances if p.limit_reached)
