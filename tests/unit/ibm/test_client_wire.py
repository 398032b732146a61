"""IBMClient's wire format over httpx.MockTransport: what it sends (paths, hosts, headers, bodies, queries)
and how it reads what comes back (models, units, pagination, error bodies).

`tests.support.ibm_wire.ScriptedIBM` plays IAM and the APIs: IAM hands out ``tok-1``, ``tok-2``, ...; every
other route answers the replies queued for ``(method, path)`` in order, the last one repeating. Nothing here
waits: `sleep` only records.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from qauvern_hpc.ibm import (
    Endpoints,
    IBMAuthError,
    IBMClient,
    IBMError,
    IBMNotFound,
    IBMResponseError,
    InvalidRequestError,
    RetryPolicy,
)
from qauvern_hpc.ibm.client import QUANTUM_RESOURCE_ID
from qauvern_hpc.ibm.plans import PLAN_IDS
from tests.support.ibm_wire import ScriptedIBM

KEY = "wire-test-KEY-4f1c9a"
US = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct1:inst-us::"
EU = "crn:v1:bluemix:public:quantum-computing:eu-de:a/acct1:inst-eu::"
OLD = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct1:old::"
PREMIUM = PLAN_IDS["premium"]
RC = "/v2/resource_instances"
USAGE = "/api/v1/instances/usage"
ANALYTICS = "/api/v1/analytics/usage"
DAILY = "/api/v1/analytics/usage_grouped_by_date"
SESSIONS = "/api/v1/sessions"
JOBS = "/api/v1/jobs"

Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def ok(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


@pytest.fixture
def fake() -> ScriptedIBM:
    return ScriptedIBM(check_bearer=False)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(fake: ScriptedIBM, sleeps: list[float]) -> Iterator[IBMClient]:
    retry = RetryPolicy(max_attempts=3, base_delay=0.25, max_delay=4.0, deadline=60.0, jitter=False)
    with IBMClient(
        KEY, Endpoints.production(), retry=retry, sleep=sleeps.append, transport=httpx.MockTransport(fake)
    ) as c:
        yield c


def query(request: httpx.Request) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(request.url.query.decode(), keep_blank_values=True))


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def instance(crn: str, alloc: Any = "3600", limit: Any = None, key: str = "id") -> dict[str, Any]:
    return {
        key: crn,
        "guid": crn.split(":")[7],
        "name": crn.split(":")[7],
        "state": "active",
        "region_id": crn.split(":")[5],
        "resource_plan_id": PREMIUM,
        "extensions": {"usage_allocation_seconds": alloc, "instance_limit_seconds": limit},
        "some_field_we_do_not_read": {"x": 1},
    }


T0 = datetime(2026, 11, 1, tzinfo=UTC)
T1 = datetime(2026, 11, 22, 12, 30, tzinfo=UTC)


# ----- models ----------------------------------------------------------------------------------------------


def test_instance_usage_valid_reply(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on(
        "GET",
        USAGE,
        ok(
            {
                "instance_id": EU,
                "plan_id": PREMIUM,
                "usage_consumed_seconds": 146880.97,  # a float counter is truncated, not rounded
                "usage_allocation_seconds": "500000",  # decimal strings are numbers
                "usage_limit_seconds": None,
                "usage_limit_reached": False,
                "usage_period": {"start_time": "x", "end_time": "y"},
            }
        ),
    )
    usage = client.instance_usage(EU)
    assert usage.consumed_seconds == 146880
    assert usage.allocation_seconds == 500000
    assert usage.limit_seconds is None
    assert usage.limit_reached is False
    assert (usage.instance_id, usage.plan_id) == (EU, PREMIUM)


BAD_USAGE = {
    "missing field": ({"usage_allocation_seconds": 10}, "usage_consumed_seconds: Field required"),
    "wrong type": ({"usage_consumed_seconds": "lots"}, "usage_consumed_seconds: Input should be a valid int"),
    "list": ({"usage_consumed_seconds": [1]}, "usage_consumed_seconds: Input should be a valid int"),
    "negative": ({"usage_consumed_seconds": -5}, "usage_consumed_seconds: Input should be greater than"),
    "negative string": ({"usage_consumed_seconds": "-5"}, "usage_consumed_seconds: Input should be greater"),
    "boolean": ({"usage_consumed_seconds": True}, "usage_consumed_seconds: Value error, expected a number"),
    "negative limit": (
        {"usage_consumed_seconds": 1, "usage_limit_seconds": "-1"},
        "usage_limit_seconds: Input should be greater than or equal to 0",
    ),
    "not an object": ([1, 2], "reply: Input should be a valid dictionary"),
    "two problems": ({"usage_consumed_seconds": -1, "usage_limit_seconds": "x"}, "(+1 more)"),
}


@pytest.mark.parametrize(("reply", "why"), list(BAD_USAGE.values()), ids=list(BAD_USAGE))
def test_instance_usage_invalid_reply_names_the_call(
    client: IBMClient, fake: ScriptedIBM, reply: Any, why: str
) -> None:
    fake.on("GET", USAGE, ok(reply))
    with pytest.raises(IBMResponseError) as exc:
        client.instance_usage(US)
    e = exc.value
    assert e.call == "GET /v1/instances/usage"
    assert e.status == 200
    assert str(e).startswith("IBM GET /v1/instances/usage: HTTP 200: unexpected reply: ")
    assert why in str(e)
    assert "\n" not in str(e)
    assert len(fake.calls(USAGE)) == 1  # a bad 200 is not retried


def test_resource_controller_strings_are_numbers(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on(
        "GET",
        RC,
        ok(
            {
                "resources": [
                    instance(US, alloc="3600", limit="7200"),
                    instance(EU, alloc=" 60 ", limit=None),
                    instance(OLD, alloc=0, key="crn"),  # some views name the CRN `crn`, not `id`
                ],
                "next_url": None,
            }
        ),
    )
    got = client.list_instances()
    assert [(i.crn, i.allocation_seconds, i.limit_seconds, i.archived) for i in got] == [
        (US, 3600, 7200, False),
        (EU, 60, None, False),
        (OLD, 0, None, True),
    ]


BAD_RC = {
    "limit key missing": ({"usage_allocation_seconds": "60"}, "instance_limit_seconds: Field required"),
    "negative allocation": (
        {"usage_allocation_seconds": "-60", "instance_limit_seconds": None},
        "usage_allocation_seconds: Input should be greater than or equal to 0",
    ),
    "fractional seconds": (
        {"usage_allocation_seconds": 60.5, "instance_limit_seconds": None},
        "usage_allocation_seconds: Input should be a valid integer, got a number with a fractional part",
    ),
    "not a number": (
        {"usage_allocation_seconds": "1h", "instance_limit_seconds": None},
        "usage_allocation_seconds: Input should be a valid integer",
    ),
    "a digit int() cannot read": (
        {"usage_allocation_seconds": "²", "instance_limit_seconds": None},
        "usage_allocation_seconds: Value error",
    ),
}


@pytest.mark.parametrize(("extensions", "why"), list(BAD_RC.values()), ids=list(BAD_RC))
def test_resource_controller_invalid_extensions(
    client: IBMClient, fake: ScriptedIBM, extensions: dict[str, Any], why: str
) -> None:
    fake.on("GET", RC, ok({"resources": [{**instance(US), "extensions": extensions}]}))
    with pytest.raises(IBMResponseError) as exc:
        client.list_instances()
    assert exc.value.call == "GET /v2/resource_instances"
    assert str(exc.value).startswith(
        "IBM GET /v2/resource_instances: HTTP 200: unexpected reply: resources.0."
    )
    assert why in str(exc.value)


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ({"token_type": "Bearer", "expires_in": 3600}, "access_token: Field required"),
        ({"access_token": "", "expires_in": 3600}, "access_token: String should have at least 1 character"),
        ({"access_token": "t", "expires_in": -1}, "expires_in: Input should be greater than 0"),
        ({"access_token": 12345}, "access_token: Input should be a valid string"),
    ],
)
def test_bad_iam_reply_names_the_token_call(
    client: IBMClient, fake: ScriptedIBM, reply: Any, why: str
) -> None:
    fake.on("POST", "/identity/token", ok(reply))
    with pytest.raises(IBMResponseError) as exc:
        client.instance_usage(US)
    assert exc.value.call == "POST /identity/token"
    assert why in str(exc.value)
    assert fake.api_calls == []


def test_session_and_job_models(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("POST", SESSIONS, ok({"backend_name": "ibm_torino", "mode": "batch"}))
    with pytest.raises(
        IBMResponseError, match=r"^IBM POST /v1/sessions: HTTP 200: unexpected reply: id: Field"
    ):
        client.create_session(US, "ibm_torino")
    fake.on("GET", f"{SESSIONS}/s1", ok({"id": "s1", "elapsed_time": -3.0}))
    with pytest.raises(
        IBMResponseError, match=r"GET /v1/sessions/\{id\}: .*elapsed_time: Input should be great"
    ):
        client.get_session(US, "s1")
    fake.on("GET", JOBS, ok({"jobs": [{"id": "j1", "usage": {"quantum_seconds": "soon"}}], "count": 1}))
    with pytest.raises(IBMResponseError, match=r"GET /v1/jobs: .*jobs\.0\.usage\.quantum_seconds"):
        client.session_jobs(US, "s1")


# ----- bodies that are not JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (httpx.Response(200, content=b'{"usage_consumed_seconds": 1'), "reply is not JSON"),
        (httpx.Response(200, content=b"<html><body>Gateway</body></html>"), "reply is not JSON"),
        (httpx.Response(200, content=b""), "reply is empty"),
        (httpx.Response(200, content=b"\xff\xfe\x00"), "reply is not JSON"),
    ],
    ids=["truncated", "html", "empty", "binary"],
)
def test_malformed_json(client: IBMClient, fake: ScriptedIBM, reply: httpx.Response, why: str) -> None:
    fake.on("GET", USAGE, reply)
    with pytest.raises(IBMResponseError) as exc:
        client.instance_usage(US)
    assert str(exc.value) == f"IBM GET /v1/instances/usage: HTTP 200: {why}"


# ----- units: analytics milliseconds -> whole seconds ------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "seconds"),
    [(0, 0), (None, 0), (999, 0), (1000, 1), (1999.999, 1), (59999, 59), (86_400_999, 86400), ("2500", 2)],
)
def test_analytics_usage_truncates_milliseconds(
    client: IBMClient, fake: ScriptedIBM, ms: Any, seconds: int
) -> None:
    fake.on("GET", ANALYTICS, ok({"usage": ms}))
    assert client.analytics_usage(instance=US, account_id="acct1", start=T0, end=T1) == seconds


def test_analytics_usage_refuses_negative_or_missing_usage(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", ANALYTICS, ok({"usage": -1}), ok({"interval_start": "x"}))
    with pytest.raises(IBMResponseError, match="usage: Input should be greater than or equal to 0"):
        client.analytics_usage(plan="premium", account_id="acct1", start=T0, end=T1)
    with pytest.raises(IBMResponseError, match="usage: Field required"):
        client.analytics_usage(plan="premium", account_id="acct1", start=T0, end=T1)


def test_analytics_usage_instance_request(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", ANALYTICS, ok({"usage": 5000}))
    naive_end = datetime(2026, 11, 22, 12, 30)  # naive = UTC
    client.analytics_usage(instance=EU, account_id="acct1", start=T0, end=naive_end)
    (req,) = fake.calls(ANALYTICS)
    assert req.url.host == "eu-de.quantum.cloud.ibm.com"
    assert query(req) == {
        "instance": EU,
        "interval_start": "2026-11-01T00:00:00+00:00",
        "interval_end": "2026-11-22T12:30:00+00:00",
    }
    assert b"%2B00%3A00" in req.url.query  # '+' is percent-encoded, not left to become a space
    assert req.headers["Account-Id"] == "acct1"
    assert "Service-CRN" not in req.headers


def test_analytics_usage_plan_request_converts_to_utc(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", ANALYTICS, ok({"usage": 5000}))
    cet = timezone(timedelta(hours=1))
    client.analytics_usage(
        plan="premium",
        account_id="acct9",
        start=datetime(2026, 11, 1, 1, 0, tzinfo=cet),
        end=datetime(2026, 11, 2, 1, 0, tzinfo=cet),
    )
    (req,) = fake.calls(ANALYTICS)
    assert req.url.host == "quantum.cloud.ibm.com"  # plan-wide analytics: always us-east
    assert query(req) == {
        "plan": "premium",
        "interval_start": "2026-11-01T00:00:00+00:00",
        "interval_end": "2026-11-02T00:00:00+00:00",
    }
    assert req.headers["Account-Id"] == "acct9"


def test_analytics_usage_argument_checks(client: IBMClient, fake: ScriptedIBM) -> None:
    with pytest.raises(InvalidRequestError, match="exactly one of instance= or plan="):
        client.analytics_usage(account_id="a", start=T0, end=T1)
    with pytest.raises(InvalidRequestError, match="exactly one"):
        client.analytics_usage(instance=US, plan="premium", account_id="a", start=T0, end=T1)
    with pytest.raises(InvalidRequestError, match="must be before"):
        client.analytics_usage(instance=US, account_id="a", start=T1, end=T1)
    assert fake.requests == []


def test_non_ascii_account_id_is_refused_client_side(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", ANALYTICS, ok({"usage": 1}))
    with pytest.raises(InvalidRequestError):
        client.analytics_usage(plan="premium", account_id="accé", start=T0, end=T1)
    assert fake.api_calls == []


def test_daily_usage_sums_same_date_buckets_before_truncating(client: IBMClient, fake: ScriptedIBM) -> None:
    bucket = {"key": EU, "interval_end": "ignored", "jobs": 3}
    fake.on(
        "GET",
        DAILY,
        ok(
            {
                "data": [
                    {**bucket, "interval_start": "2026-11-20T00:00:00.000Z", "usage": 600},
                    {**bucket, "interval_start": "2026-11-21T00:00:00.000Z", "usage": 61_999},
                    {**bucket, "interval_start": "2026-11-20T06:00:00.000Z", "usage": 600},
                    {**bucket, "interval_start": "2026-11-20T18:00:00+00:00", "usage": 900.5},
                    {**bucket, "interval_start": "2026-11-19T00:00:00Z", "usage": None},
                ]
            }
        ),
    )
    got = client.daily_usage(EU, account_id="acct1", start=date(2026, 11, 19), end=date(2026, 11, 22))
    # 600 + 600 + 900.5 ms = 2.1005 s -> 2 (truncating each bucket first would give 0)
    assert got == {date(2026, 11, 19): 0, date(2026, 11, 20): 2, date(2026, 11, 21): 61}
    assert list(got) == sorted(got)
    (req,) = fake.calls(DAILY)
    assert req.url.host == "eu-de.quantum.cloud.ibm.com"
    assert query(req) == {
        "group_by": "instance",
        "instance": EU,
        "interval_start": "2026-11-19T00:00:00+00:00",
        "interval_end": "2026-11-22T00:00:00+00:00",
    }
    assert req.headers["Account-Id"] == "acct1"
    assert "Service-CRN" not in req.headers


def test_daily_usage_keeps_the_date_ibm_wrote(client: IBMClient, fake: ScriptedIBM) -> None:
    """A bucket stamped 23:30 at -05:00 is that day in IBM's words, not the next UTC day."""
    fake.on("GET", DAILY, ok({"data": [{"interval_start": "2026-11-20T23:30:00-05:00", "usage": 4000}]}))
    assert client.daily_usage(US, account_id="a", start=date(2026, 11, 1), end=date(2026, 11, 30)) == {
        date(2026, 11, 20): 4
    }


def test_daily_usage_bad_buckets(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", DAILY, ok({"data": [{"interval_start": "yesterday", "usage": 1}]}), ok({"rows": []}))
    with pytest.raises(
        IBMResponseError, match=r"GET /v1/analytics/usage_grouped_by_date.*data\.0\.interval_start"
    ):
        client.daily_usage(US, account_id="a", start=date(2026, 11, 1), end=date(2026, 11, 2))
    with pytest.raises(IBMResponseError, match="data: Field required"):
        client.daily_usage(US, account_id="a", start=date(2026, 11, 1), end=date(2026, 11, 2))
    with pytest.raises(InvalidRequestError):
        client.daily_usage(US, account_id="a", start=date(2026, 11, 2), end=date(2026, 11, 2))


# ----- account plan ----------------------------------------------------------------------------------------


def test_account_plan_reads_strings_and_negative_unallocated(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on(
        "GET",
        "/api/v1/accounts/acct1",
        ok(
            {
                "id": "acct1",
                "plans": [
                    {
                        "plan_id": PLAN_IDS["paygo"],
                        "usage_allocation_seconds": 5,
                        "unallocated_usage_seconds": 5,
                    },
                    {
                        "plan_id": PREMIUM,
                        "usage_allocation_seconds": "1000000",
                        "unallocated_usage_seconds": "-2500",
                        "usage_limit_seconds": None,
                    },
                ],
            }
        ),
    )
    plan = client.account_plan("acct1", PREMIUM)
    assert (
        plan.account_id,
        plan.plan_id,
        plan.budget_seconds,
        plan.unallocated_seconds,
        plan.limit_seconds,
    ) == (
        "acct1",
        PREMIUM,
        1_000_000,
        -2500,
        None,
    )
    (req,) = fake.calls("/api/v1/accounts/acct1")
    assert req.url.host == "quantum.cloud.ibm.com"
    assert query(req) == {"plan_id": PREMIUM}
    assert "Account-Id" not in req.headers and "Service-CRN" not in req.headers  # as in qauvern's trace


def test_account_plan_without_plan_ids_takes_the_first(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on(
        "GET",
        "/api/v1/accounts/a/b",  # url.path is decoded; raw_path is checked below
        ok(
            {
                "plans": [
                    {"usage_allocation_seconds": 7, "unallocated_usage_seconds": 3, "usage_limit_seconds": 9}
                ]
            }
        ),
    )
    plan = client.account_plan("a/b", PREMIUM)
    assert (plan.budget_seconds, plan.unallocated_seconds, plan.limit_seconds, plan.account_id) == (
        7,
        3,
        9,
        "a/b",
    )
    assert fake.api_calls[0].url.raw_path.startswith(b"/api/v1/accounts/a%2Fb?")


def test_account_plan_errors(client: IBMClient, fake: ScriptedIBM) -> None:
    acct = "/api/v1/accounts/acct1"
    other = {"plan_id": PLAN_IDS["paygo"], "usage_allocation_seconds": 1, "unallocated_usage_seconds": 1}
    fake.on("GET", acct, ok({"plans": [other]}), ok({"plans": []}), ok({"plans": [{"plan_id": PREMIUM}]}))
    with pytest.raises(
        IBMResponseError, match=rf"^IBM GET /v1/accounts/\{{id\}}: HTTP 200: no plan '{PREMIUM}'"
    ):
        client.account_plan("acct1", PREMIUM)
    with pytest.raises(IBMResponseError, match="plans: List should have at least 1 item"):
        client.account_plan("acct1", PREMIUM)
    with pytest.raises(IBMResponseError, match=r"plans\.0\.usage_allocation_seconds: Field required"):
        client.account_plan("acct1", PREMIUM)
    with pytest.raises(InvalidRequestError):
        client.account_plan("", PREMIUM)


# ----- pagination ------------------------------------------------------------------------------------------


def next_url(start: str) -> str:
    return f"/v2/resource_instances?resource_id={QUANTUM_RESOURCE_ID}&limit=1&start={start}"


def test_list_instances_follows_three_pages(client: IBMClient, fake: ScriptedIBM) -> None:
    a, b, c = (US.replace("inst-us", n) for n in ("a", "b", "c"))
    fake.on(
        "GET",
        RC,
        ok({"rows_count": 1, "next_url": next_url("T2"), "resources": [instance(a)]}),
        ok(
            {
                "rows_count": 1,
                "next_url": "https://resource-controller.cloud.ibm.com" + next_url("T3%3D"),
                "resources": [instance(b)],
            }
        ),
        ok({"rows_count": 1, "next_url": None, "resources": [instance(c)]}),
    )
    got = client.list_instances(PREMIUM)
    assert [i.crn for i in got] == [a, b, c]
    reqs = fake.calls(RC)
    assert [query(r) for r in reqs] == [
        {"resource_id": QUANTUM_RESOURCE_ID, "resource_plan_id": PREMIUM},
        {"resource_id": QUANTUM_RESOURCE_ID, "resource_plan_id": PREMIUM, "start": "T2"},
        {"resource_id": QUANTUM_RESOURCE_ID, "resource_plan_id": PREMIUM, "start": "T3="},
    ]
    assert {r.url.host for r in reqs} == {"resource-controller.cloud.ibm.com"}
    assert fake.tokens == 1


def test_list_instances_without_plan_sends_no_plan_filter(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", RC, ok({"resources": []}))
    assert client.list_instances() == []
    assert query(fake.calls(RC)[0]) == {"resource_id": QUANTUM_RESOURCE_ID}


def test_pagination_loop_is_an_error(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on(
        "GET",
        RC,
        ok({"next_url": next_url("A"), "resources": [instance(US)]}),
        ok({"next_url": next_url("B"), "resources": [instance(US)]}),
        ok({"next_url": next_url("A"), "resources": [instance(US)]}),
    )
    with pytest.raises(IBMResponseError) as exc:
        client.list_instances()
    assert (
        str(exc.value)
        == "IBM GET /v2/resource_instances: HTTP 200: pagination loops (start token 'A' came twice)"
    )
    assert len(fake.calls(RC)) == 3  # it stopped at the first repeat, it did not spin


def test_next_url_without_start_is_an_error(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", RC, ok({"next_url": "/v2/resource_instances?limit=1", "resources": []}))
    with pytest.raises(IBMResponseError, match="next_url without a start token"):
        client.list_instances()


def test_error_on_page_two_surfaces(client: IBMClient, fake: ScriptedIBM, sleeps: list[float]) -> None:
    fake.on(
        "GET",
        RC,
        ok({"next_url": next_url("P2"), "resources": [instance(US)]}),
        ok({"message": "Query parameter start is invalid", "status_code": 400}, status=400),
    )
    with pytest.raises(IBMError) as exc:
        client.list_instances()
    assert type(exc.value) is IBMError
    assert str(exc.value) == "IBM GET /v2/resource_instances: HTTP 400: Query parameter start is invalid"
    assert query(fake.calls(RC)[1])["start"] == "P2"
    assert sleeps == []


def test_503_on_page_two_is_retried_then_surfaces(
    client: IBMClient, fake: ScriptedIBM, sleeps: list[float]
) -> None:
    fake.on(
        "GET",
        RC,
        ok({"next_url": next_url("P2"), "resources": [instance(US)]}),
        ok({"errors": [{"code": "unavailable", "message": "try later"}]}, status=503),
    )
    with pytest.raises(IBMError) as exc:
        client.list_instances()
    assert exc.value.status == 503
    assert (
        str(exc.value) == "IBM GET /v2/resource_instances: HTTP 503: try later (hint: gave up after 3 tries)"
    )
    assert [query(r).get("start") for r in fake.calls(RC)] == [None, "P2", "P2", "P2"]
    assert sleeps == [0.25, 0.5]


def test_session_jobs_pages_by_offset_and_fetches_missing_usage(client: IBMClient, fake: ScriptedIBM) -> None:
    def page(ids: list[str]) -> dict[str, Any]:
        return {
            "jobs": [{"id": i, "status": "Completed", "usage": {"quantum_seconds": 1.5}} for i in ids],
            "count": 5,
        }

    fake.on(
        "GET",
        JOBS,
        ok(page(["j5", "j4"])),
        ok(page(["j3", "j2"])),
        ok({"jobs": [{"id": "j1", "state": {"status": "Failed", "reason": "boom"}}], "count": 5}),
    )
    fake.on("GET", f"{JOBS}/j1/metrics", ok({"usage": {"quantum_seconds": 0.25, "seconds": 0.25}}))
    jobs = client.session_jobs(EU, "sess-1", page_size=2)
    assert [(j.id, j.status, j.quantum_seconds) for j in jobs] == [
        ("j5", "Completed", 1.5),
        ("j4", "Completed", 1.5),
        ("j3", "Completed", 1.5),
        ("j2", "Completed", 1.5),
        ("j1", "Failed", 0.25),
    ]
    assert jobs[-1].reason == "boom"
    reqs = fake.calls(JOBS)
    assert [(query(r)["offset"], query(r)["limit"]) for r in reqs] == [("0", "2"), ("2", "2"), ("4", "2")]
    assert {query(r)["session_id"] for r in reqs} == {"sess-1"}
    assert {r.url.host for r in fake.api_calls} == {"eu-de.quantum.cloud.ibm.com"}
    assert {r.headers["Service-CRN"] for r in fake.api_calls} == {EU}


def test_session_jobs_repeating_page_is_an_error(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", JOBS, ok({"jobs": [{"id": "j1", "usage": {"quantum_seconds": 1}}], "count": 9}))
    with pytest.raises(IBMResponseError, match="pagination does not advance"):
        client.session_jobs(US, "s", page_size=1)
    assert len(fake.calls(JOBS)) == 2


def test_session_jobs_survive_a_job_submitted_while_paging(client: IBMClient, fake: ScriptedIBM) -> None:
    listed = [f"j{n}" for n in range(5, 0, -1)]  # newest first, as IBM lists them

    def jobs(request: httpx.Request) -> httpx.Response:
        q = query(request)
        offset, limit = int(q["offset"]), int(q["limit"])
        page = listed[offset : offset + limit]
        if offset == 0:
            listed.insert(0, "j6")  # submitted right after the first page was served
        rows = [{"id": i, "status": "Completed", "usage": {"quantum_seconds": 1.0}} for i in page]
        return ok({"jobs": rows, "count": len(listed)})

    fake.on("GET", JOBS, jobs)
    got = [j.id for j in client.session_jobs(US, "s", page_size=2)]
    assert set(got) >= {"j1", "j2", "j3", "j4", "j5"}
    assert len(got) == len(set(got))


# ----- update_instance and create_instance -----------------------------------------------------------------

ENCODED_EU = "crn%3Av1%3Abluemix%3Apublic%3Aquantum-computing%3Aeu-de%3Aa%2Facct1%3Ainst-eu%3A%3A"


def test_update_instance_body_and_encoded_crn(client: IBMClient, fake: ScriptedIBM) -> None:
    path = f"{RC}/{EU}"
    fake.on("PATCH", path, ok(instance(EU)))
    client.update_instance(EU, allocation_seconds=60, limit_seconds=700000)
    client.update_instance(EU, allocation_seconds=899940, limit_seconds=None)
    client.update_instance(EU, allocation_seconds=1, limit_seconds=0)
    first, second, third = fake.calls(path, "PATCH")
    # Byte for byte the URL of qauvern's trace.
    assert str(first.url) == f"https://resource-controller.cloud.ibm.com/v2/resource_instances/{ENCODED_EU}"
    assert first.url.raw_path == f"/v2/resource_instances/{ENCODED_EU}".encode()
    assert first.headers["Content-Type"] == "application/json"
    assert body(first) == {
        "parameters": {"usage_allocation_seconds": "60", "instance_limit_seconds": "700000"}
    }
    assert body(second) == {
        "parameters": {"usage_allocation_seconds": "899940", "instance_limit_seconds": None}
    }
    assert body(third) == {"parameters": {"usage_allocation_seconds": "1", "instance_limit_seconds": "0"}}
    assert "Service-CRN" not in first.headers and "Account-Id" not in first.headers


@pytest.mark.parametrize(
    ("allocation", "limit", "why"),
    [
        (0, None, "allocation must be > 0 seconds (0 archives the instance), got 0"),
        (-60, None, "allocation must be > 0"),
        (60, -1, "limit must be >= 0 seconds or None (no limit), got -1"),
        ("60", None, "allocation_seconds must be a whole number of seconds, got '60'"),
        (60.0, None, "allocation_seconds must be a whole number"),
        (True, None, "allocation_seconds must be a whole number"),
        (60, 1.5, "limit_seconds must be a whole number"),
    ],
)
def test_update_instance_refuses_client_side(
    client: IBMClient, fake: ScriptedIBM, allocation: Any, limit: Any, why: str
) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        client.update_instance(EU, allocation_seconds=allocation, limit_seconds=limit)
    assert why in str(exc.value)
    assert isinstance(exc.value, ValueError) and not isinstance(exc.value, IBMError)
    assert fake.requests == []  # not even the IAM exchange


def test_update_instance_is_retried_like_a_get(
    client: IBMClient, fake: ScriptedIBM, sleeps: list[float]
) -> None:
    path = f"{RC}/{EU}"
    fake.on("PATCH", path, ok({"message": "busy"}, 503), httpx.ReadTimeout("slow"), ok(instance(EU)))
    client.update_instance(EU, allocation_seconds=60, limit_seconds=None)
    assert len(fake.calls(path, "PATCH")) == 3
    assert sleeps == [0.25, 0.5]


def test_create_instance_body(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("POST", RC, ok({"id": US, "guid": "g", "name": "newinst", "state": "provisioning"}, 201))
    created = client.create_instance(
        "newinst",
        target="us-east",
        resource_group="rg-1",
        plan_id=PREMIUM,
        allocation_seconds=36000,
        limit_seconds=172800,
        tags=["team:x"],
    )
    assert (created.crn, created.name, created.state) == (US, "newinst", "provisioning")
    (req,) = fake.calls(RC, "POST")
    assert body(req) == {  # qauvern's `create` in the trace
        "name": "newinst",
        "target": "us-east",
        "resource_group": "rg-1",
        "resource_plan_id": PREMIUM,
        "parameters": {"usage_allocation_seconds": "36000", "instance_limit_seconds": "172800"},
        "tags": ["team:x"],
    }


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"allocation_seconds": 0}, "allocation must be > 0"),
        ({"allocation_seconds": 60, "limit_seconds": -5}, "limit must be >= 0"),
        ({"allocation_seconds": 60, "target": "Mars"}, "target must be a region"),
        ({"allocation_seconds": 60, "name": "  "}, "instance name must not be empty"),
    ],
)
def test_create_instance_refuses_client_side(
    client: IBMClient, fake: ScriptedIBM, kwargs: dict[str, Any], why: str
) -> None:
    args: dict[str, Any] = {
        "name": "n",
        "target": "eu-de",
        "resource_group": "rg",
        "plan_id": PREMIUM,
        **kwargs,
    }
    with pytest.raises(InvalidRequestError, match=why):
        client.create_instance(**args)
    assert fake.requests == []


# ----- sessions --------------------------------------------------------------------------------------------


def test_create_get_close_session_requests(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on(
        "POST",
        SESSIONS,
        ok({"id": "s/1", "backend_name": "ibm_torino", "mode": "dedicated", "state": "open"}),
    )
    fake.on("GET", f"{SESSIONS}/s/1", ok({"id": "s/1", "state": "closed", "elapsed_time": 12.5}))
    fake.on("DELETE", f"{SESSIONS}/s/1/close", httpx.Response(204))
    fake.on("PATCH", f"{SESSIONS}/s/1", httpx.Response(204))
    s = client.create_session(EU, "ibm_torino", mode="dedicated", max_ttl=3600)
    assert (s.id, s.backend, s.mode, s.state) == ("s/1", "ibm_torino", "dedicated", "open")
    got = client.get_session(EU, "s/1")
    assert got.closed and got.elapsed_seconds == 12.5
    client.close_session(EU, "s/1")
    client.close_session(EU, "s/1", cancel_queued=False)
    post, get, delete, patch = fake.api_calls
    assert str(post.url) == "https://eu-de.quantum.cloud.ibm.com/api/v1/sessions"
    assert body(post) == {
        "max_ttl": 3600,
        "mode": "dedicated",
        "backend": "ibm_torino",
        "backend_name": "ibm_torino",
    }
    assert get.url.raw_path == b"/api/v1/sessions/s%2F1"
    assert (delete.method, delete.url.raw_path, delete.content) == (
        "DELETE",
        b"/api/v1/sessions/s%2F1/close",
        b"",
    )
    assert (patch.method, body(patch)) == ("PATCH", {"accepting_jobs": False})
    assert {r.headers["Service-CRN"] for r in fake.api_calls} == {EU}


def test_close_of_unknown_session_is_not_found(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on(
        "DELETE",
        f"{SESSIONS}/gone/close",
        ok({"errors": [{"code": "x", "message": "Session gone was not found"}]}, 404),
    )
    with pytest.raises(IBMNotFound) as exc:
        client.close_session(US, "gone")
    assert str(exc.value) == "IBM DELETE /v1/sessions/{id}/close: HTTP 404: Session gone was not found"


# ----- headers ---------------------------------------------------------------------------------------------


def test_headers_per_call(client: IBMClient, fake: ScriptedIBM) -> None:
    """IBM-API-Version and the bearer on every API call, Service-CRN on instance-scoped ones, Account-Id on
    analytics only, as in qauvern 0.14's trace; the IAM exchange carries none of them."""
    fake.on("GET", RC, ok({"resources": []}))
    fake.on("GET", USAGE, ok({"usage_consumed_seconds": 1}))
    fake.on(
        "GET",
        "/api/v1/accounts/acct1",
        ok({"plans": [{"usage_allocation_seconds": 1, "unallocated_usage_seconds": 1}]}),
    )
    fake.on("GET", ANALYTICS, ok({"usage": 1}))
    fake.on("GET", DAILY, ok({"data": []}))
    fake.on("PATCH", f"{RC}/{US}", ok(instance(US)))
    fake.on("GET", "/api/v1/backends/ibm_fez/status", ok({"backend_name": "ibm_fez", "status": "online"}))
    client.list_instances(PREMIUM)
    client.instance_usage(US)
    client.account_plan("acct1", PREMIUM)
    client.analytics_usage(plan="premium", account_id="acct1", start=T0, end=T1)
    client.analytics_usage(instance=US, account_id="acct1", start=T0, end=T1)
    client.daily_usage(US, account_id="acct1", start=date(2026, 11, 1), end=date(2026, 11, 2))
    client.update_instance(US, allocation_seconds=5, limit_seconds=None)
    assert client.backend_status(US, "ibm_fez").operational is True

    iam = fake.requests[0]
    assert iam.url.path == "/identity/token"
    assert not {"authorization", "ibm-api-version", "service-crn", "account-id"} & set(iam.headers.keys())
    seen = {
        (r.method, r.url.path.removeprefix("/api"), r.headers.get("Service-CRN"), r.headers.get("Account-Id"))
        for r in fake.api_calls
    }
    assert seen == {
        ("GET", RC, None, None),
        ("GET", "/v1/instances/usage", US, None),
        ("GET", "/v1/accounts/acct1", None, None),
        ("GET", "/v1/analytics/usage", None, "acct1"),
        ("GET", "/v1/analytics/usage_grouped_by_date", None, "acct1"),
        ("PATCH", f"{RC}/{US}", None, None),
        ("GET", "/v1/backends/ibm_fez/status", US, None),
    }
    for r in fake.api_calls:
        assert r.headers["IBM-API-Version"] == "2026-04-15"
        assert r.headers["Authorization"] == "Bearer tok-1"
        assert r.headers["Accept"] == "application/json"
        assert r.headers["User-Agent"].startswith("qauvern-hpc/")


# ----- error strings ---------------------------------------------------------------------------------------

ERROR_SHAPES = {
    "quantum": (
        503,
        {
            "errors": [{"code": "1234", "message": "Service busy", "more_info": "u"}],
            "trace": "t",
            "status_code": 503,
        },
        IBMError,
        "IBM GET /v1/instances/usage: HTTP 503: Service busy (hint: gave up after 3 tries)",
    ),
    "quantum, several": (
        400,
        {"errors": [{"code": "a", "message": "first"}, {"code": "b", "message": "second"}]},
        IBMError,
        "IBM GET /v1/instances/usage: HTTP 400: first (+1 more)",
    ),
    "quantum, code only": (
        400,
        {"errors": [{"code": "invalid_header"}]},
        IBMError,
        "IBM GET /v1/instances/usage: HTTP 400: invalid_header",
    ),
    "iam": (
        400,
        {"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found.", "context": {}},
        IBMError,
        "IBM GET /v1/instances/usage: HTTP 400: Provided API key could not be found. (BXNIM0415E)",
    ),
    "resource controller": (
        404,
        {
            "message": "Instance with ID x was not found",
            "status_code": 404,
            "error_code": "RC-ResourceNotFound",
        },
        IBMNotFound,
        "IBM GET /v1/instances/usage: HTTP 404: Instance with ID x was not found",
    ),
    "multi-line text": (
        403,
        "Forbidden\n  by   policy\r\nsecond line",
        IBMAuthError,
        "IBM GET /v1/instances/usage: HTTP 403: Forbidden by policy second line "
        "(hint: the API key has no access to this)",
    ),
    "multi-line message": (
        409,
        {"message": "line one\nline two\ttabbed"},
        IBMError,
        "IBM GET /v1/instances/usage: HTTP 409: line one line two tabbed",
    ),
    "no body": (418, None, IBMError, "IBM GET /v1/instances/usage: HTTP 418: no error message"),
}


@pytest.mark.parametrize(
    ("status", "payload", "kind", "text"), list(ERROR_SHAPES.values()), ids=list(ERROR_SHAPES)
)
def test_error_strings_are_one_line_with_ibm_message(
    client: IBMClient, fake: ScriptedIBM, status: int, payload: Any, kind: type[IBMError], text: str
) -> None:
    if payload is None:
        reply = httpx.Response(status)
    elif isinstance(payload, str):
        reply = httpx.Response(status, text=payload)
    else:
        reply = ok(payload, status)
    fake.on("GET", USAGE, reply)
    with pytest.raises(IBMError) as exc:
        client.instance_usage(US)
    assert type(exc.value) is kind
    assert exc.value.status == status
    assert exc.value.call == "GET /v1/instances/usage"
    assert str(exc.value) == text
    assert "\n" not in str(exc.value) and "\r" not in str(exc.value)
    assert US not in str(exc.value)  # the call is a template, never a URL with values


def test_long_message_is_cut(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", USAGE, ok({"message": "x" * 5000}, 400))
    with pytest.raises(IBMError) as exc:
        client.instance_usage(US)
    assert len(exc.value.ibm_message or "") == 300
    assert str(exc.value).endswith("x…")


def test_redirect_is_not_followed(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", USAGE, httpx.Response(302, headers={"Location": "https://login.example/"}))
    with pytest.raises(IBMError) as exc:
        client.instance_usage(US)
    assert (
        str(exc.value)
        == "IBM GET /v1/instances/usage: HTTP 302: unexpected redirect to https://login.example/"
    )
    assert len(fake.requests) == 2
