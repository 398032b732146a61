"""Over which period an instance's usage counts against its allocation and limit, by IBM Quantum plan. Pure.

IBM counts an instance's usage over a period that depends on its plan (docs/ibm-platform.md, "Plans and
their periods"):

* **Premium, Open** (and IBM's internal plan): a rolling 28 days, the window the fair-share scheduler weighs
  and the limit is counted over. This is qauvern 0.14's only case and stays bit for bit as it was.
* **Flex**: the subscription (contract) period, from its start to its end; the fair share weighs the whole
  period and a limit reached stays reached until the limit is raised.
* **Pay-As-You-Go**: everything since the instance was created; its limit is a cost limit, and once the
  usage reaches it IBM runs nothing more on the instance.

`usage_window` answers the question for one instance. IBM's own `usage_period` (in `GET /v1/instances/usage`)
wins when IBM sent it; the plan's rule above is the fallback, fed with what the config and IBM's instance
list know (the Flex contract dates, the instance's creation time). Nothing here reads a clock: `now` is an
argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from qauvern_hpc.core.errors import ConfigError

PlanName = Literal["internal", "premium", "open", "flex", "paygo"]
PLANS: tuple[PlanName, ...] = ("internal", "premium", "open", "flex", "paygo")
ROLLING_DAYS = 28
ROLLING_PLANS = frozenset({"internal", "premium", "open"})

WindowKind = Literal["rolling", "contract", "since_creation"]
KIND_OF_PLAN: dict[str, WindowKind] = {
    "internal": "rolling",
    "premium": "rolling",
    "open": "rolling",
    "flex": "contract",
    "paygo": "since_creation",
}


class PeriodUnknown(ConfigError, ValueError):
    """Neither IBM nor the config tells over which period an instance's usage counts."""


@dataclass(frozen=True, slots=True)
class UsageWindow:
    """The period an instance's usage counts over.

    `start` is where counting begins; `end` where the period ends (`now` for a rolling window, the contract
    end for Flex, None for Pay-As-You-Go, which has no end). `source` says who told: `ibm` (its
    `usage_period`) or `plan` (the plan's rule and the config's facts).
    """

    plan: str
    kind: WindowKind
    start: datetime
    end: datetime | None
    source: Literal["ibm", "plan"]

    @property
    def rolling(self) -> bool:
        return self.kind == "rolling"

    def counted_until(self, now: datetime) -> datetime:
        """The end of the part of the period that has happened: `now`, or the period's end if earlier."""
        return now if self.end is None or self.end > now else self.end

    @property
    def label(self) -> str:
        """One line for the reports: 'rolling 28 days', 'contract 2026-01-01 .. 2027-01-01', ..."""
        if self.kind == "rolling":
            days = ROLLING_DAYS if self.end is None else round((self.end - self.start) / timedelta(days=1))
            return f"rolling {days} days"
        if self.kind == "contract":
            end = "open-ended" if self.end is None else f"{self.end:%Y-%m-%d}"
            return f"contract {self.start:%Y-%m-%d} .. {end}"
        return f"since creation {self.start:%Y-%m-%d}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "kind": self.kind,
            "start": self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "source": self.source,
            "label": self.label,
        }


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def rolling_window(plan: str, now: datetime) -> UsageWindow:
    """The 28 days ending now (Premium, Open, internal)."""
    at = _utc(now)
    return UsageWindow(plan, "rolling", at - timedelta(days=ROLLING_DAYS), at, "plan")


def usage_window(
    plan: str,
    *,
    now: datetime,
    ibm_start: datetime | None = None,
    ibm_end: datetime | None = None,
    contract_start: datetime | None = None,
    contract_end: datetime | None = None,
    created_at: datetime | None = None,
    who: str = "instance",
) -> UsageWindow:
    """Over which period `who`'s usage counts (see the module docstring).

    `ibm_start`/`ibm_end`: IBM's `usage_period`, when it sent one (it wins). `contract_*`: the Flex
    subscription from the config. `created_at`: the instance's creation time (Pay-As-You-Go), from IBM's
    instance list. Raises `PeriodUnknown` when the plan needs a fact nobody gave.
    """
    if plan not in KIND_OF_PLAN:
        raise PeriodUnknown(f"{who}: unknown plan {plan!r} (known: {', '.join(PLANS)})")
    kind = KIND_OF_PLAN[plan]
    if ibm_start is not None:
        end = None if ibm_end is None else _utc(ibm_end)
        if kind == "since_creation":
            end = None  # IBM's end of a Pay-As-You-Go period is "now": the period has no end
        return UsageWindow(plan, kind, _utc(ibm_start), end, "ibm")
    if kind == "rolling":
        return rolling_window(plan, now)
    if kind == "contract":
        if contract_start is None:
            raise PeriodUnknown(
                f"{who}: on the Flex plan usage counts over the contract period, but IBM reported no "
                "usage_period and the config sets no ibm.contract_start"
            )
        start = _utc(contract_start)
        end = None if contract_end is None else _utc(contract_end)
        if end is not None and end <= start:
            raise PeriodUnknown(
                f"{who}: the contract ends ({end:%Y-%m-%d}) before it starts ({start:%Y-%m-%d})"
            )
        return UsageWindow(plan, "contract", start, end, "plan")
    if created_at is None:
        raise PeriodUnknown(
            f"{who}: on the Pay-As-You-Go plan usage counts since the instance was created, but IBM reported "
            "neither a usage_period nor the instance's creation time"
        )
    return UsageWindow(plan, "since_creation", _utc(created_at), None, "plan")


def account_window(
    plan: str,
    *,
    now: datetime,
    contract_start: datetime | None = None,
    contract_end: datetime | None = None,
) -> UsageWindow:
    """The period the plan-wide usage (the over-budget test) counts over: the Flex contract, else the rolling
    28 days. Pay-As-You-Go has no account-wide period (each instance counts since its own creation), so the
    plan-wide figure stays the 28 days qauvern 0.14 read."""
    if KIND_OF_PLAN.get(plan) == "contract":
        return usage_window(
            plan, now=now, contract_start=contract_start, contract_end=contract_end, who="account"
        )
    return rolling_window(plan, now)


@dataclass(frozen=True, slots=True)
class LedgerPeriod:
    """The part of an instance's plan period a report that asks IBM nothing (the ledger's) can count over.

    `since`/`until` are epoch seconds of the job ends counted: `since` None counts everything the ledger
    holds (Pay-As-You-Go: since the instance's creation, which only IBM knows, and the ledger holds nothing
    older); `until` None leaves the window open at the end (runs still going count). `end`: where the period
    ends even when that is still to come (the Flex contract's end; None: no end), for forecasts.
    """

    plan: str
    kind: WindowKind
    since: int | None
    until: int | None
    label: str
    end: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "kind": self.kind,
            "since": self.since,
            "until": self.until,
            "label": self.label,
            "end": self.end,
        }


def ledger_period(
    plan: str,
    *,
    now: float,
    contract_start: datetime | None = None,
    contract_end: datetime | None = None,
    who: str = "instance",
) -> LedgerPeriod:
    """The plan's period from the config's facts alone (no IBM): the rolling 28 days; the Flex contract
    (ended: up to its end), or the rolling 28 days, said in the label, when the config sets no
    ibm.contract_start; Pay-As-You-Go: everything since creation."""
    at = datetime.fromtimestamp(now, UTC)
    kind = KIND_OF_PLAN.get(plan)
    if kind is None:
        raise PeriodUnknown(f"{who}: unknown plan {plan!r} (known: {', '.join(PLANS)})")
    if kind == "since_creation":
        return LedgerPeriod(plan, kind, None, None, "since creation (all the ledger holds)")
    if kind == "contract" and contract_start is not None:
        window = usage_window(plan, now=at, contract_start=contract_start, contract_end=contract_end, who=who)
        ended = window.end is not None and window.end <= at
        end = None if window.end is None else int(window.end.timestamp())
        return LedgerPeriod(
            plan, kind, int(window.start.timestamp()), end if ended else None, window.label, end
        )
    rolling = rolling_window(plan, at)
    label = rolling.label if kind == "rolling" else f"{rolling.label} (Flex: ibm.contract_start not set)"
    return LedgerPeriod(plan, "rolling", int(now - ROLLING_DAYS * 86400), None, label)


__all__ = [
    "KIND_OF_PLAN",
    "PLANS",
    "ROLLING_DAYS",
    "LedgerPeriod",
    "PeriodUnknown",
    "PlanName",
    "UsageWindow",
    "account_window",
    "ledger_period",
    "rolling_window",
    "usage_window",
]
