"""What the admission controller sees and what it decides. Pure, frozen, standard-library dataclasses.

A *pair* is one IBM Quantum instance on one backend: every `--qpu` job holds one Slurm license per pair
(`pair_license(instance, backend)`), and the controller caps how many jobs may hold each pair license at
once (`GrpTRES=license/<pair>=cap` on the cluster's root association; None = no cap, 0 = closed). Jobs
beyond the cap pend in Slurm with reason `AssocGrpLicense`; their license names the QPU and
`qauvern-hpc admit why JOB` gives the reason in words.

Invariants:
* `Observation` holds only what IBM's API and Slurm expose at `now` (no knowledge of the future): the
  simulator builds it the same way.
* A `Decision` has exactly one `PairDecision` per observed pair; `cap` is None or >= 0.
* `ControllerState` is everything `decide` remembers between periods; it round-trips through JSON
  (`to_json`/`from_json`), so a restarted controller resumes its last decision.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from qauvern_hpc.policy.licenses import pair_license

BackendStatus = Literal["online", "paused", "offline"]
FailMode = Literal["open", "closed"]

# Reason codes (stable: metrics labels, JSON, tests). The text in PairDecision.detail says it in words.
OPEN = "open"  # no cap needed: everything pending may start
ADMITTED = "admitted"  # capped at what IBM will serve soon
BACKEND_NOT_SERVING = "backend_not_serving"  # paused, offline, maintenance, not active
LIMIT_REACHED = "limit_reached"  # the instance reached its IBM usage limit
IBM_QUEUE = "ibm_queue"  # IBM's queue on the backend is too long to start more now
BACKED_OFF = "backed_off"  # a job of the pair left IBM's queue unstarted: nothing new starts for a while
FAIR_SHARE = "fair_share"  # the backend's budget went to pairs IBM will serve first
HOLD = "hold"  # IBM not readable: the last decision is kept for a bounded time
FAILED_OPEN = "failed_open"  # IBM unreadable for longer than hold_for, resource fails open
FAILED_CLOSED = "failed_closed"  # ... and fails closed
REASONS = (
    OPEN,
    ADMITTED,
    BACKEND_NOT_SERVING,
    LIMIT_REACHED,
    IBM_QUEUE,
    BACKED_OFF,
    FAIR_SHARE,
    HOLD,
    FAILED_OPEN,
    FAILED_CLOSED,
)


@dataclass(frozen=True)
class BackendView:
    """One backend as IBM reports it (`/v1/backends` device list and `/v1/backends/{name}/status`)."""

    name: str
    status: BackendStatus  # IBM's status.name; only "online" with an active message serves jobs
    message: str = "active"  # status reason / message: "active", "internal", "maintenance", free text
    length_queue: int = 0  # jobs waiting on the backend, all customers
    wait_p50_seconds: float | None = None  # IBM's wait_time_seconds.p50, when the API returns it
    wait_p95_seconds: float | None = None
    observed_at: float = 0.0  # when this was read (epoch seconds)

    @property
    def serving(self) -> bool:
        """IBM runs jobs on it: online and its message says active (paused/internal accept but run none)."""
        return self.status == "online" and self.message.strip().lower() in ("active", "available", "")


@dataclass(frozen=True)
class InstanceView:
    """One instance's usage as `/v1/instances/usage` reports it, with its allocation and effective limit."""

    name: str
    consumed_seconds: float  # usage in the instance's usage period (rolling 28 days on Premium/Open)
    allocation_seconds: int
    limit_seconds: int | None  # effective limit (None: no limit)
    limit_reached: bool = False  # IBM's usage_limit_reached
    observed_at: float = 0.0


@dataclass(frozen=True)
class PairView:
    """One (instance, backend) pair: Slurm's jobs holding or waiting for its license, and ours at IBM."""

    instance: str
    backend: str
    fail_mode: FailMode = "closed"  # the resource's fail mode when IBM cannot be read for too long
    pending: int = 0  # Slurm jobs pending that hold this pair's license request
    running: int = 0  # Slurm jobs running that hold it
    ibm_queued: int = 0  # our IBM jobs of this pair in state Queued
    ibm_running: int = 0  # ... and Running
    oldest_ibm_queued_age: float | None = None  # seconds the head of our IBM queue has waited
    oldest_pending_age: float | None = None  # seconds the oldest Slurm-pending job has waited
    # What `decide` learns from (our own IBM jobs, since the previous observation; none = nothing learnt):
    done_jobs: int = 0  # jobs of this pair that finished at IBM
    done_quantum_seconds: float = 0.0  # ... and the quantum seconds they used, in total
    started_jobs: int = 0  # jobs of this pair that IBM started running
    started_wait_seconds: float = (
        0.0  # ... and how long they had waited at IBM (created -> running), in total
    )
    lost_jobs: int = 0  # jobs of this pair that left IBM's queue without ever running (cancelled)
    lost_wait_seconds: float = 0.0  # ... and the longest time one of them had waited there


@dataclass(frozen=True)
class Observation:
    """Everything one period reads. `ibm_read_at`: when IBM last answered every call this period needed
    (None: never); a period whose IBM reads failed reuses the previous views with their old timestamps."""

    now: float
    backends: dict[str, BackendView]
    instances: dict[str, InstanceView]
    pairs: tuple[PairView, ...]
    ibm_read_at: float | None


@dataclass(frozen=True)
class AdmissionSettings:
    """`admission:` in the site config."""

    period_seconds: float = 30.0
    hold_for_seconds: float = 600.0  # keep the last decision this long while IBM cannot be read
    max_ibm_wait_seconds: float = 600.0  # admit only what IBM should start within this
    burst: int = 2  # at most this many admitted jobs per pair with demand, per backend budget
    probe: bool = True  # an open pair with pending jobs and nothing in flight may always start one
    min_dwell_seconds: float = 60.0  # soft cap changes at most this often per pair
    default_job_seconds: float = 300.0  # quantum seconds per job before any has been measured
    # IBM's wait estimate for a backend at most this fraction of max_ibm_wait: its budget is clearly not
    # binding, so a pair with nothing held back gets no cap. Above it every open pair keeps a standing cap
    # (running + its share of the budget), so a burst submitted between two periods cannot all start.
    open_below: float = 0.5
    # A standing cap of a pair with nothing pending is kept (not rewritten) while the room it leaves above
    # `running` stays within [min(1, wanted room), wanted room + cap_slack]: no sacctmgr write per job.
    cap_slack: int = 1
    # A pair whose job left IBM's queue unstarted after waiting at least max_ibm_wait (Slurm's wall limit
    # cancelled it) admits nothing new for that long, doubling on each such loss, at most this long; the
    # first job of the pair IBM starts ends the back-off.
    lost_backoff_max_seconds: float = 14400.0


@dataclass(frozen=True)
class PairDecision:
    instance: str
    backend: str
    cap: int | None  # None: no limit; 0: closed; n: at most n jobs hold the pair license
    reason: str  # one of REASONS
    detail: str  # the reason in words, for `admit why`, metrics and doctor
    since: float  # when this pair's reason last changed

    @property
    def license(self) -> str:
        return pair_license(self.instance, self.backend)


@dataclass(frozen=True)
class Decision:
    decided_at: float
    pairs: tuple[PairDecision, ...]

    def cap_of(self, instance: str, backend: str) -> int | None:
        for p in self.pairs:
            if p.instance == instance and p.backend == backend:
                return p.cap
        raise KeyError((instance, backend))


def _backoff(v: Any) -> tuple[float, float, float]:
    """A stored back-off; one written before the ratio was kept never ends by a ratio drop."""
    return (float(v[0]), float(v[1]), float(v[2]) if len(v) > 2 else math.inf)


@dataclass(frozen=True)
class ControllerState:
    """What `decide` remembers between periods (JSON-serialisable; no secrets)."""

    last: Decision | None = None
    last_change: dict[str, float] = field(default_factory=dict)  # pair license -> when its cap changed
    service_ewma: dict[str, float] = field(default_factory=dict)  # backend -> quantum s per job, learnt
    wait_ewma: dict[str, float] = field(default_factory=dict)  # pair license -> our IBM wait, learnt
    bad_polls: dict[str, int] = field(default_factory=dict)  # backend -> consecutive not-serving polls
    # license -> (until, length, the instance's fair-share ratio (usage/allocation) when the back-off began)
    backoff: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ControllerState:
        last = data.get("last")
        decision = None
        if last:
            decision = Decision(
                decided_at=float(last["decided_at"]),
                pairs=tuple(PairDecision(**p) for p in last.get("pairs", ())),
            )
        return cls(
            last=decision,
            last_change={str(k): float(v) for k, v in data.get("last_change", {}).items()},
            service_ewma={str(k): float(v) for k, v in data.get("service_ewma", {}).items()},
            wait_ewma={str(k): float(v) for k, v in data.get("wait_ewma", {}).items()},
            bad_polls={str(k): int(v) for k, v in data.get("bad_polls", {}).items()},
            backoff={str(k): _backoff(v) for k, v in data.get("backoff", {}).items()},
        )


__all__ = [
    "ADMITTED",
    "BACKED_OFF",
    "BACKEND_NOT_SERVING",
    "FAILED_CLOSED",
    "FAILED_OPEN",
    "FAIR_SHARE",
    "HOLD",
    "IBM_QUEUE",
    "LIMIT_REACHED",
    "OPEN",
    "REASONS",
    "AdmissionSettings",
    "BackendStatus",
    "BackendView",
    "ControllerState",
    "Decision",
    "FailMode",
    "InstanceView",
    "Observation",
    "PairDecision",
    "PairView",
]
