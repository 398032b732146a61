"""The report's forecast over each instance's plan period: `gather` projects every instance's rolling 28 days
(Premium, Open); for an instance whose period does not roll (the Flex contract, Pay-As-You-Go since
creation) `plan_forecasts` replaces that forecast with one over its period, without roll-off
(`forecast.forecast_no_rolloff`). Its usage over the period is one SQL aggregate per distinct period start.

The periods come from the caller (`ops.periods.config_periods`: the config's facts, as `usage` uses them);
this module only needs their shape (`Period`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from qauvern_hpc.accounting.ledger import Ledger
from qauvern_hpc.reports.forecast import Forecast, forecast_no_rolloff
from qauvern_hpc.reports.model import DAY, ReportData


class Period(Protocol):
    """What the forecast needs of an instance's plan period (`planner.period.LedgerPeriod` has it)."""

    @property
    def kind(self) -> str: ...  # rolling | contract | since_creation
    @property
    def since(self) -> int | None: ...  # epoch seconds; None: everything the ledger holds
    @property
    def end(self) -> int | None: ...  # the period's end (the Flex contract's), None: no end
    @property
    def label(self) -> str: ...


def plan_forecasts(ledger: Ledger, data: ReportData, periods: Mapping[str, Period]) -> ReportData:
    """`data` with the forecast of each instance whose period (in `periods`) does not roll made over that
    period; the others' forecasts (the rolling 28 days) unchanged. Like `gather`, it starts from the last
    full day before the report's end."""
    end = min(data.generated_at, data.window.until)
    last_full = int(end // DAY) - 1
    before = (last_full + 1) * DAY  # usage up to the end of the last full day
    days = data.instances.days
    upto = max(0, last_full - days[0] + 1) if days else 0
    used: dict[int | None, dict[str, float]] = {}
    forecasts: dict[str, Forecast] = {}
    for name, old in data.forecasts.items():
        p = periods.get(name)
        if p is None or p.kind == "rolling":
            forecasts[name] = old
            continue
        if p.since not in used:
            per = ledger.usage_per_instance(p.since, before)  # runs that ended in [since, before)
            used[p.since] = {u.instance: u.quantum_seconds for u in per.values()}
        daily = data.instances.seconds.get(name, [0.0] * len(days))[:upto]
        days_left = None if p.end is None else max(0, (p.end - before) // DAY)
        forecasts[name] = forecast_no_rolloff(
            used[p.since].get(name, 0.0), daily, old.limit_seconds, days_left=days_left, period=p.label
        )
    return replace(data, forecasts=forecasts)


__all__ = ["Period", "plan_forecasts"]
