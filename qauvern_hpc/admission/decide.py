"""The admission decision: per (instance, backend) pair, how many QPU jobs may hold Slurm resources now.
Pure and deterministic: `decide(observation, state, settings)` -> (Decision, new state).

Contract (design memo issue 12, section 3):
1. Staleness: IBM unread for longer than `hold_for` -> each pair takes its resource's fail mode (open:
   cap None, closed: cap 0); unread for less (but for more than two periods) -> the previous cap is kept
   (reason HOLD).
2. Hard closes (cap 0): the backend is not serving (IBM status/message), or the instance reached its
   limit (IBM's usage_limit_reached, or its usage plus the work already in flight reaches the limit).
3. A per-backend budget K_b of jobs IBM should start within `max_ibm_wait`, from IBM's wait estimate
   (p50), else its queue length x the learnt service time, and our own queued jobs' head-of-line age,
   split among pairs in IBM's fair-share order (lowest (consumed + in flight)/allocation first), one job
   at a time, never more than a pair's pending count, never starving a pair (the probe: an open pair
   with pending jobs and nothing in flight gets one), never below what already runs.
4. cap = running + admitted; cap None (no limit) when nothing is held back.
5. Anti-thrash: hard closes apply at once, reopen on the first good poll, soft changes at most once per
   `min_dwell` per pair.

Invariants: every observed pair gets exactly one PairDecision, in the observation's order; a cap is None
or >= 0; a not-serving backend's pairs are 0; a soft cap (OPEN/ADMITTED/IBM_QUEUE/FAIR_SHARE) is None
or >= the pair's running count; the new state is learnt from the observation only (service and wait
EWMAs from our own finished/started IBM jobs). O(pairs + budget) per call, standard library only.
"""

from __future__ import annotations

import math

from qauvern_hpc.admission.model import (
    ADMITTED,
    BACKEND_NOT_SERVING,
    FAILED_CLOSED,
    FAILED_OPEN,
    FAIR_SHARE,
    HOLD,
    IBM_QUEUE,
    LIMIT_REACHED,
    OPEN,
    AdmissionSettings,
    BackendView,
    ControllerState,
    Decision,
    InstanceView,
    Observation,
    PairDecision,
    PairView,
    pair_license,
)

EWMA_ALPHA = 0.2  # weight of one new measurement in the learnt service/wait times
SOFT_REASONS = frozenset({OPEN, ADMITTED, IBM_QUEUE, FAIR_SHARE})
_INF = math.inf


def _dur(seconds: float) -> str:
    """A duration in plain words: '45 s', '~14 min', '~3.5 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def _ewma(old: float | None, total: float, n: int) -> float:
    """EWMA after `n` measurements whose sum is `total` (each weighted EWMA_ALPHA)."""
    mean = total / n
    if old is None:
        return mean
    keep = (1.0 - EWMA_ALPHA) ** n
    return old * keep + mean * (1.0 - keep)


def _in_flight_work(p: PairView, service: float) -> float:
    """Estimated quantum seconds still to be used by the pair's jobs already admitted: queued at IBM (a whole
    job each), running at IBM (half a job each, on average), running in Slurm but not yet at IBM (whole)."""
    at_ibm = p.ibm_queued + p.ibm_running
    return (p.ibm_queued + 0.5 * p.ibm_running + max(0, p.running - at_ibm)) * service


def _not_serving_detail(b: BackendView) -> str:
    if b.status != "online":
        return f"{b.name} is {b.status} ({b.message or 'no message'})"
    return f"{b.name} is online but not running jobs ({b.message})"


def _limit_detail(i: InstanceView, in_flight: float) -> str | None:
    """Why the instance is closed at its limit, or None when it is not."""
    limit = i.limit_seconds
    used = i.consumed_seconds
    if limit is not None and used >= limit:
        return f"{i.name} reached its IBM limit ({used:,.0f} of {limit:,} s)"
    if i.limit_reached:
        of = f" of {limit:,}" if limit is not None else ""
        return f"{i.name} reached its IBM limit (IBM reports usage_limit_reached; {used:,.0f}{of} s)"
    if limit is not None and used + in_flight >= limit:
        return (
            f"{i.name} would reach its IBM limit with the work in flight "
            f"({used:,.0f} s used + ~{in_flight:,.0f} s in flight of {limit:,} s)"
        )
    return None


class _Cand:
    """One open pair with pending jobs, during the split of its backend's budget (mutable scratch)."""

    __slots__ = ("admitted", "blocked_by_limit", "index", "pair", "probe")

    def __init__(self, index: int, pair: PairView) -> None:
        self.index = index
        self.pair = pair
        self.admitted = 0
        self.probe = False
        self.blocked_by_limit = False


def decide(
    obs: Observation, state: ControllerState, settings: AdmissionSettings
) -> tuple[Decision, ControllerState]:
    """Decide every observed pair's cap (see the module docstring); returns the decision and the new state."""
    now = obs.now
    pairs = obs.pairs
    backends = obs.backends
    instances = obs.instances
    default_service = settings.default_job_seconds
    prev: dict[str, PairDecision] = {}
    if state.last is not None:
        for pd in state.last.pairs:
            prev[pd.license] = pd
    licenses = [pair_license(p.instance, p.backend) for p in pairs]

    # Learn (from this observation only): service time per backend, our IBM wait per pair.
    service = dict(state.service_ewma)
    wait = dict(state.wait_ewma)
    for p, lic in zip(pairs, licenses, strict=True):
        if p.done_jobs > 0:
            service[p.backend] = _ewma(service.get(p.backend), p.done_quantum_seconds, p.done_jobs)
        if p.started_jobs > 0:
            wait[lic] = _ewma(wait.get(lic), p.started_wait_seconds, p.started_jobs)
    bad_polls: dict[str, int] = {}
    for bv in backends.values():
        if not bv.serving:
            bad_polls[bv.name] = state.bad_polls.get(bv.name, 0) + 1

    # Work in flight per instance (all backends), for the limit lookahead and IBM's fair-share order.
    in_flight: dict[str, float] = {}
    for p in pairs:
        w = _in_flight_work(p, service.get(p.backend, default_service))
        in_flight[p.instance] = in_flight.get(p.instance, 0.0) + w

    ibm_age = _INF if obs.ibm_read_at is None else now - obs.ibm_read_at
    hold_after = 2.0 * settings.period_seconds
    out: list[tuple[int | None, str, str] | None] = [None] * len(pairs)
    by_backend: dict[str, list[_Cand]] = {}
    for k, p in enumerate(pairs):
        b = backends.get(p.backend)
        i = instances.get(p.instance)
        age = ibm_age
        if b is None or i is None:
            age = _INF
        else:
            if b.observed_at > 0.0:
                age = max(age, now - b.observed_at)
            if i.observed_at > 0.0:
                age = max(age, now - i.observed_at)
        if age > hold_after:
            out[k] = _stale(p, prev.get(licenses[k]), age, settings)
            continue
        assert b is not None and i is not None
        if not b.serving:
            out[k] = (0, BACKEND_NOT_SERVING, _not_serving_detail(b))
            continue
        why = _limit_detail(i, in_flight.get(i.name, 0.0))
        if why is not None:
            out[k] = (0, LIMIT_REACHED, why)
            continue
        if p.pending <= 0:
            out[k] = (None, OPEN, f"no job of {p.instance} pending for {p.backend}")
            continue
        by_backend.setdefault(p.backend, []).append(_Cand(k, p))

    # Budget per backend, split in IBM's fair-share order (backends in name order: deterministic).
    headroom: dict[str, float] = {}
    for name, i in instances.items():
        lim = i.limit_seconds
        headroom[name] = _INF if lim is None else lim - i.consumed_seconds - in_flight.get(name, 0.0)
    for bname in sorted(by_backend):
        _split(
            by_backend[bname], backends[bname], instances, service, wait, in_flight, headroom, settings, out
        )

    return _finish(obs, state, settings, licenses, out, prev, service, wait, bad_polls)


def _stale(
    p: PairView, last: PairDecision | None, age: float, settings: AdmissionSettings
) -> tuple[int | None, str, str]:
    """Step 1: IBM not read recently: hold the last decision for `hold_for`, then the resource's fail mode."""
    unread = "never read" if age == _INF else f"not read for {age:.0f} s"
    if age <= settings.hold_for_seconds and last is not None:
        shown = "no limit" if last.cap is None else f"cap {last.cap}"
        hold = f"{settings.hold_for_seconds:.0f} s"
        return (
            last.cap,
            HOLD,
            f"IBM {unread}: keeping the last decision for {p.backend} ({shown}) up to {hold}",
        )
    if p.fail_mode == "open":
        return (None, FAILED_OPEN, f"IBM {unread}: {p.backend} fails open (no limit)")
    return (0, FAILED_CLOSED, f"IBM {unread}: {p.backend} fails closed")


def _split(
    cands: list[_Cand],
    b: BackendView,
    instances: dict[str, InstanceView],
    service: dict[str, float],
    wait: dict[str, float],
    in_flight: dict[str, float],
    headroom: dict[str, float],
    settings: AdmissionSettings,
    out: list[tuple[int | None, str, str] | None],
) -> None:
    """Steps 3-4 for one backend: its budget K_b, water-filled one job at a time in IBM's order."""
    svc = service.get(b.name, settings.default_job_seconds)
    svc = max(svc, 1.0)
    # Estimated wait for a new job: IBM's p50, else its queue x our service time; at least what our own
    # queued jobs show (head-of-line age, learnt wait).
    w_ibm = b.wait_p50_seconds if b.wait_p50_seconds is not None else b.length_queue * svc
    w = w_ibm
    not_at_ibm = 0
    for c in cands:
        p = c.pair
        if p.ibm_queued > 0:
            w_p = max(p.oldest_ibm_queued_age or 0.0, wait.get(pair_license(p.instance, p.backend), 0.0))
            w = max(w, w_p)
        not_at_ibm += max(0, p.running - p.ibm_queued - p.ibm_running)
    max_wait = settings.max_ibm_wait_seconds
    k_raw = math.ceil((max_wait - w) / svc) if w < max_wait else 0
    k_b = min(max(0, k_raw - not_at_ibm), settings.burst * len(cands))

    # Water-fill in IBM's order: lowest (consumed + in flight + admitted)/allocation first.
    def ratio(c: _Cand) -> float:
        i = instances[c.pair.instance]
        alloc = i.allocation_seconds
        used = i.consumed_seconds + in_flight.get(i.name, 0.0)
        return used / alloc if alloc > 0 else _INF if used > 0 else 0.0

    ratios = [ratio(c) for c in cands]
    for _ in range(k_b):
        best = -1
        for j, c in enumerate(cands):
            if c.admitted >= c.pair.pending:
                continue
            if headroom[c.pair.instance] <= 0.0:
                c.blocked_by_limit = True
                continue
            if best < 0 or (ratios[j], c.pair.instance) < (ratios[best], cands[best].pair.instance):
                best = j
        if best < 0:
            break
        c = cands[best]
        c.admitted += 1
        name = c.pair.instance
        in_flight[name] = in_flight.get(name, 0.0) + svc
        headroom[name] -= svc
        ratios[best] = ratio(c)  # one pair per instance on a backend

    # Probe: an open pair with pending jobs and nothing in flight may always start one.
    if settings.probe:
        for c in cands:
            p = c.pair
            if c.admitted == 0 and p.running == 0 and p.ibm_queued + p.ibm_running == 0:
                if headroom[p.instance] > 0.0:
                    c.admitted = 1
                    c.probe = True
                    headroom[p.instance] -= svc
                else:
                    c.blocked_by_limit = True

    served = [c for c in cands if c.admitted > 0 and not c.probe]
    within = _dur(max_wait)
    for j, c in enumerate(cands):
        p = c.pair
        of = f"admitted {c.admitted} of {p.pending} pending"
        if c.admitted >= p.pending:
            out[c.index] = (
                None,
                OPEN,
                f"{b.name} should start all {p.pending} pending of {p.instance} within {within}",
            )
            continue
        cap = p.running + c.admitted
        probe = " (a probe)" if c.probe else ""
        if c.blocked_by_limit:
            i = instances[p.instance]
            lim = i.limit_seconds or 0
            left = max(0.0, lim - i.consumed_seconds)
            detail = (
                f"{p.instance} is near its IBM limit ({left:,.0f} of {lim:,} s left, in flight counted): {of}"
            )
            out[c.index] = (cap, LIMIT_REACHED, detail)
        elif k_b == 0:
            if w >= max_wait:
                detail = f"IBM's queue on {b.name}: a new job would wait {_dur(w)} > {within}: {of}{probe}"
            else:
                detail = (
                    f"{b.name}: {not_at_ibm} job(s) started in Slurm reach IBM's queue first: {of}{probe}"
                )
            out[c.index] = (cap, IBM_QUEUE, detail)
        else:
            first = next((o for o in served if o.pair.instance != p.instance), None)
            if first is not None and (c.probe or not c.admitted):
                mine = ratios[j]
                theirs = ratio(first)
                detail = (
                    f"{b.name} can start ~{k_b} more job(s) in {within}; IBM serves {first.pair.instance} "
                    f"first ({theirs:.0%} of its allocation used vs {mine:.0%}): {of}{probe}"
                )
                out[c.index] = (cap, FAIR_SHARE, detail)
            else:
                detail = f"{b.name} can start ~{k_b} more job(s) within {within}: {of}{probe}"
                out[c.index] = (cap, ADMITTED, detail)


def _finish(
    obs: Observation,
    state: ControllerState,
    settings: AdmissionSettings,
    licenses: list[str],
    out: list[tuple[int | None, str, str] | None],
    prev: dict[str, PairDecision],
    service: dict[str, float],
    wait: dict[str, float],
    bad_polls: dict[str, int],
) -> tuple[Decision, ControllerState]:
    """Step 5 (anti-thrash) and the new state."""
    now = obs.now
    last_change = dict(state.last_change)
    decided: list[PairDecision] = []
    for p, lic, o in zip(obs.pairs, licenses, out, strict=True):
        assert o is not None
        cap, reason, detail = o
        last = prev.get(lic)
        if (
            last is not None
            and reason in SOFT_REASONS
            and last.reason in SOFT_REASONS
            and last.cap != cap
            and now - last_change.get(lic, -_INF) < settings.min_dwell_seconds
        ):
            # A soft change within min_dwell: keep the last cap (never below what runs).
            kept = None if last.cap is None else max(last.cap, p.running)
            if kept == last.cap:
                decided.append(last)
                continue
            cap, reason, detail = kept, last.reason, last.detail
        if last is None or last.cap != cap:
            last_change[lic] = now
        since = last.since if last is not None and last.reason == reason else now
        if last is not None and last.cap == cap and last.reason == reason and last.detail == detail:
            decided.append(last)
        else:
            decided.append(PairDecision(p.instance, p.backend, cap, reason, detail, since))
    decision = Decision(decided_at=now, pairs=tuple(decided))
    new_state = ControllerState(
        last=decision,
        last_change=last_change,
        service_ewma=service,
        wait_ewma=wait,
        bad_polls=bad_polls,
    )
    return decision, new_state


__all__ = ["EWMA_ALPHA", "SOFT_REASONS", "decide"]
