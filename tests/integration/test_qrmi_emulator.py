"""qrmi 0.26.4 (a Rust/reqwest client nobody here wrote) against the emulator, as a black box.

qrmi is configured only through environment variables, exactly as Slurm's SPANK plugin would set them:
`<resource>_QRMI_IBM_QCS_ENDPOINT` ({base}/api/v1), `_IAM_ENDPOINT` ({base}), `_IAM_APIKEY`, `_SERVICE_CRN`,
`_SESSION_MODE`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import pytest
import qrmi

from qauvern_hpc.devtools.emulator import Emulator, run_emulator
from qauvern_hpc.devtools.emulator.testing import API_KEY, CRN_BETA, ApiClient, make_seed

RESOURCE = "ibm_torino"
SAMPLER_INPUT = {
    "pubs": [
        [
            'OPENQASM 3.0; include "stdgates.inc"; bit[1] c; qubit[1] q; h q[0]; c[0] = measure q[0];',
            None,
            2000,
        ]
    ],
    "version": 2,
    "support_qiskit": False,
}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with run_emulator(make_seed()) as e:
        yield e


def _resource(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, mode: str, endpoint_suffix: str = "/api/v1"
) -> object:
    env = {
        "QRMI_IBM_QCS_ENDPOINT": emu.base_url + endpoint_suffix,
        "QRMI_IBM_QCS_IAM_ENDPOINT": emu.base_url,
        "QRMI_IBM_QCS_IAM_APIKEY": API_KEY,
        "QRMI_IBM_QCS_SERVICE_CRN": CRN_BETA,
        "QRMI_IBM_QCS_SESSION_MODE": mode,
    }
    for name, value in env.items():
        monkeypatch.setenv(f"{RESOURCE}_{name}", value)
    for name in ("QRMI_IBM_QCS_SESSION_ID", "QRMI_JOB_ACQUISITION_TOKEN", "QRMI_IBM_QCS_TIMEOUT_SECONDS"):
        monkeypatch.delenv(f"{RESOURCE}_{name}", raising=False)
    return qrmi.QuantumResource(RESOURCE, qrmi.ResourceType.IBMQuantumComputeService)


def _accessible(res: object) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return bool(res.is_accessible())  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["batch", "dedicated"])
def test_acquire_and_release_open_and_close_a_session(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    res = _resource(emu, monkeypatch, mode)
    assert _accessible(res) is True
    token = res.acquire()  # type: ignore[attr-defined]
    session = emu.state.session(token)
    assert (session["mode"], session["state"], session["backend_name"], session["instance"]) == (
        mode,
        "open",
        RESOURCE,
        CRN_BETA,
    )
    assert session["max_ttl"] == 28800
    res.release(token)  # type: ignore[attr-defined]
    closed = emu.state.session(token)
    assert (closed["state"], closed["accepting_jobs"]) == ("closed", False)
    calls = [(e.method, e.path.split("?")[0], e.status) for e in emu.requests]
    assert calls == [
        ("POST", "/identity/token", 200),
        ("GET", f"/api/v1/backends/{RESOURCE}/status", 200),
        ("POST", "/api/v1/sessions", 200),
        ("GET", "/api/v1/jobs", 200),
        ("PATCH", f"/api/v1/sessions/{token}", 204),
    ]
    assert all(e.header("Service-CRN") == CRN_BETA for e in emu.requests[1:])


def test_release_with_a_pending_job_cancels_the_session(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = _resource(emu, monkeypatch, "batch")
    token = res.acquire()  # type: ignore[attr-defined]
    payload = qrmi.Payload.QiskitPrimitive(input=json.dumps(SAMPLER_INPUT), program_id="sampler")
    task = res.task_start(payload)  # type: ignore[attr-defined]
    queued = res.task_start(payload)  # type: ignore[attr-defined]
    res.release(token)  # type: ignore[attr-defined]
    assert emu.requests[-1].method == "DELETE" and emu.requests[-1].path == f"/api/v1/sessions/{token}/close"
    assert emu.state.job(queued)["status"] == "Cancelled"
    assert emu.state.session(token)["state"] == "active"  # the running job finishes first
    emu.advance(3)
    assert emu.state.job(task)["status"] == "Completed"
    assert emu.state.session(token)["state"] == "closed"


@pytest.mark.parametrize("mode", ["batch", "dedicated"])
def test_task_lifecycle_and_usage(emu: Emulator, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    res = _resource(emu, monkeypatch, mode)
    token = res.acquire()  # type: ignore[attr-defined]
    payload = qrmi.Payload.QiskitPrimitive(input=json.dumps(SAMPLER_INPUT), program_id="sampler")
    task = res.task_start(payload)  # type: ignore[attr-defined]
    job = emu.state.job(task)
    assert (job["session_id"], job["backend"], job["program"]["id"]) == (token, RESOURCE, "sampler")
    assert job["estimated_running_time_seconds"] == pytest.approx(2 + 0.00035 * 2000)  # 2.7 s
    assert res.task_status(task) == qrmi.TaskStatus.Running  # type: ignore[attr-defined]
    emu.advance(2.7)
    assert res.task_status(task) == qrmi.TaskStatus.Completed  # type: ignore[attr-defined]
    result = json.loads(res.task_result(task).value)  # type: ignore[attr-defined]
    assert result["metadata"]["quantum_seconds"] == pytest.approx(2.7)
    emu.advance(7.3)
    res.release(token)  # type: ignore[attr-defined]
    session = emu.state.session(token)
    assert session["state"] == "closed"
    # batch: the job's quantum time; dedicated: wall clock from the job start to the release
    expected = 2.7 if mode == "batch" else 10.0
    assert session["elapsed_time"] == pytest.approx(expected)
    assert emu.state.rolling_usage_seconds("beta") == pytest.approx(expected)


def test_task_stop_cancels_a_running_task(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    res = _resource(emu, monkeypatch, "batch")
    token = res.acquire()  # type: ignore[attr-defined]
    payload = qrmi.Payload.QiskitPrimitive(input=json.dumps(SAMPLER_INPUT), program_id="sampler")
    task = res.task_start(payload)  # type: ignore[attr-defined]
    emu.advance(1)
    res.task_stop(task)  # type: ignore[attr-defined]
    assert res.task_status(task) == qrmi.TaskStatus.Cancelled  # type: ignore[attr-defined]
    assert emu.state.job(task)["usage"]["quantum_seconds"] == 1.0
    res.release(token)  # type: ignore[attr-defined]


def test_not_accessible_when_paused_and_status(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    res = _resource(emu, monkeypatch, "batch")
    status = res.status()  # type: ignore[attr-defined]
    assert (status.status, status.pending_job_count) == (qrmi.ResourceStatusCode.Online, 0)
    emu.state.set_backend_status(RESOURCE, "paused")
    assert _accessible(res) is False


def test_endpoint_without_v1_also_works(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    res = _resource(emu, monkeypatch, "dedicated", endpoint_suffix="/api")
    assert _accessible(res) is True
    token = res.acquire()  # type: ignore[attr-defined]
    res.release(token)  # type: ignore[attr-defined]
    assert emu.state.session(token)["state"] == "closed"
    assert emu.requests[-1].path == f"/api/sessions/{token}"


def test_bad_api_key_fails_cleanly(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    res = _resource(emu, monkeypatch, "batch")
    monkeypatch.setenv(f"{RESOURCE}_QRMI_IBM_QCS_IAM_APIKEY", "wrong-key")
    res = qrmi.QuantumResource(RESOURCE, qrmi.ResourceType.IBMQuantumComputeService)
    with pytest.raises(Exception, match=r"401|nauthori"):
        res.acquire()
    assert [e.status for e in emu.requests if e.path == "/identity/token"] == [400]
    assert emu.state.sessions() == []


def test_preset_acquisition_token_reuses_the_session(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job path: the prolog opens the session, the task gets its id as QRMI_JOB_ACQUISITION_TOKEN."""
    with ApiClient(emu.base_url, crn=CRN_BETA) as api:
        sid = api.open_session(RESOURCE, mode="batch")["id"]
    res = _resource(emu, monkeypatch, "batch")
    monkeypatch.setenv(f"{RESOURCE}_QRMI_JOB_ACQUISITION_TOKEN", sid)
    res = qrmi.QuantumResource(RESOURCE, qrmi.ResourceType.IBMQuantumComputeService)
    emu.clear_requests()
    assert res.acquire() == sid  # type: ignore[attr-defined]
    assert [(e.method, e.path) for e in emu.requests if "/sessions" in e.path] == [
        ("GET", f"/api/v1/sessions/{sid}")
    ]
    payload = qrmi.Payload.QiskitPrimitive(input=json.dumps(SAMPLER_INPUT), program_id="sampler")
    task = res.task_start(payload)  # type: ignore[attr-defined]
    assert emu.state.job(task)["session_id"] == sid
    assert len(emu.state.sessions()) == 1
