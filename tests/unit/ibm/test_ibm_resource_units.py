"""Resource units: the client speaks IBM-API-Version 2026-04-15, reads RU fields first and time fields where
present, and keeps working once IBM removes the time fields (recorded-shape replies, see
tests/unit/fixtures/ibm/README.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from qauvern_hpc.ibm import Endpoints, IBMClient, IBMError, IBMResponseError, RetryPolicy
from qauvern_hpc.ibm import models as m
from qauvern_hpc.ibm.client import API_VERSION
from qauvern_hpc.ibm.errors import TimeFieldsMissing
from tests.support.ibm_wire import ScriptedIBM
from tests.support.paths import UNIT_FIXTURES

EU = "crn:v1:bluemix:public:quantum-computing:eu-de:a/acct1:inst-eu::"
USAGE = "/api/v1/instances/usage"
JOBS = "/api/v1/jobs"


def load(name: str) -> Any:
    return json.loads((UNIT_FIXTURES / "ibm" / name).read_text())


def ok(body: Any) -> httpx.Response:
    return httpx.Response(200, json=body)


@pytest.fixture
def fake() -> ScriptedIBM:
    return ScriptedIBM(check_bearer=False)


@pytest.fixture
def client(fake: ScriptedIBM) -> Iterator[IBMClient]:
    retry = RetryPolicy(max_attempts=1, jitter=False)
    with IBMClient("k", Endpoints.production(), retry=retry, transport=httpx.MockTransport(fake)) as c:
        yield c


def test_the_client_speaks_the_newest_version_ibm_lists(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", "/api/v1/versions", ok(load("versions.json")))
    versions = client.api_versions()
    live = [v.version for v in versions if v.status == "live"]
    assert live == [API_VERSION] == ["2026-04-15"]
    assert max(v.version for v in versions) == API_VERSION
    assert fake.calls("/api/v1/versions")[0].headers["IBM-API-Version"] == API_VERSION
    # older replies list bare strings
    assert m.ApiVersions.model_validate({"versions": ["2025-01-01"]}).versions[0].version == "2025-01-01"


def test_instance_usage_reads_rus_first_and_seconds_beside(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", USAGE, ok(load("instance_usage_2026-04-15.json")))
    usage = client.instance_usage(EU)
    assert usage.unit == "ru"
    assert (usage.consumed, usage.allocation, usage.limit) == (367200.5, 1250000.0, 1500000.0)
    assert (usage.consumed_seconds, usage.allocation_seconds, usage.limit_seconds) == (146880, 500000, 600000)
    assert usage.usage_period is not None and usage.usage_period.start is not None
    assert usage.usage_period.start.isoformat() == "2026-10-25T00:00:00+00:00"


def rc_entry(**extensions: Any) -> dict[str, Any]:
    return {"id": EU, "name": "EU inst", "extensions": extensions}


RC_EU = "/v2/resource_instances/" + EU


def test_instance_usage_keeps_working_without_time_fields(client: IBMClient, fake: ScriptedIBM) -> None:
    """RUs only: the RU figures read as sent, and no Resource Controller call until seconds are wanted;
    an RC entry with no figure in both units leaves the rate unknown: `TimeFieldsMissing` naming the fix."""
    fake.on("GET", USAGE, ok(load("instance_usage_ru_only.json")))
    usage = client.instance_usage(EU)
    assert (usage.unit, usage.consumed, usage.allocation, usage.limit) == ("ru", 367200.5, 1250000.0, None)
    assert usage.allocation_seconds is None and usage.limit_reached is None and usage.seconds_from_ru
    assert fake.requests and not [r for r in fake.requests if r.url.path.startswith("/v2/")]
    fake.on("GET", RC_EU, ok(rc_entry(usage_allocation_seconds=500000, instance_limit_seconds=None)))
    with pytest.raises(TimeFieldsMissing, match="usage_consumed_seconds") as exc:
        _ = usage.consumed_seconds
    assert isinstance(exc.value, IBMResponseError)  # callers that handle IBM errors report it
    assert "ibm.resource_units_per_second" in (exc.value.hint or "")


def test_instance_usage_without_time_fields_in_seconds_at_the_instances_own_rate(
    client: IBMClient, fake: ScriptedIBM
) -> None:
    """The rate is the RC's allocation in RUs over the allocation in seconds (2.5 here); truncated like
    IBM's own seconds."""
    fake.on("GET", USAGE, ok(load("instance_usage_ru_only.json")))
    fake.on(
        "GET",
        RC_EU,
        ok(
            rc_entry(
                usage_allocation_seconds=500_000, instance_limit_seconds=None, usage_allocation_ru=1.25e6
            )
        ),
    )
    assert client.instance_usage(EU).consumed_seconds == int(367200.5 / 2.5)


def test_instance_usage_before_rus_is_in_seconds() -> None:
    usage = m.InstanceUsage.model_validate(load("instance_usage.json"))
    assert (usage.unit, usage.consumed, usage.allocation, usage.limit) == (
        "seconds",
        146880.0,
        500000.0,
        600000.0,
    )


@pytest.mark.parametrize(
    "body", [{"usage_consumed_ru": -1}, {"usage_consumed_ru": True}, {"usage_consumed_ru": None}]
)
def test_instance_usage_rus_are_checked(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="usage_consumed"):
        m.InstanceUsage.model_validate(body)


def test_job_metrics_of_2026_04_15() -> None:
    usage = m.JobMetrics.model_validate(load("job_metrics_2026-04-15.json")).usage
    assert (usage.resource_units, usage.quantum_seconds, usage.status) == (11.875, 4.75, "complete")
    assert (usage.unit, usage.charged) == ("ru", 11.875)
    older = m.JobMetrics.model_validate(load("job_metrics.json")).usage
    assert (older.unit, older.charged, older.resource_units) == ("seconds", 4.75, None)
    charge_only = m.JobUsage.model_validate({"qpu_charge_time_seconds": 3.0, "status": "pending"})
    assert (charge_only.unit, charge_only.quantum_seconds) == ("seconds", 3.0)
    assert m.JobUsage.model_validate({}).unit is None


def test_session_jobs_with_rus_only_need_no_metrics(client: IBMClient, fake: ScriptedIBM) -> None:
    """The RUs are read from the list; their seconds come at the instance's rate (one RC read)."""
    fake.on("GET", JOBS, ok(load("jobs_ru_only.json")))
    entry = rc_entry(usage_allocation_seconds=1000, instance_limit_seconds=None, usage_allocation_ru=2500.0)
    fake.on("GET", RC_EU, ok(entry))
    jobs = client.session_jobs(EU, "sess-1")
    assert [(j.id, j.resource_units, j.quantum_seconds) for j in jobs] == [
        ("job-ru-1", 11.875, 4.75),
        ("job-ru-2", 2.5, 1.0),
    ]
    assert all(j.usage is not None and j.usage.seconds_from_ru for j in jobs)
    assert fake.calls(f"{JOBS}/job-ru-1/metrics") == [] and len(fake.calls(RC_EU)) == 1


def test_an_rc_the_key_may_not_read_falls_back_to_the_configured_rate(fake: ScriptedIBM) -> None:
    """A per-instance key without Resource Controller access (403): the config's rate, when there is one;
    else the refusal itself is the error."""
    fake.on("GET", JOBS, ok(load("jobs_ru_only.json")))
    fake.on("GET", RC_EU, httpx.Response(403, json={"message": "forbidden"}))
    retry = RetryPolicy(max_attempts=1, jitter=False)
    where = Endpoints.production()
    with IBMClient("k", where, retry=retry, transport=httpx.MockTransport(fake), ru_per_second=2.0) as c:
        assert [j.quantum_seconds for j in c.session_jobs(EU, "s")] == [11.875 / 2, 1.25]
    bare = IBMClient("k", where, retry=retry, transport=httpx.MockTransport(fake))
    with bare, pytest.raises(IBMError):
        bare.session_jobs(EU, "s")


def test_session_jobs_fetch_metrics_when_the_list_has_no_usage(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", JOBS, ok({"jobs": [{"id": "j1", "status": "Completed", "usage": {"status": "pending"}}]}))
    fake.on("GET", f"{JOBS}/j1/metrics", ok(load("job_metrics_2026-04-15.json")))
    [job] = client.session_jobs(EU, "sess-1")
    assert (job.resource_units, job.quantum_seconds) == (11.875, 4.75)


def test_rc_extensions_in_both_units() -> None:
    inst = m.Instance.model_validate(
        {
            "id": EU,
            "name": "eu",
            "extensions": {
                "usage_allocation_seconds": 500000,
                "instance_limit_seconds": None,
                "usage_allocation_ru": 1250000.0,
                "instance_limit_ru": None,
            },
        }
    )
    assert (inst.allocation_seconds, inst.allocation_ru, inst.limit_ru) == (500000, 1250000.0, None)
