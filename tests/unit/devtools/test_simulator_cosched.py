"""The simulator's co-scheduling parts: IBM's queue model, outages, admission caps, held slot time and the
clairvoyant bound, on tiny hand-built traces (setup helpers shared with test_simulator.py).

`stub_decide` is a local stand-in for the production `decide()` (owned elsewhere): it returns fixed caps,
so these tests check the engine's side of the contract only.
"""

from __future__ import annotations

import itertools

import pytest

from qauvern_hpc.admission.model import (
    AdmissionSettings,
    ControllerState,
    Decision,
    Observation,
    PairDecision,
)
from qauvern_hpc.devtools.simulator.bound import lower_bound, per_job_bound, srpt_waits
from qauvern_hpc.devtools.simulator.engine import simulate
from qauvern_hpc.devtools.simulator.ibmqueue import external_arrivals, outage_calendar
from qauvern_hpc.devtools.simulator.policies import RebalanceOutcome, RebalanceView, make_policy
from qauvern_hpc.devtools.simulator.scenario import parse_scenario
from tests.unit.devtools.test_simulator import BASE, ONE, START, TWO, job, make_setup

QUEUE = """
start_date: 2026-03-02
budget: 10000
backends: {default: {model: queue, external: {rate_per_hour: 0}}}
resubmit_delay: 1h
slice: 5m
"""


class StubDecide:
    """Caps every pair at `cap`; records every Observation it was given."""

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self.seen: list[Observation] = []

    def __call__(
        self, obs: Observation, state: ControllerState, settings: AdmissionSettings
    ) -> tuple[Decision, ControllerState]:
        self.seen.append(obs)
        pairs = tuple(
            PairDecision(p.instance, p.backend, self.cap, "admitted", "", obs.now) for p in obs.pairs
        )
        return Decision(obs.now, pairs), state


# --------------------------------------------------------------------------------------------- queue model


def test_external_arrivals_are_seeded_and_follow_the_rate() -> None:
    load = parse_scenario(
        "backends: {default: {model: queue, external: {rate_per_hour: 10, mean_seconds: 100, diurnal: 0.5}}}"
    ).backend_load("ibm_fez")
    a = external_arrivals(load, "ibm_fez", 30 * 86400, seed=1)
    assert a == external_arrivals(load, "ibm_fez", 30 * 86400, seed=1)
    assert a != external_arrivals(load, "ibm_fez", 30 * 86400, seed=2)
    assert a != external_arrivals(load, "ibm_torino", 30 * 86400, seed=1)
    assert len(a) == pytest.approx(10 * 24 * 30, rel=0.05)
    assert sum(w for _t, w in a) / len(a) == pytest.approx(100, rel=0.1)
    # the diurnal profile: more arrivals around 15:00 UTC than around 03:00
    peak = sum(1 for t, _w in a if 13 <= (t // 3600) % 24 < 17)
    trough = sum(1 for t, _w in a if 1 <= (t // 3600) % 24 < 5)
    assert peak > 2 * trough
    hourly = parse_scenario("backends: {default: {model: hourly}}").backend_load("ibm_fez")
    assert external_arrivals(hourly, "ibm_fez", 86400, seed=1) == []


def test_outage_calendar_merges_and_is_seeded() -> None:
    load = parse_scenario(
        "backends: {ibm_fez: {outages: [{start: 2026-03-02T01:00:00Z, hours: 2, status: offline, "
        "message: upgrade}], random_outages: {per_week: 7, mean_hours: 1}}}"
    ).backend_load("ibm_fez")
    cal = outage_calendar(load, "ibm_fez", START, 14 * 86400, seed=3)
    assert cal == outage_calendar(load, "ibm_fez", START, 14 * 86400, seed=3)
    assert cal != outage_calendar(load, "ibm_fez", START, 14 * 86400, seed=4)
    assert any(s <= 3600 and e >= 3 * 3600 for s, e, _st, _m in cal)  # the explicit one is covered
    assert all(a[1] < b[0] for a, b in itertools.pairwise(cal))  # sorted, disjoint
    assert 5 <= len(cal) <= 30


def test_same_seed_same_queue_model_run() -> None:
    scenario = QUEUE.replace("rate_per_hour: 0", "rate_per_hour: 8, diurnal: 0.5") + (
        "allocations: {big: 2000, small: 1000}\n"
    )
    jobs = [job(600 * k, 400, "pbig" if k % 2 else "psmall", wall=3600) for k in range(100)]
    setup = make_setup(TWO, scenario, jobs)
    a = simulate(setup, make_policy("static"), seed=7)
    b = simulate(setup, make_policy("static"), seed=7)
    c = simulate(setup, make_policy("static"), seed=8)
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()


def test_external_jobs_with_a_lower_ratio_run_first_and_hold_our_slot() -> None:
    # One external job of 3600 s waits from t=0 with ratio 0.5 (ours: 0 -> 0.9 after 900 s of 1000).
    # Our job (900 s) arrives at t=10: ratio 0 < 0.5, it runs 10..310, 310..610 (ratio 0.6 > 0.5 now) ->
    # the external slices run until its work is done, then ours resumes. Our slot is held meanwhile.
    scenario = QUEUE.replace(
        "external: {rate_per_hour: 0}",
        "external: {rate_per_hour: 0, ratio: 0.5}, outages: [{start: 2026-03-02T00:00:00Z, hours: 0.0001}]",
    )
    setup = make_setup(ONE, scenario + "allocations: {solo: 1000}\n", [job(10, 900)])
    res = simulate(setup, make_policy("static"))
    assert res.used_seconds == 900 and res.jobs_done == 1


# --------------------------------------------------------------------------------------------- outages


def test_an_outage_blocks_service_and_the_slot_is_held() -> None:
    # ibm_torino is paused 00:10..01:10. A 1200 s job from t=0 runs 0..300, 300..600 (cut at the outage),
    # waits out the outage, and runs 4200..4800: done at 4800, 3600 s of its slot held waiting.
    scenario = QUEUE.replace(
        "external: {rate_per_hour: 0}}",
        "external: {rate_per_hour: 0}, outages: [{start: 2026-03-02T00:10:00Z, hours: 1}]}",
    )
    setup = make_setup(ONE, scenario + "allocations: {solo: 5000}\n", [job(0, 1200)])
    res = simulate(setup, make_policy("static"))
    assert res.wait_median_seconds == 4800.0
    assert res.held_wait_seconds == 3600
    assert res.projects["proj"]["held_wait_seconds"] == 3600
    assert res.bound == None  # noqa: E711 (set by the runner only)
    assert per_job_bound(setup, seed=1) == [4800.0]


# --------------------------------------------------------------------------------------------- admission


def test_admission_runs_every_period_on_the_current_instant() -> None:
    # Before the first decision (t=30) there is no cap; from then on one call per period, each observing
    # the instant it runs at (the controller cannot see ahead).
    stub = StubDecide(1)
    setup = make_setup(ONE, QUEUE + "allocations: {solo: 9000}\nadmission: {every: 60}\n", [job(0, 600)] * 2)
    res = simulate(setup, make_policy("qauvern-hpc"), decide=stub)
    assert res.jobs_done == 2
    assert res.admissions == len(stub.seen) == 86400 // 60 - 1
    assert [o.now for o in stub.seen[:3]] == [60.0, 120.0, 180.0]
    assert all(o.ibm_read_at == o.now for o in stub.seen)


def test_a_cap_of_zero_keeps_jobs_pending_and_one_admits_one_at_a_time() -> None:
    setup = make_setup(
        ONE, QUEUE + "allocations: {solo: 9000}\nslurm: {default_slots: 6}\n", [job(60, 600)] * 4
    )
    closed = simulate(setup, make_policy("qauvern-hpc"), decide=StubDecide(0))
    assert closed.used_seconds == 0 and closed.jobs_unfinished == 4 and closed.held_wait_seconds == 0
    one = simulate(setup, make_policy("qauvern-hpc"), decide=StubDecide(1))
    # one at a time: done at 660, 1260, 1860, 2460 (each starts when the previous frees the cap)
    assert one.jobs_done == 4
    assert one.wait_p95_seconds == pytest.approx(1800 + 0.85 * 600)
    assert one.held_wait_seconds == 0
    free = simulate(setup, make_policy("static"))
    # without a cap all four start at 60 and share the backend: the last three hold their slots
    assert free.held_wait_seconds == 600 + 1200 + 1800
    assert free.wait_p95_seconds == one.wait_p95_seconds


def test_static_and_qauvern_never_call_decide() -> None:
    setup = make_setup(ONE, QUEUE + "allocations: {solo: 9000}\n", [job(0, 600)])
    stub = StubDecide(0)
    res = simulate(setup, make_policy("static"), decide=stub)
    assert res.jobs_done == 1 and stub.seen == [] and res.admissions == 0


def test_the_observation_shows_an_outage_and_our_queued_job() -> None:
    scenario = QUEUE.replace(
        "external: {rate_per_hour: 0}}",
        "external: {rate_per_hour: 0}, outages: [{start: 2026-03-02T00:00:00Z, hours: 1, status: offline, "
        "message: upgrade}]}",
    )
    stub = StubDecide(None)
    setup = make_setup(ONE, scenario + "allocations: {solo: 9000}\n", [job(0, 600)])
    simulate(setup, make_policy("qauvern-hpc"), decide=stub)
    obs = stub.seen[0]  # t = 30: the backend is down, our job waits at IBM since t = 0
    (b,) = obs.backends.values()
    assert (b.status, b.message, b.serving, b.length_queue) == ("offline", "upgrade", False, 1)
    (p,) = obs.pairs
    assert (p.running, p.pending, p.ibm_queued, p.oldest_ibm_queued_age) == (1, 0, 1, 30.0)
    after = next(o for o in stub.seen if o.now > 3600)
    assert next(iter(after.backends.values())).serving


def test_scenario_admission_settings_are_checked() -> None:
    from qauvern_hpc.devtools.simulator.scenario import ScenarioError

    setup = make_setup(ONE, QUEUE + "admission: {every: 60, max_ibm_wait_seconds: 120}\n", [job(0, 60)])
    assert setup.admission_every == 60 and setup.admission.max_ibm_wait_seconds == 120
    with pytest.raises(ScenarioError, match="unknown setting"):
        make_setup(ONE, QUEUE + "admission: {max_wait: 1}\n", [job(0, 60)])


# --------------------------------------------------------------------------------------------- bound


def test_the_bound_is_below_every_policys_wait_per_job() -> None:
    scenario = (
        QUEUE.replace(
            "external: {rate_per_hour: 0}}",
            "external: {rate_per_hour: 6, diurnal: 0.5}, random_outages: {per_week: 14, mean_hours: 1}}",
        )
        + "allocations: {big: 3000, small: 1000}\nslurm: {default_slots: 3}\n"
    )
    jobs = [job(500 * k, 200 + 37 * (k % 9), "pbig" if k % 3 else "psmall", wall=2400) for k in range(120)]
    setup = make_setup(TWO, scenario, jobs)
    lb = per_job_bound(setup, seed=2)
    sr = srpt_waits(setup, seed=2)
    assert all(a <= b for a, b in zip(lb, sr, strict=True))
    bound = lower_bound(setup, seed=2)
    for policy, stub in (("static", None), ("qauvern-hpc", StubDecide(1))):
        res = simulate(setup, make_policy(policy), seed=2, decide=stub)
        assert len(res.waits) == len(lb)
        assert all(w >= b for w, b in zip(res.waits, lb, strict=True)), policy
        assert res.wait_median_seconds >= bound.median
        assert res.wait_p95_seconds >= bound.p95


def test_ibm_does_not_preempt_a_started_job_under_the_queue_model() -> None:
    # big (alloc 2000) starts 900 s of work at 0; small (alloc 1000, ratio 0) submits 300 s at 100.
    # model queue: big runs to its end (0..900), then small (900..1200): waits 900 and 1100.
    # model hourly (fair share at every slice): small takes the backend at 300 (300..600), big ends at 1200.
    jobs = [job(0, 900, "pbig"), job(100, 300, "psmall")]
    queue = simulate(
        make_setup(TWO, QUEUE + "allocations: {big: 2000, small: 1000}\n", jobs), make_policy("static")
    )
    assert (
        queue.projects["pbig"]["wait_median_seconds"],
        queue.projects["psmall"]["wait_median_seconds"],
    ) == (
        900.0,
        1100.0,
    )
    hourly = simulate(
        make_setup(TWO, BASE + "allocations: {big: 2000, small: 1000}\n", jobs), make_policy("static")
    )
    assert (
        hourly.projects["pbig"]["wait_median_seconds"],
        hourly.projects["psmall"]["wait_median_seconds"],
    ) == (
        1200.0,
        500.0,
    )


class RecordingPolicy:
    """Writes nothing; keeps the demand every rebalance saw."""

    name = "recording"
    admission = False

    def __init__(self) -> None:
        self.demand: list[dict[str, float]] = []

    def rebalance(self, view: RebalanceView) -> RebalanceOutcome:
        self.demand.append({crn: d.inflight_seconds for crn, d in view.demand.items()})
        return RebalanceOutcome()


def test_the_rebalancer_sees_running_jobs_as_work_in_flight() -> None:
    # A 7000 s job (wall limit 3 h) runs from 0; at the first rebalance (3600) it is in flight with its
    # time limit capped at rebalance.demand.max_job_seconds; at the second (7200) it is done.
    setup = make_setup(ONE, QUEUE + "allocations: {solo: 9000}\n", [job(0, 7000, wall=10800)])
    pol = RecordingPolicy()
    simulate(setup, pol)
    assert setup.max_job_seconds < 10800
    assert [next(iter(d.values())) for d in pol.demand[:2]] == [float(setup.max_job_seconds), 0.0]
