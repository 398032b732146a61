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
_LICENSES: dict[tuple[str, str], str] = {}  # pair_license memo (pure function; the hot loop calls it a lot)


def _license(instance: str, backend: str) -> str:
    key = (instance, backend)
    lic = _LICENSES.get(key)
    if lic is None:
        lic = _LICENSES[key] = pair_license(instance, backend)
    return lic


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


def _not_serving_detail(b: BackendView) -> str:
    if b.status != "online":
        return f"{b.name} is {b.status} ({b.message or 'no message'})"
    return f"{b.name} is online but not running jobs ({b.message})"


def _limit_detail(i: InstanceView, in_flight: float) -> str:
    """Why the instance is closed at its limit (the caller checked that it is)."""
    limit = i.limit_seconds
    used = i.consumed_seconds
    if limit is not None and used >= limit:
        return f"{i.name} reached its IBM limit ({used:,.0f} of {limit:,} s)"
    if i.limit_reached:
        of = f" of {limit:,}" if limit is not None else ""
        return f"{i.name} reached its IBM limit (IBM reports usage_limit_reached; {used:,.0f}{of} s)"
    return (
        f"{i.name} would reach its IBM limit with the work in flight "
        f"({used:,.0f} s used + ~{in_flight:,.0f} s in flight of {limit or 0:,} s)"
    )


class _Cand:
    """One open pair with pending jobs, during the split of its backend's budget (mutable scratch)."""

    __slots__ = ("admitted", "blocked_by_limit", "index", "pair", "probe")

    def __init__(self, index: int, pair: PairView) -> None:
        self.index = index
        self.pair = pair
        self.admitted = 0
        self.probe = False
        self.blocked_by_limit = False


def _previous(
    state: ControllerState, pairs: tuple[PairView, ...], licenses: list[str]
) -> list[PairDecision | None]:
    """Each observed pair's last decision (None: none), by position when the pairs kept their order (the
    usual case: no dict to build), else by license."""
    if state.last is None:
        return [None] * len(pairs)
    last = state.last.pairs
    if len(last) == len(pairs):
        for lp, p in zip(last, pairs, strict=True):
            if lp.instance != p.instance or lp.backend != p.backend:
                break
        else:
            return list(last)
    by_license = {_license(pd.instance, pd.backend): pd for pd in last}
    return [by_license.get(lic) for lic in licenses]


def decide(
    obs: Observation, state: ControllerState, settings: AdmissionSettings
) -> tuple[Decision, ControllerState]:
    """Decide every observed pair's cap (see the module docstring); returns the decision and the new state."""
    now = obs.now
    pairs = obs.pairs
    backends = obs.backends
    instances = obs.instances
    default_service = settings.default_job_seconds
    licenses = [_license(p.instance, p.backend) for p in pairs]
    prev = _previous(state, pairs, licenses)

    # Learn (from this observation only): service time per backend, our IBM wait per pair.
    service = dict(state.service_ewma)
    wait = dict(state.wait_ewma)
    for p, lic in zip(pairs, licenses, strict=True):
        if p.done_jobs > 0:
            service[p.backend] = _ewma(service.get(p.backend), p.done_quantum_seconds, p.done_jobs)
        if p.started_jobs > 0:
            wait[lic] = _ewma(wait.get(lic), p.started_wait_seconds, p.started_jobs)
    bad_polls: dict[str, int] = {}
    serving: dict[str, bool] = {}
    for bv in backends.values():
        serving[bv.name] = ok = bv.serving
        if not ok:
            bad_polls[bv.name] = state.bad_polls.get(bv.name, 0) + 1

    # Work in flight per instance (all backends), for the limit lookahead and IBM's fair-share order: a
    # whole job per job queued at IBM, half a job per job running there, a whole job per Slurm-running job
    # that has not reached IBM yet; each at the backend's learnt service time.
    in_flight: dict[str, float] = {}
    for p in pairs:
        at_ibm = p.ibm_queued + p.ibm_running
        jobs = p.ibm_queued + 0.5 * p.ibm_running + (p.running - at_ibm if p.running > at_ibm else 0)
        if jobs:
            w = jobs * service.get(p.backend, default_service)
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
            if b.observed_at > 0.0 and now - b.observed_at > age:
                age = now - b.observed_at
            if i.observed_at > 0.0 and now - i.observed_at > age:
                age = now - i.observed_at
        if age > hold_after:
            out[k] = _stale(p, prev[k], age, settings)
            continue
        assert b is not None and i is not None
        if not serving[p.backend]:
            out[k] = (0, BACKEND_NOT_SERVING, _not_serving_detail(b))
            continue
        lim = i.limit_seconds
        if i.limit_reached or (lim is not None and i.consumed_seconds + in_flight.get(i.name, 0.0) >= lim):
            out[k] = (0, LIMIT_REACHED, _limit_detail(i, in_flight.get(i.name, 0.0)))
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
            w_p = max(p.oldest_ibm_queued_age or 0.0, wait.get(_LICENSES[p.instance, p.backend], 0.0))
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
    start = ratios.copy()  # IBM's order before this split, for the words
    for _ in range(k_b):
        best = -1
        best_r = _INF
        best_name = ""
        for j, c in enumerate(cands):
            p = c.pair
            if c.admitted >= p.pending:
                continue
            if headroom[p.instance] <= 0.0:
                c.blocked_by_limit = True
                continue
            r = ratios[j]
            if best < 0 or r < best_r or (r == best_r and p.instance < best_name):
                best, best_r, best_name = j, r, p.instance
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
                mine = start[j]
                theirs = start[cands.index(first)]
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
    prev: list[PairDecision | None],
    service: dict[str, float],
    wait: dict[str, float],
    bad_polls: dict[str, int],
) -> tuple[Decision, ControllerState]:
    """Step 5 (anti-thrash) and the new state."""
    now = obs.now
    last_change = dict(state.last_change)
    decided: list[PairDecision] = []
    for k, (p, lic, o) in enumerate(zip(obs.pairs, licenses, out, strict=True)):
        assert o is not None
        cap, reason, detail = o
        last = prev[k]
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
