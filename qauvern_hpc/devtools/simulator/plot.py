"""Usage vs allocation per instance over time, one column per policy (matplotlib, imported when used)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qauvern_hpc.core.errors import UsageError
from qauvern_hpc.core.units import QAU_SECONDS
from qauvern_hpc.devtools.simulator.metrics import RunResult


def _pyplot() -> Any:
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        return importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib, which is not installed",
            hint="pip install matplotlib (or pip install -e '.[plot]')",
        ) from None


def plot_runs(results: Sequence[RunResult], path: str | Path, *, title: str = "") -> Path:
    """Write a PNG: rows = instances, columns = policies; allocation, 28-day usage and limit in QAU."""
    if not results:
        raise UsageError("nothing to plot")
    plt = _pyplot()
    names = list(results[0].series.allocation)
    rows, cols = len(names), len(results)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols + 0.8, 1.9 * rows + 1.0), sharex=True, squeeze=False
    )
    for c, res in enumerate(results):
        s = res.series
        for r, name in enumerate(names):
            ax = axes[r][c]
            alloc = [v / QAU_SECONDS for v in s.allocation[name]]
            used = [v / QAU_SECONDS for v in s.usage_28d[name]]
            limit = [None if v is None else v / QAU_SECONDS for v in s.limit[name]]
            ax.step(s.days, alloc, where="post", color="tab:blue", lw=1.1, label="allocation")
            ax.plot(s.days, used, color="tab:orange", lw=1.1, label="28-day usage")
            if any(v is not None for v in limit):
                ax.plot(
                    s.days,
                    [float("nan") if v is None else v for v in limit],
                    color="tab:red",
                    lw=0.8,
                    ls="--",
                    label="limit",
                )
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_title(res.policy, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"{name}\nQAU", fontsize=9)
            if r == rows - 1:
                ax.set_xlabel("day")
            ax.tick_params(labelsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


__all__ = ["plot_runs"]
