"""IBMClient when things go wrong, over httpx.MockTransport: the IAM token cache and its refresh, one
re-authentication on 401, bounded retries (429 with Retry-After, 5xx, timeouts, connection errors, the
deadline, max_attempts), which POSTs may be retried, and the API key kept out of errors, reprs and logs.

`tests.support.ibm_wire.ScriptedIBM` plays IAM (tokens ``TOKEN-1-…``, ``TOKEN-2-…``; only issued, unexpired
ones are accepted) and the APIs (replies queued per ``(method, path)``, the last one repeating).
`FakeClock` is the client's monotonic clock; its `sleep` records the wait and moves time on, so nothing
here really waits.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from qauvern_hpc.ibm import (
    Endpoints,
    IBMAuthError,
    IBMClient,
    IBMError,
    IBMRateLimited,
    RetryPolicy,
)
from qauvern_hpc.ibm.plans import PLAN_IDS
from tests.support.ibm_wire import FakeClock, ScriptedIBM

KEY = "RESILIENCE-apikey-8c1e77d2"
US = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct1:inst-us::"
EU = "crn:v1:bluemix:public:quantum-computing:eu-de:a/acct1:inst-eu::"
TOKEN = "/identity/token"
USAGE = "/api/v1/instances/usage"
SESSIONS = "/api/v1/sessions"
RC = "/v2/resource_instances"

Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def ok(body: Any = None, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def err(status: int, message: str = "boom", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"code": "c", "message": message}]}, headers=headers)


USED = {"usage_consumed_seconds": 42}
SESSION = {"id": "s-1", "backend_name": "ibm_torino", "mode": "batch", "state": "open"}


POLICY = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=8.0, deadline=60.0, jitter=False)


@pytest.fixture
def fake() -> ScriptedIBM:
    return ScriptedIBM(token_format="TOKEN-{n}-d41d8cd9")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(5000.0)


def make(
    fake: ScriptedIBM, clock: FakeClock, retry: RetryPolicy = POLICY, timeout: float = 30.0, key: str = KEY
) -> IBMClient:
    return IBMClient(
        key,
        Endpoints.production(),
        retry=retry,
        timeout=timeout,
        sleep=clock.sleep,
        clock=clock,
        transport=httpx.MockTransport(fake),
    )


@pytest.fixture
def client(fake: ScriptedIBM, clock: FakeClock) -> Iterator[IBMClient]:
    with make(fake, clock) as c:
        yield c


def bearer(request: httpx.Request) -> str:
    return request.headers["Authorization"].removeprefix("Bearer ")


# ----- the token cache -------------------------------------------------------------------------------------


def test_one_iam_call_for_many_requests(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on("GET", USAGE, ok(USED))
    fake.on("GET", RC, ok({"resources": []}))
    for _ in range(5):
        assert client.instance_usage(US).consumed_seconds == 42
        assert client.instance_usage(EU).consumed_seconds == 42
        assert client.list_instances() == []
        clock.now += 60
    assert fake.iam_calls == 1
    assert {bearer(r) for r in fake.requests if r.url.path != TOKEN} == {fake.issued[0]}
    form = urllib.parse.parse_qs(fake.calls(TOKEN)[0].content.decode())
    assert form == {"grant_type": ["urn:ibm:params:oauth:grant-type:apikey"], "apikey": [KEY]}


@pytest.mark.parametrize(
    ("token_reply", "still_cached", "refreshed"),
    [
        ({"expires_in": 3600}, 3539.0, 3541.0),  # a minute's margin
        ({"expires_in": 100}, 79.0, 81.0),  # a fifth of a short lifetime
        ({}, 539.0, 541.0),  # neither field: 600 s assumed
    ],
    ids=["expires_in", "short expires_in", "no lifetime"],
)
def test_token_is_refreshed_before_it_expires(
    client: IBMClient,
    fake: ScriptedIBM,
    clock: FakeClock,
    token_reply: dict[str, Any],
    still_cached: float,
    refreshed: float,
) -> None:
    fake.token_reply = token_reply
    fake.on("GET", USAGE, ok(USED))
    t0 = clock.now
    client.instance_usage(US)
    clock.now = t0 + still_cached
    client.instance_usage(US)
    assert fake.iam_calls == 1
    clock.now = t0 + refreshed
    client.instance_usage(US)
    assert fake.iam_calls == 2
    assert [bearer(r) for r in fake.calls(USAGE)] == [fake.issued[0], fake.issued[0], fake.issued[1]]
    assert len(fake.calls(USAGE)) == 3  # no 401 and resend: the refresh came first


def test_token_lifetime_from_expiration_epoch(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    """Only `expiration` (epoch seconds, IAM's wall clock): the lifetime is what is left of it now."""
    fake.token_reply = {"expiration": int(time.time()) + 1000}
    fake.on("GET", USAGE, ok(USED))
    t0 = clock.now
    client.instance_usage(US)
    clock.now = t0 + 930  # refresh due at ~940 (1000 - 60), give or take the second `int()` dropped
    client.instance_usage(US)
    assert fake.iam_calls == 1
    clock.now = t0 + 945
    client.instance_usage(US)
    assert fake.iam_calls == 2


def test_expires_in_wins_over_expiration(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.token_reply = {"expires_in": 3600, "expiration": int(time.time()) + 100}
    fake.on("GET", USAGE, ok(USED))
    t0 = clock.now
    client.instance_usage(US)
    clock.now = t0 + 3000
    client.instance_usage(US)
    assert fake.iam_calls == 1


# ----- 401: exactly one re-authentication ------------------------------------------------------------------


def test_401_reauthenticates_once_and_resends(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on("GET", USAGE, ok(USED))
    client.instance_usage(US)
    fake.expire_tokens()  # IBM revoked the token before we expected it
    assert client.instance_usage(US).consumed_seconds == 42
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("POST", TOKEN),
        ("GET", USAGE),
        ("GET", USAGE),  # 401
        ("POST", TOKEN),
        ("GET", USAGE),
    ]
    assert [bearer(r) for r in fake.calls(USAGE)] == [fake.issued[0], fake.issued[0], fake.issued[1]]
    assert clock.sleeps == []  # a re-authentication is not a retry: no wait


def test_persistent_401_is_an_auth_error_after_one_reauthentication(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock
) -> None:
    fake.on("GET", USAGE, err(401, "Unauthorized"))
    with pytest.raises(IBMAuthError) as exc:
        client.instance_usage(US)
    assert str(exc.value) == (
        "IBM GET /v1/instances/usage: HTTP 401: Unauthorized (hint: a fresh IAM token was refused too)"
    )
    assert exc.value.status == 401
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("POST", TOKEN),
        ("GET", USAGE),
        ("POST", TOKEN),
        ("GET", USAGE),
    ]
    assert clock.sleeps == []


def test_401_during_retries_still_gets_one_reauthentication(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock
) -> None:
    fake.on("GET", USAGE, err(503), err(401, "expired"), err(503), ok(USED))
    assert client.instance_usage(US).consumed_seconds == 42
    assert fake.iam_calls == 2
    assert len(fake.calls(USAGE)) == 4
    assert clock.sleeps == [0.5, 1.0]  # the 401 did not count as a try


def test_concurrent_401s_share_one_refresh(fake: ScriptedIBM, clock: FakeClock) -> None:
    n = 6
    barrier = threading.Barrier(n, timeout=5)
    first_round: set[int] = set()

    def usage(request: httpx.Request) -> httpx.Response:
        if bearer(request) == fake.issued[0]:
            first_round.add(threading.get_ident())
            barrier.wait()  # every thread holds the old token when IBM refuses it
            return err(401, "expired")
        return ok(USED)

    fake.on("GET", USAGE, usage)
    with make(fake, clock) as client:
        client._bearer(clock() + 60)  # prime the cache with TOKEN-1
        errors: list[BaseException] = []

        def work() -> None:
            try:
                client.instance_usage(US)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert errors == []
    assert len(first_round) == n
    assert fake.iam_calls == 2  # the priming exchange and one shared refresh
    assert {bearer(r) for r in fake.calls(USAGE)} == set(fake.issued)


# ----- IAM failures ----------------------------------------------------------------------------------------


def test_iam_rejecting_the_key(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on(
        "POST",
        TOKEN,
        ok(
            {
                "errorCode": "BXNIM0415E",
                "errorMessage": "Provided API key could not be found.",
                "context": {},
            },
            400,
        ),
    )
    with pytest.raises(IBMAuthError) as exc:
        client.instance_usage(US)
    assert (
        str(exc.value)
        == "IBM POST /identity/token: HTTP 400: Provided API key could not be found. (BXNIM0415E)"
    )
    assert (exc.value.call, exc.value.status) == ("POST /identity/token", 400)
    assert fake.iam_calls == 1  # a refused key is not retried
    assert fake.calls(USAGE) == []
    assert clock.sleeps == []


def test_iam_401_is_not_a_reauthentication_loop(client: IBMClient, fake: ScriptedIBM) -> None:
    fake.on("POST", TOKEN, ok({"errorMessage": "nope"}, 401))
    with pytest.raises(IBMAuthError, match="HTTP 401: nope"):
        client.instance_usage(US)
    assert fake.iam_calls == 1


def test_iam_outage_is_retried(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on(
        "POST", TOKEN, err(503), httpx.ConnectError("refused"), ok({"access_token": "T", "expires_in": 60})
    )
    fake.valid.add("T")
    fake.on("GET", USAGE, ok(USED))
    assert client.instance_usage(US).consumed_seconds == 42
    assert fake.iam_calls == 3
    assert clock.sleeps == [0.5, 1.0]


# ----- retries ---------------------------------------------------------------------------------------------


def test_429_honours_retry_after(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on(
        "GET",
        USAGE,
        err(429, "slow down", **{"Retry-After": "3"}),
        err(429, "slow down", **{"Retry-After": "1.5"}),
        err(429, "slow down", **{"Retry-After": "120"}),  # capped at max_delay
        ok(USED),
    )
    assert client.instance_usage(US).consumed_seconds == 42
    assert clock.sleeps == [3.0, 1.5, 8.0]
    assert len(fake.calls(USAGE)) == 4


def test_429_retry_after_as_http_date(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    fake.on("GET", USAGE, err(429, **{"Retry-After": when}), ok(USED))
    client.instance_usage(US)
    (wait,) = clock.sleeps
    assert 3.0 <= wait <= 5.0


def test_unreadable_retry_after_falls_back_to_backoff(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock
) -> None:
    fake.on("GET", USAGE, err(429, **{"Retry-After": "soon"}), err(429, **{"Retry-After": "-4"}), ok(USED))
    client.instance_usage(US)
    assert clock.sleeps == [0.5, 1.0]


def test_429_that_outlasts_the_policy(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on("GET", USAGE, err(429, "rate limit exceeded"))
    with pytest.raises(IBMRateLimited) as exc:
        client.instance_usage(US)
    assert str(exc.value) == (
        "IBM GET /v1/instances/usage: HTTP 429: rate limit exceeded (hint: gave up after 4 tries)"
    )
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert len(fake.calls(USAGE)) == 4


def test_retry_after_beyond_the_deadline_gives_up_at_once(fake: ScriptedIBM, clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=300.0, deadline=30.0, jitter=False)
    fake.on("GET", USAGE, err(429, "quota", **{"Retry-After": "50"}), ok(USED))
    with make(fake, clock, retry=policy) as client, pytest.raises(IBMRateLimited) as exc:
        client.instance_usage(US)
    assert exc.value.retry_after == 50.0
    assert str(exc.value) == "IBM GET /v1/instances/usage: HTTP 429: quota"
    assert clock.sleeps == []
    assert len(fake.calls(USAGE)) == 1


def test_503_twice_then_ok(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on("GET", USAGE, err(503, "busy"), err(503, "busy"), ok(USED))
    assert client.instance_usage(US).consumed_seconds == 42
    assert clock.sleeps == [0.5, 1.0]
    assert len(fake.calls(USAGE)) == 3
    assert fake.iam_calls == 1


@pytest.mark.parametrize("status", [502, 504])
def test_other_gateway_errors_are_retried(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock, status: int
) -> None:
    fake.on("GET", USAGE, err(status), ok(USED))
    client.instance_usage(US)
    assert len(fake.calls(USAGE)) == 2


@pytest.mark.parametrize("status", [400, 409, 500, 501])
def test_other_errors_are_not_retried(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock, status: int
) -> None:
    fake.on("GET", USAGE, err(status, "no"), ok(USED))
    with pytest.raises(IBMError) as exc:
        client.instance_usage(US)
    assert exc.value.status == status
    assert len(fake.calls(USAGE)) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("no SYN-ACK"),
        httpx.PoolTimeout("pool"),
        httpx.ReadTimeout("slow"),
        httpx.WriteTimeout("slow"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transport_failures_of_a_get_are_retried(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock, failure: Exception
) -> None:
    fake.on("GET", USAGE, failure, failure, ok(USED))
    assert client.instance_usage(US).consumed_seconds == 42
    assert len(fake.calls(USAGE)) == 3
    assert clock.sleeps == [0.5, 1.0]


def test_connect_errors_that_persist(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on("GET", USAGE, httpx.ConnectError("refused"))
    with pytest.raises(IBMError) as exc:
        client.instance_usage(EU)
    assert exc.value.status is None
    assert str(exc.value) == (
        "IBM GET /v1/instances/usage: cannot connect to eu-de.quantum.cloud.ibm.com (ConnectError) "
        "(hint: gave up after 4 tries)"
    )


def test_jittered_backoff_stays_within_half_to_full(fake: ScriptedIBM, clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=8.0, deadline=600.0, jitter=True)
    fake.on("GET", USAGE, err(503))
    with make(fake, clock, retry=policy) as client, pytest.raises(IBMError):
        client.instance_usage(US)
    assert len(clock.sleeps) == 5
    for wait, full in zip(clock.sleeps, [1.0, 2.0, 4.0, 8.0, 8.0], strict=True):
        assert full / 2 <= wait <= full


def test_max_attempts(fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on("GET", USAGE, err(503, "down"))
    three = RetryPolicy(max_attempts=3, jitter=False)
    with make(fake, clock, retry=three) as client, pytest.raises(IBMError) as exc:
        client.instance_usage(US)
    assert len(fake.calls(USAGE)) == 3
    assert clock.sleeps == [0.5, 1.0]
    assert exc.value.hint == "gave up after 3 tries"
    fake.requests.clear()
    with make(fake, clock, retry=RetryPolicy(max_attempts=1)) as client, pytest.raises(IBMError) as exc:
        client.instance_usage(US)
    assert len(fake.calls(USAGE)) == 1
    assert str(exc.value) == "IBM GET /v1/instances/usage: HTTP 503: down"  # one try: no "gave up" hint


def test_deadline_stops_retrying_early(fake: ScriptedIBM, clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=2.0, max_delay=60.0, deadline=5.0, jitter=False)
    fake.on("GET", USAGE, err(503, "down"))
    with make(fake, clock, retry=policy) as client, pytest.raises(IBMError) as exc:
        client.instance_usage(US)
    # t=0 try, wait 2; t=2 try; the next wait (4 s) would end past the 5 s deadline: stop.
    assert clock.sleeps == [2.0]
    assert len(fake.calls(USAGE)) == 2
    assert exc.value.hint == "gave up after 2 tries"


def test_deadline_cuts_each_try_timeout(fake: ScriptedIBM, clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=60.0, deadline=10.0, jitter=False)

    def slow_503(request: httpx.Request) -> httpx.Response:
        clock.now += 3.0  # each answer takes 3 s
        return err(503, "down")

    fake.on("GET", USAGE, slow_503)
    with make(fake, clock, retry=policy, timeout=30.0) as client, pytest.raises(IBMError):
        client.instance_usage(US)
    timeouts = [r.extensions["timeout"]["read"] for r in fake.calls(USAGE)]
    # t=0: 10 s left; t=3.5: 6.5 left; t=7.5: 2.5 left; at t=10.5 the deadline has passed: no 4th try.
    assert timeouts == pytest.approx([10.0, 6.5, 2.5])
    assert clock.sleeps == [0.5, 1.0]
    assert clock.now - 5000.0 == pytest.approx(10.5)


def test_deadline_covers_the_iam_exchange(fake: ScriptedIBM, clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=60.0, deadline=5.0, jitter=False)

    def slow_token(request: httpx.Request) -> httpx.Response:
        clock.now += 6.0
        return ok({"access_token": "late", "expires_in": 3600})

    fake.on("POST", TOKEN, slow_token)
    with make(fake, clock, retry=policy) as client, pytest.raises(IBMError) as exc:
        client.instance_usage(US)
    assert "deadline of 5 s passed before sending" in str(exc.value)
    assert fake.calls(USAGE) == []


# ----- which POSTs are retried -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "status", "text"),
    [
        (err(503, "busy"), 503, "IBM POST /v1/sessions: HTTP 503: busy"),
        (err(502, "bad gateway"), 502, "IBM POST /v1/sessions: HTTP 502: bad gateway"),
        (
            httpx.ReadTimeout("slow"),
            None,
            "IBM POST /v1/sessions: no reply from eu-de.quantum.cloud.ibm.com within 30.0 s (ReadTimeout)",
        ),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            None,
            "IBM POST /v1/sessions: connection to eu-de.quantum.cloud.ibm.com failed (RemoteProtocolError)",
        ),
    ],
    ids=["503", "502", "read timeout", "dropped"],
)
def test_create_session_is_not_retried_once_it_may_have_been_sent(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock, failure: Reply, status: int | None, text: str
) -> None:
    fake.on("POST", SESSIONS, failure, ok(SESSION))
    with pytest.raises(IBMError) as exc:
        client.create_session(EU, "ibm_torino")
    assert exc.value.status == status
    assert str(exc.value) == text
    assert len(fake.calls(SESSIONS, "POST")) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("no SYN-ACK")],
    ids=lambda e: type(e).__name__,
)
def test_create_session_is_retried_after_a_connect_error(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock, failure: Exception
) -> None:
    fake.on("POST", SESSIONS, failure, ok(SESSION))
    assert client.create_session(EU, "ibm_torino").id == "s-1"
    assert len(fake.calls(SESSIONS, "POST")) == 2
    assert clock.sleeps == [0.5]


def test_create_session_is_retried_after_429(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on("POST", SESSIONS, err(429, "too many requests", **{"Retry-After": "2"}), ok(SESSION))
    assert client.create_session(EU, "ibm_torino").id == "s-1"
    assert len(fake.calls(SESSIONS, "POST")) == 2
    assert clock.sleeps == [2.0]


def test_create_instance_is_not_retried_after_a_reply(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock
) -> None:
    fake.on("POST", RC, err(502), ok({"id": US, "name": "n"}, 201))
    kwargs: dict[str, Any] = {
        "target": "us-east",
        "resource_group": "rg",
        "plan_id": PLAN_IDS["premium"],
        "allocation_seconds": 60,
    }
    with pytest.raises(IBMError, match="HTTP 502"):
        client.create_instance("n", **kwargs)
    assert len(fake.calls(RC, "POST")) == 1
    fake.routes[("POST", RC)] = [httpx.ConnectError("refused"), ok({"id": US, "name": "n"}, 201)]
    assert client.create_instance("n", **kwargs).crn == US
    assert len(fake.calls(RC, "POST")) == 3
    assert clock.sleeps == [0.5]


def test_session_close_is_retried(client: IBMClient, fake: ScriptedIBM, clock: FakeClock) -> None:
    fake.on("DELETE", f"{SESSIONS}/s-1/close", err(503), httpx.ReadTimeout("slow"), httpx.Response(204))
    fake.on("PATCH", f"{SESSIONS}/s-1", httpx.RemoteProtocolError("gone"), httpx.Response(204))
    client.close_session(EU, "s-1")
    client.close_session(EU, "s-1", cancel_queued=False)
    assert len(fake.calls(f"{SESSIONS}/s-1/close", "DELETE")) == 3
    assert len(fake.calls(f"{SESSIONS}/s-1", "PATCH")) == 2


# ----- the API key stays secret ----------------------------------------------------------------------------


def secret_free(text: str, *secrets: str) -> bool:
    return not any(s and s in text for s in secrets)


def test_key_absent_from_client_repr_and_str(fake: ScriptedIBM, clock: FakeClock) -> None:
    with make(fake, clock, key=f"  {KEY}\n") as client:
        for text in (repr(client), str(client), repr(vars(client)), repr(client._api_key)):
            assert KEY not in text
        assert "<redacted>" in repr(client)
        fake.on("GET", USAGE, ok(USED))
        client.instance_usage(US)
    # The key was stripped and travelled only in the IAM form body.
    assert urllib.parse.parse_qs(fake.calls(TOKEN)[0].content.decode())["apikey"] == [KEY]
    for r in fake.requests:
        assert KEY not in str(r.url)
        assert all(KEY not in v for v in r.headers.values())
        if r.url.path != TOKEN:
            assert KEY.encode() not in r.content


@pytest.mark.parametrize("key", ["", "   ", "\n"])
def test_blank_key_is_refused_before_anything_is_sent(fake: ScriptedIBM, clock: FakeClock, key: str) -> None:
    with pytest.raises(IBMAuthError, match="no API key given"):
        make(fake, clock, key=key)
    assert fake.requests == []


def full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc) + repr(vars(exc))


def test_iam_echoing_the_key_is_scrubbed_everywhere(
    client: IBMClient, fake: ScriptedIBM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.on(
        "POST",
        TOKEN,
        ok({"errorCode": "BXNIM0415E", "errorMessage": f"Provided API key {KEY} could not be found."}, 400),
    )
    with pytest.raises(IBMAuthError) as exc:
        client.instance_usage(US)
    assert str(exc.value) == (
        "IBM POST /identity/token: HTTP 400: Provided API key <redacted> could not be found. (BXNIM0415E)"
    )
    assert secret_free(full_text(exc.value), KEY)
    assert caplog.records  # the failure was logged...
    for record in caplog.records:  # ...without the key
        assert secret_free(record.getMessage() + repr(record.args) + str(record.exc_text), KEY)


def test_key_and_token_absent_from_every_log_record_and_error(
    client: IBMClient, fake: ScriptedIBM, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.on("GET", USAGE, err(503, "busy"), httpx.ConnectError(f"refused apikey={KEY}"), ok(USED))
    client.instance_usage(US)  # retries, logged at INFO/DEBUG
    fake.expire_tokens()
    client.instance_usage(US)  # 401 and a re-authentication
    token = fake.issued[-1]
    fake.on("GET", RC, ok({"message": f"bad request from {KEY} with Bearer {token}"}, 400))
    with pytest.raises(IBMError) as exc:
        client.list_instances()
    assert (
        str(exc.value)
        == "IBM GET /v2/resource_instances: HTTP 400: bad request from <redacted> with Bearer <redacted>"
    )
    assert secret_free(full_text(exc.value), KEY, token)
    fake.on("POST", TOKEN, ok({"errorMessage": f"key {KEY} disabled"}, 400))
    fake.expire_tokens()
    with pytest.raises(IBMAuthError) as auth:
        client.instance_usage(US)
    assert secret_free(full_text(auth.value), KEY, *fake.issued)
    messages = [r.getMessage() for r in caplog.records]
    assert any("retry 1 of 3" in m for m in messages)
    assert any("re-authenticating once" in m for m in messages)
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + str(record.exc_text)
        assert secret_free(text, KEY, *fake.issued), text
