"""`EmulatorState` used directly from Python (no HTTP): control operations, dumps that restore, thread
safety."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from qauvern_hpc.devtools.emulator.clock import Clock
from qauvern_hpc.devtools.emulator.errors import ApiError
from qauvern_hpc.devtools.emulator.iam import Principal
from qauvern_hpc.devtools.emulator.seed import SeedError
from qauvern_hpc.devtools.emulator.state import EmulatorState
from qauvern_hpc.devtools.emulator.testing import ACCOUNT, API_KEY, BUDGET, CRN_ALPHA, CRN_BETA, make_seed

START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def state() -> EmulatorState:
    return EmulatorState.from_seed(make_seed(), Clock("manual", start=START))


def principal(state: EmulatorState) -> Principal:
    token = state.issue_token({"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": API_KEY})
    return state.authenticate(f"Bearer {token['access_token']}")


def test_patch_merges_items_and_keeps_the_rest(state: EmulatorState) -> None:
    state.patch({"instances": [{"name": "alpha", "usage_allocation_seconds": 123}], "page_size": 7})
    snap = state.snapshot()
    assert snap["page_size"] == 7
    by_name = {i["name"]: i for i in snap["instances"]}
    assert by_name["alpha"]["usage_allocation_seconds"] == 123
    assert by_name["alpha"]["usage_history"]["2026-11-22"] == 1000.0  # untouched fields survive
    assert by_name["beta"]["instance_limit_seconds"] == 600_000
    state.patch({"backends": [{"name": "ibm_kyiv"}]})
    assert [b["name"] for b in state.snapshot()["backends"]] == ["ibm_torino", "ibm_fez", "ibm_kyiv"]
    with pytest.raises(SeedError):
        state.patch({"instances": [{"name": "alpha", "usage_allocation_seconds": BUDGET}]})
    assert state.instance("alpha")["extensions"]["usage_allocation_seconds"] == 123  # unchanged on error


def test_replace_without_api_keys_keeps_them(state: EmulatorState) -> None:
    seed = make_seed()
    del seed["api_keys"]
    state.replace(seed)
    assert principal(state).account == ACCOUNT
    seed = make_seed(api_keys=[{"key": "new-key", "account": ACCOUNT}])
    state.replace(seed)
    with pytest.raises(ApiError) as exc:
        state.issue_token({"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": API_KEY})
    assert exc.value.body()["errorCode"] == "BXNIM0415E"


def test_a_dump_with_sessions_and_jobs_restores(state: EmulatorState) -> None:
    p = principal(state)
    s = state.create_session(p, CRN_BETA, {"backend": "ibm_torino", "mode": "dedicated"})
    job = state.create_job(
        p,
        CRN_BETA,
        {"program_id": "sampler", "params": {"emulator": {"quantum_seconds": 30}}, "session_id": s["id"]},
    )
    queued = state.create_job(
        p,
        CRN_BETA,
        {"program_id": "sampler", "backend": "ibm_torino", "params": {"emulator": {"quantum_seconds": 5}}},
    )
    state.advance(10)
    dump = state.snapshot()
    assert [b["running_job"] for b in dump["backends"]] == [job["id"], None]

    # dumps carry API keys only as fingerprints: a fresh emulator needs them again
    with pytest.raises(SeedError, match="needs `key`"):
        EmulatorState.from_seed(dump, Clock("manual", start=START))
    dump["api_keys"] = [{"key": API_KEY, "account": ACCOUNT}]
    clone = EmulatorState.from_seed(dump, Clock("manual", start=START + timedelta(seconds=10)))
    assert clone.job(job["id"])["status"] == "Running"
    clone.advance(20)  # job ends at 30; the idle session holds the QPU until 90
    assert clone.job(queued["id"])["status"] == "Queued"
    clone.advance(60)
    assert clone.session(s["id"])["state"] == "inactive"
    assert clone.job(queued["id"])["status"] == "Running"
    assert clone.rolling_usage_seconds("beta") == 90.0


def test_add_usage_and_windows(state: EmulatorState) -> None:
    state.add_usage("beta", 50, at=START - timedelta(days=3))
    state.add_usage(CRN_BETA, 7)
    assert state.rolling_usage_seconds("beta") == 57
    assert state.usage_seconds("beta", START - timedelta(days=1), START) == 0
    assert state.usage_seconds("beta", START, START + timedelta(seconds=1)) == 7
    assert state.account_plan(ACCOUNT, "premium")["unallocated_usage_seconds"] == BUDGET - 700_000
    with pytest.raises(KeyError):
        state.instance("nope")


def test_concurrent_submissions_are_serialised(state: EmulatorState) -> None:
    p = principal(state)
    ids: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                job = state.create_job(
                    p,
                    CRN_ALPHA,
                    {
                        "program_id": "sampler",
                        "backend": "ibm_torino",
                        "params": {"emulator": {"quantum_seconds": 1}},
                    },
                )
                ids.append(job["id"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(ids)) == 160
    state.advance(160)
    jobs = state.jobs()
    assert sorted(j["status"] for j in jobs) == ["Completed"] * 160
    assert [j["usage"]["quantum_seconds"] for j in jobs] == [1.0] * 160
    assert state.rolling_usage_seconds("alpha") == sum(1000 + i for i in range(28)) + 160
