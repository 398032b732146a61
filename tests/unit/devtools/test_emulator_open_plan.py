"""The emulator's Open plan: no dedicated session (IBM's 400, code 1352); batch sessions and job mode run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from qauvern_hpc.devtools.emulator.clock import Clock
from qauvern_hpc.devtools.emulator.errors import ApiError
from qauvern_hpc.devtools.emulator.iam import Principal
from qauvern_hpc.devtools.emulator.state import EmulatorState
from qauvern_hpc.devtools.emulator.testing import ACCOUNT, API_KEY, CRN_ALPHA, make_seed

START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CRN_OPEN = f"crn:v1:bluemix:public:quantum-computing:us-east:a/{ACCOUNT}:open-0004::"


@pytest.fixture
def state() -> EmulatorState:
    seed = make_seed()
    seed["accounts"][0]["plans"].append({"plan": "open", "usage_allocation_seconds": 600})
    for inst in seed["instances"][:2]:
        inst["plan"] = "premium"
    seed["instances"].append(
        {"name": "learners", "crn": CRN_OPEN, "plan": "open", "usage_allocation_seconds": 600}
    )
    return EmulatorState.from_seed(seed, Clock("manual", start=START))


def principal(state: EmulatorState) -> Principal:
    token = state.issue_token({"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": API_KEY})
    return state.authenticate(f"Bearer {token['access_token']}")


def test_an_open_plan_instance_refuses_a_dedicated_session_like_ibm(state: EmulatorState) -> None:
    p = principal(state)
    with pytest.raises(ApiError) as info:
        state.create_session(p, CRN_OPEN, {"backend": "ibm_torino", "mode": "dedicated"})
    assert info.value.status == 400
    error = info.value.body()["errors"][0]
    assert error["code"] == "1352" and "open plan" in error["message"]
    assert state.snapshot()["sessions"] == []


def test_an_open_plan_instance_runs_batch_sessions_and_jobs_without_a_session(state: EmulatorState) -> None:
    p = principal(state)
    batch = state.create_session(p, CRN_OPEN, {"backend": "ibm_torino", "mode": "batch"})
    assert batch["mode"] == "batch"
    job = state.create_job(
        p, CRN_OPEN, {"program_id": "sampler", "backend": "ibm_fez", "params": {"emulator": {}}}
    )
    assert state.job(job["id"])["status"] in ("Queued", "Running")


def test_a_premium_instance_still_opens_dedicated_sessions(state: EmulatorState) -> None:
    s = state.create_session(principal(state), CRN_ALPHA, {"backend": "ibm_torino", "mode": "dedicated"})
    assert s["mode"] == "dedicated"


def test_job_listings_filter_by_backend_and_creation_time_and_sort_as_ibm_documents(
    state: EmulatorState,
) -> None:
    p = principal(state)
    body = {"program_id": "sampler", "params": {"emulator": {}}}
    made = []
    for backend in ("ibm_torino", "ibm_fez", "ibm_torino"):
        made.append(state.create_job(p, CRN_OPEN, {**body, "backend": backend})["id"])
        state.clock.advance(60)
    query = {"backend": "ibm_torino", "created_after": "2026-11-22T11:59:00+00:00", "sort": "ASC"}
    listed = state.list_jobs(p, CRN_OPEN, query)
    assert [j["id"] for j in listed["jobs"]] == [made[0], made[2]]  # oldest first
    assert [j["id"] for j in state.list_jobs(p, CRN_OPEN, {**query, "sort": "desc"})["jobs"]] == [
        made[2],
        made[0],
    ]
    before = state.list_jobs(p, CRN_OPEN, {**query, "created_before": "2026-11-22T12:01:00+00:00"})
    assert [j["id"] for j in before["jobs"]] == [made[0]]
    with pytest.raises(ApiError) as info:
        state.list_jobs(p, CRN_OPEN, {"sort": "newest"})
    assert info.value.status == 400
