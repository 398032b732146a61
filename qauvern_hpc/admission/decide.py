"""The admission decision: per (instance, backend) pair, how many QPU jobs may hold Slurm resources now.
Pure and deterministic: `decide(observation, state, settings)` -> (Decision, new state).

Contract (design memo issue 12, section 3):
1. Staleness: IBM unread for longer than `hold_for` -> each pair takes its resource's fail mode (open:
   cap None, closed: cap 0); unread for less (but for more than two periods) -> the previous cap is kept
   (reason HOLD).
2. Hard closes (cap 0): the backend is not serving (IBM status/message), or the instance reached its
   limit (IBM's usage_limit_reached, or its usage plus the work already in flight reaches the limit).
3. A per-backend budget K_b of jobs IBM should start within `max_ibm_wait`, from the estimated wait W_b,
   split among pairs in IBM's fair-share order (lowest (consumed + in flight)/allocation first), one job
   at a time, never more than a pair's pending count, never starving a pair (the probe: an open pair
   with pending jobs and nothing in flight gets one), never below what already runs.
   W_b = max(IBM's p50 when exposed, length_queue x the learnt service time, our head-of-line age and
   learnt wait): p50 comes from jobs that already started and misses a sudden queue.
4. cap = running + admitted. Cap None (no limit) when nothing is held back AND the budget is clearly not
   binding (W_b <= open_below x max_ibm_wait); otherwise a pair with nothing held back keeps a standing cap
   (running + admitted + its share of the budget left, at most `burst`, at least the probe's one), so a
   burst submitted between two periods starts only what IBM should serve in time. Once capped, a pair
   keeps its cap until W_b falls below half that threshold.
5. Back-off: a pair whose job left IBM's queue without running after waiting at least `max_ibm_wait` (its
   wall limit ran out while IBM served others first: IBM's fair share put it behind) is closed (cap 0,
   BACKED_OFF: what runs goes on, nothing new starts, not even into the slot of a job that ends) for that
   wait, doubled on every further loss, at most `lost_backoff_max`; the first job of the pair IBM starts
   ends it, and so does the instance's usage/allocation falling by a quarter (a new allocation moves it up
   IBM's fair-share order). Its pending jobs wait in Slurm, holding no node, instead of probing a queue
   that just proved it will not serve them.
6. Anti-thrash: hard closes apply at once, reopen on the first good poll, soft changes at most once per
   `min_dwell` per pair; a standing cap of a pair with nothing pending is not rewritten while the room it
   leaves above `running` stays within [min(1, wanted), wanted + cap_slack] (each change is a write).

Invariants: every observed pair gets exactly one PairDecision, in the observation's order; a cap is None
or >= 0; a not-serving backend's pairs are 0; a soft cap (OPEN/ADMITTED/IBM_QUEUE/FAIR_SHARE) is None
or >= the pair's running count; the new state is learnt from the observation only (service and wait
EWMAs from our own finished/started IBM jobs). O(pairs + budget) per call, standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from qauvern_hpc.admission.model import (
    ADMITTED,
    BACKED_OFF,
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
)
from qauvern_hpc.policy.licenses import pair_license

EWMA_ALPHA = 0.2  # weight of one new measurement in the learnt service/wait times
SOFT_REASONS = frozenset({OPEN, ADMITTED, IBM_QUEUE, FAIR_SHARE})
_INF = math.inf
RATIO_REOPENS = 0.75
"""A back-off ends when the instance's usage/allocation falls below this fraction of its value at the loss."""
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
    backoff = _learn_backoff(state.backoff, pairs, licenses, instances, now, settings)
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
    open_on: dict[str, list[int]] = {}  # backend -> the open pairs on it (pending or not)
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
        off = backoff.get(licenses[k])
        if off is not None and off[0] > now:
            detail = (
                f"a job of {p.instance} left IBM's queue on {p.backend} unstarted after waiting "
                f"{_dur(off[1])}: nothing new starts for {_dur(off[0] - now)} (back-off)"
            )
            out[k] = (0, BACKED_OFF, detail)
            continue
        open_on.setdefault(p.backend, []).append(k)

    # Budget per backend, split in IBM's fair-share order (backends in name order: deterministic).
    headroom: dict[str, float] = {}
    for name, i in instances.items():
        lim = i.limit_seconds
        headroom[name] = _INF if lim is None else lim - i.consumed_seconds - in_flight.get(name, 0.0)
    for bname in sorted(open_on):
        _backend(
            open_on[bname],
            pairs,
            licenses,
            prev,
            backends[bname],
            instances,
            service,
            wait,
            in_flight,
            headroom,
            settings,
            out,
        )

    return _finish(obs, state, settings, licenses, out, prev, service, wait, bad_polls, backoff)


def _learn_backoff(
    old: dict[str, tuple[float, float, float]],
    pairs: tuple[PairView, ...],
    licenses: list[str],
    instances: Mapping[str, InstanceView],
    now: float,
    settings: AdmissionSettings,
) -> dict[str, tuple[float, float, float]]:
    """Step 5's state: license -> (back off until, its length, the instance's fair-share ratio then). A start
    ends it, and so does the instance's ratio falling below `RATIO_REOPENS` of what it was (a rebalance
    raised its allocation: IBM's order has changed, so the loss says nothing about the queue any more). A
    loss after a wait of at least max_ibm_wait sets it to max(that wait, twice the last length), at most
    lost_backoff_max. A loss during a back-off (a job admitted before it) does not double it. An expired
    back-off keeps its length (the next loss doubles it) until a job of the pair starts."""
    out = dict(old)
    for p, lic in zip(pairs, licenses, strict=True):
        ratio = _ratio(instances.get(p.instance))
        if p.started_jobs > 0:
            out.pop(lic, None)
        elif p.lost_jobs > 0 and p.lost_wait_seconds >= settings.max_ibm_wait_seconds:
            until, last, _was = old.get(lic, (0.0, 0.0, ratio))
            grow = last if until > now else 2.0 * last
            length = min(max(p.lost_wait_seconds, grow), settings.lost_backoff_max_seconds)
            out[lic] = (max(until, now + length), length, ratio)
        elif lic in out and ratio < RATIO_REOPENS * out[lic][2]:
            out.pop(lic)
    return out


def _ratio(i: InstanceView | None) -> float:
    """IBM's fair-share key of an instance: usage over allocation (inf when unknown or unallocated)."""
    if i is None or i.allocation_seconds <= 0:
        return _INF
    return i.consumed_seconds / i.allocation_seconds


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


def _backend(
    ks: list[int],
    pairs: tuple[PairView, ...],
    licenses: list[str],
    prev: list[PairDecision | None],
    b: BackendView,
    instances: dict[str, InstanceView],
    service: dict[str, float],
    wait: dict[str, float],
    in_flight: dict[str, float],
    headroom: dict[str, float],
    settings: AdmissionSettings,
    out: list[tuple[int | None, str, str] | None],
) -> None:
    """Steps 3-4 for one backend's open pairs (`ks`): the estimated wait W_b, the budget, its split among
    pairs with pending jobs, and the standing caps of the others while the budget is constrained."""
    svc = max(service.get(b.name, settings.default_job_seconds), 1.0)
    # W_b: the largest of IBM's p50 (trailing: it misses a sudden queue), the queue x our service time, and
    # what our own queued jobs show (head-of-line age, learnt wait).
    w = b.length_queue * svc
    if b.wait_p50_seconds is not None and b.wait_p50_seconds > w:
        w = b.wait_p50_seconds
    not_at_ibm = 0
    cands: list[_Cand] = []
    for k in ks:
        p = pairs[k]
        if p.ibm_queued > 0:
            w_p = max(p.oldest_ibm_queued_age or 0.0, wait.get(licenses[k], 0.0))
            if w_p > w:
                w = w_p
        at_ibm = p.ibm_queued + p.ibm_running
        if p.running > at_ibm:
            not_at_ibm += p.running - at_ibm
        if p.pending > 0:
            cands.append(_Cand(k, p))
    max_wait = settings.max_ibm_wait_seconds
    k_raw = math.ceil((max_wait - w) / svc) if w < max_wait else 0
    k_free = max(0, k_raw - not_at_ibm)
    within = _dur(max_wait)
    open_below = settings.open_below * max_wait
    constrained = w > open_below
    pool: list[_Cand] = []  # open pairs that keep a standing cap for new arrivals
    left = k_free
    if cands:
        left = _split(cands, b, instances, w, svc, k_free, not_at_ibm, headroom, in_flight, settings, out)
        for c in cands:
            if out[c.index] is None:  # everything pending admitted
                if constrained:
                    pool.append(c)
                else:
                    p = c.pair
                    text = f"{b.name} should start all {p.pending} pending of {p.instance} within {within}"
                    out[c.index] = (None, OPEN, text)
    for k in ks:
        p = pairs[k]
        if p.pending > 0:
            continue
        last = prev[k]
        # Hysteresis on "constrained": a pair that kept a standing cap keeps it until W_b falls to half the
        # threshold (no cap/no-cap flapping around it).
        kept = last is not None and last.cap is not None and last.reason in SOFT_REASONS
        if constrained or (kept and w > 0.5 * open_below):
            pool.append(_Cand(k, p))
        else:
            out[k] = (None, OPEN, f"no job of {p.instance} pending for {b.name}")
    if pool:
        _standing(pool, b, w, svc, left, headroom, settings, out)


def _split(
    cands: list[_Cand],
    b: BackendView,
    instances: dict[str, InstanceView],
    w: float,
    svc: float,
    k_free: int,
    not_at_ibm: int,
    headroom: dict[str, float],
    in_flight: dict[str, float],
    settings: AdmissionSettings,
    out: list[tuple[int | None, str, str] | None],
) -> int:
    """The budget of one backend water-filled among its pairs with pending jobs, one job at a time in IBM's
    order. Leaves `out` None for a pair whose pending jobs were all admitted (the caller decides whether it
    keeps a cap); returns the budget left (probes do not use it)."""
    max_wait = settings.max_ibm_wait_seconds
    k_b = min(k_free, settings.burst * len(cands))

    # Water-fill in IBM's order: lowest (consumed + in flight + admitted)/allocation first.
    def ratio(c: _Cand) -> float:
        i = instances[c.pair.instance]
        alloc = i.allocation_seconds
        used = i.consumed_seconds + in_flight.get(i.name, 0.0)
        return used / alloc if alloc > 0 else _INF if used > 0 else 0.0

    ratios = [ratio(c) for c in cands]
    start = ratios.copy()  # IBM's order before this split, for the words
    spent = 0
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
        spent += 1
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
    return k_free - spent


def _standing(
    pool: list[_Cand],
    b: BackendView,
    w: float,
    svc: float,
    left: int,
    headroom: dict[str, float],
    settings: AdmissionSettings,
    out: list[tuple[int | None, str, str] | None],
) -> None:
    """Standing caps on a constrained backend for pairs with nothing held back (nothing pending, or all of
    it admitted): running + admitted + a share of the budget left for jobs not submitted yet (at most
    `burst`; at least the probe's one for a pair with nothing in flight), so a burst submitted between two
    periods starts only what IBM should serve in time, and the rest pends until the next decision."""
    share = min(settings.burst, -(-left // len(pool))) if left > 0 else 0
    wait_words = f"a new job would wait {_dur(w)} at IBM"
    for c in pool:
        p = c.pair
        room = share
        h = headroom[p.instance]
        if h < _INF:
            room = min(room, max(0, math.ceil(h / svc)))
        probe = ""
        nothing_in_flight = p.running == 0 and p.ibm_queued + p.ibm_running == 0 and c.admitted == 0
        if room == 0 and settings.probe and nothing_in_flight and h > 0.0:
            room, probe = 1, " (a probe)"
        cap = p.running + c.admitted + room
        if p.pending > 0:
            head = f"{b.name} should start all {p.pending} pending of {p.instance} in time"
        else:
            head = f"no job of {p.instance} pending for {b.name}"
        if probe:
            detail = f"{head}; {wait_words}: a standing cap lets one start at once (a probe)"
            out[c.index] = (cap, IBM_QUEUE, detail)
        elif room > 0:
            detail = f"{head}; {wait_words}: a standing cap lets {room} more start at once"
            out[c.index] = (cap, ADMITTED, detail)
        elif h <= 0.0 or (h < _INF and share > 0):
            out[c.index] = (cap, LIMIT_REACHED, f"{head}; {p.instance} is near its IBM limit: no more start")
        else:
            out[c.index] = (cap, IBM_QUEUE, f"{head}; {wait_words}, the budget is spent: no more start")


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
    backoff: dict[str, tuple[float, float, float]],
) -> tuple[Decision, ControllerState]:
    """Step 6 (anti-thrash) and the new state."""
    now = obs.now
    last_change = dict(state.last_change)
    decided: list[PairDecision] = []
    for k, (p, lic, o) in enumerate(zip(obs.pairs, licenses, out, strict=True)):
        assert o is not None
        cap, reason, detail = o
        last = prev[k]
        if (
            last is not None
            and p.pending == 0
            and cap is not None
            and last.cap is not None
            and reason in SOFT_REASONS
            and last.reason in SOFT_REASONS
            and min(1, cap - p.running) <= last.cap - p.running <= cap - p.running + settings.cap_slack
        ):
            # A standing cap that only tracks `running`: kept while its room stays in the band (no write).
            decided.append(last)
            continue
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
        backoff=backoff,
    )
    return decision, new_state


__all__ = ["EWMA_ALPHA", "SOFT_REASONS", "decide"]
