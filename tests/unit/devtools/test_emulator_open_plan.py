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
