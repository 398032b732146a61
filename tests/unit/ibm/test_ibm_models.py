"""Response models: tolerant of extra fields, strict about the fields we read."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from qauvern_hpc.ibm import models as m
from tests.support.paths import UNIT_FIXTURES

FIXTURES = UNIT_FIXTURES / "ibm"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_rc_page_fixture() -> None:
    page = m.InstancePage.model_validate(load("rc_instances_page1.json"))
    assert [i.name for i in page.resources] == ["US inst", "EU inst"]
    us, eu = page.resources
    assert us.crn == "crn:v1:bluemix:public:quantum-computing:us-east:a/acct1:inst-us::"
    assert (us.allocation_seconds, us.limit_seconds, us.archived) == (200000, None, False)
    assert (eu.allocation_seconds, eu.limit_seconds, eu.region_id) == (500000, 600000, "eu-de")
    assert page.next_url is not None and "start=PAGE2TOKEN" in page.next_url


def test_rc_numbers_may_be_decimal_strings_and_zero_means_archived() -> None:
    old = m.InstancePage.model_validate(load("rc_instances_page2.json")).resources[0]
    assert (old.allocation_seconds, old.limit_seconds, old.archived) == (0, 7200, True)


def _instance(**extensions: Any) -> dict[str, Any]:
    return {"id": "crn:x", "name": "n", "extensions": extensions}


@pytest.mark.parametrize(
    ("extensions", "where"),
    [
        ({"instance_limit_seconds": None}, "usage_allocation_seconds"),  # missing
        ({"usage_allocation_seconds": 10}, "instance_limit_seconds"),  # missing (null is fine, absent not)
        ({"usage_allocation_seconds": -1, "instance_limit_seconds": None}, "usage_allocation_seconds"),
        ({"usage_allocation_seconds": 10, "instance_limit_seconds": -5}, "instance_limit_seconds"),
        ({"usage_allocation_seconds": "ten", "instance_limit_seconds": None}, "usage_allocation_seconds"),
        ({"usage_allocation_seconds": 1.5, "instance_limit_seconds": None}, "usage_allocation_seconds"),
        ({"usage_allocation_seconds": True, "instance_limit_seconds": None}, "usage_allocation_seconds"),
    ],
)
def test_bad_instance_extensions_fail_naming_the_field(extensions: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as info:
        m.Instance.model_validate(_instance(**extensions))
    assert where in str(info.value)


def test_instance_without_extensions_or_id_fails() -> None:
    with pytest.raises(ValidationError, match="extensions"):
        m.Instance.model_validate({"id": "crn:x", "name": "n"})
    with pytest.raises(ValidationError, match="id"):
        m.Instance.model_validate({"name": "n", "extensions": {"usage_allocation_seconds": 1}})


def test_instance_usage_fixture_and_truncation() -> None:
    usage = m.InstanceUsage.model_validate(load("instance_usage.json"))
    assert (usage.consumed_seconds, usage.allocation_seconds, usage.limit_seconds) == (146880, 500000, 600000)
    assert usage.limit_reached is False
    assert m.InstanceUsage.model_validate({"usage_consumed_seconds": 12.9}).consumed_seconds == 12
    assert m.InstanceUsage.model_validate({"usage_consumed_seconds": "42"}).consumed_seconds == 42


@pytest.mark.parametrize("body", [{}, {"usage_consumed_seconds": -1}, {"usage_consumed_seconds": None}])
def test_instance_usage_needs_a_non_negative_count(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="usage_consumed_seconds"):
        m.InstanceUsage.model_validate(body)


def test_analytics_usage_null_is_zero_but_absent_or_negative_fails() -> None:
    assert m.AnalyticsUsage.model_validate({"usage": 1234.5}).usage_ms == 1234.5
    assert m.AnalyticsUsage.model_validate({"usage": None}).usage_ms == 0.0
    for bad in ({}, {"usage": -1}, {"usage": "lots"}, {"usage": False}):
        with pytest.raises(ValidationError, match="usage"):
            m.AnalyticsUsage.model_validate(bad)


def test_daily_usage_fixture() -> None:
    daily = m.DailyUsage.model_validate(load("usage_grouped_by_date.json"))
    assert [b.interval_start.date() for b in daily.data] == [
        date(2026, 11, 1),
        date(2026, 11, 1),
        date(2026, 11, 3),
        date(2026, 11, 4),
    ]
    assert [b.usage_ms for b in daily.data] == [10500, 700.9, 3600999, 0.0]


def test_daily_bucket_needs_a_date() -> None:
    with pytest.raises(ValidationError, match="interval_start"):
        m.DailyUsage.model_validate({"data": [{"usage": 5}]})
    with pytest.raises(ValidationError, match="interval_start"):
        m.DailyUsage.model_validate({"data": [{"interval_start": "yesterday", "usage": 5}]})


def test_account_plans_fixture() -> None:
    plans = m.AccountPlans.model_validate(load("account.json")).plans
    premium = plans[1]
    assert (premium.budget_seconds, premium.unallocated_seconds, premium.limit_seconds) == (
        1000000,
        200000,
        1200000,
    )
    assert premium.plan_id == "7f666d17-7893-47d8-bf9d-2b2389fc4dfc"


def test_account_plans_unallocated_may_be_negative_budget_may_not() -> None:
    plan = m.PlanInfo.model_validate({"usage_allocation_seconds": 10, "unallocated_usage_seconds": -5})
    assert plan.unallocated_seconds == -5
    with pytest.raises(ValidationError, match="usage_allocation_seconds"):
        m.PlanInfo.model_validate({"usage_allocation_seconds": -10, "unallocated_usage_seconds": 0})
    with pytest.raises(ValidationError, match="unallocated_usage_seconds"):
        m.PlanInfo.model_validate({"usage_allocation_seconds": 10})
    with pytest.raises(ValidationError, match="plans"):
        m.AccountPlans.model_validate({"plans": []})


def test_session_fixture() -> None:
    s = m.Session.model_validate(load("session.json"))
    assert (s.id, s.backend, s.mode, s.state, s.accepting_jobs) == (
        "csess-0001",
        "ibm_torino",
        "dedicated",
        "closed",
        False,
    )
    assert s.started_at == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert s.closed_at == datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    assert s.elapsed_seconds == 1799.5
    assert s.closed is True


def test_session_minimal_and_invalid() -> None:
    s = m.Session.model_validate({"id": "s1"})
    assert (s.id, s.state, s.elapsed_seconds, s.closed) == ("s1", None, None, False)
    assert m.Session.model_validate({"id": "s1", "backend": "ibm_fez"}).backend == "ibm_fez"
    with pytest.raises(ValidationError, match="id"):
        m.Session.model_validate({"backend_name": "ibm_fez"})
    with pytest.raises(ValidationError, match="elapsed_time"):
        m.Session.model_validate({"id": "s1", "elapsed_time": -3})
    with pytest.raises(ValidationError, match="started_at"):
        m.Session.model_validate({"id": "s1", "started_at": "soon"})


def test_jobs_fixture_reads_status_from_either_place() -> None:
    jobs = m.JobList.model_validate(load("jobs_page1.json"))
    assert jobs.count == 3
    one, two = jobs.jobs
    assert (one.id, one.status, one.state, one.quantum_seconds) == ("job-1", "Completed", "Completed", 12.5)
    assert (two.status, two.reason, two.quantum_seconds) == ("Failed", "Error in transpilation", 1.25)
    three = m.JobList.model_validate(load("jobs_page2.json")).jobs[0]
    assert (three.status, three.usage, three.quantum_seconds) == ("Running", None, None)


def test_job_usage_must_not_be_negative() -> None:
    with pytest.raises(ValidationError, match="quantum_seconds"):
        m.RuntimeJob.model_validate({"id": "j", "usage": {"quantum_seconds": -1}})
    assert m.JobMetrics.model_validate(load("job_metrics.json")).usage.quantum_seconds == 4.75
    with pytest.raises(ValidationError, match="usage"):
        m.JobMetrics.model_validate({"bss": {"seconds": 1}})


def test_backend_status() -> None:
    st = m.BackendStatus.model_validate(load("backend_status.json"))
    assert (st.state, st.status, st.length_queue, st.operational) == (True, "online", 3, True)
    assert m.BackendStatus.model_validate({"status": "paused"}).operational is False
    with pytest.raises(ValidationError, match="length_queue"):
        m.BackendStatus.model_validate({"length_queue": -1})


def test_token_repr_hides_the_token() -> None:
    tok = m.Token.model_validate(load("iam_token.json"))
    assert tok.expires_in == 3600 and tok.expiration == 1798761600
    assert tok.access_token == "eyJraWQiOiJmaXh0dXJlIn0.fixture.token"
    assert tok.access_token not in repr(tok) and tok.access_token not in str(tok)
    with pytest.raises(ValidationError, match="access_token"):
        m.Token.model_validate({"token_type": "Bearer"})
    with pytest.raises(ValidationError, match="expires_in"):
        m.Token.model_validate({"access_token": "t", "expires_in": -1})


def test_models_are_frozen() -> None:
    s = m.Session.model_validate({"id": "s1"})
    with pytest.raises(ValidationError):
        s.id = "s2"  # type: ignore[misc]
