"""The admission controller inside the simulation: what it reads, and the production `decide()` it calls.

Invariant: the Observation holds only what IBM's API and Slurm expose at `t` (status + message,
`length_queue`, IBM's trailing-hour wait quantiles when the backend exposes them, each instance's usage,
allocation, effective limit and `usage_limit_reached`, our own IBM jobs Queued/Running with the age of the
oldest Queued one, Slurm's pending/running jobs per pair). Nothing about other customers' ratios, future
arrivals or outages is passed. IBM is always reachable in the model (`ibm_read_at = t`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from qauvern_hpc.admission.model import (
    AdmissionSettings,
    BackendView,
    ControllerState,
    Decision,
    InstanceView,
    Observation,
    PairView,
)
from qauvern_hpc.devtools.simulator.ibmqueue import Interval
from qauvern_hpc.devtools.simulator.setup import SimSetup

DecideFn = Callable[[Observation, ControllerState, AdmissionSettings], tuple[Decision, ControllerState]]


class PairFigures(NamedTuple):
    """One pair at one instant, as Slurm (squeue) and IBM (`/v1/jobs?pending=true`) show it."""

    pending: int
    running: int
    ibm_queued: int
    ibm_running: int
    oldest_ibm_queued: int | None  # when the oldest of our Queued IBM jobs was created
    oldest_pending: int | None  # when the oldest Slurm-pending job became eligible
    done_jobs: int = 0  # since the previous observation: our IBM jobs of the pair that finished
    done_quantum_seconds: int = 0  # ... and the quantum seconds they used
    started_jobs: int = 0  # ... our IBM jobs IBM started running
    started_wait_seconds: int = 0  # ... and their created -> running, in total
    lost_jobs: int = 0  # ... our IBM jobs that left the queue unstarted (Slurm's wall limit cancelled them)
    lost_wait_seconds: int = 0  # ... and the longest wait among them


# per backend: (the outage it is in or None, length_queue, wait p50, wait p95)
BackendFigures = tuple[Interval | None, int, float | None, float | None]
# per instance: (28-day usage, allocation, effective limit)
InstanceFigures = tuple[int, int, int | None]


class Admission:
    """Builds each period's Observation, calls `decide`, keeps its state, returns the caps per pair."""

    def __init__(self, setup: SimSetup, decide: DecideFn | None) -> None:
        if decide is None:
            from qauvern_hpc.admission.decide import decide as production

            decide = production
        self.decide = decide
        self.settings = setup.admission
        self.state = ControllerState()
        self.setup = setup
        self.names = [(setup.instance_names[i], setup.backend_names[b]) for i, b in setup.pairs]
        self.index = {nm: k for k, nm in enumerate(self.names)}
        self.calls = 0

    def step(
        self,
        t: int,
        backends: Sequence[BackendFigures],
        instances: Sequence[InstanceFigures],
        pairs: Sequence[PairFigures],
    ) -> list[int | None]:
        s = self.setup
        now = float(t)
        bviews = {}
        for b, (down, length, p50, p95) in enumerate(backends):
            name = s.backend_names[b]
            exposes = s.backend_loads[b].exposes_wait
            bviews[name] = BackendView(
                name=name,
                status="online" if down is None else ("offline" if down[2] == "offline" else "paused"),
                message="active" if down is None else down[3],
                length_queue=length,
                wait_p50_seconds=p50 if exposes else None,
                wait_p95_seconds=p95 if exposes else None,
                observed_at=now,
            )
        iviews = {}
        for i, (used, alloc, limit) in enumerate(instances):
            name = s.instance_names[i]
            iviews[name] = InstanceView(
                name=name,
                consumed_seconds=float(used),
                allocation_seconds=alloc,
                limit_seconds=limit,
                limit_reached=limit is not None and used >= limit,
                observed_at=now,
            )
        pviews = tuple(
            PairView(
                instance=inst,
                backend=back,
                pending=f.pending,
                running=f.running,
                ibm_queued=f.ibm_queued,
                ibm_running=f.ibm_running,
                oldest_ibm_queued_age=None if f.oldest_ibm_queued is None else now - f.oldest_ibm_queued,
                oldest_pending_age=None if f.oldest_pending is None else now - f.oldest_pending,
                done_jobs=f.done_jobs,
                done_quantum_seconds=float(f.done_quantum_seconds),
                started_jobs=f.started_jobs,
                started_wait_seconds=float(f.started_wait_seconds),
                lost_jobs=f.lost_jobs,
                lost_wait_seconds=float(f.lost_wait_seconds),
            )
            for (inst, back), f in zip(self.names, pairs, strict=True)
        )
        obs = Observation(now=now, backends=bviews, instances=iviews, pairs=pviews, ibm_read_at=now)
        decision, self.state = self.decide(obs, self.state, self.settings)
        self.calls += 1
        caps: list[int | None] = [None] * len(self.names)
        for pd in decision.pairs:
            caps[self.index[(pd.instance, pd.backend)]] = pd.cap
        return caps


__all__ = ["Admission", "BackendFigures", "DecideFn", "InstanceFigures", "PairFigures"]
