"""IBMClient against the IBM emulator over real HTTP (loopback): every call the client makes, with the numbers
the seed implies, and every fault knob of the emulator (status + Retry-After, status + custom body, delay,
drop, times, method filters, expired tokens, the emulated clock).

The emulator runs on a manual clock (``START`` = 2026-11-22T12:00Z) so usage windows are exact. The client's
`sleep` only records: retry waits cost nothing; only the slow-reply tests wait (for the client's timeout).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.devtools.emulator.testing import (
    ACCOUNT,
    API_KEY,
    BUDGET,
    CRN_ALPHA,
    CRN_BETA,
    CRN_FOREIGN,
    OTHER_ACCOUNT,
    PREMIUM_PLAN_ID,
    START,
    make_seed,
)
from qauvern_hpc.ibm import (
    Endpoints,
    IBMAuthError,
    IBMClient,
    IBMError,
    IBMNotFound,
    IBMRateLimited,
    IBMResponseError,
    RetryPolicy,
)

NOW = datetime.fromisoformat(START)
TODAY = NOW.date()  # 2026-11-22
CRN_GAMMA = CRN_ALPHA.replace("alpha-0001", "gamma-0004")
CRN_UNKNOWN = CRN_ALPHA.replace("alpha-0001", "nosuch-0009")
ALLOCATED = 200_000 + 500_000 + 100_000  # alpha + beta + gamma
USAGE = "/api/v1/instances/usage"
SESSIONS = "/api/v1/sessions"
TOKEN = "/identity/token"
TIMEOUT = 0.3  # the client's HTTP timeout in the slow-reply tests
SLOW = 0.8  # how long a slowed reply takes


def seed() -> dict[str, Any]:
    """The standard test seed, one instance per RC page, plus a third acct1 instance (three pages) and a
    fractional day of usage on beta (10.6 s on 2026-11-20) to see milliseconds truncated."""
    s = make_seed(page_size=1)
    s["instances"].append({"name": "gamma", "crn": CRN_GAMMA, "usage_allocation_seconds": 100_000})
    for inst in s["instances"]:
        if inst["name"] == "beta":
            inst["usage_history"] = {(TODAY - timedelta(days=2)).isoformat(): 10.6}
    return s


@pytest.fixture()
def emu() -> Iterator[Any]:
    with run_emulator(seed(), clock="manual") as e:
        yield e


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture()
def sleeps() -> Sleeps:
    return Sleeps()


POLICY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=5.0, deadline=30.0, jitter=False)


def connect(emu: Any, sleeps: Sleeps | None = None, key: str = API_KEY, **kw: Any) -> IBMClient:
    kw.setdefault("retry", POLICY)
    kw.setdefault("timeout", 5.0)
    return IBMClient(
        key, Endpoints.single(emu.base_url), sleep=sleeps if sleeps is not None else Sleeps(), **kw
    )


@pytest.fixture()
def client(emu: Any, sleeps: Sleeps) -> Iterator[IBMClient]:
    with connect(emu, sleeps) as c:
        yield c


def log_of(emu: Any, path: str, method: str | None = None) -> list[Any]:
    return [r for r in emu.requests if r.path.split("?")[0] == path and method in (None, r.method)]


def trail(emu: Any) -> list[tuple[str, str, int | None]]:
    return [(r.method, r.path.split("?")[0], r.status) for r in emu.requests]


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# ----- reads: the seeded numbers ---------------------------------------------------------------------------


def test_list_instances_follows_the_pages(client: IBMClient, emu: Any) -> None:
    got = client.list_instances(PREMIUM_PLAN_ID)
    assert [(i.name, i.crn, i.allocation_seconds, i.limit_seconds) for i in got] == [
        ("alpha", CRN_ALPHA, 200_000, None),
        ("beta", CRN_BETA, 500_000, 600_000),
        ("gamma", CRN_GAMMA, 100_000, None),
    ]
    pages = log_of(emu, "/v2/resource_instances", "GET")
    assert len(pages) == 3  # page_size 1
    starts = [parse_qs(urlsplit(p.path).query).get("start") for p in pages]
    assert starts[0] is None and starts[1] and starts[2] and starts[1] != starts[2]
    assert all(parse_qs(urlsplit(p.path).query)["resource_plan_id"] == [PREMIUM_PLAN_ID] for p in pages)
    assert len(log_of(emu, TOKEN)) == 1


def test_instance_usage_is_the_seeded_rolling_usage(client: IBMClient) -> None:
    alpha = client.instance_usage(CRN_ALPHA)
    # 28-day window ending now: the seeded days 0..27 before today, 1000 + i seconds each.
    assert alpha.consumed_seconds == sum(1000 + i for i in range(28)) == 28378
    assert (alpha.allocation_seconds, alpha.limit_seconds, alpha.limit_reached) == (200_000, None, None)
    assert alpha.instance_id == CRN_ALPHA and alpha.plan_id == PREMIUM_PLAN_ID
    beta = client.instance_usage(CRN_BETA)
    assert (beta.allocation_seconds, beta.limit_seconds, beta.limit_reached) == (500_000, 600_000, False)
    assert beta.consumed_seconds == 11  # the emulator rounds 10.6 s here (IBM's view is whole seconds)


def test_analytics_usage_truncates_the_seeded_milliseconds(client: IBMClient, emu: Any) -> None:
    start, end = datetime(2026, 11, 15, tzinfo=NOW.tzinfo), datetime(2026, 11, 22, tzinfo=NOW.tzinfo)
    assert client.analytics_usage(instance=CRN_ALPHA, account_id=ACCOUNT, start=start, end=end) == sum(
        range(1001, 1008)
    )
    assert (
        client.analytics_usage(instance=CRN_BETA, account_id=ACCOUNT, start=start, end=end) == 10
    )  # 10600 ms
    # Plan-wide: 7028 s + 10.6 s = 7038600 ms -> 7038 s.
    assert client.analytics_usage(plan="premium", account_id=ACCOUNT, start=start, end=end) == 7038
    calls = log_of(emu, "/api/v1/analytics/usage")
    assert [c.header("Account-Id") for c in calls] == [ACCOUNT] * 3
    assert all("%2B00%3A00" in c.path for c in calls)


def test_daily_usage_is_per_seeded_day(client: IBMClient) -> None:
    assert client.daily_usage(CRN_ALPHA, account_id=ACCOUNT, start=date(2026, 11, 19), end=TODAY) == {
        date(2026, 11, 19): 1003,
        date(2026, 11, 20): 1002,
        date(2026, 11, 21): 1001,
    }
    assert client.daily_usage(CRN_BETA, account_id=ACCOUNT, start=date(2026, 11, 1), end=TODAY) == {
        date(2026, 11, 20): 10
    }
    assert client.daily_usage(CRN_GAMMA, account_id=ACCOUNT, start=date(2026, 11, 1), end=TODAY) == {}


def test_account_plan(client: IBMClient) -> None:
    plan = client.account_plan(ACCOUNT, PREMIUM_PLAN_ID)
    assert (
        plan.account_id,
        plan.plan_id,
        plan.budget_seconds,
        plan.unallocated_seconds,
        plan.limit_seconds,
    ) == (
        ACCOUNT,
        PREMIUM_PLAN_ID,
        BUDGET,
        BUDGET - ALLOCATED,
        None,
    )


def test_headers_reach_the_emulator(client: IBMClient, emu: Any) -> None:
    client.instance_usage(CRN_BETA)
    client.account_plan(ACCOUNT, PREMIUM_PLAN_ID)
    iam, usage, account = emu.requests
    assert iam.path == TOKEN and iam.header("IBM-API-Version") is None
    assert usage.header("Service-CRN") == CRN_BETA and usage.header("IBM-API-Version") == "2026-04-15"
    assert account.header("Service-CRN") is None and account.header("Account-Id") is None
    assert all(r.header("Authorization") is None for r in emu.requests)  # the emulator never logs it


# ----- writes ----------------------------------------------------------------------------------------------


def test_update_instance_then_account_plan_shows_the_new_unallocated(client: IBMClient, emu: Any) -> None:
    client.update_instance(CRN_BETA, allocation_seconds=400_000, limit_seconds=450_000)
    (patch,) = log_of(emu, "/v2/resource_instances/" + quote(CRN_BETA, safe=""), "PATCH")
    assert patch.status == 200
    assert client.account_plan(ACCOUNT, PREMIUM_PLAN_ID).unallocated_seconds == BUDGET - ALLOCATED + 100_000
    beta = next(i for i in client.list_instances() if i.crn == CRN_BETA)
    assert (beta.allocation_seconds, beta.limit_seconds) == (400_000, 450_000)
    client.update_instance(CRN_BETA, allocation_seconds=400_000, limit_seconds=None)
    assert client.instance_usage(CRN_BETA).limit_seconds is None  # null removed the limit


def test_update_instance_over_budget_is_refused_by_ibm(client: IBMClient, emu: Any, sleeps: Sleeps) -> None:
    with pytest.raises(IBMError) as exc:
        client.update_instance(CRN_BETA, allocation_seconds=700_001, limit_seconds=None)
    assert exc.value.status == 400
    assert str(exc.value).startswith(
        "IBM PATCH /v2/resource_instances/{crn}: HTTP 400: usage_allocation_seconds 700001 exceeds the "
        "allocation available to this instance: 700000 s"
    )
    assert sleeps == []
    assert client.instance_usage(CRN_BETA).allocation_seconds == 500_000


def test_create_instance(client: IBMClient, emu: Any) -> None:
    created = client.create_instance(
        "delta",
        target="eu-de",
        resource_group="rg-9",
        plan_id=PREMIUM_PLAN_ID,
        allocation_seconds=50_000,
        limit_seconds=60_000,
        tags=["team:q"],
    )
    assert created.name == "delta"
    assert created.crn.startswith(f"crn:v1:bluemix:public:quantum-computing:eu-de:a/{ACCOUNT}:")
    delta = next(i for i in client.list_instances() if i.name == "delta")
    assert (delta.crn, delta.allocation_seconds, delta.limit_seconds) == (created.crn, 50_000, 60_000)
    assert emu.state.instance(created.crn)["tags"] == ["team:q"]
    assert client.account_plan(ACCOUNT, PREMIUM_PLAN_ID).unallocated_seconds == BUDGET - ALLOCATED - 50_000
    assert client.instance_usage(created.crn).consumed_seconds == 0
    assert len(log_of(emu, "/v2/resource_instances", "POST")) == 1


# ----- sessions and their jobs -----------------------------------------------------------------------------


def submit(emu: Any, crn: str, session_id: str, quantum_seconds: float) -> str:
    """A job in the session, the way a user's program submits it (plain httpx, the emulator's work knob)."""
    with httpx.Client(base_url=emu.base_url, timeout=5) as http:
        token = http.post(
            TOKEN, data={"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": API_KEY}
        ).json()["access_token"]
        r = http.post(
            "/api/v1/jobs",
            headers={"Authorization": f"Bearer {token}", "Service-CRN": crn},
            json={
                "program_id": "sampler",
                "backend": "ibm_torino",
                "session_id": session_id,
                "params": {"emulator": {"quantum_seconds": quantum_seconds}},
            },
        )
        r.raise_for_status()
        return str(r.json()["id"])


def test_session_lifecycle_and_exact_quantum_seconds(client: IBMClient, emu: Any) -> None:
    s = client.create_session(CRN_ALPHA, "ibm_torino")
    assert (s.backend, s.mode, s.state, s.accepting_jobs) == ("ibm_torino", "batch", "open", True)
    first = submit(emu, CRN_ALPHA, s.id, 7.5)
    second = submit(emu, CRN_ALPHA, s.id, 12.25)
    running = {j.id: j.status for j in client.session_jobs(CRN_ALPHA, s.id)}
    assert running == {first: "Running", second: "Queued"}

    emu.advance(30)
    jobs = client.session_jobs(CRN_ALPHA, s.id, page_size=1)  # two pages
    assert {j.id: (j.status, j.quantum_seconds) for j in jobs} == {
        first: ("Completed", 7.5),
        second: ("Completed", 12.25),
    }
    assert len(log_of(emu, "/api/v1/jobs", "GET")) == 1 + 2
    got = client.get_session(CRN_ALPHA, s.id)
    assert (got.id, got.state, got.elapsed_seconds) == (s.id, "active", 19.75)

    client.close_session(CRN_ALPHA, s.id)
    closed = client.get_session(CRN_ALPHA, s.id)
    assert closed.closed and closed.state == "closed" and closed.accepting_jobs is False
    assert closed.closed_at == NOW + timedelta(seconds=30)
    # Charged to the instance: 19.75 s = 19750 ms -> 19 s.
    hour = (NOW, NOW + timedelta(hours=1))
    assert client.analytics_usage(instance=CRN_ALPHA, account_id=ACCOUNT, start=hour[0], end=hour[1]) == 19


def test_close_cancels_queued_jobs_or_lets_them_run(client: IBMClient, emu: Any) -> None:
    cancel = client.create_session(CRN_ALPHA, "ibm_torino")
    run_a, queued_a = submit(emu, CRN_ALPHA, cancel.id, 10), submit(emu, CRN_ALPHA, cancel.id, 10)
    client.close_session(CRN_ALPHA, cancel.id)  # DELETE /sessions/{id}/close
    emu.advance(60)
    assert {j.id: j.status for j in client.session_jobs(CRN_ALPHA, cancel.id)} == {
        run_a: "Completed",
        queued_a: "Cancelled",
    }
    assert client.get_session(CRN_ALPHA, cancel.id).state == "closed"

    drain = client.create_session(CRN_ALPHA, "ibm_torino")
    jobs_b = {submit(emu, CRN_ALPHA, drain.id, 10), submit(emu, CRN_ALPHA, drain.id, 10)}
    client.close_session(CRN_ALPHA, drain.id, cancel_queued=False)  # PATCH accepting_jobs=false
    assert client.get_session(CRN_ALPHA, drain.id).state != "closed"
    emu.advance(60)
    done = client.session_jobs(CRN_ALPHA, drain.id)
    assert {j.id for j in done} == jobs_b
    assert {(j.status, j.quantum_seconds) for j in done} == {("Completed", 10.0)}
    assert client.get_session(CRN_ALPHA, drain.id).state == "closed"
    assert [r.method for r in emu.requests if r.path.startswith(SESSIONS + "/") and r.method != "GET"] == [
        "DELETE",
        "PATCH",
    ]


def test_unknown_session_is_not_found(client: IBMClient) -> None:
    with pytest.raises(
        IBMNotFound, match=r"^IBM GET /v1/sessions/\{id\}: HTTP 404: Session nope was not found$"
    ):
        client.get_session(CRN_ALPHA, "nope")
    with pytest.raises(IBMNotFound):
        client.close_session(CRN_ALPHA, "nope")


# ----- fault knobs -----------------------------------------------------------------------------------------


def test_429_with_retry_after_is_waited_out(client: IBMClient, emu: Any, sleeps: Sleeps) -> None:
    emu.faults.add(path=r"^/api/v1/instances/usage$", method="GET", status=429, retry_after=2, times=2)
    assert client.instance_usage(CRN_ALPHA).consumed_seconds == 28378
    assert sleeps == [2.0, 2.0]
    assert [r.status for r in log_of(emu, USAGE)] == [429, 429, 200]


def test_429_that_never_ends(client: IBMClient, emu: Any, sleeps: Sleeps) -> None:
    emu.faults.add(path=r"^/api/v1/instances/usage$", status=429, retry_after=0.5)
    with pytest.raises(IBMRateLimited) as exc:
        client.instance_usage(CRN_ALPHA)
    assert str(exc.value) == (
        "IBM GET /v1/instances/usage: HTTP 429: Too many requests; retry later (hint: gave up after 4 tries)"
    )
    assert exc.value.retry_after == 0.5
    assert sleeps == [0.5, 0.5, 0.5]
    assert len(log_of(emu, USAGE)) == 4


def test_503_twice_then_ok(client: IBMClient, emu: Any, sleeps: Sleeps) -> None:
    emu.faults.add(path=r"^/v2/resource_instances$", method="GET", status=503, times=2)
    assert len(client.list_instances()) == 3
    assert sleeps == [0.01, 0.02]  # backoff, no Retry-After
    assert [r.status for r in log_of(emu, "/v2/resource_instances")] == [503, 503, 200, 200, 200]


def test_custom_error_body_and_a_status_that_is_not_retried(
    client: IBMClient, emu: Any, sleeps: Sleeps
) -> None:
    emu.faults.add(
        path=r"^/api/v1/instances/usage$", status=503, body={"message": "maintenance window"}, times=1
    )
    emu.faults.add(path=r"^/api/v1/instances/usage$", status=500, times=1)
    with pytest.raises(IBMError) as exc:
        client.instance_usage(CRN_ALPHA)
    assert str(exc.value) == "IBM GET /v1/instances/usage: HTTP 500: Internal server error (injected)"
    assert [r.status for r in log_of(emu, USAGE)] == [503, 500]
    assert sleeps == [0.01]
    emu.faults.clear()
    emu.faults.add(path=r"^/api/v1/instances/usage$", status=503, body={"message": "maintenance window"})
    with pytest.raises(IBMError, match=r"HTTP 503: maintenance window \(hint: gave up after 4 tries\)$"):
        client.instance_usage(CRN_ALPHA)


def test_a_bad_200_from_the_wire_is_a_response_error(client: IBMClient, emu: Any) -> None:
    emu.faults.add(
        path=r"^/api/v1/instances/usage$", status=200, body={"usage_consumed_seconds": -1}, times=1
    )
    with pytest.raises(IBMResponseError) as exc:
        client.instance_usage(CRN_ALPHA)
    assert str(exc.value) == (
        "IBM GET /v1/instances/usage: HTTP 200: unexpected reply: usage_consumed_seconds: "
        "Input should be greater than or equal to 0"
    )
    assert len(log_of(emu, USAGE)) == 1


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ('{"usage_consumed_seconds": 12', "reply is not JSON"),
        ("<html>hi</html>", "reply is not JSON"),
        ("", "reply is empty"),
    ],
    ids=["truncated", "html", "empty"],
)
def test_malformed_json_from_the_wire_is_a_response_error(
    client: IBMClient, emu: Any, sleeps: Sleeps, raw: str, why: str
) -> None:
    emu.faults.add_from_dict({"path": r"^/api/v1/instances/usage$", "status": 200, "raw": raw, "times": 1})
    with pytest.raises(IBMResponseError) as exc:
        client.instance_usage(CRN_ALPHA)
    assert str(exc.value) == f"IBM GET /v1/instances/usage: HTTP 200: {why}"
    assert exc.value.exit_code == 4
    assert sleeps == [] and len(log_of(emu, USAGE)) == 1  # a 200 is an answer: not retried
    assert client.instance_usage(CRN_ALPHA).consumed_seconds == 28378


def test_malformed_json_on_a_page_and_from_iam(client: IBMClient, emu: Any) -> None:
    emu.faults.add(path=r"^/v2/resource_instances$", status=200, body=b'{"resources": [', times=1)
    with pytest.raises(
        IBMResponseError, match=r"^IBM GET /v2/resource_instances: HTTP 200: reply is not JSON$"
    ):
        client.list_instances()
    emu.faults.add(path=r"^/identity/token$", status=200, body=b'{"access_token": ', times=1)
    with connect(emu) as fresh, pytest.raises(IBMResponseError) as exc:
        fresh.account_plan(ACCOUNT, PREMIUM_PLAN_ID)
    assert str(exc.value) == "IBM POST /identity/token: HTTP 200: reply is not JSON"


def test_method_filter_only_hits_that_method(client: IBMClient, emu: Any, sleeps: Sleeps) -> None:
    s = client.create_session(CRN_ALPHA, "ibm_torino")
    emu.faults.add(path=r"^/api/v1/sessions/", method="PATCH", status=503, times=1)
    assert client.get_session(CRN_ALPHA, s.id).state == "open"  # GET untouched
    client.close_session(CRN_ALPHA, s.id, cancel_queued=False)  # PATCH: 503 once, retried
    assert [r.status for r in log_of(emu, f"{SESSIONS}/{s.id}", "PATCH")] == [503, 204]
    assert sleeps == [0.01]
    assert client.get_session(CRN_ALPHA, s.id).state == "closed"


def test_slow_get_is_retried(emu: Any, sleeps: Sleeps) -> None:
    emu.faults.add(path=r"^/api/v1/instances/usage$", delay=SLOW, times=1)
    with connect(emu, sleeps, timeout=TIMEOUT) as client:
        started = time.monotonic()
        assert client.instance_usage(CRN_ALPHA).consumed_seconds == 28378
        assert TIMEOUT <= time.monotonic() - started < SLOW
    assert sleeps == [0.01]
    wait_for(lambda: len(log_of(emu, USAGE)) == 2)  # the slow one is logged when it finally answers


def test_slow_get_every_time_is_a_timeout_error(emu: Any, sleeps: Sleeps) -> None:
    emu.faults.add(path=r"^/api/v1/instances/usage$", delay=SLOW)
    two = RetryPolicy(max_attempts=2, base_delay=0.01, jitter=False)
    with connect(emu, sleeps, timeout=TIMEOUT, retry=two) as client, pytest.raises(IBMError) as exc:
        client.instance_usage(CRN_ALPHA)
    host = urlsplit(emu.base_url).netloc
    assert exc.value.status is None
    assert str(exc.value) == (
        f"IBM GET /v1/instances/usage: no reply from {host} within 0.3 s (ReadTimeout) "
        "(hint: gave up after 2 tries)"
    )
    assert sleeps == [0.01]


def test_slow_create_session_is_not_retried(emu: Any, sleeps: Sleeps) -> None:
    emu.faults.add(path=r"^/api/v1/sessions$", method="POST", delay=SLOW, times=1)
    with connect(emu, sleeps, timeout=TIMEOUT) as client, pytest.raises(IBMError) as exc:
        client.create_session(CRN_ALPHA, "ibm_torino")
    assert exc.value.status is None
    assert "no reply from" in str(exc.value) and "(ReadTimeout)" in str(exc.value)
    assert sleeps == []
    # IBM went on to open the session the client gave up on: exactly one, because nothing was resent.
    wait_for(lambda: len(log_of(emu, SESSIONS, "POST")) == 1 and log_of(emu, SESSIONS, "POST")[0].status)
    time.sleep(0.1)
    assert len(log_of(emu, SESSIONS, "POST")) == 1
    assert len(emu.state.snapshot()["sessions"]) == 1


def test_dropped_get_is_retried(client: IBMClient, emu: Any, sleeps: Sleeps) -> None:
    emu.faults.add(path=r"^/api/v1/instances/usage$", drop=True, times=1)
    assert client.instance_usage(CRN_BETA).consumed_seconds == 11
    first, second = log_of(emu, USAGE)
    assert (first.dropped, first.status, second.dropped, second.status) == (True, None, False, 200)
    assert sleeps == [0.01]


def test_dropped_create_session_is_not_retried(client: IBMClient, emu: Any, sleeps: Sleeps) -> None:
    client.instance_usage(CRN_ALPHA)  # a warm keep-alive connection, as in real use
    emu.faults.add(path=r"^/api/v1/sessions$", method="POST", drop=True, times=1)
    with pytest.raises(IBMError) as exc:
        client.create_session(CRN_ALPHA, "ibm_torino")
    host = urlsplit(emu.base_url).netloc
    assert exc.value.status is None
    assert str(exc.value) in (
        f"IBM POST /v1/sessions: connection to {host} failed (RemoteProtocolError)",
        f"IBM POST /v1/sessions: connection to {host} failed (ReadError)",
    )
    posts = log_of(emu, SESSIONS, "POST")
    assert [(p.dropped, p.status) for p in posts] == [(True, None)]
    assert emu.state.snapshot()["sessions"] == []
    assert sleeps == []
    assert client.create_session(CRN_ALPHA, "ibm_torino").state == "open"  # the fault was used up


def test_connection_refused_is_retried_then_reported(sleeps: Sleeps) -> None:
    with run_emulator(seed(), clock="manual") as gone:
        base = gone.base_url
    client = IBMClient(API_KEY, Endpoints.single(base), retry=POLICY, sleep=sleeps, timeout=2.0)
    with client, pytest.raises(IBMError) as exc:
        client.instance_usage(CRN_ALPHA)
    assert exc.value.call == "POST /identity/token"
    assert str(exc.value).endswith("(ConnectError) (hint: gave up after 4 tries)")
    assert sleeps == [0.01, 0.02, 0.04]


def test_expired_tokens_are_renewed_transparently(client: IBMClient, emu: Any, sleeps: Sleeps) -> None:
    client.instance_usage(CRN_ALPHA)
    assert emu.expire_tokens() == 1
    emu.clear_requests()
    assert client.instance_usage(CRN_ALPHA).consumed_seconds == 28378
    assert trail(emu) == [("GET", USAGE, 401), ("POST", TOKEN, 200), ("GET", USAGE, 200)]
    assert sleeps == []


def test_token_expiring_on_the_emulated_clock(client: IBMClient, emu: Any) -> None:
    client.instance_usage(CRN_ALPHA)
    emu.advance(3601)  # past the emulator's 1 h token lifetime; the client's own clock says it is fresh
    emu.clear_requests()
    usage = client.instance_usage(CRN_ALPHA)
    assert trail(emu) == [("GET", USAGE, 401), ("POST", TOKEN, 200), ("GET", USAGE, 200)]
    assert usage.consumed_seconds == 28378  # 1 h later the 28-day window still holds the same days


def test_token_is_renewed_before_it_expires_without_a_401(emu: Any, sleeps: Sleeps) -> None:
    """IAM says the token lives 600 s; a minute before that the client asks IAM again on its own, so a token
    the emulator has expired meanwhile is never sent (no 401 in the trail)."""
    emu.state.patch({"token_ttl_seconds": 600})
    now = [1000.0]
    with connect(emu, sleeps, clock=lambda: now[0]) as client:
        client.instance_usage(CRN_ALPHA)
        now[0] += 530  # still fresh for the client: the cached token is used
        client.instance_usage(CRN_ALPHA)
        assert trail(emu) == [("POST", TOKEN, 200), ("GET", USAGE, 200), ("GET", USAGE, 200)]
        emu.clear_requests()
        emu.advance(601)  # the emulator no longer accepts the first token
        now[0] += 15  # 545 s after it was issued: inside the client's one-minute margin
        assert client.instance_usage(CRN_ALPHA).consumed_seconds == 28378
    assert trail(emu) == [("POST", TOKEN, 200), ("GET", USAGE, 200)]
    assert sleeps == []


def test_tokens_expired_for_good_is_an_auth_error(client: IBMClient, emu: Any) -> None:
    """Every token refused (here: IAM keeps issuing, the API keeps answering 401): one re-auth, then stop."""
    emu.faults.add(path=r"^/api/v1/instances/usage$", status=401)
    with pytest.raises(IBMAuthError) as exc:
        client.instance_usage(CRN_ALPHA)
    assert exc.value.status == 401
    assert "(hint: a fresh IAM token was refused too)" in str(exc.value)
    assert trail(emu) == [
        ("POST", TOKEN, 200),
        ("GET", USAGE, 401),
        ("POST", TOKEN, 200),
        ("GET", USAGE, 401),
    ]


def test_unknown_crn_is_not_found(client: IBMClient, emu: Any) -> None:
    with pytest.raises(IBMNotFound) as exc:
        client.instance_usage(CRN_UNKNOWN)
    assert str(exc.value) == f"IBM GET /v1/instances/usage: HTTP 404: Instance {CRN_UNKNOWN} was not found"
    with pytest.raises(IBMNotFound, match="HTTP 404"):
        client.create_session(CRN_UNKNOWN, "ibm_torino")
    with pytest.raises(
        IBMNotFound, match=r"^IBM PATCH /v2/resource_instances/\{crn\}: HTTP 404: Instance with ID"
    ):
        client.update_instance(CRN_UNKNOWN, allocation_seconds=60, limit_seconds=None)
    with pytest.raises(IBMNotFound, match=r"^IBM GET /v1/analytics/usage: HTTP 404"):
        client.analytics_usage(
            instance=CRN_UNKNOWN, account_id=ACCOUNT, start=NOW - timedelta(days=1), end=NOW
        )
    assert all(r.status == 404 for r in emu.requests if r.path != TOKEN)


def test_another_accounts_crn_or_account_is_forbidden(client: IBMClient) -> None:
    """The emulator answers 403 (not 404) for an instance or account the key cannot use: IBMAuthError."""
    with pytest.raises(IBMAuthError) as exc:
        client.instance_usage(CRN_FOREIGN)
    assert exc.value.status == 403
    assert str(exc.value) == (
        f"IBM GET /v1/instances/usage: HTTP 403: You are not authorized to use instance {CRN_FOREIGN} "
        "(hint: the API key has no access to this)"
    )
    with pytest.raises(IBMAuthError, match="HTTP 403: You are not authorized to read account acct2"):
        client.account_plan(OTHER_ACCOUNT, PREMIUM_PLAN_ID)
    with pytest.raises(IBMAuthError, match="HTTP 403: You are not authorized to read analytics of account"):
        client.analytics_usage(
            plan="premium", account_id=OTHER_ACCOUNT, start=NOW - timedelta(days=1), end=NOW
        )


def test_bad_api_key_is_an_auth_error_without_the_key(emu: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "not-a-real-key-7Hq2x9"
    with connect(emu, key=bad) as client, pytest.raises(IBMAuthError) as exc:
        client.instance_usage(CRN_ALPHA)
    e = exc.value
    assert str(e) == "IBM POST /identity/token: HTTP 400: Provided API key could not be found. (BXNIM0415E)"
    assert (e.call, e.status) == ("POST /identity/token", 400)
    text = "".join(traceback.format_exception(e)) + repr(e) + repr(vars(e)) + repr(client)
    assert bad not in text
    assert trail(emu) == [("POST", TOKEN, 400)]  # not retried, nothing else sent
    assert caplog.records
    for record in caplog.records:
        assert bad not in record.getMessage() + repr(record.args) + str(record.exc_text)


class RecordingTransport(httpx.HTTPTransport):
    """Real HTTP, noting the bearer tokens IAM hands out (so the test can look for them in the logs)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path == TOKEN and response.status_code == 200:
            response.read()
            self.tokens.append(response.json()["access_token"])
        return response


def test_no_secret_in_any_log_record_over_real_http(
    emu: Any, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emu.faults.add(path=r"^/api/v1/instances/usage$", status=503, times=1)
    transport = RecordingTransport()
    with connect(emu, sleeps, transport=transport) as client:
        client.instance_usage(CRN_ALPHA)
        emu.expire_tokens()
        client.list_instances()
        client.update_instance(CRN_BETA, allocation_seconds=500_000, limit_seconds=600_000)
    assert len(transport.tokens) == 2  # the first one and the re-authentication
    assert sleeps == [0.01]
    names = {r.name for r in caplog.records}
    assert {"qauvern_hpc.ibm", "httpx", "httpcore.http11", "qauvern_hpc.devtools.emulator"} <= names
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + str(record.exc_text)
        assert API_KEY not in text, text
        assert not any(t in text for t in transport.tokens), text
