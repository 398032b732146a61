"""The steps `IBMClient._send` is made of: retry loop, status and transport mapping, token cache."""

from __future__ import annotations

import httpx
import pytest

from qauvern_hpc.core.secret import Secret
from qauvern_hpc.ibm import wire
from qauvern_hpc.ibm.auth import TokenCache
from qauvern_hpc.ibm.errors import IBMAuthError, IBMError, IBMNotFound, IBMRateLimited
from qauvern_hpc.ibm.models import Token
from qauvern_hpc.ibm.retry import DeadlinePassed, Failure, RetryPolicy, send_with_retries
from tests.support.ibm_wire import FakeClock

CALL = "GET /x"


def _run(outcomes: list[object], policy: RetryPolicy, clock: FakeClock, deadline: float = 5000.0) -> object:
    def try_once() -> object:
        item = outcomes.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    return send_with_retries(
        policy, try_once, call=CALL, host="h", deadline_at=deadline, clock=clock, sleep=clock.sleep
    )


def test_retry_loop_returns_the_first_result_after_retryable_failures() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=3, base_delay=1.0, jitter=False)
    fail = Failure(IBMError(CALL, 503, "busy"), retryable=True)
    assert _run([fail, fail, "ok"], policy, clock) == "ok"
    assert clock.sleeps == [1.0, 2.0]


def test_retry_loop_gives_up_with_a_hint_and_stops_at_a_non_retryable_failure() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=2, base_delay=1.0, jitter=False)
    fail = Failure(IBMError(CALL, 503, "busy"), retryable=True)
    with pytest.raises(IBMError) as info:
        _run([fail, fail], policy, clock)
    assert info.value.hint == "gave up after 2 tries"
    with pytest.raises(IBMError) as once:
        _run([Failure(IBMError(CALL, None, "read timeout"), retryable=False)], policy, clock)
    assert once.value.hint is None


def test_deadline_passed_reports_the_last_failure_or_the_deadline() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, jitter=False, deadline=30)
    with pytest.raises(IBMError, match="deadline of 30 s passed before sending"):
        _run([DeadlinePassed()], policy, clock)
    last = IBMError(CALL, 502, "bad gateway")
    with pytest.raises(IBMError) as info:
        _run([Failure(last, retryable=True), DeadlinePassed()], policy, clock)
    assert info.value is last


def _reply(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "https://h/x"))


@pytest.mark.parametrize(
    ("status", "iam", "error"),
    [
        (400, True, IBMAuthError),
        (401, False, IBMAuthError),
        (403, False, IBMAuthError),
        (404, False, IBMNotFound),
        (409, False, IBMError),
        (302, False, IBMError),
    ],
)
def test_status_mapping_raises_the_typed_error(status: int, iam: bool, error: type[IBMError]) -> None:
    with pytest.raises(error) as info:
        wire.status_failure(CALL, _reply(status), "msg", iam=iam, idempotent=True)
    assert type(info.value) is error and info.value.status == status


def test_status_mapping_returns_retryable_failures() -> None:
    limited = wire.status_failure(CALL, _reply(429, {"Retry-After": "7"}), None, iam=False, idempotent=False)
    assert isinstance(limited.error, IBMRateLimited) and limited.retryable and limited.retry_after == 7
    busy = wire.status_failure(CALL, _reply(503), "x", iam=False, idempotent=False)
    assert type(busy.error) is IBMError and not busy.retryable  # a create is not resent after a 5xx


def test_transport_mapping() -> None:
    req = httpx.Request("POST", "https://h/x")
    connect = wire.transport_failure(
        httpx.ConnectError("no", request=req), CALL, "h", timeout=3, idempotent=False
    )
    assert connect.retryable and "cannot connect to h" in str(connect.error)
    read = wire.transport_failure(
        httpx.ReadTimeout("slow", request=req), CALL, "h", timeout=3, idempotent=False
    )
    assert not read.retryable and "within 3.0 s" in str(read.error)
    with pytest.raises(IBMError, match="cannot send to h"):
        wire.transport_failure(
            httpx.UnsupportedProtocol("x", request=req), CALL, "h", timeout=3, idempotent=True
        )


def test_token_cache_refreshes_before_expiry_and_forgets_a_refused_token() -> None:
    clock = FakeClock()
    issued: list[dict[str, str]] = []

    def fetch(form: dict[str, str], deadline_at: float) -> Token:
        issued.append(form)
        return Token.model_validate({"access_token": f"t{len(issued)}", "expires_in": 100})

    cache = TokenCache(Secret("KEY"), clock)
    assert cache.bearer(0, fetch) == "t1" and cache.bearer(0, fetch) == "t1"
    assert issued[0]["apikey"] == "KEY" and "KEY" not in repr(cache)
    clock.now += 80  # the margin is a fifth of a 100 s lifetime
    assert cache.bearer(0, fetch) == "t2"
    cache.forget("t1")  # stale: t2 stays
    assert cache.bearer(0, fetch) == "t2"
    cache.forget("t2")
    assert cache.bearer(0, fetch) == "t3"
    assert cache.scrub("key KEY token t3") == "key <redacted> token <redacted>"
