"""admission.decide: each rule and reason code, and properties over random observations (hypothesis)."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from qauvern_hpc.admission.decide import decide
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
    REASONS,
    AdmissionSettings,
    BackendView,
    ControllerState,
    InstanceView,
    Observation,
    PairView,
)

NOW = 1_000_000.0
S = AdmissionSettings()  # period 30 s, hold_for 600 s, max wait 600 s, burst 2, probe, dwell 60 s, job 300 s


def backend(name: str = "ibm_fez", **kw: object) -> BackendView:
    kw.setdefault("status", "online")
    kw.setdefault("observed_at", NOW)
    return BackendView(name=name, **kw)  # type: ignore[arg-type]


def instance(name: str = "physics", **kw: object) -> InstanceView:
    kw.setdefault("consumed_seconds", 0.0)
    kw.setdefault("allocation_seconds", 10_000)
    kw.setdefault("limit_seconds", None)
    kw.setdefault("observed_at", NOW)
    return InstanceView(name=name, **kw)  # type: ignore[arg-type]


def observe(
    pairs: list[PairView],
    backends: list[BackendView] | None = None,
    instances: list[InstanceView] | None = None,
    now: float = NOW,
    read_at: float | None = NOW,
) -> Observation:
    bs = backends or [backend(n, observed_at=now) for n in sorted({p.backend for p in pairs})]
    ins = instances or [instance(n, observed_at=now) for n in sorted({p.instance for p in pairs})]
    return Observation(
        now=now,
        backends={b.name: b for b in bs},
        instances={i.name: i for i in ins},
        pairs=tuple(pairs),
        ibm_read_at=read_at,
    )


def one(obs: Observation, state: ControllerState | None = None, s: AdmissionSettings = S):  # type: ignore[no-untyped-def]
    decision, new = decide(obs, state or ControllerState(), s)
    return decision, new


def test_nothing_pending_is_open_without_cap() -> None:
    d, _ = one(observe([PairView("physics", "ibm_fez", running=3)]))
    (p,) = d.pairs
    assert (p.cap, p.reason) == (None, OPEN)
    assert "physics" in p.detail and "ibm_fez" in p.detail


def test_empty_backend_admits_everything_pending_within_budget() -> None:
    d, _ = one(observe([PairView("physics", "ibm_fez", pending=2)]))
    assert (d.pairs[0].cap, d.pairs[0].reason) == (None, OPEN)


def test_budget_caps_a_long_backlog() -> None:
    # empty queue: K = ceil(600/300) = 2 (burst 2 x 1 pair allows it): 2 of 10 pending admitted
    d, _ = one(observe([PairView("physics", "ibm_fez", pending=10, running=1, ibm_running=1)]))
    p = d.pairs[0]
    assert (p.cap, p.reason) == (3, ADMITTED)
    assert "admitted 2 of 10 pending" in p.detail and "ibm_fez" in p.detail


def test_paused_backend_closes_with_its_message() -> None:
    b = backend(status="paused", message="maintenance")
    d, new = one(observe([PairView("physics", "ibm_fez", pending=3, running=1)], backends=[b]))
    p = d.pairs[0]
    assert (p.cap, p.reason, p.detail) == (0, BACKEND_NOT_SERVING, "ibm_fez is paused (maintenance)")
    assert new.bad_polls == {"ibm_fez": 1}


def test_online_but_internal_is_not_serving() -> None:
    b = backend(message="internal")
    d, _ = one(observe([PairView("physics", "ibm_fez", pending=1)], backends=[b]))
    assert (d.pairs[0].cap, d.pairs[0].reason) == (0, BACKEND_NOT_SERVING)
    assert "internal" in d.pairs[0].detail


def test_instance_at_its_limit_closes() -> None:
    i = instance(consumed_seconds=1234.0, limit_seconds=1200)
    d, _ = one(observe([PairView("physics", "ibm_fez", pending=1)], instances=[i]))
    p = d.pairs[0]
    assert (p.cap, p.reason) == (0, LIMIT_REACHED)
    assert p.detail == "physics reached its IBM limit (1,234 of 1,200 s)"


def test_usage_limit_reached_flag_closes() -> None:
    i = instance(consumed_seconds=10.0, limit_seconds=None, limit_reached=True)
    d, _ = one(observe([PairView("physics", "ibm_fez", pending=1)], instances=[i]))
    assert (d.pairs[0].cap, d.pairs[0].reason) == (0, LIMIT_REACHED)
    assert "usage_limit_reached" in d.pairs[0].detail


def test_limit_lookahead_counts_work_in_flight() -> None:
    # 1,000 used + 1 queued job (300 s) >= 1,200: closed before IBM would fail the job mid-run
    i = instance(consumed_seconds=1000.0, limit_seconds=1200)
    pv = PairView("physics", "ibm_fez", pending=2, running=1, ibm_queued=1)
    d, _ = one(observe([pv], instances=[i]))
    assert (d.pairs[0].cap, d.pairs[0].reason) == (0, LIMIT_REACHED)
    assert "in flight" in d.pairs[0].detail


def test_near_the_limit_admits_only_what_fits() -> None:
    # 800 s of headroom, 300 s per job: after 3 admissions (900 s) nothing more
    i = instance(consumed_seconds=400.0, limit_seconds=1200)
    pv = PairView("physics", "ibm_fez", pending=10)
    s = AdmissionSettings(max_ibm_wait_seconds=3000.0, burst=10)
    d, _ = one(observe([pv], instances=[i]), s=s)
    assert (d.pairs[0].cap, d.pairs[0].reason) == (3, LIMIT_REACHED)
    assert "near its IBM limit" in d.pairs[0].detail


def test_long_ibm_queue_admits_only_a_probe() -> None:
    b = backend(length_queue=50)  # 50 x 300 s = 250 min > 10 min
    d, _ = one(observe([PairView("physics", "ibm_fez", pending=5)], backends=[b]))
    p = d.pairs[0]
    assert (p.cap, p.reason) == (1, IBM_QUEUE)
    assert "IBM's queue on ibm_fez: a new job would wait ~4.2 h > ~10 min" in p.detail
    assert "probe" in p.detail


def test_long_ibm_queue_without_probe_or_with_jobs_in_flight_admits_nothing_new() -> None:
    b = backend(wait_p50_seconds=840.0)
    d, _ = one(
        observe([PairView("physics", "ibm_fez", pending=5)], backends=[b]), s=AdmissionSettings(probe=False)
    )
    assert (d.pairs[0].cap, d.pairs[0].reason) == (0, IBM_QUEUE)
    assert "~14 min > ~10 min" in d.pairs[0].detail
    pv = PairView("physics", "ibm_fez", pending=5, running=2, ibm_queued=2)
    d, _ = one(observe([pv], backends=[b]))
    assert (d.pairs[0].cap, d.pairs[0].reason) == (2, IBM_QUEUE)


def test_head_of_line_age_raises_the_wait_estimate() -> None:
    pv = PairView("physics", "ibm_fez", pending=5, running=1, ibm_queued=1, oldest_ibm_queued_age=900.0)
    d, _ = one(observe([pv]))
    assert (d.pairs[0].cap, d.pairs[0].reason) == (1, IBM_QUEUE)


def test_slurm_jobs_not_yet_at_ibm_use_the_budget() -> None:
    # K_raw = 2 but two Slurm-running jobs have not reached IBM yet
    pv = PairView("physics", "ibm_fez", pending=5, running=2)
    d, _ = one(observe([pv]))
    assert (d.pairs[0].cap, d.pairs[0].reason) == (2, IBM_QUEUE)
    assert "reach IBM's queue first" in d.pairs[0].detail


def test_fair_split_follows_ibm_order_lowest_ratio_first() -> None:
    b = backend(length_queue=1)  # K = ceil((600 - 300)/300) = 1
    ins = [instance("physics", consumed_seconds=4000.0), instance("chem", consumed_seconds=1000.0)]
    pairs = [
        PairView("physics", "ibm_fez", pending=3, running=1, ibm_running=1),
        PairView("chem", "ibm_fez", pending=3, running=1, ibm_running=1),
    ]
    d, _ = one(observe(pairs, backends=[b], instances=ins))
    phys, chem = d.pairs
    assert (chem.cap, chem.reason) == (2, ADMITTED)
    assert (phys.cap, phys.reason) == (1, FAIR_SHARE)
    assert "IBM serves chem first (12% of its allocation used vs 42%)" in phys.detail


def test_water_fill_alternates_and_never_exceeds_pending() -> None:
    s = AdmissionSettings(max_ibm_wait_seconds=3000.0, burst=10)  # K = 10
    ins = [instance("a", consumed_seconds=0.0), instance("b", consumed_seconds=600.0)]
    pairs = [PairView("a", "ibm_fez", pending=2), PairView("b", "ibm_fez", pending=20)]
    d, _ = one(observe(pairs, instances=ins), s=s)
    a, b = d.pairs
    assert (a.cap, a.reason) == (None, OPEN)  # both of a's pending admitted
    assert (b.cap, b.reason) == (8, ADMITTED)  # the rest of the budget


def test_probe_keeps_a_pair_from_starving() -> None:
    b = backend(length_queue=1)  # K = 1, goes to chem (lower ratio)
    ins = [instance("physics", consumed_seconds=9000.0), instance("chem")]
    pairs = [PairView("physics", "ibm_fez", pending=3), PairView("chem", "ibm_fez", pending=3)]
    d, _ = one(observe(pairs, backends=[b], instances=ins))
    phys, chem = d.pairs
    assert chem.cap == 1 and phys.cap == 1
    assert phys.reason == FAIR_SHARE and "probe" in phys.detail


def test_stale_ibm_holds_then_fails_per_resource() -> None:
    pairs = [
        PairView("physics", "ibm_fez", pending=10, running=1, ibm_running=1, fail_mode="open"),
        PairView("physics", "ibm_torino", pending=10, running=1, ibm_running=1, fail_mode="closed"),
    ]
    d0, st0 = one(observe(pairs))
    assert [p.cap for p in d0.pairs] == [3, 3]
    later = NOW + 120
    d1, st1 = one(observe(pairs, now=later), st0)  # views and read time are the old ones
    assert [(p.cap, p.reason) for p in d1.pairs] == [(3, HOLD), (3, HOLD)]
    assert "not read for 120 s" in d1.pairs[0].detail
    d2, _ = one(observe(pairs, now=NOW + 601), st1)
    assert [(p.cap, p.reason) for p in d2.pairs] == [(None, FAILED_OPEN), (0, FAILED_CLOSED)]
    d3, _ = one(observe(pairs, read_at=None))  # never read, nothing to hold
    assert [(p.cap, p.reason) for p in d3.pairs] == [(None, FAILED_OPEN), (0, FAILED_CLOSED)]


def test_one_stale_source_is_enough() -> None:
    b = backend(observed_at=NOW - 700)
    d, _ = one(observe([PairView("physics", "ibm_fez", pending=1)], backends=[b]))
    assert d.pairs[0].reason == FAILED_CLOSED


def test_reopen_on_first_good_poll_and_close_at_once() -> None:
    pv = PairView("physics", "ibm_fez", pending=1)
    d0, st0 = one(observe([pv], backends=[backend(status="offline", message="down")]))
    assert d0.pairs[0].cap == 0
    d1, st1 = one(observe([pv], backends=[backend()], now=NOW + 30, read_at=NOW + 30), st0)
    assert (d1.pairs[0].cap, d1.pairs[0].reason) == (None, OPEN)
    assert st1.bad_polls == {}
    b = backend(status="paused", message="internal", observed_at=NOW + 40)
    d2, _ = one(observe([pv], backends=[b], now=NOW + 40, read_at=NOW + 40), st1)
    assert d2.pairs[0].cap == 0


def test_soft_changes_wait_for_min_dwell_and_never_cut_below_running() -> None:
    pv = PairView("physics", "ibm_fez", pending=10, running=1, ibm_running=1)
    d0, st0 = one(observe([pv]))
    assert d0.pairs[0].cap == 3
    # 20 s later IBM's queue is long: a cut to 1 would be soft -> kept at 3 until min_dwell
    t = NOW + 20
    b = backend(length_queue=50, observed_at=t)
    d1, st1 = one(observe([pv], backends=[b], now=t, read_at=t), st0)
    assert d1.pairs[0].cap == 3 and d1.pairs[0] is d0.pairs[0]
    t = NOW + 61
    b = backend(length_queue=50, observed_at=t)
    d2, st2 = one(observe([pv], backends=[b], now=t, read_at=t), st1)
    assert (d2.pairs[0].cap, d2.pairs[0].reason) == (1, IBM_QUEUE)
    assert st2.last_change["qpu_physics__ibm_fez"] == t
    # within dwell again, and 4 jobs now run: the kept cap is raised to what runs
    t2 = t + 10
    pv4 = PairView("physics", "ibm_fez", pending=10, running=4, ibm_running=4)
    b = backend(observed_at=t2)
    d3, _ = one(observe([pv4], backends=[b], now=t2, read_at=t2), st2)
    assert d3.pairs[0].cap == 4


def test_previous_decisions_are_found_when_pairs_change_order() -> None:
    a = PairView("physics", "ibm_fez", pending=10, running=1, ibm_running=1)
    b = PairView("chem", "ibm_fez", pending=0)
    d0, st0 = one(observe([a, b]))
    t = NOW + 10  # within min_dwell: the soft cap stays, found by license
    bq = backend(length_queue=50, observed_at=t)
    d1, _ = one(observe([b, a], backends=[bq], now=t, read_at=t), st0)
    assert [(p.instance, p.cap) for p in d1.pairs] == [("chem", None), ("physics", 3)]
    assert d1.pairs[1] is d0.pairs[0]


def test_since_tracks_reason_changes() -> None:
    pv = PairView("physics", "ibm_fez", pending=10, running=1, ibm_running=1)
    _, st0 = one(observe([pv]))
    t = NOW + 30
    d1, _ = one(observe([pv], backends=[backend(observed_at=t)], now=t, read_at=t), st0)
    assert d1.pairs[0].since == NOW


def test_learns_service_and_wait_from_the_observation() -> None:
    pv = PairView(
        "physics",
        "ibm_fez",
        done_jobs=2,
        done_quantum_seconds=200.0,
        started_jobs=1,
        started_wait_seconds=60.0,
    )
    _, st0 = one(observe([pv]))
    assert st0.service_ewma == {"ibm_fez": 100.0}
    assert st0.wait_ewma == {"qpu_physics__ibm_fez": 60.0}
    pv2 = PairView("physics", "ibm_fez", done_jobs=1, done_quantum_seconds=200.0)
    _, st1 = one(observe([pv2]), st0)
    assert st1.service_ewma["ibm_fez"] == 100.0 * 0.8 + 200.0 * 0.2
    # the learnt service time drives the budget: 600 s / 100 s = 6 more (burst 10)
    pv3 = PairView("physics", "ibm_fez", pending=10, running=1, ibm_running=1)
    d, _ = one(observe([pv3]), ControllerState(service_ewma=st0.service_ewma), AdmissionSettings(burst=10))
    assert d.pairs[0].cap == 7


def test_state_round_trips_through_json() -> None:
    pv = PairView("physics", "ibm_fez", pending=10, done_jobs=1, done_quantum_seconds=50.0)
    _, st = one(observe([pv]))
    assert ControllerState.from_json(json.loads(json.dumps(st.to_json()))) == st


# --- back-off after a job left IBM's queue unstarted ------------------------------------------------------


def test_a_job_lost_unstarted_at_ibm_backs_the_pair_off_doubling_until_one_starts() -> None:
    """Slurm's wall limit cancelled a job IBM kept queued for 2 h: the pair is closed for 2 h (its pending
    jobs wait in Slurm, holding no node; what runs goes on, but a job that ends frees no slot for another),
    then admits again; a second loss doubles the back-off up to its maximum; the first job IBM starts ends
    it."""
    lost = PairView(
        "physics", "ibm_fez", pending=4, running=1, ibm_queued=1, lost_jobs=1, lost_wait_seconds=7200.0
    )
    d, st = one(observe([lost]))
    assert (d.pairs[0].cap, d.pairs[0].reason) == (0, BACKED_OFF)
    assert "left IBM's queue on ibm_fez unstarted after waiting ~2.0 h" in d.pairs[0].detail
    assert "nothing new starts for ~2.0 h" in d.pairs[0].detail
    # the job queued with it is lost too, 10 min later: the same back-off, not a doubled one
    d, st = one(observe([replace(lost, running=0, ibm_queued=0)], now=NOW + 600, read_at=NOW + 600), st)
    assert st.backoff["qpu_physics__ibm_fez"][:2] == (NOW + 600 + 7200.0, 7200.0)
    idle = PairView("physics", "ibm_fez")  # nothing pending: still closed (a new job would start at once)
    d, st = one(observe([idle], now=NOW + 7700, read_at=NOW + 7700), st)
    assert (d.pairs[0].cap, d.pairs[0].reason) == (0, BACKED_OFF)
    quiet = PairView("physics", "ibm_fez", pending=4)
    d, st = one(observe([quiet], now=NOW + 7900, read_at=NOW + 7900), st)
    assert (d.pairs[0].cap, d.pairs[0].reason) == (2, ADMITTED)  # over: the budget admits again (600/300)
    again = replace(lost, running=0, ibm_queued=0)
    d, st = one(observe([again], now=NOW + 16000, read_at=NOW + 16000), st)
    assert st.backoff["qpu_physics__ibm_fez"][:2] == (NOW + 16000 + 14400.0, 14400.0)  # doubled
    d, st = one(observe([replace(again, lost_wait_seconds=9000.0)], now=NOW + 40000, read_at=NOW + 40000), st)
    assert st.backoff["qpu_physics__ibm_fez"][1] == 14400.0  # at most lost_backoff_max
    started = PairView("physics", "ibm_fez", pending=3, running=1, ibm_running=1, started_jobs=1)
    d, st = one(observe([started], now=NOW + 40030, read_at=NOW + 40030), st)
    assert st.backoff == {} and d.pairs[0].reason != BACKED_OFF


def test_a_new_allocation_ends_a_back_off() -> None:
    """The loss happened at usage/allocation 1.0 (the instance behind other customers); a rebalance that
    doubles its allocation halves the ratio: IBM's order has changed, so the pair admits again at once. A
    small drift (usage rolling off the window) does not end it."""
    lost = PairView("physics", "ibm_fez", pending=4, lost_jobs=1, lost_wait_seconds=7200.0)
    full = instance(consumed_seconds=10_000.0, allocation_seconds=10_000)
    d, st = one(observe([lost], instances=[full]), None)
    assert (d.pairs[0].cap, d.pairs[0].reason) == (0, BACKED_OFF)
    assert st.backoff["qpu_physics__ibm_fez"][2] == 1.0  # the ratio at the loss
    waiting = PairView("physics", "ibm_fez", pending=4)
    drift = instance(consumed_seconds=9_000.0, allocation_seconds=10_000, observed_at=NOW + 600)
    d, st = one(observe([waiting], instances=[drift], now=NOW + 600, read_at=NOW + 600), st)
    assert d.pairs[0].reason == BACKED_OFF
    raised = instance(consumed_seconds=10_000.0, allocation_seconds=20_000, observed_at=NOW + 900)
    d, st = one(observe([waiting], instances=[raised], now=NOW + 900, read_at=NOW + 900), st)
    assert st.backoff == {} and (d.pairs[0].cap, d.pairs[0].reason) == (2, ADMITTED)


def test_a_back_off_stored_before_the_ratio_was_kept_still_loads() -> None:
    st = ControllerState.from_json({"backoff": {"qpu_physics__ibm_fez": [NOW + 60.0, 7200.0]}})
    assert st.backoff == {"qpu_physics__ibm_fez": (NOW + 60.0, 7200.0, math.inf)}


def test_a_job_cancelled_soon_after_it_reached_ibm_is_no_reason_to_back_off() -> None:
    """A researcher's scancel after a minute says nothing about IBM's queue: only a loss after waiting at
    least max_ibm_wait counts."""
    pv = PairView("physics", "ibm_fez", pending=4, lost_jobs=1, lost_wait_seconds=60.0)
    d, st = one(observe([pv]))
    assert st.backoff == {} and (d.pairs[0].cap, d.pairs[0].reason) == (2, ADMITTED)  # the budget: 600/300


def test_backoff_round_trips_through_json() -> None:
    pv = PairView("physics", "ibm_fez", pending=4, lost_jobs=2, lost_wait_seconds=3600.0)
    _, st = one(observe([pv]))
    assert st.backoff and ControllerState.from_json(json.loads(json.dumps(st.to_json()))) == st


# --- standing caps (a burst between two periods) and the wait estimate -----------------------------------

WIDE = AdmissionSettings(max_ibm_wait_seconds=3000.0)  # open below 1500 s of estimated wait


def test_idle_pair_on_a_long_queue_keeps_a_probe_cap_before_any_job_pends() -> None:
    b = backend(length_queue=50)  # ~4.2 h: no budget; nothing in flight -> the probe's one
    d, _ = one(observe([PairView("physics", "ibm_fez")], backends=[b]))
    p = d.pairs[0]
    assert (p.cap, p.reason) == (1, IBM_QUEUE)
    assert "no job of physics pending for ibm_fez" in p.detail and "probe" in p.detail
    # with jobs in flight there: nothing new may start
    pv = PairView("physics", "ibm_fez", running=2, ibm_queued=2)
    d, _ = one(observe([pv], backends=[b]))
    assert (d.pairs[0].cap, d.pairs[0].reason) == (2, IBM_QUEUE)


def test_idle_pair_on_a_constrained_backend_gets_its_share_of_the_budget() -> None:
    b = backend(length_queue=6)  # W = 1,800 s > 1,500: constrained; K = ceil(1,200/300) = 4
    pairs = [PairView("a", "ibm_fez", running=1, ibm_running=1), PairView("b", "ibm_fez")]
    d, _ = one(observe(pairs, backends=[b]), s=WIDE)
    assert [(p.cap, p.reason) for p in d.pairs] == [(3, ADMITTED), (2, ADMITTED)]  # share 2 each (burst)
    assert "a standing cap lets 2 more start at once" in d.pairs[0].detail
    # a pair whose pending jobs are all admitted keeps a cap too: running + admitted + its share left
    pv = PairView("a", "ibm_fez", pending=1, running=1, ibm_running=1)
    d, _ = one(observe([pv], backends=[b]), s=WIDE)
    assert (d.pairs[0].cap, d.pairs[0].reason) == (4, ADMITTED)  # 1 + 1 admitted + min(burst, 3 left)
    assert "should start all 1 pending" in d.pairs[0].detail


def test_no_cap_when_the_budget_is_clearly_unconstrained() -> None:
    b = backend(length_queue=5)  # W = 1,500 s = half of max_ibm_wait: not binding
    d, _ = one(observe([PairView("physics", "ibm_fez", running=4), PairView("chem", "ibm_fez", pending=1)],
                       backends=[b]), s=WIDE)  # fmt: skip
    assert [(p.cap, p.reason) for p in d.pairs] == [(None, OPEN), (None, OPEN)]


def test_standing_cap_is_dropped_only_below_half_the_threshold() -> None:
    pv = PairView("physics", "ibm_fez")
    d0, st0 = one(observe([pv], backends=[backend(length_queue=6)]), s=WIDE)
    assert d0.pairs[0].cap == 2
    t = NOW + 100
    d1, st1 = one(
        observe([pv], backends=[backend(length_queue=4, observed_at=t)], now=t, read_at=t), st0, WIDE
    )
    assert d1.pairs[0].cap == 2  # W = 1,200 s: below the threshold, above its half: still capped
    t += 100
    d2, _ = one(observe([pv], backends=[backend(length_queue=2, observed_at=t)], now=t, read_at=t), st1, WIDE)
    assert (d2.pairs[0].cap, d2.pairs[0].reason) == (None, OPEN)


def test_standing_cap_that_tracks_running_is_not_rewritten_every_period() -> None:
    # jobs arrive and finish on an otherwise idle pair; the wanted cap is running + 2
    s = AdmissionSettings(max_ibm_wait_seconds=3000.0, min_dwell_seconds=0.0)
    b = backend(length_queue=6)
    runs = [0, 1, 2, 1, 0, 1, 2, 3, 2, 1, 2, 1, 0, 0, 1]
    state = ControllerState()
    caps = []
    for n, r in enumerate(runs):
        t = NOW + 30 * n
        pv = PairView("physics", "ibm_fez", running=r, ibm_running=r)
        obs = observe([pv], backends=[replace(b, observed_at=t)], now=t, read_at=t)
        d, state = decide(obs, state, s)
        cap = d.pairs[0].cap
        assert cap is not None and cap >= r + 1  # a new job can always start at once
        caps.append(cap)
    writes = sum(1 for x, y in itertools.pairwise(caps) if x != y)
    tracking = sum(1 for x, y in itertools.pairwise(runs) if x != y)
    assert 2 * writes < tracking, (caps, runs)  # 14 changes of `running`, 4 writes


def test_wait_estimate_takes_the_largest_signal() -> None:
    # IBM's p50 (from jobs that already started) says 60 s, but 50 jobs queue now: held back
    b = backend(length_queue=50, wait_p50_seconds=60.0)
    d, _ = one(observe([PairView("physics", "ibm_fez", pending=5)], backends=[b]))
    assert (d.pairs[0].cap, d.pairs[0].reason) == (1, IBM_QUEUE)
    assert "~4.2 h" in d.pairs[0].detail
    # p50 larger than the queue says: p50 wins
    b = backend(length_queue=0, wait_p50_seconds=900.0)
    d, _ = one(observe([PairView("physics", "ibm_fez", pending=5)], backends=[b]))
    assert "~15 min" in d.pairs[0].detail
    # our own head-of-line age counts even for a pair with nothing pending (it is the backend's wait)
    pairs = [
        PairView("chem", "ibm_fez", running=1, ibm_queued=1, oldest_ibm_queued_age=1200.0),
        PairView("physics", "ibm_fez", pending=5),
    ]
    d, _ = one(observe(pairs))
    assert d.pairs[1].cap == 1 and "~20 min" in d.pairs[1].detail
    # learnt service time scales the queue length: 4 x 100 s = 400 s, K = 2
    pv = PairView("physics", "ibm_fez", pending=5)
    st = ControllerState(service_ewma={"ibm_fez": 100.0})
    d, _ = one(observe([pv], backends=[backend(length_queue=4)]), st)
    assert d.pairs[0].cap == 2


# --- properties --------------------------------------------------------------------------------------

NAMES_I = ("a", "b", "c", "d", "e")
NAMES_B = ("fez", "torino", "kyiv")


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    now = NOW + draw(st.floats(0, 2000))
    bs = {}
    for n in NAMES_B:
        bs[n] = BackendView(
            n,
            draw(st.sampled_from(["online", "online", "paused", "offline"])),
            draw(st.sampled_from(["active", "active", "internal", "maintenance"])),
            draw(st.integers(0, 60)),
            draw(st.none() | st.floats(0, 5000)),
            None,
            now - draw(st.sampled_from([0.0, 10.0, 90.0, 700.0])),
        )
    ins = {}
    for n in NAMES_I:
        lim = draw(st.none() | st.integers(0, 20_000))
        ins[n] = InstanceView(
            n, draw(st.floats(0, 20_000)), draw(st.integers(0, 20_000)), lim, draw(st.booleans()), now
        )
    pairs = []
    for i in NAMES_I:
        for b in NAMES_B:
            if draw(st.booleans()):
                pairs.append(
                    PairView(
                        i,
                        b,
                        draw(st.sampled_from(["open", "closed"])),
                        draw(st.integers(0, 30)),
                        draw(st.integers(0, 10)),
                        draw(st.integers(0, 5)),
                        draw(st.integers(0, 5)),
                        draw(st.none() | st.floats(0, 3000)),
                        None,
                        draw(st.integers(0, 3)),
                        draw(st.floats(0, 3000)),
                    )
                )
    read_at = draw(st.none() | st.just(now) | st.just(now - 100.0))
    return Observation(now, bs, ins, tuple(pairs), read_at)


@settings(max_examples=300, deadline=None)
@given(obs=observations(), obs2=observations())
def test_properties(obs: Observation, obs2: Observation) -> None:
    d, st1 = decide(obs, ControllerState(), S)
    assert decide(obs, ControllerState(), S) == (d, st1)  # deterministic
    assert ControllerState.from_json(json.loads(json.dumps(st1.to_json()))) == st1
    # a second period with the first state (anti-thrash paths)
    d2, _ = decide(obs2, st1, S)
    for dec, ob in ((d, obs), (d2, obs2)):
        assert [(p.instance, p.backend) for p in dec.pairs] == [(p.instance, p.backend) for p in ob.pairs]
        for pd, pv in zip(dec.pairs, ob.pairs, strict=True):
            assert pd.reason in REASONS and pd.detail
            assert pd.cap is None or pd.cap >= 0
            if pd.reason == BACKEND_NOT_SERVING:
                assert pd.cap == 0
            b = ob.backends[pv.backend]
            fresh = ob.ibm_read_at is not None and ob.now - min(ob.ibm_read_at, b.observed_at) <= 60
            if fresh and not b.serving:
                assert (pd.cap, pd.reason) == (0, BACKEND_NOT_SERVING)
            if pd.reason in (OPEN, ADMITTED, IBM_QUEUE, FAIR_SHARE):
                assert pd.cap is None or pd.cap >= pv.running
