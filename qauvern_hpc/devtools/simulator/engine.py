"""Discrete-event simulation of one IBM Quantum account behind a Slurm cluster. Pure and deterministic.

Time is whole seconds from the start (midnight UTC). What happens to a job (a trace row):

1. **Slurm**: it is submitted at its `submit_time` and pends in its partition's queue (first come, first
   served across the account) until one of the partition's `slots` is free **and** fewer jobs of its
   (instance, backend) pair run than the pair's cap (GrpTRES on the pair license; None = no cap). Jobs
   held by a cap pend (AssocGrpLicense) and others pass them. Caps come from the admission controller
   (`qauvern-hpc` with `admission.enabled`: every `admission.every` seconds the real
   `qauvern_hpc.admission.decide.decide` gets an Observation built from what IBM and Slurm expose at
   that instant, nothing later) or, with admission off, from the old gate (cap 0 on every pair of an
   instance the rebalancer found at its limit). `static` and `qauvern` have no caps.
2. **Start**: the job starts (its wall clock runs from here) and its quantum work joins its backend's
   queue at IBM, tagged with its instance.
3. **IBM's fair share**: a backend runs one thing at a time, and nothing while it is down (the seeded
   outage calendar, `ibmqueue.outage_calendar`). Whenever it is free and up it picks, among the
   instances with work waiting on it, the one with the lowest 28-day usage / allocation (ties: config
   order; within an instance, the job that started first) and runs it for one `slice` (or less: the job's
   remaining work, the instance's limit headroom, the hour's end, the job's deadline, the next outage).
   Other customers' work competes with its own ratio and runs instead of any of our instances whose
   ratio is higher: `model: queue` = a seeded queue of their jobs (`ibmqueue.external_arrivals`), which
   also runs when we have nothing there; `model: hourly` = external work waiting in some hours. Under
   `model: queue` IBM does not preempt: a job (ours or theirs) that has started runs slice after slice
   to its end (or its wall limit, or its instance's limit); fair share only picks the next job. Under
   `model: hourly` the choice is made again at every slice, as in the tables before co-scheduling.
4. **Limits**: an instance whose 28-day usage reached its live limit cannot run: IBM rejects its work and
   the Slurm jobs waiting for it fail ("hit a limit"). Researchers resubmit after `resubmit_delay`.
5. **Wall limit**: a job still short of its quantum work when its time limit runs out ends (TIMEOUT) and
   is resubmitted after `resubmit_delay` for the rest of its work (what it did stays done).
6. **Done**: when its quantum work is complete. Its wait is done - submit, over all its attempts. Slot time
held while waiting at IBM: per attempt, (end - Slurm start) - quantum seconds served in it.

The 28-day usage is kept in hourly buckets (an hour leaves the window as a whole), which is also where
the 24h/3d/7d/14d figures, the per-day usage for net grants and the plots come from. IBM's usage figures
are exact and current (no reporting lag is modelled, so the demand signal's "recent, not yet reported"
term is 0 as good as always).

Every `rebalance_every` seconds (first at t = rebalance_every) the policy sees an IBM snapshot and the Slurm
queue; what it writes (allocations, limits, the gate) applies at once.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from datetime import timedelta

from qauvern_hpc.devtools.simulator.admit import Admission, DecideFn, PairFigures
from qauvern_hpc.devtools.simulator.ibmqueue import NEVER, Others
from qauvern_hpc.devtools.simulator.metrics import RunResult, Series, jain_index, percentile, project_figures
from qauvern_hpc.devtools.simulator.policies import RebalanceView, SimPolicy
from qauvern_hpc.devtools.simulator.setup import DAY, SimSetup
from qauvern_hpc.devtools.simulator.snapshot import instance_snapshot
from qauvern_hpc.planner.model import AccountSnapshot, DemandSignal

HOUR = 3600
WINDOW_HOURS = 28 * 24

# job states
_WAITING_ARRIVAL, _PENDING, _RUNNING, _RETRY, _DONE, _REFUSED = range(6)
_EXTERNAL = -2  # slice_job of a backend running other customers' work (-1: idle)

ProgressFn = Callable[[float], None]


class _Sim:
    def __init__(
        self, setup: SimSetup, policy: SimPolicy, rebalance_every: int, seed: int, decide: DecideFn | None
    ) -> None:
        self.s = setup
        self.policy = policy
        self.every = rebalance_every
        self.seed = seed
        n_inst = len(setup.instance_names)
        n_back = len(setup.backend_names)
        n_hours = setup.duration // HOUR + 2
        self.alloc = list(setup.initial_allocations)
        self.limit: list[int | None] = list(setup.initial_limits)
        self.usage = [[0] * n_hours for _ in range(n_inst)]
        self.daily = [[0] * (setup.duration // DAY + 2) for _ in range(n_inst)]
        self.c28 = [0] * n_inst
        self.used_by_instance = [0] * n_inst
        self.gated = [False] * n_inst
        # external load, model hourly: one flag per backend and hour, seeded by (seed, backend index)
        self.external: list[list[bool]] = []
        for b, load in enumerate(setup.backend_loads):
            rng = random.Random(f"{seed}:{b}:{setup.backend_names[b]}")
            if load.model == "hourly":
                self.external.append([rng.random() < load.external_busy for _ in range(n_hours)])
            else:
                self.external.append([False] * n_hours)
        # model queue: other customers' jobs; both models: the outage calendar
        self.others = Others(setup, seed)
        # admission: per pair cap (None = no cap) and the Slurm jobs running that hold its license
        n_pairs = len(setup.pairs)
        self.pair_inst = [i for i, _b in setup.pairs]
        self.cap: list[int | None] = [None] * n_pairs
        self.pair_running = [0] * n_pairs
        # what the controller learns from, per pair since its last call: [done, quantum s, started, wait s]
        self.learnt = [[0, 0, 0, 0, 0, 0] for _ in range(n_pairs)]
        self.admission: Admission | None = None
        if policy.admission and setup.admission_enabled:
            self.admission = Admission(setup, decide)
        jobs = setup.jobs
        n = len(jobs)
        self.state = [_WAITING_ARRIVAL] * n
        self.done_work = [0] * n
        self.attempt_used = [0] * n
        self.attempt = [0] * n
        self.eligible = [0] * n  # Slurm submit time of the current attempt
        self.deadline = [0] * n
        self.finished = [-1] * n
        self.limit_hit = [False] * n
        self.limit_failures = 0
        self.timeouts = 0
        self.job_timeouts = [0] * n
        self.attempt_start = [0] * n
        self.ibm_started = [False] * n
        self.held = [0] * n  # slot seconds held while not served at IBM, all attempts
        part_index = {p: k for k, p in enumerate(setup.partitions)}
        self.part_of = [part_index[j.partition] for j in jobs]
        self.slots_free: list[float] = [
            float("inf") if x is None else float(x) for x in setup.partition_slots
        ]
        # pending[partition][pair] -> deque of (seq, job)
        self.pending: list[list[deque[tuple[int, int]]]] = [
            [deque() for _ in range(n_pairs)] for _ in setup.partitions
        ]
        self.seq = 0
        # waiting at IBM: running[backend][instance] -> deque of jobs (start order)
        self.running: list[list[deque[int]]] = [[deque() for _ in range(n_inst)] for _ in range(n_back)]
        self.slice_job = [-1] * n_back
        self.current = [-1] * n_back  # model queue: our job IBM is running on the backend (-1: none)
        self.slice_end = [0] * n_back
        self.open_jobs = [0] * n_back
        self.deadlines: list[tuple[int, int, int]] = []
        self.retries: list[tuple[int, int]] = []
        self.ledger: deque[tuple[int, int, int]] = deque()  # (end time, instance, seconds)
        self.wasted = 0.0
        self.used = 0
        self.used_by_project: dict[str, int] = {}
        self.rebalances = self.changed_runs = self.refused_runs = self.alloc_changes = self.moved = 0
        self.series = Series(
            allocation={nm: [] for nm in setup.instance_names},
            usage_28d={nm: [] for nm in setup.instance_names},
            limit={nm: [] for nm in setup.instance_names},
        )
        self.slurm_dirty = True

    # -- helpers ----------------------------------------------------------------------------------------

    def sample(self, t: int) -> None:
        self.series.days.append(t / DAY)
        for i, nm in enumerate(self.s.instance_names):
            self.series.allocation[nm].append(self.alloc[i])
            self.series.usage_28d[nm].append(self.c28[i])
            self.series.limit[nm].append(self.limit[i])

    def end_attempt(self, j: int, t: int) -> None:
        job = self.s.jobs[j]
        if self.attempt_used[j]:
            self.ledger.append((t, job.instance, self.attempt_used[j]))
        self.held[j] += (t - self.attempt_start[j]) - self.attempt_used[j]
        self.attempt_used[j] = 0
        self.pair_running[job.pair] -= 1
        self.slots_free[self.part_of[j]] += 1
        self.slurm_dirty = True
        q = self.running[job.backend][job.instance]
        if j in q:
            q.remove(j)

    def enqueue(self, j: int, t: int) -> None:
        job = self.s.jobs[j]
        self.state[j] = _PENDING
        self.eligible[j] = t
        self.seq += 1
        self.pending[self.part_of[j]][job.pair].append((self.seq, j))
        self.slurm_dirty = True

    def retry_later(self, j: int, t: int) -> None:
        self.state[j] = _RETRY
        heapq.heappush(self.retries, (t + self.s.resubmit_delay, j))

    def complete(self, j: int, t: int) -> None:
        lrn = self.learnt[self.s.jobs[j].pair]
        lrn[0] += 1
        lrn[1] += self.attempt_used[j]
        self.end_attempt(j, t)
        self.state[j] = _DONE
        self.finished[j] = t
        self.open_jobs[self.s.jobs[j].backend] -= 1

    def fail_at_limit(self, j: int, t: int) -> None:
        self.end_attempt(j, t)
        self.limit_hit[j] = True
        self.limit_failures += 1
        self.retry_later(j, t)

    # -- Slurm ------------------------------------------------------------------------------------------

    def schedule_slurm(self, t: int) -> None:
        self.slurm_dirty = False
        for p, queues in enumerate(self.pending):
            while self.slots_free[p] >= 1:
                best: tuple[int, int] | None = None
                best_i = -1
                for k, q in enumerate(queues):
                    if not q or self.gated[self.pair_inst[k]] or (best is not None and q[0][0] > best[0]):
                        continue
                    cap = self.cap[k]
                    if cap is None or self.pair_running[k] < cap:
                        best, best_i = q[0], k
                if best is None:
                    break
                queues[best_i].popleft()
                j = best[1]
                self.slots_free[p] -= 1
                self.pair_running[best_i] += 1
                self.state[j] = _RUNNING
                self.attempt_start[j] = t
                self.ibm_started[j] = False
                self.attempt[j] += 1
                self.deadline[j] = t + self.s.jobs[j].wall_limit_seconds
                heapq.heappush(self.deadlines, (self.deadline[j], j, self.attempt[j]))
                job = self.s.jobs[j]
                self.running[job.backend][job.instance].append(j)

    # -- IBM --------------------------------------------------------------------------------------------

    def at_limit(self, i: int) -> bool:
        lim = self.limit[i]
        return lim is not None and self.c28[i] >= lim

    def dispatch(self, t: int, next_hour: int) -> None:
        for b, queues in enumerate(self.running):
            if self.slice_job[b] != -1:
                continue
            outage, change = self.others.status_at(b, t)
            if outage is not None:
                continue
            best_i = -1
            best_ratio = 0.0
            for i, q in enumerate(queues):
                if not q:
                    continue
                if self.at_limit(i):
                    for j in list(q):
                        self.fail_at_limit(j, t)
                    continue
                a = self.alloc[i]
                ratio = self.c28[i] / a if a > 0 else float("inf")
                if best_i < 0 or ratio < best_ratio:
                    best_i, best_ratio = i, ratio
            load = self.s.backend_loads[b]
            ext = self.others.queue[b]
            cur = self.current[b]
            if cur >= 0 and self.state[cur] == _RUNNING and self.ibm_started[cur]:
                j = cur  # model queue: a job IBM started runs to its end (no preemption)
                best_i = self.s.jobs[j].instance
            elif ext and (ext[0][2] or best_i < 0 or load.external.ratio < best_ratio):
                most = min(self.s.slice_seconds, change - t, self.s.duration - t)
                self.slice_job[b] = _EXTERNAL
                self.slice_end[b] = t + self.others.run_head(b, t, most)
                continue
            elif best_i < 0:
                continue
            elif self.external[b][t // HOUR] and load.external_fairness < best_ratio:
                continue  # other customers' work runs now
            else:
                j = queues[best_i][0]
            job = self.s.jobs[j]
            dt = min(
                self.s.slice_seconds,
                job.quantum_seconds - self.done_work[j],
                next_hour - t,
                self.deadline[j] - t,
                self.s.duration - t,
                change - t,
            )
            if not self.ibm_started[j]:
                self.ibm_started[j] = True
                self.others.waits[b].add(t, t - self.attempt_start[j])
                lrn = self.learnt[job.pair]
                lrn[2] += 1
                lrn[3] += t - self.attempt_start[j]
            lim = self.limit[best_i]
            if lim is not None:
                dt = min(dt, lim - self.c28[best_i])
            # dt > 0: every bound above is positive at an event time
            self.slice_job[b] = j
            self.slice_end[b] = t + dt
            if load.model == "queue":
                self.current[b] = j
            k = t // HOUR
            self.usage[best_i][k] += dt
            self.daily[best_i][t // DAY] += dt
            self.c28[best_i] += dt
            self.used += dt
            self.used_by_instance[best_i] += dt
            self.used_by_project[job.project] = self.used_by_project.get(job.project, 0) + dt
            self.done_work[j] += dt
            self.attempt_used[j] += dt

    # -- admission --------------------------------------------------------------------------------------

    def admit(self, t: int, adm: Admission) -> None:
        s = self.s
        figures: list[PairFigures] = []
        for k, (i, b) in enumerate(s.pairs):
            pending = 0
            oldest_pending: int | None = None
            for queues in self.pending:
                q = queues[k]
                if q:
                    pending += len(q)
                    e = self.eligible[q[0][1]]
                    oldest_pending = e if oldest_pending is None else min(oldest_pending, e)
            queued = started = 0
            oldest_queued: int | None = None
            for j in self.running[b][i]:
                if self.ibm_started[j]:
                    started += 1
                else:
                    queued += 1
                    a = self.attempt_start[j]
                    oldest_queued = a if oldest_queued is None else min(oldest_queued, a)
            figures.append(
                PairFigures(
                    pending,
                    self.pair_running[k],
                    queued,
                    started,
                    oldest_queued,
                    oldest_pending,
                    *self.learnt[k],
                )
            )
            self.learnt[k] = [0, 0, 0, 0, 0, 0]
        backends = []
        for b in range(len(s.backend_names)):
            outage, _change = self.others.status_at(b, t)
            waiting = len(self.others.queue[b]) + sum(len(q) for q in self.running[b])
            if self.slice_job[b] != -1:
                waiting -= 1
            p50, p95 = self.others.waits[b].quantiles(t)
            backends.append((outage, max(0, waiting), p50, p95))
        instances = [(self.c28[i], self.alloc[i], self.limit[i]) for i in range(len(s.instance_names))]
        caps = adm.step(t, backends, instances, figures)
        if caps != self.cap:
            self.cap = caps
            self.slurm_dirty = True

    # -- rebalancing ------------------------------------------------------------------------------------

    def rebalance(self, t: int) -> None:
        s = self.s
        now = s.start + timedelta(seconds=t)
        today = now.date()
        window = s.recent_window
        while self.ledger and self.ledger[0][0] < t - window:
            self.ledger.popleft()
        recent = [0] * len(s.instance_names)
        for _end, i, secs in self.ledger:
            recent[i] += secs
        snaps = []
        demand: dict[str, DemandSignal] = {}
        for i, st in enumerate(s.settings):
            snaps.append(
                instance_snapshot(
                    st, self.alloc[i], self.limit[i], self.c28[i], self.usage[i], self.daily[i], t, s.start
                )
            )
            queued = 0
            count = 0
            oldest = t
            for queues in self.pending:
                for _seq, j in (x for k, q in enumerate(queues) if self.pair_inst[k] == i for x in q):
                    count += 1
                    queued += min(s.jobs[j].wall_limit_seconds, s.max_job_seconds)
                    oldest = min(oldest, self.eligible[j])
            # in flight: Slurm-running QPU jobs, capped time limits (as `rebalance` reads squeue -t RUNNING)
            inflight = sum(
                min(s.jobs[j].wall_limit_seconds, s.max_job_seconds) for q in self.running for j in q[i]
            )
            demand[st.crn] = DemandSignal(
                queued_seconds=float(queued),
                pending_jobs=count,
                oldest_pending_age_seconds=float(t - oldest) if count else 0.0,
                recent_seconds=float(recent[i]),
                inflight_seconds=float(inflight),
            )
        account = AccountSnapshot(
            allocation_budget_seconds=s.budget,
            unallocated_seconds=max(0, s.budget - sum(self.alloc)),
            consumed_seconds=sum(self.c28),
            instances=tuple(snaps),
            account_id="sim",
        )
        view = RebalanceView(
            now=now, today=today, account=account, settings=s.settings, options=s.options, demand=demand
        )
        out = self.policy.rebalance(view)
        self.rebalances += 1
        if out.refused:
            self.refused_runs += 1
            return
        index = {st.crn: i for i, st in enumerate(s.settings)}
        changed = 0
        for crn, value in out.allocations.items():
            i = index[crn]
            if value != self.alloc[i]:
                changed += 1
                self.moved += abs(value - self.alloc[i])
                self.alloc[i] = value
        for crn, lim in out.limits.items():
            self.limit[index[crn]] = lim
        if out.gated is not None and self.admission is None:
            new_gate = [st.crn in out.gated for st in s.settings]
            if new_gate != self.gated:
                self.gated = new_gate
                self.slurm_dirty = True
        if changed:
            self.changed_runs += 1
            self.alloc_changes += changed

    # -- main loop --------------------------------------------------------------------------------------

    def run(self, progress: ProgressFn | None, sample_hours: int) -> RunResult:
        s = self.s
        jobs = s.jobs
        end = s.duration
        t = 0
        next_hour = HOUR
        next_reb = self.every
        adm = self.admission
        next_admit = s.admission_every if adm is not None else NEVER
        arr = 0
        n_jobs = len(jobs)
        next_progress = DAY
        rate = s.budget / (28 * DAY)
        self.sample(0)
        while True:
            # 1. slices that end now
            for b in range(len(self.slice_job)):
                j = self.slice_job[b]
                if j != -1 and self.slice_end[b] <= t:
                    self.slice_job[b] = -1
                    if j >= 0 and self.done_work[j] >= jobs[j].quantum_seconds:
                        self.complete(j, t)
            # 2. the hour turns: the oldest hour leaves the 28-day window
            if t >= next_hour:
                k = t // HOUR
                old = k - WINDOW_HOURS - 1
                if old >= 0:
                    for i in range(len(self.c28)):
                        self.c28[i] -= self.usage[i][old]
                next_hour += HOUR
                if k % sample_hours == 0:
                    self.sample(t)
            # 3. wall limits
            while self.deadlines and self.deadlines[0][0] <= t:
                _d, j, att = heapq.heappop(self.deadlines)
                if self.state[j] == _RUNNING and self.attempt[j] == att:
                    # never inside a slice: slices end by the job's deadline and were closed in step 1
                    lrn = self.learnt[self.s.jobs[j].pair]
                    if not self.ibm_started[j]:  # it left IBM's queue unstarted (Slurm cancelled it)
                        lrn[4], lrn[5] = lrn[4] + 1, max(lrn[5], t - self.attempt_start[j])
                    self.end_attempt(j, t)
                    self.timeouts += 1
                    self.job_timeouts[j] += 1
                    self.retry_later(j, t)
            # 4. resubmissions and 5. new jobs
            while self.retries and self.retries[0][0] <= t:
                _r, j = heapq.heappop(self.retries)
                self.enqueue(j, t)
            while arr < n_jobs and jobs[arr].submit <= t:
                job = jobs[arr]
                if job.instance < 0:
                    self.state[arr] = _REFUSED
                else:
                    self.open_jobs[job.backend] += 1
                    self.enqueue(arr, t)
                arr += 1
            self.others.arrive(t)
            # 6. rebalance
            if t >= next_reb and t < end:
                self.rebalance(t)
                next_reb += self.every
            # 6b. the admission controller (after the rebalance: it reads the new allocations)
            if adm is not None and t >= next_admit and t < end:
                self.admit(t, adm)
                next_admit += s.admission_every
            # 7. Slurm starts jobs, IBM dispatches (failures free slots: repeat until stable)
            for _ in range(1000):
                if self.slurm_dirty:
                    self.schedule_slurm(t)
                self.dispatch(t, next_hour)
                if not self.slurm_dirty:
                    break
            if t >= end:
                break
            if progress is not None and t >= next_progress:
                progress(t / end)
                next_progress = (t // DAY + 1) * DAY
            # next event
            nxt = min(next_hour, next_reb, next_admit, end, self.others.next_event(t))
            if arr < n_jobs:
                nxt = min(nxt, jobs[arr].submit)
            for b, j in enumerate(self.slice_job):
                if j != -1:
                    nxt = min(nxt, self.slice_end[b])
            if self.deadlines:
                nxt = min(nxt, self.deadlines[0][0])
            if self.retries:
                nxt = min(nxt, self.retries[0][0])
            nxt = max(nxt, t + 1) if nxt <= t else nxt
            # purchased time left unused while work waited: the account buys `rate` QPU-seconds per second
            if any(self.open_jobs) and sum(self.c28) < s.budget:
                serving = sum(1 for j in self.slice_job if j >= 0)
                if serving < rate:
                    self.wasted += (rate - serving) * (nxt - t)
            t = nxt
        if progress is not None:
            progress(1.0)
        self.sample(end)
        return self.result()

    def result(self) -> RunResult:
        s = self.s
        waits: list[float] = []
        done = unfinished = refused = hit = 0
        demand_by_project: dict[str, float] = {}
        by_project: dict[str, tuple[list[float], list[int]]] = {}  # waits; [timeouts, held s]
        for j, job in enumerate(s.jobs):
            if self.state[j] == _REFUSED:
                refused += 1
                continue
            demand_by_project[job.project] = demand_by_project.get(job.project, 0.0) + job.quantum_seconds
            if self.limit_hit[j]:
                hit += 1
            if self.state[j] == _DONE:
                done += 1
                w = float(self.finished[j] - job.submit)
            else:
                unfinished += 1
                w = float(s.duration - job.submit)
                if self.state[j] == _RUNNING:  # still holding its slot at the end
                    self.held[j] += (s.duration - self.attempt_start[j]) - self.attempt_used[j]
            waits.append(w)
            pw, pc = by_project.setdefault(job.project, ([], [0, 0]))
            pw.append(w)
            pc[0] += self.job_timeouts[j]
            pc[1] += self.held[j]
        projects, ratios = project_figures(
            s.purchased_seconds, demand_by_project, self.used_by_project, by_project
        )
        instances: dict[str, dict[str, object]] = {}
        for i, nm in enumerate(s.instance_names):
            allocs = self.series.allocation[nm]
            instances[nm] = {
                "used_seconds": self.used_by_instance[i],
                "initial_allocation_seconds": s.initial_allocations[i],
                "final_allocation_seconds": self.alloc[i],
                "mean_allocation_seconds": round(sum(allocs) / len(allocs)) if allocs else 0,
                "final_limit_seconds": self.limit[i],
            }
        return RunResult(
            policy=self.policy.name,
            days=s.days,
            rebalance_every_hours=self.every / HOUR,
            seed=self.seed,
            budget_seconds=s.budget,
            purchased_seconds=s.purchased_seconds,
            used_seconds=self.used,
            wasted_seconds=round(self.wasted),
            jobs_total=len(s.jobs),
            jobs_refused=refused,
            jobs_done=done,
            jobs_unfinished=unfinished,
            wait_median_seconds=percentile(waits, 50),
            wait_p95_seconds=percentile(waits, 95),
            limit_hit_jobs=hit,
            limit_failures=self.limit_failures,
            timeouts=self.timeouts,
            held_wait_seconds=sum(self.held),
            worst_project_p95_seconds=max((p["wait_p95_seconds"] for p in projects.values()), default=0.0),
            admissions=0 if self.admission is None else self.admission.calls,
            jain=jain_index(ratios),
            rebalances=self.rebalances,
            rebalances_changed=self.changed_runs,
            rebalances_refused=self.refused_runs,
            allocation_changes=self.alloc_changes,
            moved_seconds=self.moved,
            instances=instances,
            projects=projects,
            series=self.series,
            waits=waits,
        )


def simulate(
    setup: SimSetup,
    policy: SimPolicy,
    *,
    rebalance_every_seconds: int = 3600,
    seed: int = 1,
    progress: ProgressFn | None = None,
    sample_hours: int = 6,
    decide: DecideFn | None = None,
) -> RunResult:
    """Run `policy` over `setup`. The same inputs and seed give the same result, bit for bit.
    `decide`: the admission decision (default: `qauvern_hpc.admission.decide.decide`, the production one)."""
    if rebalance_every_seconds <= 0:
        raise ValueError("rebalance_every_seconds must be > 0")
    return _Sim(setup, policy, rebalance_every_seconds, seed, decide).run(progress, max(1, sample_hours))


__all__ = ["simulate"]
