"""Helpers shared by the benchmark scripts in tests/bench: statistics, a text table, JSON results.

Standard library only. The scripts import it as `_common` (their own directory is on sys.path when they run
as `python tests/bench/NAME.py`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import statistics
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks; NaN when empty."""
    xs = sorted(values)
    if not xs:
        return math.nan
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values: Iterable[float]) -> dict[str, float]:
    """n, median, p95, mean, stdev, min, max of `values` (NaN for an empty list)."""
    xs = [float(v) for v in values]
    if not xs:
        return {k: math.nan for k in ("n", "median", "p95", "mean", "stdev", "min", "max")}
    return {
        "n": len(xs),
        "median": statistics.median(xs),
        "p95": percentile(xs, 95),
        "mean": statistics.fmean(xs),
        "stdev": statistics.stdev(xs) if len(xs) > 1 else 0.0,
        "min": min(xs),
        "max": max(xs),
    }


def fmt(value: object, digits: int = 1) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, digits: int = 1) -> str:
    """A plain text table (first column left-aligned, the others right-aligned)."""
    cells = [[fmt(c, digits) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        out = [values[0].ljust(widths[0])]
        out += [v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), sep, *(line(r) for r in cells)])


def machine() -> dict[str, Any]:
    """Where and when the benchmark ran (for the JSON results)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_avg": list(os.getloadavg()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit,
        "git_dirty": dirty,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _clean(obj: Any) -> Any:
    # JSON has no NaN: write null instead.
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def write_json(path: str | Path, data: Any) -> Path:
    """Write `data` as indented JSON, creating the parent directory; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")
    return out


def median_diff_ci(
    without: Sequence[float],
    with_: Sequence[float],
    *,
    level: float = 95.0,
    resamples: int = 2000,
    seed: int = 1,
) -> tuple[float, float]:
    """Bootstrap confidence interval of median(with_) - median(without) (independent resampling of both)."""
    if not without or not with_:
        return math.nan, math.nan
    rng = random.Random(seed)
    a, b = list(without), list(with_)
    diffs = [
        statistics.median(rng.choices(b, k=len(b))) - statistics.median(rng.choices(a, k=len(a)))
        for _ in range(resamples)
    ]
    tail = (100.0 - level) / 2
    return percentile(diffs, tail), percentile(diffs, 100.0 - tail)
