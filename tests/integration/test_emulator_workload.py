"""Sessions, jobs and the scheduler over HTTP with a manual clock: usage per execution mode (IBM "Workload
usage"), cancelled and failed jobs, fair-share order, TTLs and limits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from qauvern_hpc.devtools.emulator import Emulator, run_emulator
from qauvern_hpc.devtools.emulator.testing import (
    ACCOUNT,
    ALPHA_HISTORY,
    CRN_ALPHA,
    CRN_BETA,
    ApiClient,
    make_seed,
)

START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CRN_GAMMA = f"crn:v1:bluemix:public:quantum-computing:us-east:a/{ACCOUNT}:gamma-0004::"
ALPHA_28D = sum(ALPHA_HISTORY[:28])


def at(seconds: float) -> str:
    t = START + timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    seed = make_seed()
    seed["instances"].append({"name": "gamma", "crn": CRN_GAMMA, "usage_allocation_seconds": 100_000})
    with run_emulator(seed) as e:
        yield e


@pytest.fixture
def beta(emu: Emulator) -> Iterator[ApiClient]:
    with ApiClient(emu.base_url, crn=CRN_BETA) as c:
        yield c


@pytest.fixture
def alpha(emu: Emulator) -> Iterator[ApiClient]:
    with ApiClient(emu.base_url, crn=CRN_ALPHA) as c:
        yield c


@pytest.fixture
def gamma(emu: Emulator) -> Iterator[ApiClient]:
    with ApiClient(emu.base_url, crn=CRN_GAMMA) as c:
        yield c


def _close(api: ApiClient, sid: str) -> None:
    r = api.patch(f"/api/v1/sessions/{sid}", json={"accepting_jobs": False})
    assert r.status_code == 204 and r.content == b""


# ---------------------------------------------------------------------------------------------- job mode


def test_job_mode_usage_is_the_jobs_quantum_time(emu: Emulator, beta: ApiClient) -> None:
    jid = beta.submit(quantum_seconds=30)
    assert beta.job(jid)["status"] == "Running"
    emu.advance(29)
    job = beta.job(jid)
    assert job["status"] == "Running" and job["state"]["status"] == "Running"
    assert beta.usage() == 0  # charged when the job ends
    emu.advance(1)
    job = beta.job(jid)
    assert job["status"] == "Completed" and job["usage"] == {"seconds": 30.0, "quantum_seconds": 30.0}
    metrics = beta.get(f"/api/v1/jobs/{jid}/metrics").json()
    assert metrics["usage"]["quantum_seconds"] == 30.0
    assert metrics["timestamps"] == {"created": at(0), "running": at(0), "finished": at(30)}
    assert beta.usage() == 30
    results = beta.get(f"/api/v1/jobs/{jid}/results")
    assert results.status_code == 200 and results.headers["Content-Type"].startswith("text/plain")
    assert '"quantum_seconds": 30.0' in results.text


def test_quantum_time_estimated_from_shots(emu: Emulator, beta: ApiClient) -> None:
    params = {
        "pubs": [["OPENQASM 3.0;", None, 10000], ["OPENQASM 3.0;", [[0.1], [0.2]], 1000]],
        "version": 2,
    }
    jid = beta.submit(params=params)
    job = beta.job(jid)
    assert job["estimated_running_time_seconds"] == pytest.approx(2 + 0.00035 * 12000)
    emu.advance(6.2)
    metrics = beta.get(f"/api/v1/jobs/{jid}/metrics").json()
    assert beta.job(jid)["status"] == "Completed"
    assert metrics["usage"]["quantum_seconds"] == pytest.approx(6.2)
    assert (metrics["executions"], metrics["num_circuits"]) == (12000, 2)


def test_cancelled_and_failed_jobs_count_only_locked_time(emu: Emulator, beta: ApiClient) -> None:
    a = beta.submit(quantum_seconds=100)
    b = beta.submit(quantum_seconds=50)
    c = beta.submit(quantum_seconds=50)
    emu.advance(40)
    assert beta.post(f"/api/v1/jobs/{a}/cancel").status_code == 204  # ran 40 s
    assert beta.job(b)["status"] == "Running"
    assert beta.post(f"/api/v1/jobs/{c}/cancel").status_code == 204  # never started
    emu.advance(50)
    states = {j: (beta.job(j)["status"], beta.job(j)["usage"]["quantum_seconds"]) for j in (a, b, c)}
    assert states == {a: ("Cancelled", 40.0), b: ("Completed", 50.0), c: ("Cancelled", 0.0)}
    assert beta.usage() == 90
    again = beta.post(f"/api/v1/jobs/{a}/cancel")
    assert again.status_code == 409

    failing = beta.submit(
        quantum_seconds=50, params={"emulator": {"fail_after_seconds": 7, "fail_reason": "boom"}}
    )
    emu.advance(10)
    job = beta.job(failing)
    assert (job["status"], job["state"]["reason"], job["usage"]["quantum_seconds"]) == ("Failed", "boom", 7.0)
    assert beta.usage() == 97
    assert beta.get(f"/api/v1/jobs/{failing}/results").status_code == 409


def test_job_cost_caps_the_run(emu: Emulator, beta: ApiClient) -> None:
    jid = beta.submit(quantum_seconds=100, cost=20)
    emu.advance(30)
    job = beta.job(jid)
    assert (job["status"], job["state"]["status"], job["cost"]) == (
        "Cancelled - Ran too long",
        "Cancelled",
        20,
    )
    assert beta.usage() == 20


# ---------------------------------------------------------------------------------------------- sessions


def test_batch_session_usage_is_the_sum_of_its_jobs(emu: Emulator, beta: ApiClient) -> None:
    s = beta.open_session(mode="batch")
    assert (s["state"], s["mode"], s["backend_name"], s["accepting_jobs"]) == (
        "open",
        "batch",
        "ibm_torino",
        True,
    )
    beta.submit(quantum_seconds=10, session_id=s["id"])
    emu.advance(110)
    beta.refresh()
    beta.submit(quantum_seconds=20, session_id=s["id"])
    emu.advance(20)
    _close(beta, s["id"])
    final = beta.session(s["id"])
    assert final["state"] == "closed" and final["accepting_jobs"] is False
    assert final["elapsed_time"] == 30.0
    assert [t["status"] for t in final["timestamps"]] == ["open", "active", "inactive", "active", "closed"]
    assert (final["started_at"], final["closed_at"]) == (at(0), at(130))
    assert beta.usage() == 30


def test_dedicated_session_usage_is_wall_clock_from_first_job_to_close(
    emu: Emulator, beta: ApiClient
) -> None:
    s = beta.open_session(mode="dedicated")
    emu.advance(5)  # waiting before the first job is not charged
    j1 = beta.submit(quantum_seconds=10, session_id=s["id"])
    emu.advance(40)  # j1 ends at 15, idle 30 s < interactive_ttl (60 s)
    j2 = beta.submit(quantum_seconds=20, session_id=s["id"])
    emu.advance(25)  # j2 runs 45..65, then 5 s idle
    _close(beta, s["id"])
    final = beta.session(s["id"])
    assert (final["state"], final["started_at"], final["closed_at"]) == ("closed", at(5), at(70))
    assert final["elapsed_time"] == 65.0
    assert beta.usage() == 65  # not 10 + 20
    assert [beta.job(j)["usage"]["quantum_seconds"] for j in (j1, j2)] == [10.0, 20.0]


def test_dedicated_session_goes_inactive_and_frees_the_backend(
    emu: Emulator, beta: ApiClient, alpha: ApiClient
) -> None:
    s = beta.open_session(mode="dedicated")
    beta.submit(quantum_seconds=10, session_id=s["id"])
    emu.advance(1)
    other = alpha.submit(quantum_seconds=10)
    emu.advance(30)
    assert alpha.job(other)["status"] == "Queued"  # the idle dedicated session still holds the QPU
    emu.advance(39)  # idle since 10: inactive at 70
    assert beta.session(s["id"])["state"] == "inactive"
    assert alpha.job(other)["status"] == "Running"
    assert beta.usage() == 70
    assert alpha.get(f"/api/v1/jobs/{other}/metrics").json()["timestamps"]["running"] == at(70)
    # a new job re-activates the session once the backend is free, and opens a new charged period
    j = beta.submit(quantum_seconds=5, session_id=s["id"])
    emu.advance(15)  # alpha's job ends at 80, j runs 80..85
    assert beta.get(f"/api/v1/jobs/{j}/metrics").json()["timestamps"]["running"] == at(80)
    _close(beta, s["id"])  # at 85
    assert beta.session(s["id"])["elapsed_time"] == 75.0
    assert beta.usage() == 75


def test_cancelled_job_in_dedicated_session_is_charged_wall_clock(emu: Emulator, beta: ApiClient) -> None:
    s = beta.open_session(mode="dedicated")
    jid = beta.submit(quantum_seconds=100, session_id=s["id"])
    emu.advance(40)
    beta.post(f"/api/v1/jobs/{jid}/cancel")
    emu.advance(10)
    assert beta.delete(f"/api/v1/sessions/{s['id']}/close").status_code == 204
    assert beta.job(jid)["usage"]["quantum_seconds"] == 40.0
    assert beta.session(s["id"])["elapsed_time"] == 50.0
    assert beta.usage() == 50


def test_delete_close_cancels_queued_jobs_and_closes_after_the_running_one(
    emu: Emulator, beta: ApiClient
) -> None:
    s = beta.open_session(mode="batch")
    running = beta.submit(quantum_seconds=30, session_id=s["id"])
    queued = beta.submit(quantum_seconds=30, session_id=s["id"])
    pending = beta.get("/api/v1/jobs", params={"session_id": s["id"], "pending": "true"}).json()
    assert pending["count"] == 2
    assert beta.delete(f"/api/v1/sessions/{s['id']}/close").status_code == 204
    assert beta.job(queued)["status"] == "Cancelled"
    mid = beta.session(s["id"])
    assert (mid["state"], mid["accepting_jobs"]) == ("active", False)
    rejected = beta.post(
        "/api/v1/jobs", json={"program_id": "sampler", "backend": "ibm_torino", "session_id": s["id"]}
    )
    assert rejected.status_code == 400 and rejected.json()["errors"][0]["code"] == "session_closed"
    emu.advance(30)
    assert beta.job(running)["status"] == "Completed"
    assert (beta.session(s["id"])["state"], beta.session(s["id"])["closed_at"]) == ("closed", at(30))
    assert beta.usage() == 30
    listed = beta.get("/api/v1/jobs", params={"session_id": s["id"], "pending": "false"}).json()
    assert sorted(j["id"] for j in listed["jobs"]) == sorted([running, queued])
    assert beta.get("/api/v1/jobs", params={"session_id": s["id"], "pending": "true"}).json()["jobs"] == []
    reopen = beta.patch(f"/api/v1/sessions/{s['id']}", json={"accepting_jobs": True})
    assert reopen.status_code == 409


def test_session_without_jobs_closes_after_30_minutes(emu: Emulator, beta: ApiClient) -> None:
    s = beta.open_session(mode="dedicated")
    emu.advance(1799)
    assert beta.session(s["id"])["state"] == "open"
    emu.advance(1)
    closed = beta.session(s["id"])
    assert closed["state"] == "closed" and "no job" in closed["state_reason"]
    assert closed["elapsed_time"] == 0.0 and beta.usage() == 0


def test_max_ttl(emu: Emulator, beta: ApiClient) -> None:
    capped = beta.open_session(mode="batch", max_ttl=100_000)
    assert capped["max_ttl"] == 28800 and capped["active_ttl"] == 28800
    s = beta.open_session(mode="dedicated", max_ttl=50)
    beta.submit(quantum_seconds=40, session_id=s["id"])
    second = beta.submit(quantum_seconds=40, session_id=s["id"])
    third = beta.submit(quantum_seconds=40, session_id=s["id"])
    emu.advance(45)
    assert beta.session(s["id"])["active_ttl"] == 5
    emu.advance(10)  # max_ttl reached at 50 while `second` runs: queued jobs are cancelled
    assert beta.job(third)["status"] == "Cancelled"
    assert beta.session(s["id"])["accepting_jobs"] is False
    emu.advance(30)
    assert beta.job(second)["status"] == "Completed"
    final = beta.session(s["id"])
    assert (final["state"], final["closed_at"], final["elapsed_time"]) == ("closed", at(80), 80.0)


def test_sessions_and_jobs_are_scoped_to_their_instance(
    emu: Emulator, beta: ApiClient, alpha: ApiClient
) -> None:
    s = beta.open_session()
    jid = beta.submit(quantum_seconds=1, session_id=s["id"])
    assert alpha.get(f"/api/v1/sessions/{s['id']}").status_code == 404
    assert alpha.get(f"/api/v1/jobs/{jid}").status_code == 404
    assert alpha.get("/api/v1/jobs").json()["count"] == 0
    mismatch = beta.post(
        "/api/v1/jobs", json={"program_id": "sampler", "backend": "ibm_fez", "session_id": s["id"]}
    )
    assert mismatch.status_code == 400 and mismatch.json()["errors"][0]["code"] == "backend_mismatch"
    assert beta.post("/api/v1/jobs", json={"backend": "ibm_torino"}).status_code == 400
    assert beta.post("/api/v1/sessions", json={"backend": "ibm_torino", "mode": "solo"}).status_code == 400
    assert beta.post("/api/v1/sessions", json={"backend": "ibm_nowhere"}).status_code == 404


# ---------------------------------------------------------------------------------------------- scheduling


def _started(api: ApiClient, jid: str) -> str:
    return str(api.get(f"/api/v1/jobs/{jid}/metrics").json()["timestamps"]["running"])


def test_fair_share_runs_the_lowest_usage_to_allocation_first(
    emu: Emulator, alpha: ApiClient, beta: ApiClient
) -> None:
    # alpha has used 28378 s of 200000 (0.14); beta nothing of 500000 (0.0)
    blocker = alpha.submit(quantum_seconds=100)
    a1, a2 = alpha.submit(quantum_seconds=10), alpha.submit(quantum_seconds=10)
    b1, b2 = beta.submit(quantum_seconds=10), beta.submit(quantum_seconds=10)
    positions = {j: alpha.get(f"/api/v1/jobs/{j}/metrics").json()["position_in_queue"] for j in (a1, a2)}
    positions |= {j: beta.get(f"/api/v1/jobs/{j}/metrics").json()["position_in_queue"] for j in (b1, b2)}
    assert positions == {b1: 1, b2: 2, a1: 3, a2: 4}
    status = alpha.get("/api/v1/backends/ibm_torino/status").json()
    assert status["length_queue"] == 4
    emu.advance(140)
    assert _started(alpha, blocker) == at(0)
    assert [_started(beta, b1), _started(beta, b2), _started(alpha, a1), _started(alpha, a2)] == [
        at(100),
        at(110),
        at(120),
        at(130),
    ]
    assert alpha.usage() == ALPHA_28D + 120


def test_fair_share_is_fifo_between_equals(
    emu: Emulator, alpha: ApiClient, beta: ApiClient, gamma: ApiClient
) -> None:
    alpha.submit(quantum_seconds=100)
    g1 = gamma.submit(quantum_seconds=10)  # gamma and beta both at 0 usage: submission order decides
    b1 = beta.submit(quantum_seconds=10)
    g2 = gamma.submit(quantum_seconds=10)
    emu.advance(130)
    # after g1 gamma is at 10/100000 while beta is still at 0, so b1 goes before g2
    assert [_started(gamma, g1), _started(beta, b1), _started(gamma, g2)] == [at(100), at(110), at(120)]


def test_fair_share_is_usage_over_allocation_in_the_28_day_window_not_raw_usage() -> None:
    """beta has used more seconds than alpha but less of its allocation; gamma used a lot, but 29 days ago
    (outside the rolling window): gamma, then beta, then alpha, although they were submitted the other way."""
    seed = make_seed()
    beta_seed = next(i for i in seed["instances"] if i["name"] == "beta")
    beta_seed["usage_history"] = {1: 60_000}  # 60000 / 500000 = 0.12 < alpha's 28378 / 200000 = 0.14
    seed["instances"].append(
        {
            "name": "gamma",
            "crn": CRN_GAMMA,
            "usage_allocation_seconds": 100_000,
            "usage_history": {29: 90_000},  # 0.9 if it counted, 0 in the window
        }
    )
    with (
        run_emulator(seed) as emu,
        ApiClient(emu.base_url, crn=CRN_ALPHA) as alpha,
        ApiClient(emu.base_url, crn=CRN_BETA) as beta,
        ApiClient(emu.base_url, crn=CRN_GAMMA) as gamma,
    ):
        assert beta.usage() == 60_000 > alpha.usage() == ALPHA_28D and gamma.usage() == 0
        alpha.submit(quantum_seconds=100)  # holds the backend while the others queue
        a1 = alpha.submit(quantum_seconds=10)
        b1 = beta.submit(quantum_seconds=10)
        g1 = gamma.submit(quantum_seconds=10)
        emu.advance(130)
        assert [_started(gamma, g1), _started(beta, b1), _started(alpha, a1)] == [at(100), at(110), at(120)]


def test_other_backend_is_independent(emu: Emulator, alpha: ApiClient, beta: ApiClient) -> None:
    alpha.submit(quantum_seconds=100)
    on_fez = beta.submit("ibm_fez", quantum_seconds=10)
    assert beta.job(on_fez)["status"] == "Running"


def test_paused_backend_queues_until_online(emu: Emulator, beta: ApiClient) -> None:
    emu.state.set_backend_status("ibm_fez", "paused")
    jid = beta.submit("ibm_fez", quantum_seconds=10)
    emu.advance(100)
    assert beta.job(jid)["status"] == "Queued"
    assert beta.get("/api/v1/backends/ibm_fez/status").json()["state"] is True  # paused: accepts, starts none
    emu.state.set_backend_status("ibm_fez", "online")
    emu.advance(10)
    assert beta.job(jid)["status"] == "Completed"
    assert _started(beta, jid) == at(100)


def test_usage_limit_and_archived_instances(emu: Emulator, beta: ApiClient, alpha: ApiClient) -> None:
    emu.state.patch({"instances": [{"crn": CRN_BETA, "instance_limit_seconds": 40}]})
    first = beta.submit(quantum_seconds=50)
    queued = beta.submit(quantum_seconds=10)
    emu.advance(60)
    assert beta.job(first)["status"] == "Completed"
    job = beta.job(queued)
    assert job["status"] == "Failed" and "usage limit" in job["state"]["reason"]
    refused = beta.post("/api/v1/jobs", json={"program_id": "sampler", "backend": "ibm_torino"})
    assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "usage_limit_reached"
    assert beta.get("/api/v1/instances/usage").json()["usage_limit_reached"] is True

    emu.state.patch({"instances": [{"crn": CRN_ALPHA, "usage_allocation_seconds": 0}]})
    archived = alpha.post("/api/v1/jobs", json={"program_id": "sampler", "backend": "ibm_torino"})
    assert archived.status_code == 403 and archived.json()["errors"][0]["code"] == "instance_archived"


def test_job_listing_and_deletion(emu: Emulator, beta: ApiClient) -> None:
    s = beta.open_session()
    in_session = beta.submit(quantum_seconds=10, session_id=s["id"])
    alone = beta.submit(quantum_seconds=10)
    listed = beta.get("/api/v1/jobs", params={"limit": 1}).json()
    assert (listed["count"], listed["limit"], [j["id"] for j in listed["jobs"]]) == (2, 1, [alone])
    assert "params" not in beta.get("/api/v1/jobs", params={"exclude_params": "true"}).json()["jobs"][0]
    assert beta.delete(f"/api/v1/jobs/{alone}").status_code == 409  # still queued
    emu.advance(20)
    assert beta.delete(f"/api/v1/jobs/{alone}").status_code == 204
    assert beta.get(f"/api/v1/jobs/{alone}").status_code == 404
    assert [j["id"] for j in beta.get("/api/v1/jobs").json()["jobs"]] == [in_session]
    logs = beta.get(f"/api/v1/jobs/{in_session}/logs")
    assert logs.headers["Content-Type"].startswith("text/plain") and "Completed" in logs.text


def test_real_clock_with_time_scale() -> None:
    with (
        run_emulator(make_seed(), clock="real", time_scale=50) as emu,
        ApiClient(emu.base_url, crn=CRN_BETA) as api,
    ):
        jid = api.submit(quantum_seconds=5)  # 0.1 s of real time
        deadline = time.monotonic() + 5
        while api.job(jid)["status"] != "Completed":
            assert time.monotonic() < deadline, "the job never completed"
            time.sleep(0.02)
        assert api.job(jid)["usage"]["quantum_seconds"] == 5.0
        assert emu.clock.mode == "real" and emu.clock.time_scale == 50
