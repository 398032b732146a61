"""qauvern-hpc's IBM client against the emulator over real HTTP: every call, and every fault knob."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.devtools.emulator.testing import (
    ACCOUNT,
    API_KEY,
    BUDGET,
    CRN_ALPHA,
    CRN_BETA,
    PREMIUM_PLAN_ID,
    START,
    ApiClient,
    make_seed,
)
from qauvern_hpc.ibm import Endpoints, IBMAuthError, IBMClient, IBMError, IBMNotFound, RetryPolicy

NOW = datetime.fromisoformat(START)
TODAY = NOW.date()


def _seed() -> dict[str, Any]:
    seed = make_seed(page_size=1)
    for inst in seed["instances"]:
        if inst["name"] == "alpha":
            inst["usage_history"] = {TODAY.isoformat(): 100, (TODAY - timedelta(days=3)).isoformat(): 50}
    return seed


@pytest.fixture()
def emu() -> Iterator[Any]:
    with run_emulator(_seed()) as e:
        yield e


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _client(emu: Any, sleeps: Sleeps | None = None, **kw: Any) -> IBMClient:
    retry = kw.pop("retry", RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, deadline=10))
    return IBMClient(
        API_KEY,
        Endpoints.single(emu.base_url),
        retry=retry,
        sleep=sleeps if sleeps is not None else Sleeps(),
        **kw,
    )


def _count(emu: Any, method: str, path: str) -> int:
    return sum(1 for r in emu.requests if r.method == method and r.path.split("?")[0] == path)


def test_every_read_returns_the_seeded_numbers(emu: Any) -> None:
    with _client(emu) as c:
        instances = {i.name: i for i in c.list_instances(PREMIUM_PLAN_ID)}
        assert set(instances) == {
            "alpha",
            "beta",
        }  # page_size 1: followed next_url; the foreign one is hidden
        assert _count(emu, "GET", "/v2/resource_instances") == 2  # one instance per page
        assert instances["beta"].allocation_seconds == 500_000 and instances["beta"].limit_seconds == 600_000
        assert c.instance_usage(CRN_ALPHA).consumed_seconds == 150
        assert (
            c.analytics_usage(account_id=ACCOUNT, instance=CRN_ALPHA, start=NOW - timedelta(days=1), end=NOW)
            == 100
        )
        assert (
            c.analytics_usage(account_id=ACCOUNT, plan="premium", start=NOW - timedelta(days=28), end=NOW)
            == 150
        )
        daily = c.daily_usage(
            CRN_ALPHA, account_id=ACCOUNT, start=TODAY - timedelta(days=5), end=TODAY + timedelta(1)
        )
        assert daily == {TODAY: 100, TODAY - timedelta(days=3): 50}
        plan = c.account_plan(ACCOUNT, PREMIUM_PLAN_ID)
        assert plan.budget_seconds == BUDGET
        assert plan.unallocated_seconds == BUDGET - 200_000 - 500_000


def test_update_then_account_plan_is_consistent(emu: Any) -> None:
    with _client(emu) as c:
        c.update_instance(CRN_ALPHA, allocation_seconds=250_000, limit_seconds=None)
        c.update_instance(CRN_BETA, allocation_seconds=400_000, limit_seconds=450_000)
        assert c.account_plan(ACCOUNT, PREMIUM_PLAN_ID).unallocated_seconds == BUDGET - 650_000
        beta = {i.name: i for i in c.list_instances()}["beta"]
        assert (beta.allocation_seconds, beta.limit_seconds) == (400_000, 450_000)
        with pytest.raises(IBMError) as err:  # over budget: IBM's 400, with its message
            c.update_instance(CRN_ALPHA, allocation_seconds=BUDGET, limit_seconds=None)
        assert err.value.status == 400 and err.value.ibm_message


def test_session_jobs_usage_and_close(emu: Any) -> None:
    with _client(emu) as c, ApiClient(emu.base_url, crn=CRN_ALPHA) as raw:
        sess = c.create_session(CRN_ALPHA, "ibm_torino", mode="batch", max_ttl=600)
        raw.submit("ibm_torino", quantum_seconds=4.0, session_id=sess.id)
        raw.submit("ibm_torino", quantum_seconds=2.5, session_id=sess.id)
        emu.advance(60)
        jobs = c.session_jobs(CRN_ALPHA, sess.id)
        assert sorted(j.quantum_seconds or 0 for j in jobs) == [2.5, 4.0]
        c.close_session(CRN_ALPHA, sess.id)
        assert c.get_session(CRN_ALPHA, sess.id).state == "closed"
        with pytest.raises(IBMNotFound):
            c.get_session(CRN_ALPHA, "no-such-session")


def test_429_with_retry_after_is_retried(emu: Any) -> None:
    sleeps = Sleeps()
    emu.faults.add(path=r"^/api/v1/instances/usage$", status=429, retry_after=0.02, times=2)
    with _client(emu, sleeps) as c:
        assert c.instance_usage(CRN_ALPHA).consumed_seconds == 150
    assert sleeps == [0.02, 0.02]
    assert _count(emu, "GET", "/api/v1/instances/usage") == 3


def test_5xx_twice_then_ok(emu: Any) -> None:
    emu.faults.add(path=r"^/v2/resource_instances$", status=503, times=2)
    with _client(emu) as c:
        assert len(c.list_instances()) == 2


def test_slow_reply_is_retried_within_the_deadline(emu: Any) -> None:
    emu.faults.add(path=r"^/api/v1/instances/usage$", delay=2.0, times=1)
    with _client(emu, timeout=0.3) as c:
        assert c.instance_usage(CRN_ALPHA).consumed_seconds == 150


def test_persistently_slow_reply_ends_in_a_clear_error(emu: Any) -> None:
    emu.faults.add(path=r"^/api/v1/instances/usage$", delay=2.0)
    retry = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01, deadline=5)
    with _client(emu, timeout=0.2, retry=retry) as c, pytest.raises(IBMError) as err:
        c.instance_usage(CRN_ALPHA)
    assert "/v1/instances/usage" in str(err.value)


def test_dropped_connection_retried_for_reads_never_for_session_creation(emu: Any) -> None:
    emu.faults.add(path=r"^/api/v1/instances/usage$", drop=True, times=1)
    emu.faults.add(path=r"^/api/v1/sessions$", method="POST", drop=True, times=1)
    with _client(emu) as c:
        assert c.instance_usage(CRN_ALPHA).consumed_seconds == 150
        with pytest.raises(IBMError):
            c.create_session(CRN_ALPHA, "ibm_torino")
    assert _count(emu, "POST", "/api/v1/sessions") == 1  # not sent twice: no duplicate session
    assert emu.state.snapshot()["sessions"] == []


def test_expired_tokens_are_renewed_transparently(emu: Any) -> None:
    with _client(emu) as c:
        c.instance_usage(CRN_ALPHA)
        iam_before = _count(emu, "POST", "/identity/token")
        emu.expire_tokens()
        assert c.instance_usage(CRN_ALPHA).consumed_seconds == 150
    assert _count(emu, "POST", "/identity/token") == iam_before + 1


def test_unknown_crn_is_a_clear_not_found(emu: Any) -> None:
    unknown = f"crn:v1:bluemix:public:quantum-computing:us-east:a/{ACCOUNT}:nope-9999::"
    with _client(emu) as c, pytest.raises(IBMNotFound) as err:
        c.instance_usage(unknown)
    assert err.value.status == 404 and "/v1/instances/usage" in str(err.value)


def test_bad_api_key_is_refused_without_showing_it(emu: Any) -> None:
    secret = "wrong-key-3141592653"
    with IBMClient(secret, Endpoints.single(emu.base_url)) as c, pytest.raises(IBMAuthError) as err:
        c.list_instances()
    assert secret not in str(err.value) and secret not in repr(err.value) and secret not in repr(c)
    assert "identity/token" in str(err.value)
