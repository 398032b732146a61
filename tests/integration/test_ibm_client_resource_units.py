"""IBMClient against the emulator over HTTP in both worlds IBM documents: RU fields beside the time fields
(today), and RU fields only (the time fields removed, switched on through the control endpoint). Old API
versions, as qrmi and qauvern 0.14 send them, keep their time fields either way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.devtools.emulator.testing import CRN_ALPHA, CRN_BETA, ApiClient, make_seed
from qauvern_hpc.ibm import Endpoints, IBMClient, RetryPolicy
from qauvern_hpc.ibm.client import API_VERSION
from qauvern_hpc.ibm.errors import TimeFieldsMissing

RATE = 2.5


@pytest.fixture()
def emu() -> Iterator[Any]:
    with run_emulator(make_seed(resource_units_per_second=RATE), clock="manual") as e:
        yield e


@pytest.fixture()
def client(emu: Any) -> Iterator[IBMClient]:
    retry = RetryPolicy(max_attempts=2, base_delay=0.01, jitter=False)
    with IBMClient(
        "test-api-key-0001", Endpoints.single(emu.base_url), retry=retry, sleep=lambda s: None
    ) as c:
        yield c


def run_session_job(emu: Any, seconds: float) -> str:
    with ApiClient(emu.base_url, crn=CRN_BETA) as api:
        sid = api.open_session()["id"]
        api.submit(quantum_seconds=seconds, session_id=sid)
    emu.advance(seconds + 5)
    return str(sid)


def test_versions_and_the_version_sent(client: IBMClient, emu: Any) -> None:
    assert [v.version for v in client.api_versions() if v.status == "live"] == [API_VERSION]
    client.instance_usage(CRN_ALPHA)
    assert {r.headers.get("IBM-API-Version") for r in emu.requests if r.path.startswith("/api/")} == {
        API_VERSION
    }


def test_rus_beside_seconds(client: IBMClient, emu: Any) -> None:
    sid = run_session_job(emu, 40.0)
    [job] = client.session_jobs(CRN_BETA, sid)
    assert (job.quantum_seconds, job.resource_units, job.usage and job.usage.unit) == (40.0, 100.0, "ru")
    usage = client.instance_usage(CRN_BETA)
    assert (usage.unit, usage.consumed, usage.consumed_seconds) == ("ru", 100.0, 40)
    assert (usage.allocation, usage.limit, usage.limit_reached) == (500_000 * RATE, 600_000 * RATE, False)
    [beta] = [i for i in client.list_instances() if i.crn == CRN_BETA]
    assert (beta.allocation_seconds, beta.allocation_ru) == (500_000, 500_000 * RATE)


def remove_time_fields(emu: Any) -> None:
    r = httpx.put(f"{emu.base_url}/__emulator/time-fields", json={"removed": True})
    assert r.json() == {"removed": True}


def rc_reads(emu: Any) -> int:
    return len([r for r in emu.requests if r.method == "GET" and "/v2/resource_instances/" in r.path])


def test_time_fields_removed(client: IBMClient, emu: Any) -> None:
    """With RUs only, seconds come from the RUs at the instance's own rate (its RC allocation in both units),
    marked as converted, read from the RC once for many replies."""
    sids = [run_session_job(emu, 40.0), run_session_job(emu, 8.0)]
    remove_time_fields(emu)
    jobs = [j for sid in sids for j in client.session_jobs(CRN_BETA, sid)]
    assert [(j.resource_units, j.quantum_seconds) for j in jobs] == [(100.0, 40.0), (20.0, 8.0)]
    assert all(j.usage is not None and j.usage.seconds_from_ru for j in jobs)
    assert not [r for r in emu.requests if r.path.endswith("/metrics")]  # RUs in the list suffice
    usage = client.instance_usage(CRN_BETA)
    assert (usage.unit, usage.consumed, usage.allocation_seconds) == ("ru", 120.0, None)
    assert (usage.consumed_seconds, usage.seconds_from_ru) == (48, True)
    assert rc_reads(emu) == 1
    # an old version (qauvern 0.14 sends 2026-02-15, qrmi 2025-01-01) still gets its time fields
    with ApiClient(emu.base_url, crn=CRN_BETA) as api:
        old = api.get("/api/v1/instances/usage", headers={"IBM-API-Version": "2026-02-15"}).json()
    assert old["usage_consumed_seconds"] == 48 and "usage_consumed_ru" not in old


def test_with_time_fields_nothing_is_converted_and_the_rc_is_not_read(client: IBMClient, emu: Any) -> None:
    sid = run_session_job(emu, 40.0)
    [job] = client.session_jobs(CRN_BETA, sid)
    usage = client.instance_usage(CRN_BETA)
    assert job.usage is not None and not job.usage.seconds_from_ru and not usage.seconds_from_ru
    assert rc_reads(emu) == 0


def test_no_rate_anywhere_is_a_clear_error_and_the_config_rate_is_the_fallback(emu: Any) -> None:
    """An instance whose RC entry has no allocation or limit in both units (allocation 0, no limit) cannot
    be converted: TimeFieldsMissing; the configured `ibm.resource_units_per_second` is then used."""
    with ApiClient(emu.base_url) as api:
        body = {"parameters": {"usage_allocation_seconds": "0", "instance_limit_seconds": None}}
        api.patch(f"/v2/resource_instances/{quote(CRN_BETA, safe='')}", json=body).raise_for_status()
    remove_time_fields(emu)
    where = Endpoints.single(emu.base_url)
    with IBMClient("test-api-key-0001", where) as bare, pytest.raises(TimeFieldsMissing):
        _ = bare.instance_usage(CRN_BETA).consumed_seconds
    with IBMClient("test-api-key-0001", where, ru_per_second=RATE) as fallback:
        assert fallback.instance_usage(CRN_BETA).consumed_seconds == 0
        assert fallback.ru_rate(CRN_BETA) == RATE
