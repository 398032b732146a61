"""The emulator's backends as an admission controller reads them, on the manual clock (no HTTP): IBM's
status enum and messages, other customers' load, the wait estimate, scheduled status changes and the fault
knobs (temporary status, wait spikes, flapping), and queue metrics of our jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from qauvern_hpc.devtools.emulator.clock import Clock
from qauvern_hpc.devtools.emulator.iam import Principal
from qauvern_hpc.devtools.emulator.seed import SeedError
from qauvern_hpc.devtools.emulator.state import EmulatorState
from qauvern_hpc.devtools.emulator.testing import ACCOUNT, CRN_ALPHA, CRN_BETA, make_seed

START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
P = Principal(ACCOUNT, "")
LOAD = {"rate_per_hour": 120, "mean_seconds": 20, "ratio": 0.5}


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def make_state(*backends: dict[str, Any], **extra: Any) -> EmulatorState:
    seed = make_seed(backends=list(backends) or [{"name": "ibm_torino"}, {"name": "ibm_fez"}], **extra)
    return EmulatorState.from_seed(seed, Clock("manual", start=START))


def submit(
    state: EmulatorState, crn: str = CRN_ALPHA, backend: str = "ibm_torino", seconds: float = 10
) -> str:
    body = {"program_id": "sampler", "backend": backend, "params": {"emulator": {"quantum_seconds": seconds}}}
    return str(state.create_job(P, crn, body)["id"])


def status(state: EmulatorState, name: str = "ibm_torino") -> tuple[bool, str, str]:
    st = state.backend_status(P, CRN_ALPHA, name)
    return st["state"], st["status"], st["message"]


# ----------------------------------------------------------------------------------------- status and message


def test_status_enum_and_messages() -> None:
    state = make_state(
        {"name": "ibm_torino"},
        {"name": "ibm_fez", "status": "maintenance"},  # an old seed
        {"name": "ibm_kyiv", "status": "offline"},
        {"name": "ibm_marrakesh", "status": "paused", "message": "calibrating"},
    )
    assert status(state) == (True, "online", "active")
    assert status(state, "ibm_fez") == (True, "paused", "maintenance")
    assert status(state, "ibm_kyiv") == (False, "offline", "offline")
    assert status(state, "ibm_marrakesh") == (True, "paused", "calibrating")
    devices = state.backends(P, CRN_ALPHA)["devices"]
    assert [(d["status"]["name"], d["status"]["reason"]) for d in devices] == [
        ("online", "active"),
        ("paused", "maintenance"),
        ("offline", "offline"),
        ("paused", "calibrating"),
    ]
    assert all("wait_time_seconds" not in d for d in devices)
    # a patched status without a message gets that status's own message back
    state.patch({"backends": [{"name": "ibm_fez", "status": "online"}]})
    assert status(state, "ibm_fez") == (True, "online", "active")
    state.patch({"backends": [{"name": "ibm_fez", "status": "maintenance"}]})
    assert status(state, "ibm_fez") == (True, "paused", "maintenance")
    with pytest.raises(SeedError, match="status"):
        state.patch({"backends": [{"name": "ibm_fez", "status": "sleeping"}]})


def test_not_serving_starts_nothing_until_back_online() -> None:
    state = make_state()
    state.set_backend_status("ibm_torino", "paused", "maintenance")
    jid = submit(state)
    state.advance(100)
    assert state.job(jid)["status"] == "Queued"
    assert state.backend_status(P, CRN_ALPHA, "ibm_torino")["length_queue"] == 1
    state.set_backend_status("ibm_torino", "offline")
    state.advance(100)
    assert state.job(jid)["status"] == "Queued"
    view = state.set_backend_status("ibm_torino", "online")
    assert (view["status"], view["message"], view["length_queue"]) == ("online", "active", 0)
    assert state.job(jid)["status"] == "Running"


def test_temporary_status_reverts_and_starts_queued_jobs() -> None:
    state = make_state({"name": "ibm_torino", "status": "paused", "message": "internal"})
    state.set_backend_status("ibm_torino", "offline", "power", for_seconds=30)
    state.set_backend_status("ibm_torino", "online", for_seconds=60)
    jid = submit(state)
    assert state.job(jid)["status"] == "Running"
    state.advance(59)  # the second change replaced the first one's way back: no return at 30 s
    assert status(state) == (True, "online", "active")
    state.advance(1)  # back to where the backend was before the first temporary change
    assert status(state) == (True, "paused", "internal")
    state.set_backend_status("ibm_torino", "offline", for_seconds=10)
    state.set_backend_status("ibm_torino", "online")  # permanent: drops the pending way back
    state.advance(20)
    assert status(state) == (True, "online", "active")
    with pytest.raises(KeyError):
        state.set_backend_status("ibm_nowhere", "online")
    with pytest.raises(ValueError):
        state.set_backend_status("ibm_torino", "online", for_seconds=-1)


def test_seeded_schedule_applies_in_time_order() -> None:
    schedule = [
        {"after_seconds": 300, "status": "online"},
        {"after_seconds": 100, "status": "maintenance", "for_seconds": 50},
    ]
    state = make_state({"name": "ibm_torino", "schedule": schedule}, {"name": "ibm_fez"})
    jid = submit(state, seconds=200)  # runs 0..200: a pause does not stop a running job
    second = submit(state, seconds=10)
    state.advance(120)
    assert status(state) == (True, "paused", "maintenance")
    state.advance(30)
    assert status(state) == (True, "online", "active")
    state.advance(50)
    assert state.job(jid)["status"] == "Completed"
    assert state.job(second)["status"] == "Running"
    snap = state.snapshot()["backends"][0]
    assert [c["at"] for c in snap["schedule"]] == ["2026-11-22T12:05:00Z"]
    with pytest.raises(SeedError, match=r"backends\[0\]\.schedule\[0\]\.after_seconds"):
        make_state({"name": "x", "schedule": [{"after_seconds": -1, "status": "online"}]})


def test_a_paused_backend_holds_a_job_submitted_before_the_pause() -> None:
    state = make_state({"name": "ibm_torino", "schedule": [{"after_seconds": 5, "status": "paused"}]})
    first = submit(state, seconds=10)
    second = submit(state, seconds=10)
    state.advance(60)
    assert (state.job(first)["status"], state.job(second)["status"]) == ("Completed", "Queued")


# ------------------------------------------------------------------------------------------ other customers


def _external(state: EmulatorState) -> list[tuple[str, str, float]]:
    return [(x["id"], x["created_at"], x["seconds"]) for x in state.snapshot()["external_jobs"]]


def test_external_load_is_deterministic_per_seed() -> None:
    runs = []
    for seed in (0, 0, 1):
        state = make_state({"name": "ibm_torino", "external": LOAD}, random_seed=seed)
        state.advance(600)
        runs.append(_external(state))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert 5 <= len(runs[0]) <= 60  # ~20 arrivals in 10 min at 120/h

    stepwise = make_state({"name": "ibm_torino", "external": LOAD})
    for _ in range(60):
        stepwise.advance(10)
    assert _external(stepwise) == runs[0]  # the arrivals do not depend on how time is stepped


def test_external_jobs_queue_with_ours_but_are_not_listed() -> None:
    busy = {"rate_per_hour": 3600, "mean_seconds": 120, "ratio": 0.9}
    state = make_state({"name": "ibm_torino", "external": busy})
    state.advance(60)
    queued = state.backend_status(P, CRN_ALPHA, "ibm_torino")["length_queue"]
    assert queued > 10
    assert state.list_jobs(P, CRN_ALPHA, {})["jobs"] == []
    # alpha's ratio (28-day usage / allocation) is ~0.15 < 0.9: our job starts next (fair share)
    jid = submit(state)
    assert state.job_metrics(P, CRN_ALPHA, jid)["position_in_queue"] == 1
    assert state.backend_control_view("ibm_torino")["external_queued"] == queued
    assert state.backend_status(P, CRN_ALPHA, "ibm_torino")["length_queue"] == queued + 1
    state.advance(200)
    assert state.job(jid)["status"] in ("Running", "Completed")


def test_external_jobs_with_a_lower_ratio_go_first() -> None:
    first = {"rate_per_hour": 3600, "mean_seconds": 30, "ratio": 0.0}
    state = make_state({"name": "ibm_torino", "external": first})
    state.advance(30)
    jid = submit(state)
    metrics = state.job_metrics(P, CRN_ALPHA, jid)
    ahead = state.backend_control_view("ibm_torino")["external_queued"]
    assert metrics["position_in_queue"] == ahead + 1
    assert metrics["estimated_start_time"] > "2026-11-22T12:00:30.000Z"


def test_wait_estimate_window() -> None:
    state = make_state({"name": "ibm_torino"}, {"name": "ibm_fez"}, wait_window_seconds=600)
    empty = {"average": None, "p50": None, "p95": None}
    assert state.backend_control_view("ibm_torino")["wait_time_seconds"] == empty
    ids = [submit(state, seconds=10) for _ in range(4)]  # they wait 0, 10, 20, 30 s
    state.advance(40)
    assert all(state.job(j)["status"] == "Completed" for j in ids)
    devices = state.backends(P, CRN_ALPHA, "wait_time_seconds")["devices"]
    assert devices[0]["wait_time_seconds"] == {"average": 15, "p50": 10, "p95": 30}
    assert devices[1]["wait_time_seconds"] == empty
    state.advance(600)  # the last start (at 30 s) leaves the window at 630 s
    assert state.backend_control_view("ibm_torino")["wait_time_seconds"] == empty


# ------------------------------------------------------------------------------------------ fault knobs


def test_wait_spike_extra_jobs_then_withdrawn() -> None:
    state = make_state({"name": "ibm_torino", "external": {"mean_seconds": 100, "ratio": 0.0}})
    view = state.wait_spike("ibm_torino", extra_jobs=5, for_seconds=150)
    assert view["length_queue"] == 4  # one started at once
    jid = submit(state)
    assert state.job_metrics(P, CRN_ALPHA, jid)["position_in_queue"] == 5
    state.advance(150)
    assert state.backend_control_view("ibm_torino")["external_queued"] == 0
    assert state.backend_control_view("ibm_torino")["wait_spikes"] == []
    with pytest.raises(ValueError, match="extra_jobs and/or rate_factor"):
        state.wait_spike("ibm_torino", for_seconds=10)


def test_wait_spike_rate_factor_raises_arrivals() -> None:
    counts = []
    for factor in (1, 10):
        state = make_state({"name": "ibm_torino", "external": {"rate_per_hour": 60, "mean_seconds": 1}})
        state.wait_spike("ibm_torino", rate_factor=factor, for_seconds=1800)
        state.advance(1800)
        counts.append(len(state.snapshot()["external_jobs"]))
    assert counts[1] > 3 * counts[0]


def test_flap_toggles_then_returns() -> None:
    state = make_state({"name": "ibm_torino"}, {"name": "ibm_fez"})
    state.flap("ibm_torino", period_seconds=10, for_seconds=35, after_seconds=5)
    seen = []
    for _ in range(9):
        seen.append(status(state)[1])
        state.advance(5)
    assert seen == ["online", "paused", "paused", "online", "online", "paused", "paused", "online", "online"]
    assert state.backend_control_view("ibm_torino")["schedule"] == []


def test_seeded_fault_knobs() -> None:
    state = make_state(
        {
            "name": "ibm_torino",
            "flap": {"period_seconds": 10, "for_seconds": 20},
            "wait_spike": [{"after_seconds": 30, "extra_jobs": 3, "for_seconds": 10}],
        }
    )
    assert status(state)[1] == "paused"
    state.advance(10)
    assert status(state)[1] == "online"
    state.advance(20)
    assert state.backend_status(P, CRN_ALPHA, "ibm_torino")["length_queue"] == 2
    with pytest.raises(SeedError, match=r"backends\[0\]\.flap\[0\]\.period_seconds"):
        make_state({"name": "x", "flap": {"for_seconds": 20}})


def test_job_metrics_estimate_from_queue_order() -> None:
    state = make_state()
    first = submit(state, seconds=100)
    second = submit(state, seconds=50)
    third = submit(state, CRN_BETA, seconds=10)  # beta has no usage: fair share puts it before alpha's
    state.advance(40)
    m2, m3 = (state.job_metrics(P, c, j) for c, j in ((CRN_ALPHA, second), (CRN_BETA, third)))
    assert (m3["position_in_queue"], m3["estimated_start_time"]) == (1, "2026-11-22T12:01:40.000Z")
    assert (m2["position_in_queue"], m2["estimated_start_time"]) == (2, "2026-11-22T12:01:50.000Z")
    assert state.job_metrics(P, CRN_ALPHA, first)["estimated_start_time"] == "2026-11-22T12:00:00.000Z"
    state.set_backend_status("ibm_torino", "paused")
    assert state.job_metrics(P, CRN_ALPHA, second)["estimated_start_time"] is None
