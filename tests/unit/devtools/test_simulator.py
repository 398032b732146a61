"""The simulator on tiny traces whose outcome is worked out by hand, plus determinism.

Shared setup unless a test says otherwise: one backend (ibm_torino), no external load, 5-minute slices,
resubmission after 1 h, a 1-day run, and a budget of 10,000 s per 28 days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from qauvern_hpc.config import compile_policy, parse_config
from qauvern_hpc.devtools.simulator.engine import simulate
from qauvern_hpc.devtools.simulator.metrics import RunResult, jain_index, maxmin_shares, percentile
from qauvern_hpc.devtools.simulator.policies import make_policy
from qauvern_hpc.devtools.simulator.runner import DATA_DIR, load_setup
from qauvern_hpc.devtools.simulator.scenario import parse_scenario
from qauvern_hpc.devtools.simulator.setup import SimSetup, build_setup
from qauvern_hpc.devtools.simulator.trace import TraceJob
from tests.support.paths import REPO

START = datetime(2026, 3, 2, tzinfo=UTC)
CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:{}::"


def site(instances: str, rules: str, extra: str = "") -> str:
    return f"""
ibm: {{account_id: acct, plan: premium}}
minimum_allocation_seconds: 60
instances:
{instances}
resources:
  - name: ibm_torino
rules:
{rules}
{extra}
"""


ONE = site(
    f"""  - name: solo
    crn: "{CRN.format("solo")}"
""",
    """  - name: solo
    match: {accounts: [proj]}
    instance: solo
    resources: [ibm_torino]
""",
)

TWO = site(
    f"""  - name: big
    crn: "{CRN.format("big")}"
  - name: small
    crn: "{CRN.format("small")}"
""",
    """  - name: big
    match: {accounts: [pbig]}
    instance: big
    resources: [ibm_torino]
  - name: small
    match: {accounts: [psmall]}
    instance: small
    resources: [ibm_torino]
""",
)


def job(at: int, seconds: int, account: str = "proj", wall: int = 86400) -> TraceJob:
    return TraceJob(START + timedelta(seconds=at), "u1", account, "quantum", "", "ibm_torino", seconds, wall)


def make_setup(config: str, scenario: str, jobs: list[TraceJob], days: float = 1.0) -> SimSetup:
    loaded = parse_config(config, "/tmp/site.yaml", check_key_files=False)
    return build_setup(
        loaded.config, compile_policy(loaded), jobs, parse_scenario(scenario, "scenario"), days=days
    )


BASE = """
start_date: 2026-03-02
budget: 10000
backends: {default: {external_busy: 0}}
resubmit_delay: 1h
slice: 5m
"""


def waits(setup: SimSetup, policy: str = "static") -> tuple[list[float], RunResult]:
    res = simulate(setup, make_policy(policy), rebalance_every_seconds=3600)
    return [res.wait_median_seconds, res.wait_p95_seconds], res


# --------------------------------------------------------------------------------------------- by hand


def test_one_instance_one_slot_serves_jobs_in_order() -> None:
    # One Slurm slot: B (300 s, submitted at 100) pends until A (600 s) is done at 600, then runs 600..900.
    setup = make_setup(
        ONE, BASE + "allocations: {solo: 5000}\nslurm: {default_slots: 1}\n", [job(0, 600), job(100, 300)]
    )
    (median, p95), res = waits(setup)
    assert res.used_seconds == 900
    assert res.jobs_done == 2 and res.jobs_unfinished == 0
    # waits: A 600, B 900 - 100 = 800
    assert median == 700.0
    assert p95 == pytest.approx(600 + 0.95 * 200)
    assert res.limit_hit_jobs == 0 and res.timeouts == 0
    # purchased: 10,000 s per 28 days for one day
    assert res.purchased_seconds == pytest.approx(10000 / 28)


def test_two_instances_take_turns_by_fair_share_ratio() -> None:
    # big holds 2000 s, small 1000 s. Both submit 600 s at t=0; slices of 300 s.
    #   0..300   tie at ratio 0: config order -> big (big 300/2000 = 0.15)
    #   300..600 small (0 < 0.15)                                   (small 300/1000 = 0.30)
    #   600..900 big (0.15 < 0.30) -> big done at 900               (big 0.30)
    #   900..1200 small -> done at 1200
    setup = make_setup(
        TWO,
        BASE + "allocations: {big: 2000, small: 1000}\n",
        [job(0, 600, "pbig"), job(0, 600, "psmall")],
    )
    res = simulate(setup, make_policy("static"), rebalance_every_seconds=3600)
    assert res.projects["pbig"]["used_seconds"] == 600
    assert sorted([res.wait_median_seconds, res.wait_p95_seconds]) == [
        1050.0,
        pytest.approx(900 + 0.95 * 300),
    ]


def test_fair_share_lower_ratio_wins_when_allocations_differ() -> None:
    # small already used 300 s of its 1000 (ratio 0.3) when big's job arrives at 300 with ratio 0:
    # big runs 300..600 (ratio 0.15) and 600..900 (still below small's 0.3): done at 900;
    # then small finishes its second 300 s at 1200.
    setup = make_setup(
        TWO,
        BASE + "allocations: {big: 2000, small: 1000}\n",
        [job(0, 600, "psmall"), job(300, 600, "pbig")],
    )
    res = simulate(setup, make_policy("static"), rebalance_every_seconds=3600)
    # waits: small 1200, big 900 - 300 = 600
    assert res.wait_median_seconds == 900.0
    assert res.jobs_done == 2


def test_external_work_with_a_lower_ratio_runs_first() -> None:
    # Other customers' work (ratio 0.5) waits in every hour. Our instance (alloc 1000) gets the backend
    # whenever it is free and our ratio is not above 0.5: 0..300 (ratio 0.3), 300..600 (0.6); from then
    # on the external work has the lower ratio and runs.
    setup = make_setup(
        ONE,
        BASE.replace("external_busy: 0", "external_busy: 1, external_fairness: 0.5")
        + "allocations: {solo: 1000}\n",
        [job(0, 900)],
    )
    res = simulate(setup, make_policy("static"), rebalance_every_seconds=3600)
    assert res.used_seconds == 600
    assert res.jobs_unfinished == 1
    # purchased time was left unused while the job waited: the rest of the day, at the purchase rate
    assert res.wasted_seconds == round(10000 / (28 * 86400) * (86400 - 600))


def test_a_limit_hit_fails_the_job_and_retries_every_hour() -> None:
    # limit 500 s: the job runs 0..300, 300..500 (slice cut at the limit) and fails at 500 (hit a limit).
    # Researchers resubmit an hour later; it fails again at once, at 4100, 7700, ... 83300 (< 1 day).
    cfg = ONE.replace(f'crn: "{CRN.format("solo")}"', f'crn: "{CRN.format("solo")}"\n    limit_seconds: 500')
    setup = make_setup(cfg, BASE + "allocations: {solo: 5000}\n", [job(0, 800)])
    res = simulate(setup, make_policy("static"), rebalance_every_seconds=3600)
    assert res.used_seconds == 500
    assert res.limit_hit_jobs == 1
    assert res.limit_failures == 1 + 23
    assert res.jobs_unfinished == 1


def test_the_gate_holds_jobs_of_an_instance_at_its_limit() -> None:
    # Same as above under qauvern-hpc: the first rebalance (t=3600) sees the limit reached and gates the
    # instance, so the resubmitted job pends in Slurm instead of failing again: one failure in all.
    cfg = ONE.replace(f'crn: "{CRN.format("solo")}"', f'crn: "{CRN.format("solo")}"\n    limit_seconds: 500')
    scenario = BASE + "allocations: {solo: 5000}\nadmission: {enabled: false}\n"
    setup = make_setup(cfg, scenario, [job(0, 800)])
    res = simulate(setup, make_policy("qauvern-hpc"), rebalance_every_seconds=3600)
    assert res.used_seconds == 500
    assert res.limit_failures == 1
    assert res.jobs_unfinished == 1


def test_a_net_grant_lifts_the_limit() -> None:
    # Base limit 500 s plus a 300 s net grant active from the start: effective limit 800 s, so the 800 s
    # job runs 0..300, 300..600, 600..800 and is done, with no limit hit.
    cfg = ONE.replace(
        f'crn: "{CRN.format("solo")}"',
        f'crn: "{CRN.format("solo")}"\n    limit_seconds: 500\n'
        "    net_grants: [{start_date: 2026-03-02, net_grant_seconds: 300}]",
    )
    setup = make_setup(cfg, BASE + "allocations: {solo: 5000}\n", [job(0, 800)])
    assert setup.initial_limits == (800,)
    for policy in ("static", "qauvern-hpc"):
        res = simulate(setup, make_policy(policy), rebalance_every_seconds=3600)
        assert res.used_seconds == 800, policy
        assert res.limit_hit_jobs == 0
        assert res.wait_median_seconds == 800.0


def test_a_job_past_its_wall_limit_times_out_and_is_resubmitted_for_the_rest() -> None:
    # wall limit 400 s for 600 s of work: 0..300, 300..400 (cut at the deadline) -> TIMEOUT at 400 with
    # 400 s done; resubmitted at 4000, it runs the remaining 200 s: done at 4200.
    setup = make_setup(ONE, BASE + "allocations: {solo: 5000}\n", [job(0, 600, wall=400)])
    res = simulate(setup, make_policy("static"), rebalance_every_seconds=3600)
    assert res.timeouts == 1
    assert res.used_seconds == 600
    assert res.wait_median_seconds == 4200.0


def test_rules_refuse_unmapped_rows() -> None:
    setup = make_setup(ONE, BASE, [job(0, 100), job(10, 100, account="stranger")])
    res = simulate(setup, make_policy("static"), rebalance_every_seconds=3600)
    assert res.jobs_refused == 1
    assert res.jobs_done == 1
    assert "stranger" not in res.projects


def test_default_allocations_follow_the_limits() -> None:
    cfg = TWO.replace(f'crn: "{CRN.format("big")}"', f'crn: "{CRN.format("big")}"\n    limit_seconds: 3000')
    cfg = cfg.replace(
        f'crn: "{CRN.format("small")}"', f'crn: "{CRN.format("small")}"\n    limit_seconds: 1000'
    )
    setup = make_setup(cfg, "start_date: 2026-03-02\n", [job(0, 100, "pbig")])
    assert setup.budget == 4000
    assert setup.initial_allocations == (3000, 1000)


# --------------------------------------------------------------------------------------------- policies


def test_qauvern_policy_runs_the_real_optimizer() -> None:
    pytest.importorskip("qauvern.optimizer")
    setup = make_setup(
        TWO,
        BASE + "allocations: {big: 2000, small: 1000}\n",
        [job(0, 600, "pbig"), job(0, 600, "psmall"), job(7200, 300, "pbig")],
    )
    res = simulate(setup, make_policy("qauvern"), rebalance_every_seconds=3600)
    assert res.jobs_done == 3
    assert res.rebalances == 23
    # at the first run both instances are active: qauvern moves the unallocated 7000 s to them
    assert res.allocation_changes > 0
    assert res.instances["big"]["final_allocation_seconds"] != 2000


def test_unknown_policy_is_a_usage_error() -> None:
    from qauvern_hpc.core.errors import UsageError

    with pytest.raises(UsageError, match="unknown policy"):
        make_policy("fifo")


# --------------------------------------------------------------------------------------------- determinism


@pytest.fixture(scope="module")
def shipped() -> SimSetup:
    return load_setup(
        DATA_DIR / "mixed-90d-s1.csv", DATA_DIR / "site.yaml", DATA_DIR / "scenario.yaml", days=12
    )


def test_same_seed_same_result(shipped: SimSetup) -> None:
    a = simulate(shipped, make_policy("qauvern-hpc"), rebalance_every_seconds=3600, seed=5)
    b = simulate(shipped, make_policy("qauvern-hpc"), rebalance_every_seconds=3600, seed=5)
    assert a.to_dict() == b.to_dict()
    assert a.series == b.series


def test_another_seed_changes_the_external_load(shipped: SimSetup) -> None:
    a = simulate(shipped, make_policy("static"), rebalance_every_seconds=3600, seed=1)
    b = simulate(shipped, make_policy("static"), rebalance_every_seconds=3600, seed=2)
    assert a.to_dict() != b.to_dict()


def test_shipped_data_maps_every_row(shipped: SimSetup) -> None:
    assert all(j.instance >= 0 for j in shipped.jobs)
    assert set(shipped.instance_names) == {"physics", "chemistry", "materials", "biology", "teaching"}
    for name in ("mixed-90d-s1.csv", "mixed-90d-s2.csv", "busy-90d.csv", "site.yaml", "scenario.yaml"):
        assert (DATA_DIR / name).is_file()


# --------------------------------------------------------------------------------------------- statistics


def test_statistics() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert jain_index([1, 1, 1]) == pytest.approx(1.0)
    assert jain_index([1, 0, 0, 0]) == pytest.approx(0.25)
    shares = maxmin_shares(100, {"a": 10, "b": 100, "c": 100})
    assert shares == {"a": 10, "b": 45, "c": 45}
    assert maxmin_shares(100, {"a": 10, "b": 20}) == {"a": 10, "b": 20}


def test_data_dir_is_packaged() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert "data/sim/*" in text
