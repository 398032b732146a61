"""The emulator answers per requested IBM-API-Version: time fields up to 2026-02-15, the charged time from
2026-03-15, resource units from 2026-04-15, and RU fields only once the time fields are removed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.message import Message
from typing import Any
from urllib.parse import quote

import pytest

from qauvern_hpc.devtools.emulator.clock import Clock
from qauvern_hpc.devtools.emulator.routing import Request
from qauvern_hpc.devtools.emulator.server import EmulatorApp
from qauvern_hpc.devtools.emulator.state import EmulatorState
from qauvern_hpc.devtools.emulator.testing import API_KEY, APIKEY_GRANT, CRN_ALPHA, CRN_BETA, make_seed
from qauvern_hpc.devtools.emulator.versions import LATEST, VERSIONS

START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
RATE = 2.5  # RUs per second: not 1, so a unit mix-up shows


@pytest.fixture
def app() -> EmulatorApp:
    seed = make_seed(resource_units_per_second=RATE)
    return EmulatorApp(EmulatorState.from_seed(seed, Clock("manual", start=START)))


def call(
    app: EmulatorApp,
    method: str,
    path: str,
    *,
    version: str | None = None,
    crn: str = CRN_BETA,
    body: Any = None,
    auth: bool = True,
) -> tuple[int, Any]:
    headers = Message()
    if auth:
        token = app.state.issue_token({"grant_type": APIKEY_GRANT, "apikey": API_KEY})["access_token"]
        headers["Authorization"] = f"Bearer {token}"
    headers["Service-CRN"] = crn
    if version is not None:
        headers["IBM-API-Version"] = version
    raw = b"" if body is None else json.dumps(body).encode()
    reply = app.handle(Request(method, path, {}, headers, raw))
    return reply.status, reply.body


def finished_job(app: EmulatorApp, seconds: float = 40.0) -> str:
    status, job = call(
        app,
        "POST",
        "/api/v1/jobs",
        body={
            "program_id": "sampler",
            "backend": "ibm_torino",
            "params": {"emulator": {"quantum_seconds": seconds}},
        },
    )
    assert status == 200, job
    app.state.advance(seconds + 5)
    return str(job["id"])


def test_versions_lists_what_ibm_lists_without_a_token(app: EmulatorApp) -> None:
    status, body = call(app, "GET", "/api/v1/versions", auth=False)
    assert status == 200
    assert [v["version"] for v in body["versions"]] == [v for v, _ in VERSIONS]
    assert body["versions"][-1] == {"version": LATEST, "status": "live"}
    assert all(v["status"] == "deprecated" and v["sunset_date"] for v in body["versions"][:-1])


def test_an_unknown_version_is_refused(app: EmulatorApp) -> None:
    status, body = call(app, "GET", "/api/v1/instances/usage", version="2026-03-01")
    assert status == 400
    assert "2026-04-15" in str(body)


@pytest.mark.parametrize("version", [None, "2025-01-01", "2026-02-15"])
def test_old_versions_keep_the_time_fields(app: EmulatorApp, version: str | None) -> None:
    job_id = finished_job(app)
    app.state.remove_time_fields()  # versions before RUs cannot drop their time fields
    _, job = call(app, "GET", f"/api/v1/jobs/{job_id}", version=version)
    assert job["usage"] == {"seconds": 40.0, "quantum_seconds": 40.0}
    _, metrics = call(app, "GET", f"/api/v1/jobs/{job_id}/metrics", version=version)
    assert metrics["usage"] == {"quantum_seconds": 40.0, "seconds": 40.0}
    assert metrics["bss"] == {"seconds": 40.0}
    _, usage = call(app, "GET", "/api/v1/instances/usage", version=version)
    assert "usage_consumed_seconds" in usage and "usage_consumed_ru" not in usage


def test_2026_03_15_charges_time_without_bss(app: EmulatorApp) -> None:
    job_id = finished_job(app)
    _, job = call(app, "GET", f"/api/v1/jobs/{job_id}", version="2026-03-15")
    assert job["usage"] == {"qpu_charge_time_seconds": 40.0, "status": "complete"}
    _, metrics = call(app, "GET", f"/api/v1/jobs/{job_id}/metrics", version="2026-03-15")
    assert "bss" not in metrics and "circuits_execution_time_ns" not in metrics
    assert metrics["usage"]["qpu_charge_time_seconds"] == 40.0
    assert metrics["usage"]["circuits_execution_time_ns"] == 40_000_000_000


def test_2026_04_15_adds_resource_units(app: EmulatorApp) -> None:
    job_id = finished_job(app)
    _, listed = call(app, "GET", "/api/v1/jobs", version=LATEST)
    assert listed["jobs"][0]["usage"] == {
        "qpu_charge_time_seconds": 40.0,
        "value": 100.0,
        "status": "complete",
    }
    _, metrics = call(app, "GET", f"/api/v1/jobs/{job_id}/metrics", version=LATEST)
    assert metrics["usage"] == {"qpu_charge_time_seconds": 40.0, "value": 100.0, "status": "complete"}
    assert metrics["circuits_execution_time_ns"] == 40_000_000_000
    _, usage = call(app, "GET", "/api/v1/instances/usage", version=LATEST)
    assert usage["usage_consumed_seconds"] == 40
    assert usage["usage_consumed_ru"] == 100.0
    assert usage["usage_allocation_ru"] == 500_000 * RATE and usage["usage_limit_ru"] == 600_000 * RATE
    assert usage["usage_limit_reached"] is False and usage["usage_period"]["start_time"]


def test_time_fields_removed_serves_ru_only(app: EmulatorApp) -> None:
    job_id = finished_job(app)
    app.state.remove_time_fields()
    _, job = call(app, "GET", f"/api/v1/jobs/{job_id}", version=LATEST)
    assert job["usage"] == {"value": 100.0, "status": "complete"}
    _, metrics = call(app, "GET", f"/api/v1/jobs/{job_id}/metrics", version=LATEST)
    assert metrics["usage"] == {"value": 100.0, "status": "complete"} and "bss" not in metrics
    _, usage = call(app, "GET", "/api/v1/instances/usage", version=LATEST)
    assert not [k for k in usage if k.endswith("_seconds")]
    assert usage["usage_consumed_ru"] == 100.0 and usage["usage_limit_reached"] is False
    app.state.remove_time_fields(False)
    _, usage = call(app, "GET", "/api/v1/instances/usage", version=LATEST)
    assert usage["usage_consumed_seconds"] == 40


def test_the_switch_is_a_seed_key_and_a_control_endpoint(app: EmulatorApp) -> None:
    state = EmulatorState.from_seed(make_seed(time_fields_removed=True), Clock("manual", start=START))
    assert state.time_fields_removed
    status, body = call(app, "PUT", "/__emulator/time-fields", body={"removed": True}, auth=False)
    assert (status, body) == (200, {"removed": True})
    assert app.state.snapshot()["time_fields_removed"] is True
    assert call(app, "PUT", "/__emulator/time-fields", body={"removed": "yes"}, auth=False)[0] == 400
    assert call(app, "GET", "/__emulator/time-fields", auth=False)[1] == {"removed": True}


def test_resource_controller_gives_allocations_in_both_units(app: EmulatorApp) -> None:
    inst = app.state.instance(CRN_ALPHA)
    assert inst["extensions"]["usage_allocation_seconds"] == 200_000
    assert inst["extensions"]["usage_allocation_ru"] == 200_000 * RATE
    assert inst["extensions"]["instance_limit_ru"] is None


@pytest.mark.parametrize(("version", "with_ru"), [(None, False), ("2026-02-15", False), (LATEST, True)])
def test_rc_shows_ru_extensions_to_versions_with_rus(
    app: EmulatorApp, version: str | None, with_ru: bool
) -> None:
    status, page = call(app, "GET", "/v2/resource_instances", version=version)
    assert status == 200
    ext = {r["name"]: r["extensions"] for r in page["resources"]}["beta"]
    assert ext["usage_allocation_seconds"] == 500_000
    assert ("usage_allocation_ru" in ext) is with_ru
    if with_ru:
        assert (ext["usage_allocation_ru"], ext["instance_limit_ru"]) == (500_000 * RATE, 600_000 * RATE)
    _, one = call(app, "GET", "/v2/resource_instances/" + quote(CRN_BETA, safe=""), version=version)
    assert ("instance_limit_ru" in one["extensions"]) is with_ru
