"""Other customers on a backend: synthetic jobs that queue with ours, and the wait estimate IBM publishes.

Invariants:

- a backend with `external: {rate_per_hour, mean_seconds, ratio}` gets Poisson arrivals (exponential gaps)
  of jobs with exponential QPU times, all of one hidden instance whose fair-share key is `ratio`; they are
  `ExternalJob`s (never in our `/v1/jobs`), counted in `length_queue` and in the wait estimate;
- every random draw comes from `random.Random` seeded with (`random_seed`, backend, draw index, and the time
  of a redraw), so a seed and the same sequence of calls give the same arrivals whatever the clock mode;
- `backend.external_next_at` is the next arrival (None: no arrivals, rate 0); a wait spike's start and end
  redraw it (Poisson is memoryless), with the rate multiplied by the factor of the spike in force;
- a spike's `extra_jobs` are queued at its start and withdrawn at its end if they have not started;
- finished external jobs are dropped once they started before the wait window (`wait_window_seconds`).
The store holds no lock and knows no time: the scheduler calls this under `EmulatorState`'s lock.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from typing import Any

from qauvern_hpc.devtools.emulator.model import Backend, ExternalJob, WaitSpike
from qauvern_hpc.devtools.emulator.store import Store


class OtherCustomers:
    """Arrivals, spikes and the wait estimate over a `Store`."""

    def __init__(self, store: Store) -> None:
        self._s = store

    def _rng(self, b: Backend, *salt: object) -> random.Random:
        return random.Random(":".join(str(x) for x in (self._s.m.random_seed, b.name, *salt)))

    def rate_factor(self, b: Backend, at: datetime) -> float:
        factor = 1.0
        for spike in b.wait_spikes:
            if spike.start <= at < spike.end:
                factor *= spike.rate_factor
        return factor

    def redraw(self, b: Backend, at: datetime) -> None:
        """Draw the next arrival after `at` (at load, and when the arrival rate changes)."""
        rate = (b.external.rate_per_hour if b.external else 0.0) * self.rate_factor(b, at)
        if rate <= 0:
            b.external_next_at = None
            return
        gap = self._rng(b, "gap", b.external_arrivals, at.isoformat()).expovariate(rate / 3600.0)
        b.external_next_at = at + timedelta(seconds=gap)

    def prime(self, at: datetime) -> None:
        """Give every backend with other customers its first arrival (if it has none yet)."""
        for b in self._s.m.backends:
            if b.external_next_at is None and b.external is not None:
                self.redraw(b, at)

    def _new_job(self, b: Backend, at: datetime, rng: random.Random, *, spike: bool) -> None:
        load = b.external
        mean = load.mean_seconds if load else 60.0
        b.external_arrivals += 1
        self._s.m.external_jobs.append(
            ExternalJob(
                id=f"x-{b.name}-{b.external_arrivals}",
                seq=b.external_arrivals,
                backend=b.name,
                created_at=at,
                seconds=rng.expovariate(1.0 / mean),
                ratio=load.ratio if load else 0.0,
                spike=spike,
            )
        )

    def arrive(self, b: Backend, at: datetime) -> None:
        """The arrival due at `at`: queue it, draw the next, forget jobs older than the wait window."""
        self._new_job(b, at, self._rng(b, "job", b.external_arrivals), spike=False)
        gap_rng = self._rng(b, "gap", b.external_arrivals)
        rate = (b.external.rate_per_hour if b.external else 0.0) * self.rate_factor(b, at)
        b.external_next_at = at + timedelta(seconds=gap_rng.expovariate(rate / 3600.0)) if rate > 0 else None
        self._prune(at)

    def spike_start(self, b: Backend, spike: WaitSpike, at: datetime) -> None:
        spike.injected = True
        for k in range(spike.extra_jobs):
            self._new_job(b, at, self._rng(b, "spike", spike.start.isoformat(), k), spike=True)
        self.redraw(b, at)

    def spike_end(self, b: Backend, spike: WaitSpike, at: datetime) -> None:
        b.wait_spikes.remove(spike)
        self._s.m.external_jobs = [
            x
            for x in self._s.m.external_jobs
            if not (x.backend == b.name and x.spike and x.started_at is None and x.created_at == spike.start)
        ]
        self.redraw(b, at)

    def queued(self, b: Backend) -> list[ExternalJob]:
        return [x for x in self._s.m.external_jobs if x.backend == b.name and x.started_at is None]

    def find(self, ident: str) -> ExternalJob:
        return next(x for x in self._s.m.external_jobs if x.id == ident)

    def _prune(self, at: datetime) -> None:
        horizon = at - timedelta(seconds=self._s.m.wait_window_seconds)
        self._s.m.external_jobs = [
            x
            for x in self._s.m.external_jobs
            if x.finished_at is None or x.started_at is None or x.started_at >= horizon
        ]

    def wait_time(self, b: Backend, now: datetime) -> dict[str, Any]:
        """`wait_time_seconds`: created -> running of the jobs (ours and others') that started on `b` in the
        trailing window, in whole seconds; every field null when none did."""
        horizon = now - timedelta(seconds=self._s.m.wait_window_seconds)
        started: list[tuple[datetime, datetime | None]] = [
            (x.created_at, x.started_at) for x in self._s.m.jobs if x.backend == b.name
        ]
        started += [(x.created_at, x.started_at) for x in self._s.m.external_jobs if x.backend == b.name]
        waits = sorted(
            (start - created).total_seconds()
            for created, start in started
            if start is not None and horizon <= start <= now
        )
        if not waits:
            return {"average": None, "p50": None, "p95": None}

        def rank(q: float) -> int:
            return round(waits[max(0, math.ceil(q * len(waits)) - 1)])

        return {"average": round(sum(waits) / len(waits)), "p50": rank(0.5), "p95": rank(0.95)}
