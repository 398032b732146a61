"""IBMClient against a scripted fake of IAM, the Resource Controller and the quantum API (MockTransport).

The fake (`tests.support.ibm_wire.ScriptedIBM`) issues tokens ``tok-1``, ``tok-2``, ... and answers 401 to
any other bearer; routes are keyed by (method, path) and answer their queued replies in order (the last one
repeats). A `FakeClock` stands in for time: `sleep` advances it, so retry waits and deadlines are checked
without waiting.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from qauvern_hpc.ibm import (
    Endpoints,
    IBMAuthError,
    IBMClient,
    IBMError,
    IBMNotFound,
    IBMRateLimited,
    IBMResponseError,
    InvalidRequestError,
    RetryPolicy,
    UnknownCRNError,
)
from qauvern_hpc.ibm.client import API_VERSION, QUANTUM_RESOURCE_ID, ms_to_seconds
from qauvern_hpc.ibm.plans import PLAN_IDS
from tests.support.ibm_wire import FakeClock, ScriptedIBM
from tests.support.paths import UNIT_FIXTURES

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)

FIXTURES = UNIT_FIXTURES / "ibm"
KEY = "sekrit-APIKEY-0123456789"
US = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct1:inst-us::"
EU = "crn:v1:bluemix:public:quantum-computing:eu-de:a/acct1:inst-eu::"
PREMIUM = PLAN_IDS["premium"]

USAGE = "/api/v1/instances/usage"
RC = "/v2/resource_instances"
TOKEN = "/identity/token"

Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def ok(body: Any = None, status: int = 200, **headers: str) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def err(status: int, message: str = "boom", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"code": "x", "message": message}]}, headers=headers)


FAST = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=8.0, deadline=60.0, jitter=False)


@pytest.fixture
def fake() -> ScriptedIBM:
    return ScriptedIBM()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_client(
    fake: ScriptedIBM,
    clock: FakeClock,
    *,
    retry: RetryPolicy = FAST,
    endpoints: Endpoints | None = None,
    timeout: float = 30.0,
) -> IBMClient:
    return IBMClient(
        KEY,
        endpoints or Endpoints.production(),
        timeout=timeout,
        retry=retry,
        sleep=clock.sleep,
        clock=clock,
        transport=httpx.MockTransport(fake),
    )


@pytest.fixture
def client(fake: ScriptedIBM, clock: FakeClock) -> Iterator[IBMClient]:
    with make_client(fake, clock) as c:
        yield c


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def query(request: httpx.Request) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(request.url.query.decode()))


# ----- IAM and headers -------------------------------------------------------------------------------------


def test_token_exchange_and_headers(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", USAGE, ok(fixture("instance_usage.json")))
    usage = client.instance_usage(EU)
    assert usage.consumed_seconds == 146880
    iam, call = fake.requests
    assert str(iam.url) == "https://iam.cloud.ibm.com/identity/token"
    assert iam.method == "POST"
    assert iam.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert iam.headers["Accept"] == "application/json"
    assert urllib.parse.parse_qs(iam.content.decode()) == {
        "grant_type": ["urn:ibm:params:oauth:grant-type:apikey"],
        "apikey": [KEY],
    }
    assert "Authorization" not in iam.headers and "IBM-API-Version" not in iam.headers
    assert str(call.url) == "https://eu-de.quantum.cloud.ibm.com/api/v1/instances/usage"
    assert call.headers["Authorization"] == "Bearer tok-1"
    assert call.headers["IBM-API-Version"] == API_VERSION == "2026-04-15"
    assert call.headers["Service-CRN"] == EU
    assert "Account-Id" not in call.headers


def test_token_is_cached(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", USAGE, ok({"usage_consumed_seconds": 1}))
    for _ in range(3):
        client.instance_usage(US)
    assert fake.issued == ["tok-1"]
    assert len(fake.calls(TOKEN)) == 1


def test_token_is_refreshed_shortly_before_expiry(fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.token_reply = {"expires_in": 100}  # margin = min(60 s, 20 % of 100 s) = 20 s
    fake.on("GET", USAGE, ok({"usage_consumed_seconds": 1}))
    with make_client(fake, clock) as client:
        client.instance_usage(US)
        clock.now += 79
        client.instance_usage(US)
        assert fake.issued == ["tok-1"]
        clock.now += 2  # 81 s after issue: inside the margin
        client.instance_usage(US)
        assert fake.issued == ["tok-1", "tok-2"]
        assert fake.calls(USAGE)[-1].headers["Authorization"] == "Bearer tok-2"


def test_token_expiration_field_is_used_without_expires_in(fake: ScriptedIBM, clock: FakeClock) -> None:
    import time

    fake.on("POST", TOKEN, ok({"access_token": "abs-1", "expiration": int(time.time()) + 100}))
    fake.on("POST", TOKEN, ok({"access_token": "abs-2", "expiration": int(time.time()) + 3600}))
    fake.valid.update({"abs-1", "abs-2"})
    fake.on("GET", USAGE, ok({"usage_consumed_seconds": 1}))
    with make_client(fake, clock) as client:
        client.instance_usage(US)
        clock.now += 50
        client.instance_usage(US)
        assert len(fake.calls(TOKEN)) == 1
        clock.now += 40  # ~90 s: past the 20 s margin of a ~100 s token
        client.instance_usage(US)
        assert len(fake.calls(TOKEN)) == 2
        assert fake.calls(USAGE)[-1].headers["Authorization"] == "Bearer abs-2"


def test_one_reauthentication_on_401(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", USAGE, ok({"usage_consumed_seconds": 7}))
    client.instance_usage(US)
    fake.expire_tokens()
    assert client.instance_usage(US).consumed_seconds == 7
    assert fake.issued == ["tok-1", "tok-2"]
    assert [r.headers["Authorization"] for r in fake.calls(USAGE)] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_second_401_is_an_auth_error_after_exactly_one_reauth(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", USAGE, err(401, "token is not valid"))
    with pytest.raises(IBMAuthError) as info:
        client.instance_usage(US)
    assert fake.issued == ["tok-1", "tok-2"]
    assert len(fake.calls(USAGE)) == 2
    assert info.value.status == 401
    assert str(info.value) == (
        "IBM GET /v1/instances/usage: HTTP 401: token is not valid (hint: a fresh IAM token was refused too)"
    )


def test_concurrent_401s_share_one_refresh(fake: ScriptedIBM) -> None:
    threads_n = 8
    barrier = threading.Barrier(threads_n, timeout=10)
    expired = threading.Event()

    def usage(request: httpx.Request) -> httpx.Response:
        if expired.is_set() and request.headers["Authorization"] == "Bearer tok-1":
            barrier.wait()  # every thread holds a 401 for tok-1 at the same moment
            return err(401, "token expired")
        return ok({"usage_consumed_seconds": 3})

    fake.on("GET", USAGE, usage)
    with IBMClient(KEY, Endpoints.production(), retry=FAST, transport=httpx.MockTransport(fake)) as client:
        client.instance_usage(US)
        expired.set()
        results: list[int] = []
        errors: list[BaseException] = []

        def work() -> None:
            try:
                results.append(client.instance_usage(US).consumed_seconds)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert results == [3] * threads_n
    assert fake.issued == ["tok-1", "tok-2"]
    assert len(fake.calls(USAGE)) == 1 + 2 * threads_n


def test_bad_api_key_is_an_auth_error(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("POST", TOKEN, ok(fixture("iam_bad_key.json"), status=400))
    with pytest.raises(IBMAuthError) as info:
        client.instance_usage(US)
    assert str(info.value) == (
        "IBM POST /identity/token: HTTP 400: Provided API key could not be found. (BXNIM0415E)"
    )
    assert fake.calls(USAGE) == []
    assert len(fake.calls(TOKEN)) == 1  # not retried


def test_malformed_token_reply_is_a_response_error(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("POST", TOKEN, ok({"token_type": "Bearer", "expires_in": 3600}))
    with pytest.raises(IBMResponseError) as info:
        client.instance_usage(US)
    assert info.value.call == "POST /identity/token"
    assert (
        str(info.value)
        == "IBM POST /identity/token: HTTP 200: unexpected reply: access_token: Field required"
    )


def test_iam_outage_is_retried(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on("POST", TOKEN, err(503), ok({"access_token": "tok-x", "expires_in": 3600}))
    fake.valid.add("tok-x")
    fake.on("GET", USAGE, ok({"usage_consumed_seconds": 2}))
    assert client.instance_usage(US).consumed_seconds == 2
    assert clock.sleeps == [0.5]


def test_empty_api_key_is_refused() -> None:
    with pytest.raises(IBMAuthError, match="no API key given"):
        IBMClient("  ", Endpoints.production())


# ----- retries ---------------------------------------------------------------------------------------------


def test_429_honours_retry_after(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on(
        "GET",
        USAGE,
        err(429, "slow down", **{"Retry-After": "3"}),
        err(429, "slow down", **{"Retry-After": "1.5"}),
        ok({"usage_consumed_seconds": 9}),
    )
    assert client.instance_usage(US).consumed_seconds == 9
    assert clock.sleeps == [3.0, 1.5]
    assert len(fake.calls(USAGE)) == 3


def test_retry_after_is_capped_by_the_policy(fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on("GET", USAGE, err(429, **{"Retry-After": "600"}), ok({"usage_consumed_seconds": 9}))
    policy = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=5.0, deadline=60.0, jitter=False)
    with make_client(fake, clock, retry=policy) as client:
        assert client.instance_usage(US).consumed_seconds == 9
    assert clock.sleeps == [5.0]


def test_429_without_retry_after_uses_backoff_then_gives_up(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock
) -> None:
    fake.on("GET", USAGE, err(429, "rate limit exceeded"))
    with pytest.raises(IBMRateLimited) as info:
        client.instance_usage(US)
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert len(fake.calls(USAGE)) == 4
    assert str(info.value) == (
        "IBM GET /v1/instances/usage: HTTP 429: rate limit exceeded (hint: gave up after 4 tries)"
    )


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock, status: int
) -> None:
    fake.on("GET", USAGE, err(status), err(status), ok({"usage_consumed_seconds": 5}))
    assert client.instance_usage(US).consumed_seconds == 5
    assert clock.sleeps == [0.5, 1.0]


def test_5xx_exhausts_max_attempts(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on("GET", USAGE, err(503, "maintenance"))
    with pytest.raises(IBMError) as info:
        client.instance_usage(US)
    assert type(info.value) is IBMError
    assert (info.value.status, info.value.ibm_message) == (503, "maintenance")
    assert len(fake.calls(USAGE)) == FAST.max_attempts == 4


@pytest.mark.parametrize("status", [400, 409, 500])
def test_other_errors_are_not_retried(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock, status: int
) -> None:
    fake.on("GET", USAGE, err(status, "nope"))
    with pytest.raises(IBMError) as info:
        client.instance_usage(US)
    assert info.value.status == status
    assert len(fake.calls(USAGE)) == 1
    assert clock.sleeps == []


def test_404_and_403_map_to_their_errors(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", USAGE, ok(fixture("quantum_error.json"), status=404), err(403, "not allowed"))
    with pytest.raises(IBMNotFound) as nf:
        client.instance_usage(US)
    assert str(nf.value) == "IBM GET /v1/instances/usage: HTTP 404: Instance not found"
    with pytest.raises(IBMAuthError) as forbidden:
        client.instance_usage(US)
    assert forbidden.value.status == 403
    assert fake.issued == ["tok-1"]  # 403 is not a token problem: no re-authentication


def test_connection_errors_are_retried(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on(
        "GET",
        USAGE,
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
        ok({"usage_consumed_seconds": 4}),
    )
    assert client.instance_usage(US).consumed_seconds == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_no_reply_error_message(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", USAGE, httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(IBMError) as info:
        client.instance_usage(EU)
    assert info.value.status is None
    assert str(info.value) == (
        "IBM GET /v1/instances/usage: cannot connect to eu-de.quantum.cloud.ibm.com (ConnectError)"
        " (hint: gave up after 4 tries)"
    )


def test_deadline_bounds_the_retries(fake: ScriptedIBM, clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=4.0, max_delay=60.0, deadline=10.0, jitter=False)
    fake.on("GET", USAGE, err(503))
    with make_client(fake, clock, retry=policy) as client, pytest.raises(IBMError) as info:
        client.instance_usage(US)
    assert clock.sleeps == [4.0]  # the next wait (8 s) would end after the 10 s deadline
    assert len(fake.calls(USAGE)) == 2
    assert info.value.status == 503


def test_retry_after_beyond_the_deadline_gives_up_at_once(fake: ScriptedIBM, clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=120.0, deadline=20.0, jitter=False)
    fake.on("GET", USAGE, err(429, **{"Retry-After": "30"}))
    with make_client(fake, clock, retry=policy) as client, pytest.raises(IBMRateLimited) as info:
        client.instance_usage(US)
    assert clock.sleeps == []
    assert info.value.retry_after == 30.0


def test_each_try_timeout_is_cut_to_the_deadline(fake: ScriptedIBM, clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=2.0, max_delay=60.0, deadline=12.0, jitter=False)
    seen: list[float] = []

    def slow(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"]["read"])
        clock.now += 5  # this try took 5 s
        raise httpx.ReadTimeout("slow", request=request)

    fake.on("GET", USAGE, slow)
    with make_client(fake, clock, retry=policy, timeout=30.0) as client, pytest.raises(IBMError):
        client.instance_usage(US)
    assert seen == [12.0, 5.0]  # 12 s left at first; 12 - 5 - 2 (wait) = 5 s left for the second try
    assert clock.sleeps == [2.0]


def test_default_timeout_when_deadline_is_far(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", USAGE, ok({"usage_consumed_seconds": 1}))
    client.instance_usage(US)
    assert fake.calls(USAGE)[0].extensions["timeout"]["read"] == 30.0


def test_create_session_is_not_retried_after_it_may_have_been_sent(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock
) -> None:
    fake.on("POST", "/api/v1/sessions", err(503), httpx.ReadTimeout("x"))
    with pytest.raises(IBMError) as first:
        client.create_session(US, "ibm_torino")
    assert first.value.status == 503
    with pytest.raises(IBMError) as second:
        client.create_session(US, "ibm_torino")
    assert second.value.status is None and "no reply" in str(second.value)
    assert len(fake.calls("/api/v1/sessions")) == 2  # one request per call
    assert clock.sleeps == []


def test_create_session_is_retried_when_nothing_was_sent(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock
) -> None:
    fake.on(
        "POST",
        "/api/v1/sessions",
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("no syn-ack"),
        ok({"id": "s-1", "backend_name": "ibm_torino", "mode": "batch", "state": "open"}),
    )
    assert client.create_session(US, "ibm_torino").id == "s-1"
    assert clock.sleeps == [0.5, 1.0]


def test_create_instance_is_not_retried(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("POST", RC, err(502))
    with pytest.raises(IBMError):
        client.create_instance(
            "x", target="us-east", resource_group="rg", plan_id=PREMIUM, allocation_seconds=60
        )
    assert len(fake.calls(RC, "POST")) == 1


def test_patch_of_instance_parameters_is_retried(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock
) -> None:
    path = f"{RC}/{EU}"
    fake.on("PATCH", path, err(503), ok({"id": EU}))
    client.update_instance(EU, allocation_seconds=60, limit_seconds=None)
    assert len(fake.calls(path, "PATCH")) == 2
    assert clock.sleeps == [0.5]


# ----- Resource Controller ---------------------------------------------------------------------------------


def test_list_instances_follows_pages(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", RC, ok(fixture("rc_instances_page1.json")), ok(fixture("rc_instances_page2.json")))
    instances = client.list_instances(PREMIUM)
    assert [(i.name, i.allocation_seconds, i.limit_seconds) for i in instances] == [
        ("US inst", 200000, None),
        ("EU inst", 500000, 600000),
        ("archived inst", 0, 7200),
    ]
    first, second = fake.calls(RC)
    assert (
        str(first.url.copy_with(query=None))
        == "https://resource-controller.cloud.ibm.com/v2/resource_instances"
    )
    assert query(first) == {"resource_id": QUANTUM_RESOURCE_ID, "resource_plan_id": PREMIUM}
    assert query(second) == {
        "resource_id": QUANTUM_RESOURCE_ID,
        "resource_plan_id": PREMIUM,
        "start": "PAGE2TOKEN",
    }
    assert first.headers["IBM-API-Version"] == API_VERSION
    assert "Service-CRN" not in first.headers


def test_list_instances_without_plan(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", RC, ok(fixture("rc_instances_page2.json")))
    assert len(client.list_instances()) == 1
    assert query(fake.calls(RC)[0]) == {"resource_id": QUANTUM_RESOURCE_ID}


def test_list_instances_loop_guard(client: IBMClient, fake: ScriptedIBM) -> None:
    looping = {**fixture("rc_instances_page2.json"), "next_url": "/v2/resource_instances?start=AGAIN"}
    fake.on("GET", RC, ok(looping))
    with pytest.raises(IBMResponseError, match="pagination loops") as info:
        client.list_instances()
    assert info.value.call == "GET /v2/resource_instances"
    assert len(fake.calls(RC)) == 2  # the first page, then the page whose start token came again


def test_list_instances_next_url_without_start(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", RC, ok({**fixture("rc_instances_page2.json"), "next_url": "/v2/resource_instances?x=1"}))
    with pytest.raises(IBMResponseError, match="next_url without a start token"):
        client.list_instances()


def test_list_instances_error_on_page_two(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", RC, ok(fixture("rc_instances_page1.json")), err(500, "RC internal error"))
    with pytest.raises(IBMError) as info:
        client.list_instances()
    assert str(info.value) == "IBM GET /v2/resource_instances: HTTP 500: RC internal error"
    assert len(fake.calls(RC)) == 2


def test_list_instances_malformed_page_two(client: IBMClient, fake: ScriptedIBM) -> None:
    bad = {
        "resources": [
            {
                "id": "crn:x",
                "name": "n",
                "extensions": {"usage_allocation_seconds": -1, "instance_limit_seconds": None},
            }
        ]
    }
    fake.on("GET", RC, ok(fixture("rc_instances_page1.json")), ok(bad))
    with pytest.raises(IBMResponseError) as info:
        client.list_instances()
    assert str(info.value) == (
        "IBM GET /v2/resource_instances: HTTP 200: unexpected reply: "
        "resources.0.extensions.usage_allocation_seconds: Input should be greater than or equal to 0"
    )


def test_update_instance_body_and_url(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("PATCH", f"{RC}/{EU}", ok({"id": EU}))
    client.update_instance(EU, allocation_seconds=60, limit_seconds=700000)
    client.update_instance(EU, allocation_seconds=899940, limit_seconds=None)
    first, second = fake.calls(f"{RC}/{EU}", "PATCH")
    assert first.url.raw_path == (
        b"/v2/resource_instances/crn%3Av1%3Abluemix%3Apublic%3Aquantum-computing%3Aeu-de%3Aa%2Facct1%3Ainst-eu%3A%3A"
    )
    assert first.url.host == "resource-controller.cloud.ibm.com"
    assert body(first) == {
        "parameters": {"usage_allocation_seconds": "60", "instance_limit_seconds": "700000"}
    }
    assert body(second) == {
        "parameters": {"usage_allocation_seconds": "899940", "instance_limit_seconds": None}
    }
    assert first.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("allocation", "limit", "match"),
    [
        (0, None, "0 archives the instance"),
        (-60, None, "allocation must be > 0"),
        (60, -1, "limit must be >= 0"),
        (True, None, "whole number of seconds"),
        (60.5, None, "whole number of seconds"),
        (60, 1.5, "whole number of seconds"),
    ],
)
def test_update_instance_refuses_bad_values_without_sending(
    client: IBMClient, fake: ScriptedIBM, allocation: Any, limit: Any, match: str
) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        client.update_instance(EU, allocation_seconds=allocation, limit_seconds=limit)
    assert fake.requests == []


def test_update_instance_refuses_a_bad_crn(client: IBMClient, fake: ScriptedIBM) -> None:
    with pytest.raises(UnknownCRNError):
        client.update_instance("crn:v1:nope", allocation_seconds=60, limit_seconds=None)
    assert fake.requests == []


def test_create_instance_body(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("POST", RC, ok(fixture("rc_created.json"), status=201))
    created = client.create_instance(
        "newinst",
        target="us-east",
        resource_group="rg-1",
        plan_id=PREMIUM,
        allocation_seconds=36000,
        limit_seconds=172800,
        tags=["team:x"],
    )
    assert (created.crn, created.name, created.state) == (
        "crn:v1:bluemix:public:quantum-computing:us-east:a/acct1:new-0001::",
        "newinst",
        "active",
    )
    assert body(fake.calls(RC, "POST")[0]) == {
        "name": "newinst",
        "target": "us-east",
        "resource_group": "rg-1",
        "resource_plan_id": PREMIUM,
        "parameters": {"usage_allocation_seconds": "36000", "instance_limit_seconds": "172800"},
        "tags": ["team:x"],
    }


def test_create_instance_without_tags_or_limit(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("POST", RC, ok(fixture("rc_created.json"), status=201))
    client.create_instance("n", target="eu-de", resource_group="rg", plan_id=PREMIUM, allocation_seconds=60)
    sent = body(fake.calls(RC, "POST")[0])
    assert "tags" not in sent
    assert sent["parameters"] == {"usage_allocation_seconds": "60", "instance_limit_seconds": None}


def test_create_instance_validation(client: IBMClient, fake: ScriptedIBM) -> None:
    with pytest.raises(InvalidRequestError, match="target must be a region"):
        client.create_instance(
            "n", target="Europe", resource_group="rg", plan_id=PREMIUM, allocation_seconds=1
        )
    with pytest.raises(InvalidRequestError, match="allocation must be > 0"):
        client.create_instance(
            "n", target="eu-de", resource_group="rg", plan_id=PREMIUM, allocation_seconds=0
        )
    with pytest.raises(InvalidRequestError, match="name must not be empty"):
        client.create_instance(
            " ", target="eu-de", resource_group="rg", plan_id=PREMIUM, allocation_seconds=1
        )
    assert fake.requests == []


# ----- usage and accounts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("ms", "seconds"), [(0, 0), (999, 0), (1000, 1), (1999.9, 1), (123456.7, 123)])
def test_ms_to_seconds_truncates(ms: float, seconds: int) -> None:
    assert ms_to_seconds(ms) == seconds


def test_analytics_usage_of_a_plan(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", "/api/v1/analytics/usage", ok({"usage": 158651999}))
    end = datetime(2026, 11, 22, 22, 16, 23, 833932, tzinfo=UTC)
    seconds = client.analytics_usage(
        plan="premium", account_id="acct1", start=end - timedelta(days=28), end=end
    )
    assert seconds == 158651
    req = fake.calls("/api/v1/analytics/usage")[0]
    assert req.url.host == "quantum.cloud.ibm.com"
    assert req.headers["Account-Id"] == "acct1"
    assert "Service-CRN" not in req.headers
    assert query(req) == {
        "plan": "premium",
        "interval_start": "2026-10-25T22:16:23.833932+00:00",
        "interval_end": "2026-11-22T22:16:23.833932+00:00",
    }


def test_analytics_usage_of_an_instance_goes_to_its_region(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", "/api/v1/analytics/usage", ok({"usage": None}))
    start = datetime(2026, 11, 21, 12, 0)  # naive: taken as UTC
    seconds = client.analytics_usage(
        instance=EU, account_id="acct1", start=start, end=start + timedelta(hours=24)
    )
    assert seconds == 0
    req = fake.calls("/api/v1/analytics/usage")[0]
    assert req.url.host == "eu-de.quantum.cloud.ibm.com"
    assert query(req) == {
        "instance": EU,
        "interval_start": "2026-11-21T12:00:00+00:00",
        "interval_end": "2026-11-22T12:00:00+00:00",
    }
    assert b"%2B00%3A00" in req.url.query  # the + of +00:00 is percent-encoded


@pytest.mark.parametrize("reply", [{"usage": -5}, {}, {"usage": "a lot"}])
def test_analytics_usage_malformed(client: IBMClient, fake: ScriptedIBM, reply: dict[str, Any]) -> None:
    fake.on("GET", "/api/v1/analytics/usage", ok(reply))
    end = datetime(2026, 11, 22, tzinfo=UTC)
    with pytest.raises(IBMResponseError) as info:
        client.analytics_usage(plan="premium", account_id="a", start=end - timedelta(days=1), end=end)
    assert info.value.call == "GET /v1/analytics/usage"
    assert "unexpected reply: usage:" in str(info.value)


def test_analytics_usage_argument_checks(client: IBMClient, fake: ScriptedIBM) -> None:
    end = datetime(2026, 11, 22, tzinfo=UTC)
    with pytest.raises(InvalidRequestError, match="exactly one"):
        client.analytics_usage(account_id="a", start=end - timedelta(days=1), end=end)
    with pytest.raises(InvalidRequestError, match="exactly one"):
        client.analytics_usage(
            instance=US, plan="premium", account_id="a", start=end - timedelta(days=1), end=end
        )
    with pytest.raises(InvalidRequestError, match="must be before"):
        client.analytics_usage(plan="premium", account_id="a", start=end, end=end)
    assert fake.requests == []


def test_non_json_reply_is_a_response_error(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", "/api/v1/analytics/usage", httpx.Response(200, text="<html>maintenance</html>"))
    end = datetime(2026, 11, 22, tzinfo=UTC)
    with pytest.raises(IBMResponseError) as info:
        client.analytics_usage(plan="premium", account_id="a", start=end - timedelta(days=1), end=end)
    assert str(info.value) == "IBM GET /v1/analytics/usage: HTTP 200: reply is not JSON"


def test_daily_usage_sums_same_dates(client: IBMClient, fake: ScriptedIBM) -> None:
    path = "/api/v1/analytics/usage_grouped_by_date"
    fake.on("GET", path, ok(fixture("usage_grouped_by_date.json")))
    daily = client.daily_usage(US, account_id="acct1", start=date(2026, 9, 23), end=date(2026, 11, 22))
    assert daily == {date(2026, 11, 1): 11, date(2026, 11, 3): 3600, date(2026, 11, 4): 0}
    req = fake.calls(path)[0]
    assert req.url.host == "quantum.cloud.ibm.com"
    assert req.headers["Account-Id"] == "acct1"
    assert query(req) == {
        "group_by": "instance",
        "instance": US,
        "interval_start": "2026-09-23T00:00:00+00:00",
        "interval_end": "2026-11-22T00:00:00+00:00",
    }


def test_daily_usage_refuses_empty_range(client: IBMClient, fake: ScriptedIBM) -> None:
    with pytest.raises(InvalidRequestError, match="must be before"):
        client.daily_usage(US, account_id="a", start=date(2026, 11, 2), end=date(2026, 11, 2))
    assert fake.requests == []


def test_instance_usage_missing_field(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", USAGE, ok({"usage_allocation_seconds": 10}))
    with pytest.raises(IBMResponseError) as info:
        client.instance_usage(US)
    assert str(info.value) == (
        "IBM GET /v1/instances/usage: HTTP 200: unexpected reply: usage_consumed_seconds: Field required"
    )


def test_account_plan_picks_the_plan(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", "/api/v1/accounts/acct1", ok(fixture("account.json")))
    plan = client.account_plan("acct1", PREMIUM)
    assert (plan.budget_seconds, plan.unallocated_seconds, plan.limit_seconds) == (1000000, 200000, 1200000)
    assert (plan.account_id, plan.plan_id) == ("acct1", PREMIUM)
    req = fake.calls("/api/v1/accounts/acct1")[0]
    assert req.url.host == "quantum.cloud.ibm.com"
    assert query(req) == {"plan_id": PREMIUM}
    assert "Account-Id" not in req.headers


def test_account_plan_trusts_an_unlabelled_reply(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on(
        "GET",
        "/api/v1/accounts/acct1",
        ok({"plans": [{"usage_allocation_seconds": 50, "unallocated_usage_seconds": 10}]}),
    )
    plan = client.account_plan("acct1", PREMIUM)
    assert (plan.budget_seconds, plan.unallocated_seconds, plan.limit_seconds) == (50, 10, None)


def test_account_plan_missing_plan(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", "/api/v1/accounts/acct1", ok(fixture("account.json")), ok({"plans": []}))
    with pytest.raises(IBMResponseError, match="no plan 'other' in the reply"):
        client.account_plan("acct1", "other")
    with pytest.raises(IBMResponseError, match="plans: List should have at least 1 item"):
        client.account_plan("acct1", PREMIUM)


# ----- sessions, jobs, backends ----------------------------------------------------------------------------


def test_create_session(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("POST", "/api/v1/sessions", ok({**fixture("session.json"), "state": "open", "closed_at": None}))
    session = client.create_session(EU, "ibm_torino", mode="dedicated", max_ttl=3600)
    assert (session.id, session.backend, session.mode, session.state) == (
        "csess-0001",
        "ibm_torino",
        "dedicated",
        "open",
    )
    req = fake.calls("/api/v1/sessions")[0]
    assert str(req.url) == "https://eu-de.quantum.cloud.ibm.com/api/v1/sessions"
    assert req.headers["Service-CRN"] == EU
    assert body(req) == {
        "max_ttl": 3600,
        "mode": "dedicated",
        "backend": "ibm_torino",
        "backend_name": "ibm_torino",
    }


def test_create_session_checks_its_arguments(client: IBMClient, fake: ScriptedIBM) -> None:
    with pytest.raises(InvalidRequestError, match="batch or dedicated"):
        client.create_session(US, "ibm_torino", mode="exclusive")
    with pytest.raises(InvalidRequestError, match="max_ttl must be > 0"):
        client.create_session(US, "ibm_torino", max_ttl=0)
    with pytest.raises(InvalidRequestError, match="backend must not be empty"):
        client.create_session(US, "")
    assert fake.requests == []


def test_create_session_reply_without_id(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("POST", "/api/v1/sessions", ok({"backend_name": "ibm_torino"}))
    with pytest.raises(
        IBMResponseError, match=r"POST /v1/sessions: HTTP 200: unexpected reply: id: Field required"
    ):
        client.create_session(US, "ibm_torino")


def test_get_session(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", "/api/v1/sessions/csess-0001", ok(fixture("session.json")))
    s = client.get_session(US, "csess-0001")
    assert (s.state, s.mode, s.elapsed_seconds) == ("closed", "dedicated", 1799.5)
    assert s.started_at == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert fake.calls("/api/v1/sessions/csess-0001")[0].headers["Service-CRN"] == US


def test_close_session_cancels_queued_jobs_by_default(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("DELETE", "/api/v1/sessions/csess-0001/close", ok(status=204))
    client.close_session(EU, "csess-0001")
    req = fake.calls("/api/v1/sessions/csess-0001/close", "DELETE")[0]
    assert req.url.host == "eu-de.quantum.cloud.ibm.com"
    assert req.headers["Service-CRN"] == EU
    assert req.content == b""


def test_close_session_gracefully(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("PATCH", "/api/v1/sessions/csess-0001", ok(status=204))
    client.close_session(US, "csess-0001", cancel_queued=False)
    req = fake.calls("/api/v1/sessions/csess-0001", "PATCH")[0]
    assert body(req) == {"accepting_jobs": False}
    assert fake.calls("/api/v1/sessions/csess-0001/close") == []


def test_close_session_unknown_and_retried(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on("DELETE", "/api/v1/sessions/gone/close", err(404, "Session gone was not found"))
    with pytest.raises(IBMNotFound, match="Session gone was not found"):
        client.close_session(US, "gone")
    fake.on("DELETE", "/api/v1/sessions/busy/close", err(503), ok(status=204))
    client.close_session(US, "busy")
    assert clock.sleeps == [0.5]


def test_session_ids_are_escaped_in_paths(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", "/api/v1/sessions/a/b", ok({"id": "a/b"}))
    client.get_session(US, "a/b")
    assert fake.requests[-1].url.raw_path == b"/api/v1/sessions/a%2Fb"


def test_session_jobs_pages_and_metrics_fallback(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", "/api/v1/jobs", ok(fixture("jobs_page1.json")), ok(fixture("jobs_page2.json")))
    fake.on("GET", "/api/v1/jobs/job-3/metrics", ok(fixture("job_metrics.json")))
    jobs = client.session_jobs(EU, "csess-0001", page_size=2)
    assert [(j.id, j.status, j.quantum_seconds) for j in jobs] == [
        ("job-1", "Completed", 12.5),
        ("job-2", "Failed", 1.25),
        ("job-3", "Running", 4.75),
    ]
    first, second = fake.calls("/api/v1/jobs")
    assert first.url.host == "eu-de.quantum.cloud.ibm.com"
    assert query(first) == {"session_id": "csess-0001", "limit": "2", "offset": "0", "exclude_params": "true"}
    assert query(second)["offset"] == "2"
    assert first.headers["Service-CRN"] == EU
    assert len(fake.calls("/api/v1/jobs/job-3/metrics")) == 1


def test_session_jobs_empty(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", "/api/v1/jobs", ok({"jobs": [], "count": 0}))
    assert client.session_jobs(US, "s") == []
    assert len(fake.calls("/api/v1/jobs")) == 1


def test_session_jobs_loop_guard(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", "/api/v1/jobs", ok({**fixture("jobs_page1.json"), "count": None}))
    with pytest.raises(IBMResponseError, match="pagination does not advance"):
        client.session_jobs(US, "csess-0001", page_size=2)
    assert len(fake.calls("/api/v1/jobs")) == 2


def test_backend_status(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", "/api/v1/backends/ibm_fez/status", ok(fixture("backend_status.json")))
    st = client.backend_status(EU, "ibm_fez")
    assert (st.status, st.operational, st.length_queue) == ("online", True, 3)
    req = fake.calls("/api/v1/backends/ibm_fez/status")[0]
    assert req.url.host == "eu-de.quantum.cloud.ibm.com" and req.headers["Service-CRN"] == EU


def test_unknown_crn_is_refused_before_sending(client: IBMClient, fake: ScriptedIBM) -> None:
    with pytest.raises(UnknownCRNError, match="bad region"):
        client.instance_usage("crn:v1:bluemix:public:quantum-computing:Moon:a/a:i::")
    assert fake.requests == []


def test_single_endpoint_paths(fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on("GET", USAGE, ok({"usage_consumed_seconds": 1}))
    fake.on("GET", RC, ok(fixture("rc_instances_page2.json")))
    with make_client(fake, clock, endpoints=Endpoints.single("http://127.0.0.1:9999")) as client:
        client.instance_usage(EU)
        client.list_instances()
    assert [str(r.url.copy_with(query=None)) for r in fake.requests] == [
        "http://127.0.0.1:9999/identity/token",
        "http://127.0.0.1:9999/api/v1/instances/usage",
        "http://127.0.0.1:9999/v2/resource_instances",
    ]


# ----- secrets and logs ------------------------------------------------------------------------------------


def _all_text(exc: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join([str(exc), repr(exc), caplog.text, *(r.getMessage() for r in caplog.records)])


@pytest.mark.parametrize(
    "reply",
    [
        ok({"errorCode": "BXNIM0415E", "errorMessage": f"API key {KEY} could not be found."}, status=400),
        httpx.Response(500, text=f"internal error for apikey={KEY}"),
        err(503, f"down; you sent {KEY}"),
        httpx.ConnectError(f"refused while sending apikey={KEY}"),
        ok({"access_token": ""}),
        httpx.Response(200, text=f"not json {KEY}"),
    ],
)
def test_api_key_never_leaks(
    fake: ScriptedIBM, clock: FakeClock, caplog: pytest.LogCaptureFixture, reply: Reply
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.on("POST", TOKEN, reply)
    policy = RetryPolicy(max_attempts=2, base_delay=0.1, jitter=False)
    with make_client(fake, clock, retry=policy) as client:
        with pytest.raises(IBMError) as info:
            client.instance_usage(US)
        assert KEY not in repr(client) and "<redacted>" in repr(client)
        assert KEY not in repr(vars(client))
    assert info.value.call == "POST /identity/token"
    assert KEY not in _all_text(info.value, caplog)
    assert caplog.records, "the client logs its requests"
    for req in fake.requests:
        assert KEY not in str(req.url)
        assert KEY not in str(dict(req.headers))
    assert KEY in fake.requests[0].content.decode()  # it does travel, in the form body only


def test_bearer_token_is_scrubbed_from_messages(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("GET", USAGE, err(400, "bad token tok-1 for this call"))
    with pytest.raises(IBMError) as info:
        client.instance_usage(US)
    assert str(info.value) == "IBM GET /v1/instances/usage: HTTP 400: bad token <redacted> for this call"


def test_debug_log_per_request(
    client: IBMClient, fake: ScriptedIBM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="qauvern_hpc.ibm")
    fake.on("GET", USAGE, ok({"usage_consumed_seconds": 1}))
    client.instance_usage(EU)
    lines = [
        r.getMessage() for r in caplog.records if r.name == "qauvern_hpc.ibm" and " ms" in r.getMessage()
    ]
    assert lines == [
        "POST /identity/token iam.cloud.ibm.com -> 200 in 0 ms",
        "GET /v1/instances/usage eu-de.quantum.cloud.ibm.com -> 200 in 0 ms",
    ]


def test_package_import_is_cheap() -> None:
    code = (
        "import sys, qauvern_hpc.ibm as ibm; "
        "print('httpx' in sys.modules, 'pydantic' in sys.modules); "
        "ibm.IBMClient; print('httpx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "True"]
