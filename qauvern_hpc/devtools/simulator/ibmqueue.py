"""IBM's side of a backend beyond our account: other customers' jobs and the backend's status calendar.
Pure; every draw comes from a `random.Random` seeded by (seed, backend), so a seed fixes the world.

* `external_arrivals`: other customers' jobs (`model: queue`) as (arrival second, work seconds), sorted.
  Poisson arrivals with the diurnal rate `rate x (1 + diurnal x cos(2 pi (h - peak) / 24))`, drawn by
  thinning; work exponential with the scenario's mean, at least 1 s.
* `outage_calendar`: the backend's down intervals (start, end, status, message), sorted, merged where
  they overlap (the earlier one's status and message), clipped to [0, duration).
* `WaitWindow`: IBM's `wait_time_seconds` (created -> running of the jobs started in a trailing window).
* `Others`: the run-time state of all of that for every backend of a run (queues, calendar position).
"""

from __future__ import annotations

import math
import random
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qauvern_hpc.devtools.simulator.setup import SimSetup

from qauvern_hpc.devtools.simulator.metrics import percentile
from qauvern_hpc.devtools.simulator.scenario import BackendLoad

HOUR = 3600
WEEK = 7 * 86400
NEVER = 1 << 62

Interval = tuple[int, int, str, str]  # (start, end, status, message), seconds since the simulation start


def _rng(seed: int, backend: str, what: str) -> random.Random:
    return random.Random(f"{seed}:{backend}:{what}")


def external_arrivals(load: BackendLoad, backend: str, duration: int, seed: int) -> list[tuple[int, int]]:
    """Other customers' jobs on `backend` over [0, duration): (arrival, work seconds), by arrival."""
    ext = load.external
    if load.model != "queue" or ext.rate_per_hour <= 0:
        return []
    rng = _rng(seed, backend, "external")
    peak_rate = ext.rate_per_hour * (1 + ext.diurnal) / HOUR
    out: list[tuple[int, int]] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak_rate)
        if t >= duration:
            return out
        hour = (t / HOUR) % 24
        factor = 1 + ext.diurnal * math.cos(2 * math.pi * (hour - ext.peak_hour) / 24)
        keep = rng.random() < factor / (1 + ext.diurnal)
        work = max(1, round(rng.expovariate(1 / ext.mean_seconds)))
        if keep:
            out.append((int(t), work))


def outage_calendar(
    load: BackendLoad, backend: str, start: datetime, duration: int, seed: int
) -> list[Interval]:
    """The down intervals of `backend` (explicit outages first, then the seeded random ones)."""
    explicit: list[Interval] = []
    for o in load.outages:
        at = o.start if o.start.tzinfo else o.start.replace(tzinfo=UTC)
        s = int((at - start).total_seconds())
        e = s + round(o.hours * HOUR)
        if e > 0 and s < duration:
            explicit.append((max(0, s), min(duration, e), o.status, o.message))
    randoms: list[Interval] = []
    ro = load.random_outages
    if ro.per_week > 0:
        rng = _rng(seed, backend, "outages")
        t = 0.0
        while True:
            t += rng.expovariate(ro.per_week / WEEK)
            if t >= duration:
                break
            length = max(60, round(rng.expovariate(1 / (ro.mean_hours * HOUR))))
            randoms.append((int(t), min(duration, int(t) + length), ro.status, ro.message))
    merged: list[Interval] = []
    for s, e, st, msg in sorted(explicit + randoms):
        if merged and s <= merged[-1][1]:
            ps, pe, pst, pmsg = merged[-1]
            merged[-1] = (ps, max(pe, e), pst, pmsg)  # overlapping: one outage, the first one's status
        else:
            merged.append((s, e, st, msg))
    return merged


class WaitWindow:
    """created -> running of the jobs that started on one backend in the trailing `window` seconds."""

    __slots__ = ("starts", "window")

    def __init__(self, window: int = HOUR) -> None:
        self.window = window
        self.starts: deque[tuple[int, int]] = deque()

    def add(self, t: int, wait: int) -> None:
        self.starts.append((t, wait))

    def quantiles(self, t: int) -> tuple[float | None, float | None]:
        """(p50, p95) at `t`, None when no job started in the window (IBM returns null)."""
        while self.starts and self.starts[0][0] <= t - self.window:
            self.starts.popleft()
        if not self.starts:
            return None, None
        waits = [float(w) for _s, w in self.starts]
        return percentile(waits, 50), percentile(waits, 95)


class Others:
    """Per backend of one run: other customers' queue ([arrival, work left, started] FIFO), the outage
    calendar and where the run is in it, and the wait window. Times passed in never go back."""

    def __init__(self, setup: SimSetup, seed: int) -> None:
        names = setup.backend_names
        loads = setup.backend_loads
        self.arrivals = [external_arrivals(ld, names[b], setup.duration, seed) for b, ld in enumerate(loads)]
        self.next = [0] * len(names)
        self.queue: list[deque[list[int]]] = [deque() for _ in names]
        self.down = [
            outage_calendar(ld, names[b], setup.start, setup.duration, seed) for b, ld in enumerate(loads)
        ]
        self.k = [0] * len(names)
        self.waits = [WaitWindow() for _ in names]

    def arrive(self, t: int) -> None:
        """Other customers' jobs arriving by `t` join their backend's queue."""
        for b, arrivals in enumerate(self.arrivals):
            while self.next[b] < len(arrivals) and arrivals[self.next[b]][0] <= t:
                at, work = arrivals[self.next[b]]
                self.queue[b].append([at, work, 0])
                self.next[b] += 1

    def status_at(self, b: int, t: int) -> tuple[Interval | None, int]:
        """(the outage backend b is in at `t` or None, the next time its status changes)."""
        cal = self.down[b]
        k = self.k[b]
        while k < len(cal) and cal[k][1] <= t:
            k += 1
        self.k[b] = k
        if k == len(cal):
            return None, NEVER
        if cal[k][0] <= t:
            return cal[k], cal[k][1]
        return None, cal[k][0]

    def run_head(self, b: int, t: int, most: int) -> int:
        """The head external job of b runs from `t` for at most `most` seconds; returns how long."""
        head = self.queue[b][0]
        if not head[2]:
            head[2] = 1
            self.waits[b].add(t, t - head[0])
        dt = min(most, head[1])
        head[1] -= dt
        if head[1] <= 0:
            self.queue[b].popleft()
        return dt

    def next_event(self, t: int) -> int:
        """The next arrival or status change after `t`, over every backend."""
        nxt = NEVER
        for b, arrivals in enumerate(self.arrivals):
            nxt = min(nxt, self.status_at(b, t)[1])
            if self.next[b] < len(arrivals):
                nxt = min(nxt, arrivals[self.next[b]][0])
        return nxt


__all__ = ["NEVER", "Interval", "Others", "WaitWindow", "external_arrivals", "outage_calendar"]
