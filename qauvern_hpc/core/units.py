"""Durations: every quantity in qauvern-hpc is an integer number of seconds.

1 QAU = 1600 minutes = 96,000 s (IBM's definition). Parsing accepts what an admin types: `3600`, `90s`,
`15m`, `10h`, `2.5d`, `1qau`, `0.5 QAU`.
"""

from __future__ import annotations

import math
import re

QAU_SECONDS = 1600 * 60  # 96_000
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "qau": QAU_SECONDS}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def parse_seconds(text: str | int | float) -> int:
    """Parse a duration into whole seconds (rounded to nearest). Raises ValueError with a clear message."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"duration must be a non-negative number of seconds, got {text!r}")
        return round(text)
    m = _DURATION.match(text)
    if not m:
        raise ValueError(
            f"not a duration: {text!r} "
            "(use seconds or a number with a unit: s, m, h, d, w, qau; e.g. 10h, 2.5d)"
        )
    unit = m.group(2).lower()
    if unit not in _UNITS:
        raise ValueError(f"unknown unit {m.group(2)!r} in {text!r} (known: s, m, h, d, w, qau)")
    return round(float(m.group(1)) * _UNITS[unit])


def format_seconds(seconds: int | float | None) -> str:
    """Short human form: 45s, 2.5h, 3.1d (absolute value; callers add the sign). None -> '-'."""
    if seconds is None:
        return "-"
    s = abs(seconds)
    if s < 3600:
        return f"{int(s)}s"
    if s < 86400:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


def to_qau(seconds: int | float) -> float:
    return seconds / QAU_SECONDS
