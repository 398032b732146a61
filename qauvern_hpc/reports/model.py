"""The figures of a usage report, as gathered from the ledger: plain data, seconds as the ledger stores them
(the renderer converts through `core.report_units`), days as UTC day numbers (epoch // 86400)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from qauvern_hpc.reports.forecast import Forecast

DAY = 86400

# Slurm pending time of a job run (start - submit), in buckets: (label, upper bound in seconds)
WAIT_BUCKETS: tuple[tuple[str, float], ...] = (
    ("< 1 min", 60),
    ("1-10 min", 600),
    ("10-60 min", 3600),
    ("1-6 h", 6 * 3600),
    ("6-24 h", DAY),
    (">= 1 day", float("inf")),
)
NEVER_STARTED = "never started"
OTHERS = "(others)"


def day_text(day: int) -> str:
    return datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%d")


def time_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Window:
    """Runs whose job ended in [since, until); `open_end`: runs still going count too (no --until)."""

    since: int
    until: int
    label: str
    open_end: bool


@dataclass(frozen=True)
class Series:
    """Usage per day and key (seconds; RUs None for a day with a run IBM gave no RUs for)."""

    days: list[int]
    seconds: dict[str, list[float]]
    resource_units: dict[str, list[float | None]]

    def total(self, key: str) -> float:
        return sum(self.seconds.get(key, ()))


@dataclass(frozen=True)
class AllocationPoint:
    """An instance's allocation and limit from `at` on (a rebalance write, or the config's limit)."""

    at: float
    allocation_seconds: int | None
    limit_seconds: int | None


@dataclass(frozen=True)
class Move:
    """One audited rebalance change: IBM values are {allocation_seconds, limit_seconds}, Slurm's an int or
    None (Fairshare, a gate's GrpTRES)."""

    at: float
    run_id: str
    action: str
    target: str
    before: Any
    after: Any
    reason: str


@dataclass(frozen=True)
class Share:
    """A project's (an instance's) share of the window's usage against its entitlement: its allocation's
    share of all the allocations known (None: no allocation known)."""

    instance: str
    seconds: float
    share: float
    entitlement: float | None
    accounts: dict[str, float]  # the instance's accounts' shares of all usage


@dataclass(frozen=True)
class Waits:
    """Slurm pending time of the window's job runs (per run, not per resource)."""

    per_day: dict[int, tuple[int, float, float]]  # start day -> (runs, mean wait, max wait)
    buckets: dict[str, int]  # WAIT_BUCKETS labels and NEVER_STARTED -> runs
    states: dict[str, int]  # Slurm end state -> runs
    failed_per_day: dict[int, int]  # end day -> runs that did not complete
    runs: int


@dataclass(frozen=True)
class TopJob:
    cluster: str
    job_id: str
    run: int
    user: str
    account: str
    instance: str
    quantum_seconds: float
    resource_units: float | None
    wall_seconds: int
    state: str


@dataclass(frozen=True)
class TopRow:
    key: str
    jobs: int
    quantum_seconds: float
    resource_units: float | None


@dataclass(frozen=True)
class ReportData:
    window: Window
    by: str
    generated_at: float
    totals: dict[str, float]  # jobs, quantum_seconds, pending_runs
    usage: Series  # by `by`, over the window's days (top keys, the rest folded into OTHERS)
    instances: Series  # per instance, from 27 days before the window (for the rolling 28-day usage)
    allocations: dict[str, list[AllocationPoint]]
    forecasts: dict[str, Forecast]
    shares: list[Share]
    moves: list[Move]
    waits: Waits
    top_jobs: list[TopJob]
    top_users: list[TopRow]
    by_rows: list[TopRow]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["forecasts"] = {k: v.to_dict() for k, v in self.forecasts.items()}
        waits = doc["waits"]
        waits["per_day"] = {
            day_text(d): {"runs": n, "mean_seconds": round(m, 1), "max_seconds": x}
            for d, (n, m, x) in self.waits.per_day.items()
        }
        waits["failed_per_day"] = {day_text(d): n for d, n in self.waits.failed_per_day.items()}
        for key in ("usage", "instances"):
            doc[key]["days"] = [day_text(d) for d in doc[key]["days"]]
        return doc


__all__ = [
    "DAY",
    "NEVER_STARTED",
    "OTHERS",
    "WAIT_BUCKETS",
    "AllocationPoint",
    "Move",
    "ReportData",
    "Series",
    "Share",
    "TopJob",
    "TopRow",
    "Waits",
    "Window",
    "day_text",
    "time_text",
]
