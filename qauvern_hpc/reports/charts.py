"""The report's charts: matplotlib figures saved as SVG and inlined as data URIs (no network, no JavaScript).

Values come in already converted to the report's unit (None: no figure, drawn as a gap). matplotlib is
imported when a chart is drawn (`pip install -e '.[plot]'`).
"""

from __future__ import annotations

import base64
import importlib
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from qauvern_hpc.core.errors import UsageError

DAY = 86400
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")


def _pyplot() -> Any:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise UsageError(
            "the HTML report draws its charts with matplotlib, which is not installed",
            hint="pip install matplotlib (or pip install -e '.[plot]'); --json needs no matplotlib",
        ) from None
    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "qauvern-hpc", "font.size": 9})
    return importlib.import_module("matplotlib.pyplot")


def _dates(days: Sequence[int]) -> list[datetime]:
    return [datetime.fromtimestamp(d * DAY, UTC) for d in days]


def _nan(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def _uri(fig: Any) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _date_axis(ax: Any) -> None:
    mdates = importlib.import_module("matplotlib.dates")
    locator = mdates.AutoDateLocator(maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(alpha=0.3)


def instance_usage(
    days: Sequence[int],
    rolling: Mapping[str, Sequence[float | None]],
    allocation: Mapping[str, Sequence[float | None]],
    limit: Mapping[str, Sequence[float | None]],
    unit: str,
) -> str:
    """One panel per instance: its rolling 28-day usage against its allocation and its limit."""
    plt = _pyplot()
    names = list(rolling) or ["(none)"]
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.9 * len(names) + 0.6), sharex=True, squeeze=False)
    x = _dates(days)
    for ax, name in zip((a[0] for a in axes), names, strict=True):
        ax.plot(x, _nan(rolling.get(name, [])), color=_COLOURS[1], lw=1.4, label="28-day usage")
        if any(v is not None for v in allocation.get(name, [])):
            ax.step(x, _nan(allocation[name]), where="post", color=_COLOURS[0], lw=1.1, label="allocation")
        if any(v is not None for v in limit.get(name, [])):
            ax.step(x, _nan(limit[name]), where="post", color=_COLOURS[3], lw=1, ls="--", label="limit")
        ax.set_ylabel(f"{name}\n{unit}")
        ax.set_ylim(bottom=0)
        _date_axis(ax)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in (a[0] for a in axes[1:]):
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    fig.legend(handles, labels, loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.02))
    return _uri(fig)


def stacked_usage(
    days: Sequence[int], series: Mapping[str, Sequence[float | None]], unit: str, by: str
) -> str:
    """Usage per day, one stacked colour per key (days without a figure count as 0 in the stack)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.2))
    x = _dates(days)
    bottom = [0.0] * len(days)
    for i, (key, values) in enumerate(series.items()):
        ys = [0.0 if v is None else float(v) for v in values]
        ax.bar(x, ys, bottom=bottom, width=0.8, color=_COLOURS[i % len(_COLOURS)], label=key or "-")
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    ax.set_ylabel(f"{unit} per day")
    ax.set_title(f"usage per day by {by}", fontsize=9)
    _date_axis(ax)
    if series:
        ax.legend(fontsize=8, ncol=3, frameon=False)
    return _uri(fig)


def shares(names: Sequence[str], share: Sequence[float], entitlement: Sequence[float | None]) -> str:
    """Each project's share of the usage beside its entitlement (percent)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.5 * max(1, len(names)) + 1.0))
    ys = list(range(len(names)))
    ax.barh(
        [y + 0.2 for y in ys], [100 * s for s in share], height=0.4, color=_COLOURS[1], label="usage share"
    )
    ax.barh(
        [y - 0.2 for y in ys],
        _nan([None if e is None else 100 * e for e in entitlement]),
        height=0.4,
        color=_COLOURS[0],
        label="entitlement (allocation share)",
    )
    ax.set_yticks(ys, [n or "-" for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("% of the total")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    return _uri(fig)


def waits(
    buckets: Mapping[str, int],
    days: Sequence[int],
    mean_minutes: Sequence[float],
    max_minutes: Sequence[float],
    failed: Sequence[int],
) -> str:
    """Left: runs by Slurm pending time; right: mean and longest wait per day, and runs that failed."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.0), gridspec_kw={"width_ratios": [1, 1.6]})
    labels = list(buckets)
    left.bar(range(len(labels)), list(buckets.values()), color=_COLOURS[0])
    left.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    left.set_ylabel("job runs")
    left.set_title("Slurm pending time", fontsize=9)
    left.grid(alpha=0.3, axis="y")
    x = _dates(days)
    right.bar(x, failed, width=0.8, color=_COLOURS[3], alpha=0.35, label="runs not completed")
    right.set_ylabel("runs not completed")
    twin = right.twinx()
    twin.plot(x, mean_minutes, color=_COLOURS[0], marker=".", lw=1.2, label="mean wait")
    twin.plot(x, max_minutes, color=_COLOURS[1], marker=".", lw=1.0, ls=":", label="longest wait")
    twin.set_ylabel("minutes pending")
    twin.set_ylim(bottom=0)
    right.set_title("per day", fontsize=9)
    _date_axis(right)
    h1, l1 = right.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    twin.legend(h1 + h2, l1 + l2, fontsize=8, frameon=False, loc="upper left")
    fig.tight_layout()
    return _uri(fig)


__all__ = ["instance_usage", "shares", "stacked_usage", "waits"]
