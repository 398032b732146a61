"""Each instance's plan period for the ledger's reports (`usage`, the HTML report's forecast), from the config
alone: those reports ask IBM nothing, so IBM's `usage_period` is not known here and the plan's rule with the
config's facts decides (`planner.period.ledger_period`).

An instance the ledger knows but the config does not (removed since, or a run with no instance recorded)
counts over the period of `ibm.plan`, as the rebalancer does for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from qauvern_hpc.planner.period import ROLLING_PLANS, LedgerPeriod, ledger_period

if TYPE_CHECKING:
    from qauvern_hpc.accounting.ledger import Ledger
    from qauvern_hpc.accounting.ledger.models import UsageRow
    from qauvern_hpc.config import Config


@dataclass(frozen=True)
class ConfigPeriods:
    """The configured instances' periods (config order) and the period of any other instance."""

    by_instance: dict[str, LedgerPeriod]
    default: LedgerPeriod

    def of(self, instance: str) -> LedgerPeriod:
        return self.by_instance.get(instance, self.default)

    @property
    def all_rolling(self) -> bool:
        """Every plan involved counts the rolling 28 days (Premium, Open, internal): qauvern 0.14's case."""
        periods = [*self.by_instance.values(), self.default]
        return all(p.plan in ROLLING_PLANS for p in periods)

    @property
    def shared(self) -> LedgerPeriod | None:
        """The one period every instance counts over, if they all share one; else None."""
        return self.default if len(self.distinct()) == 1 else None

    def distinct(self) -> list[LedgerPeriod]:
        """The different windows (the default's first), each once."""
        out: dict[tuple[int | None, int | None, str], LedgerPeriod] = {}
        for p in [self.default, *self.by_instance.values()]:
            out.setdefault(window_key(p), p)
        return list(out.values())


def window_key(p: LedgerPeriod) -> tuple[int | None, int | None, str]:
    """Two periods count the same ledger runs when their window and label agree (Premium and Open do)."""
    return p.since, p.until, p.label


def config_periods(cfg: Config, now: float) -> ConfigPeriods:
    def period(plan: str, who: str) -> LedgerPeriod:
        return ledger_period(
            plan,
            now=now,
            contract_start=cfg.ibm.contract_start,
            contract_end=cfg.ibm.contract_end,
            who=who,
        )

    by_instance = {i.name: period(cfg.plan_of(i.name), f"instance {i.name}") for i in cfg.instances}
    return ConfigPeriods(by_instance, period(cfg.ibm.plan, "ibm.plan"))


def usage_per_instance_period(
    ledger: Ledger, periods: ConfigPeriods
) -> tuple[list[tuple[UsageRow, LedgerPeriod]], int]:
    """Each instance's ledger usage over its own period (one query per distinct period), sorted by
    instance; and how many of those runs still await IBM's final figure."""
    rows: list[tuple[UsageRow, LedgerPeriod]] = []
    pending = 0
    for p in periods.distinct():
        key = window_key(p)
        rows += [
            (r, p)
            for r in ledger.usage_by("instance", p.since, p.until)
            if window_key(periods.of(r.key)) == key
        ]
        pending += sum(
            u.pending_runs
            for u in ledger.usage_per_instance(p.since, p.until).values()
            if window_key(periods.of(u.instance)) == key
        )
    return sorted(rows, key=lambda rp: rp[0].key), pending


__all__ = ["ConfigPeriods", "config_periods", "usage_per_instance_period", "window_key"]
