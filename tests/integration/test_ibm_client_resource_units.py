"""IBMClient against the emulator over HTTP in both worlds IBM documents: RU fields beside the time fields
(today), and RU fields only (the time fields removed, switched on through the control endpoint). Old API
versions, as qrmi and qauvern 0.14 send them, keep their time fields either way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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


def test_time_fields_removed(client: IBMClient, emu: Any) -> None:
    sid = run_session_job(emu, 40.0)
    r = httpx.put(f"{emu.base_url}/__emulator/time-fields", json={"removed": True})
    assert r.json() == {"removed": True}
    [job] = client.session_jobs(CRN_BETA, sid)
    assert (job.quantum_seconds, job.resource_units) == (None, 100.0)
    assert not [r for r in emu.requests if r.path.endswith("/metrics")]  # RUs in the list suffice
    usage = client.instance_usage(CRN_BETA)
    assert (usage.unit, usage.consumed, usage.allocation_seconds) == ("ru", 100.0, None)
    with pytest.raises(TimeFieldsMissing):
        _ = usage.consumed_seconds
    # an old version (qauvern 0.14 sends 2026-02-15, qrmi 2025-01-01) still gets its time fields
    with ApiClient(emu.base_url, crn=CRN_BETA) as api:
        old = api.get("/api/v1/instances/usage", headers={"IBM-API-Version": "2026-02-15"}).json()
    assert old["usage_consumed_seconds"] == 40 and "usage_consumed_ru" not in old
