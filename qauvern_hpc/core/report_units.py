"""The unit reports show usage, allocations and limits in: the one formatting path of every report. Pure.

The planner, the gate and the ledger reason in seconds; IBM bills in resource units (RUs). A report turns a
seconds figure into the unit asked (`--unit`, else the config's `report.unit`, else `default_unit`):

* `ru`: RUs as IBM bills them. IBM's own RU figure is used where it sent one (an instance's consumed RUs,
  the RUs the ledger stored for a run); otherwise the seconds at the instance's own RUs-per-second rate
  (`qauvern_hpc.ibm.units.rate_of`: its allocation or limit in both units). A figure with no known rate
  is `n/a` in text and `null` in JSON: never a guess.
* `qau`: 1 QAU = 1600 minutes = 96,000 s (IBM's definition); `hours`: 3600 s; `seconds`: as stored.

An account-wide figure (budget, unallocated, plan-wide usage) has no instance; in RUs it uses the rate all
the instances share (`common_rate`), and is `n/a` when their rates differ or none is known.

Invariants: converting never changes the seconds figure JSON already carries (reports add the converted
figure beside it, with a `unit` key); `n/a` and `null` only ever mean "no rate", `-` and `null` "no figure".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, cast, get_args

from qauvern_hpc.core.units import QAU_SECONDS

ReportUnit = Literal["ru", "qau", "hours", "seconds"]
UNITS: tuple[str, ...] = get_args(ReportUnit)
NOT_AVAILABLE = "n/a"
UNIT_HELP = (
    "unit of the report: ru (resource units, as IBM bills them; from IBM's RU figures or each instance's "
    "own rate, n/a where none is known), qau (1 QAU = 1600 min = 96,000 s), hours or seconds "
    "(default: the config's report.unit, else ru when IBM reports the account in RUs, else hours)"
)
_SUFFIX = {"ru": "RU", "qau": "QAU", "hours": "h", "seconds": "s"}
_DIGITS = {"ru": 3, "qau": 6, "hours": 4, "seconds": 3}
_RATE_TOLERANCE = 1e-9


def parse_unit(text: str) -> ReportUnit:
    """`text` as a report unit; ValueError naming the choices."""
    unit = text.strip().lower()
    if unit not in UNITS:
        raise ValueError(f"unknown report unit {text!r} (choose one of {', '.join(UNITS)})")
    return cast(ReportUnit, unit)


def default_unit(configured: str | None, ibm_units: Iterable[str | None] = ()) -> ReportUnit:
    """The config's `report.unit` if set; else `ru` when IBM reports any instance's usage in RUs (the
    unit the account is billed in); else `hours`."""
    if configured:
        return parse_unit(configured)
    return "ru" if any(u == "ru" for u in ibm_units) else "hours"


def _usable(rate: float | None) -> float | None:
    if rate is None or isinstance(rate, bool):
        return None
    value = float(rate)
    return value if math.isfinite(value) and value > 0 else None


def common_rate(rates: Iterable[float | None]) -> float | None:
    """The one RUs-per-second rate every instance has; None when any is unknown, they differ, or none."""
    known = [_usable(r) for r in rates]
    if not known or any(r is None for r in known):
        return None
    first = cast(float, known[0])
    if all(math.isclose(cast(float, r), first, rel_tol=_RATE_TOLERANCE) for r in known):
        return first
    return None


def convert(
    seconds: float | None, unit: ReportUnit, *, rate: float | None = None, ru: float | None = None
) -> float | None:
    """`seconds` in `unit`. For `ru`: IBM's own figure `ru` when given, else `seconds * rate`; None when
    the figure is unknown (`seconds` None and no `ru`) or, in RUs, when no rate is known."""
    if unit == "ru":
        if ru is not None:
            return float(ru)
        usable = _usable(rate)
        return None if seconds is None or usable is None else float(seconds) * usable
    if seconds is None:
        return None
    if unit == "qau":
        return float(seconds) / QAU_SECONDS
    if unit == "hours":
        return float(seconds) / 3600
    return float(seconds)


def number(value: float) -> str:
    """A figure for a table: thousands separated, about three significant digits below 1000."""
    v = abs(value)
    if v >= 1000:
        text = f"{value:,.0f}"
    elif v >= 100:
        text = f"{value:.1f}"
    elif v >= 1 or v == 0:
        text = f"{value:.2f}"
    else:
        text = f"{value:#.3g}"
    return text.removesuffix(".00") if v == 0 else text


def total(values: Iterable[float | None]) -> float | None:
    """The sum of figures already in a unit; None when one of them is (a sum missing a part is no sum)."""
    got = list(values)
    return None if any(v is None for v in got) else round(sum(v or 0.0 for v in got), 6)


@dataclass(frozen=True)
class Units:
    """A report's unit and the rates it converts with (`rates`: instance key -> RUs per second)."""

    unit: ReportUnit
    rates: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def account_rate(self) -> float | None:
        return common_rate(self.rates.values())

    def rate(self, key: str | None) -> float | None:
        """The instance's rate; `None` key: the account-wide one."""
        return self.account_rate if key is None else self.rates.get(key)

    def value(
        self, seconds: float | None, key: str | None = None, *, ru: float | None = None
    ) -> float | None:
        """The figure in the unit for JSON (rounded), or None (no figure, or no rate for RUs)."""
        got = convert(seconds, self.unit, rate=self.rate(key), ru=ru)
        return None if got is None else round(got, _DIGITS[self.unit])

    def text(self, seconds: float | None, key: str | None = None, *, ru: float | None = None) -> str:
        """The figure for a table: `12.5 h`, `0.470 QAU`, `31,250 RU`; `-` without a figure, `n/a`
        without a rate."""
        if seconds is None and ru is None:
            return "-"
        got = convert(seconds, self.unit, rate=self.rate(key), ru=ru)
        if got is None:
            return NOT_AVAILABLE
        return f"{number(got)} {_SUFFIX[self.unit]}"

    def quantity(self, value: float | None) -> str:
        """A figure already in the unit (e.g. a `total` of `value`s); `n/a` for None."""
        return NOT_AVAILABLE if value is None else f"{number(value)} {_SUFFIX[self.unit]}"

    def signed(self, seconds: float, key: str | None = None) -> str:
        """A change: `+1.50 h`, `-300 RU`."""
        return ("+" if seconds >= 0 else "-") + self.text(abs(seconds), key)

    def to_dict(self) -> dict[str, object]:
        """What a JSON report says about its unit: the unit, and the rates it converted RUs at."""
        return {"unit": self.unit, "ru_per_second": dict(self.rates) if self.unit == "ru" else None}

    @classmethod
    def from_dict(cls, doc: Mapping[str, object]) -> Units:
        """`to_dict`'s keys of a report back (the text of a report renders from its JSON document)."""
        rates = doc.get("ru_per_second")
        return cls(parse_unit(str(doc["unit"])), dict(rates) if isinstance(rates, Mapping) else {})


__all__ = [
    "NOT_AVAILABLE",
    "UNITS",
    "UNIT_HELP",
    "ReportUnit",
    "Units",
    "common_rate",
    "convert",
    "default_unit",
    "number",
    "parse_unit",
    "total",
]
