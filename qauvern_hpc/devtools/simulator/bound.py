"""How good could any policy be on a trace? Offline, clairvoyant (knows every arrival and outage), run once
per trace and seed, the same for every policy. Pure.

1. **Provable lower bound** (`per_job_bound`): job j (submitted at r_j, p_j quantum seconds on backend b)
   served alone from r_j, only the backend's outages in its way: lb_j = the time from r_j until b has been
   up for p_j seconds, capped at `duration - r_j` (how the engine counts a job not done at the end). Every
   policy's wait of j is >= lb_j: its work runs only on b, only while b is up, never before r_j. Slurm
   slots, wall limits, IBM limits, other customers and our other jobs are relaxed away. Because each
   wait is >= its bound, every order statistic is too: median(lb) <= any policy's median, p95(lb) <= p95.
2. **Clairvoyant SRPT reference** (`srpt_waits`): per backend, preemptive shortest-remaining-work-first
   over our jobs only (other customers always after ours), served only while up, no slots, no limits.
   SRPT minimises the total (so the mean) flow time on one machine (Schrage 1968), so its mean is a lower
   bound of the mean wait under the same relaxations; its median and p95 are a reference, **not** a proven
   percentile bound.
"""

from __future__ import annotations

import heapq
import statistics
from dataclasses import dataclass

from qauvern_hpc.devtools.simulator.ibmqueue import Interval, outage_calendar
from qauvern_hpc.devtools.simulator.metrics import percentile
from qauvern_hpc.devtools.simulator.setup import SimSetup


def _calendars(setup: SimSetup, seed: int) -> list[list[Interval]]:
    return [
        outage_calendar(load, setup.backend_names[b], setup.start, setup.duration, seed)
        for b, load in enumerate(setup.backend_loads)
    ]


def _finish_alone(start: int, work: int, down: list[Interval]) -> int:
    """When `work` seconds of up time have passed on a backend from `start` (may exceed the duration)."""
    t = start
    left = work
    for s, e, _st, _msg in down:
        if e <= t:
            continue
        if s > t:
            run = min(left, s - t)
            t += run
            left -= run
            if left == 0:
                return t
        t = max(t, e)
    return t + left


def per_job_bound(setup: SimSetup, seed: int) -> list[float]:
    """lb_j of every job the rules map (refused rows excluded, as in the engine's figures), by trace row."""
    cal = _calendars(setup, seed)
    out = []
    for job in setup.jobs:
        if job.instance < 0:
            continue
        done = _finish_alone(job.submit, job.quantum_seconds, cal[job.backend])
        out.append(float(min(done, setup.duration) - job.submit))
    return out


def srpt_waits(setup: SimSetup, seed: int) -> list[float]:
    """Per mapped job, its wait under clairvoyant preemptive SRPT on its backend (see the module doc)."""
    cal = _calendars(setup, seed)
    waits: dict[int, float] = {}
    for b in range(len(setup.backend_names)):
        arrivals = sorted((j.submit, j.index, j.quantum_seconds) for j in setup.jobs if j.backend == b)
        down = cal[b]
        k = 0  # next outage
        n = 0  # next arrival
        active: list[tuple[int, int, int]] = []  # (remaining, index, submit)
        t = 0
        while n < len(arrivals) or active:
            while n < len(arrivals) and arrivals[n][0] <= t:
                r, idx, work = arrivals[n]
                heapq.heappush(active, (work, idx, r))
                n += 1
            while k < len(down) and down[k][1] <= t:
                k += 1
            if k < len(down) and down[k][0] <= t:
                t = down[k][1]  # down: nothing runs
                continue
            next_arrival = arrivals[n][0] if n < len(arrivals) else None
            if not active:
                assert next_arrival is not None
                t = next_arrival
                continue
            rem, idx, r = heapq.heappop(active)
            horizon = [rem]
            if next_arrival is not None:
                horizon.append(next_arrival - t)
            if k < len(down):
                horizon.append(down[k][0] - t)
            dt = min(horizon)
            t += dt
            if rem - dt > 0:
                heapq.heappush(active, (rem - dt, idx, r))
            else:
                waits[idx] = float(min(t, setup.duration) - r)
    return [waits[j.index] for j in setup.jobs if j.instance >= 0]


@dataclass(frozen=True, slots=True)
class Bound:
    median: float  # provable lower bound of every policy's median wait
    p95: float  # ... and of its p95
    srpt_median: float  # clairvoyant SRPT reference (not a bound)
    srpt_p95: float
    srpt_mean: float  # a lower bound of the mean wait

    def figures(self) -> dict[str, float]:
        return {
            "bound_median_seconds": round(self.median, 1),
            "bound_p95_seconds": round(self.p95, 1),
            "srpt_median_seconds": round(self.srpt_median, 1),
            "srpt_p95_seconds": round(self.srpt_p95, 1),
            "srpt_mean_seconds": round(self.srpt_mean, 1),
        }


def lower_bound(setup: SimSetup, seed: int) -> Bound:
    lb = per_job_bound(setup, seed)
    sr = srpt_waits(setup, seed)
    return Bound(
        median=percentile(lb, 50),
        p95=percentile(lb, 95),
        srpt_median=percentile(sr, 50),
        srpt_p95=percentile(sr, 95),
        srpt_mean=statistics.fmean(sr) if sr else float("nan"),
    )


__all__ = ["Bound", "lower_bound", "per_job_bound", "srpt_waits"]
