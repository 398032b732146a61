"""What an admission controller reads from IBM, against the emulator over real HTTP (loopback): the device
list with the wait estimate, backend status and message, our pending jobs, queue metrics; driven by the
emulator's control surface (`/__emulator/backends/{name}/status|wait-spike|flap`) on a manual clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.devtools.emulator.testing import API_KEY, CRN_ALPHA, CRN_BETA, START, ApiClient, make_seed
from qauvern_hpc.ibm import Endpoints, IBMClient, IBMNotFound, RetryPolicy

NOW = datetime.fromisoformat(START)
POLICY = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=1.0, deadline=10.0, jitter=False)


@pytest.fixture()
def emu() -> Iterator[Any]:
    seed = make_seed(
        backends=[
            {"name": "ibm_torino"},
            {"name": "ibm_fez", "status": "maintenance"},  # an older seed's status
            {"name": "ibm_kyiv", "external": {"rate_per_hour": 0, "mean_seconds": 100, "ratio": 0.0}},
        ]
    )
    with run_emulator(seed, clock="manual") as e:
        yield e


@pytest.fixture()
def client(emu: Any) -> Iterator[IBMClient]:
    with IBMClient(
        API_KEY, Endpoints.single(emu.base_url), retry=POLICY, timeout=5.0, sleep=lambda s: None
    ) as c:
        yield c


@pytest.fixture()
def control(emu: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, timeout=5.0) as c:
        yield c


def submit(emu: Any, backend: str, seconds: float, crn: str = CRN_ALPHA) -> str:
    with ApiClient(emu.base_url, crn=crn) as api:
        return api.submit(backend, quantum_seconds=seconds)


def test_devices_status_and_wait(client: IBMClient, emu: Any) -> None:
    devices = {d.name: d for d in client.backends(CRN_ALPHA)}
    assert [(d.name, d.status.name, d.status.reason, d.serving) for d in devices.values()] == [
        ("ibm_torino", "online", "active", True),
        ("ibm_fez", "paused", "maintenance", False),
        ("ibm_kyiv", "online", "active", True),
    ]
    assert devices["ibm_torino"].wait_time_seconds is not None
    assert devices["ibm_torino"].wait_time_seconds.p95 is None  # nothing started in the window yet
    ids = [submit(emu, "ibm_torino", 10) for _ in range(3)]
    emu.advance(30)
    assert all(emu.state.job(j)["status"] == "Completed" for j in ids)
    wait = client.backends(CRN_ALPHA)[0].wait_time_seconds
    assert wait is not None and (wait.average, wait.p50, wait.p95) == (10, 10, 20)
    assert client.backends(CRN_ALPHA, with_wait=False)[0].wait_time_seconds is None
    st = client.backend_status(CRN_ALPHA, "ibm_fez")
    assert (st.state, st.status, st.message, st.length_queue, st.operational) == (
        True,
        "paused",
        "maintenance",
        0,
        False,
    )
    with pytest.raises(IBMNotFound):
        client.backend_status(CRN_ALPHA, "ibm_nowhere")


def test_control_status_reverts_and_queued_jobs_start(
    client: IBMClient, emu: Any, control: httpx.Client
) -> None:
    r = control.post(
        "/__emulator/backends/ibm_torino/status",
        json={"status": "offline", "message": "cooling", "for_seconds": 60},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["status"], r.json()["message"]) == (False, "offline", "cooling")
    jid = submit(emu, "ibm_torino", 10)
    emu.advance(59)
    pending = client.pending_jobs(CRN_ALPHA, "ibm_torino")
    assert [(j.id, j.status) for j in pending] == [(jid, "Queued")]
    metrics = client.job_queue_metrics(CRN_ALPHA, jid)
    assert (metrics.position_in_queue, metrics.estimated_start_time) == (1, None)
    assert client.backends(CRN_ALPHA)[0].queue_length == 1
    emu.advance(1)
    assert [(j.id, j.status) for j in client.pending_jobs(CRN_ALPHA)] == [(jid, "Running")]
    assert client.pending_jobs(CRN_ALPHA, "ibm_fez") == []
    assert client.pending_jobs(CRN_BETA) == []
    bad = control.post("/__emulator/backends/ibm_torino/status", json={"status": "sleeping"})
    assert bad.status_code == 400
    missing = control.post("/__emulator/backends/ibm_nowhere/status", json={"status": "online"})
    assert missing.status_code == 404


def test_control_wait_spike_and_flap(client: IBMClient, emu: Any, control: httpx.Client) -> None:
    r = control.post("/__emulator/backends/ibm_kyiv/wait-spike", json={"extra_jobs": 4, "for_seconds": 500})
    assert r.status_code == 200, r.text
    assert r.json()["length_queue"] == 3  # one of the four started at once
    jid = submit(emu, "ibm_kyiv", 10)
    metrics = client.job_queue_metrics(CRN_ALPHA, jid)
    assert metrics.position_in_queue == 4  # their ratio 0 beats alpha's
    assert metrics.estimated_start_time is not None and metrics.estimated_start_time > NOW
    assert [j.id for j in client.pending_jobs(CRN_ALPHA, "ibm_kyiv")] == [jid]  # theirs are invisible
    assert (
        control.post("/__emulator/backends/ibm_kyiv/wait-spike", json={"for_seconds": 5}).status_code == 400
    )

    f = control.post("/__emulator/backends/ibm_torino/flap", json={"period_seconds": 10, "for_seconds": 20})
    assert f.status_code == 200 and f.json()["status"] == "paused"
    seen = []
    for _ in range(3):
        seen.append(client.backend_status(CRN_ALPHA, "ibm_torino").status)
        emu.advance(10)
    assert seen == ["paused", "online", "online"]
    view = control.get("/__emulator/backends/ibm_torino").json()
    assert view["schedule"] == [] and view["status"] == "online"


def test_python_helpers_match_the_control_surface(client: IBMClient, emu: Any) -> None:
    emu.state.set_backend_status("ibm_torino", "paused", "internal", for_seconds=30)
    assert client.backend_status(CRN_ALPHA, "ibm_torino").message == "internal"
    emu.state.flap("ibm_kyiv", period_seconds=5, for_seconds=10)
    emu.state.wait_spike("ibm_kyiv", rate_factor=2.0, for_seconds=60)
    assert [d.serving for d in client.backends(CRN_ALPHA)] == [False, False, False]
    emu.advance(30)
    assert [d.serving for d in client.backends(CRN_ALPHA)] == [True, False, True]
