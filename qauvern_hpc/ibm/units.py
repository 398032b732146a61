"""Resource units (RUs) and seconds: one instance's own rate, and the conversion at the edge. Pure.

IBM bills in RUs and has announced that the time fields will leave its usage replies (docs/ibm-platform.md).
The planner, the gate and the ledger reason in seconds (the unit allocations and limits were set in, and the
one qauvern 0.14 shares). IBM documents no account-wide rate, but every instance's Resource Controller
`extensions` carries its allocation (and limit) both in seconds and in RUs, so each instance's rate is
knowable: `rate_of` reads it. A reply with RUs only becomes seconds at that instance's rate, at this edge
only; a figure converted this way says so (`seconds_from_ru`), and with no rate (IBM sent no pair of figures
and the config names no `ibm.resource_units_per_second`) the conversion refuses (`TimeFieldsMissing`).

Invariants: a rate is > 0 and finite; converting IBM's own seconds never happens (they are used as sent);
`to_seconds(to_ru(s, r), r) == s` up to float rounding.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qauvern_hpc.ibm.models import Instance


def valid_rate(rate: float | None) -> float | None:
    """`rate` if it is a usable RUs-per-second figure, else None."""
    if rate is None or isinstance(rate, bool):
        return None
    value = float(rate)
    return value if math.isfinite(value) and value > 0 else None


def rate_of(instance: Instance) -> float | None:
    """The instance's RUs per second from its RC extensions: allocation in RUs over allocation in seconds,
    else the limit's pair; None when IBM shows no pair with a non-zero seconds figure."""
    ext = instance.extensions
    pairs = (
        (ext.usage_allocation_ru, ext.usage_allocation_seconds),
        (ext.instance_limit_ru, ext.instance_limit_seconds),
    )
    for ru, seconds in pairs:
        if ru is not None and seconds:
            rate = valid_rate(ru / seconds)
            if rate is not None:
                return rate
    return None


def to_seconds(resource_units: float, rate: float) -> float:
    """RUs -> seconds at `rate` (RUs per second)."""
    return resource_units / rate


def to_ru(seconds: float, rate: float) -> float:
    """Seconds -> RUs at `rate`."""
    return seconds * rate


__all__ = ["rate_of", "to_ru", "to_seconds", "valid_rate"]
