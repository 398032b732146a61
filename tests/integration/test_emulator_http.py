"""The emulator over real HTTP on loopback: IAM, auth, Resource Controller, usage and analytics, control
surface, and HTTP/1.1 correctness."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from qauvern_hpc.devtools.emulator import Emulator, run_emulator
from qauvern_hpc.devtools.emulator.testing import (
    ACCOUNT,
    ALPHA_HISTORY,
    API_KEY,
    BUDGET,
    CRN_ALPHA,
    CRN_BETA,
    CRN_FOREIGN,
    PREMIUM_PLAN_ID,
    ApiClient,
    make_seed,
    rc_path,
)

START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with run_emulator(make_seed()) as e:
        yield e


@pytest.fixture
def api(emu: Emulator) -> Iterator[ApiClient]:
    with ApiClient(emu.base_url) as c:
        yield c


# ------------------------------------------------------------------------------------------------ IAM/auth


def test_iam_token_exchange_and_unknown_key(api: ApiClient) -> None:
    r = api.iam()
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert abs(body["expiration"] - (time.time() + 3600)) < 60  # wall clock, for the client's refresh logic
    assert len(body["access_token"]) >= 32 and API_KEY not in body["access_token"]

    bad = api.iam("no-such-key")
    assert bad.status_code == 400
    assert bad.json()["errorCode"] == "BXNIM0415E"
    assert bad.json()["errorMessage"] == "Provided API key could not be found."

    wrong_grant = api.http.post("/identity/token", data={"grant_type": "password", "apikey": API_KEY})
    assert wrong_grant.status_code == 400
    assert wrong_grant.json()["errorCode"] == "BXNIM0103E"


def test_every_other_call_needs_a_valid_token(api: ApiClient) -> None:
    no_auth = api.get("/api/v1/instances/usage", crn=CRN_ALPHA, auth=False)
    assert no_auth.status_code == 401
    assert no_auth.json()["errors"][0]["code"] == "unauthorized"
    bogus = api.get("/v2/resource_instances", auth=False, headers={"Authorization": "Bearer not-a-token"})
    assert bogus.status_code == 401
    basic = api.get("/v2/resource_instances", auth=False, headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401
    assert api.get("/v2/resource_instances").status_code == 200


def test_token_expires_on_the_emulated_clock(emu: Emulator, api: ApiClient) -> None:
    assert api.get("/api/v1/instances/usage", crn=CRN_ALPHA).status_code == 200
    emu.advance(3599)
    assert api.get("/api/v1/instances/usage", crn=CRN_ALPHA).status_code == 200
    emu.advance(1)
    expired = api.get("/api/v1/instances/usage", crn=CRN_ALPHA)
    assert expired.status_code == 401
    assert "expired" in expired.json()["errors"][0]["message"]
    api.refresh()
    assert api.get("/api/v1/instances/usage", crn=CRN_ALPHA).status_code == 200


def test_expire_tokens_from_python_and_http(emu: Emulator, api: ApiClient) -> None:
    api.refresh()
    assert emu.expire_tokens() == 1
    assert api.get("/v2/resource_instances").status_code == 401
    api.refresh()
    assert api.get("/v2/resource_instances").status_code == 200
    r = api.http.post("/__emulator/expire-tokens")
    assert r.json() == {"expired": 1}
    assert api.get("/v2/resource_instances").status_code == 401


def test_service_crn_is_checked(emu: Emulator, api: ApiClient) -> None:
    missing = api.get("/api/v1/instances/usage")
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["code"] == "missing_service_crn"
    unknown = api.get("/api/v1/instances/usage", crn=CRN_ALPHA.replace("alpha", "nope"))
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0]["code"] == "instance_not_found"
    assert "message" in unknown.json()["errors"][0]
    foreign = api.get("/api/v1/instances/usage", crn=CRN_FOREIGN)
    assert foreign.status_code == 403
    assert foreign.json()["errors"][0]["code"] == "instance_forbidden"


# ---------------------------------------------------------------------------------------------------- RC


def _rc_names(api: ApiClient, **params: Any) -> tuple[list[list[str]], list[str | None]]:
    pages: list[list[str]] = []
    next_urls: list[str | None] = []
    query: dict[str, Any] = {"resource_id": "b6049020-80f4-11eb-a0f7-e35ec9b4054f", **params}
    while True:
        r = api.get("/v2/resource_instances", params=query)
        assert r.status_code == 200, r.text
        data = r.json()
        pages.append([x["name"] for x in data["resources"]])
        next_urls.append(data["next_url"])
        if not data["next_url"]:
            return pages, next_urls
        query["start"] = httpx.URL(data["next_url"]).params["start"]


def test_rc_list_paginates_with_start_tokens() -> None:
    seed = make_seed(page_size=2)
    seed["instances"] += [
        {"name": f"extra-{i}", "region": "us-east", "account": ACCOUNT, "usage_allocation_seconds": 1000}
        for i in range(3)
    ]
    with run_emulator(seed) as emu, ApiClient(emu.base_url) as api:
        pages, next_urls = _rc_names(api, resource_plan_id=PREMIUM_PLAN_ID)
        assert pages == [["alpha", "beta"], ["extra-0", "extra-1"], ["extra-2"]]
        assert next_urls[0] is not None and next_urls[0].startswith("/v2/resource_instances?")
        assert "start=" in next_urls[0] and next_urls[-1] is None
        # an explicit limit overrides the page size; the other account's instance is never listed
        pages, _ = _rc_names(api, limit=100)
        assert pages == [["alpha", "beta", "extra-0", "extra-1", "extra-2"]]
        bad = api.get("/v2/resource_instances", params={"start": "garbage!"})
        assert bad.status_code == 400
        other_plan = api.get("/v2/resource_instances", params={"resource_plan_id": "other-plan"})
        assert other_plan.json()["resources"] == []


def test_rc_resource_shape_as_qauvern_reads_it(api: ApiClient) -> None:
    r = api.get(rc_path(CRN_BETA))
    assert r.status_code == 200
    res = r.json()
    assert res["id"] == CRN_BETA and res["name"] == "beta" and res["region_id"] == "eu-de"
    assert res["resource_plan_id"] == PREMIUM_PLAN_ID
    assert res["extensions"] == {"usage_allocation_seconds": 500_000, "instance_limit_seconds": 600_000}
    by_guid = api.get(f"/v2/resource_instances/{res['guid']}")
    assert by_guid.json()["id"] == CRN_BETA
    assert api.get(rc_path(CRN_FOREIGN)).status_code == 404


def _unallocated(api: ApiClient) -> int:
    r = api.get(f"/api/v1/accounts/{ACCOUNT}", params={"plan_id": PREMIUM_PLAN_ID})
    assert r.status_code == 200
    return int(r.json()["plans"][0]["unallocated_usage_seconds"])


def test_rc_patch_replaces_parameters_and_keeps_unallocated_consistent(emu: Emulator, api: ApiClient) -> None:
    assert _unallocated(api) == BUDGET - 200_000 - 500_000
    body = {"parameters": {"usage_allocation_seconds": "450000", "instance_limit_seconds": "500000"}}
    r = api.patch(rc_path(CRN_ALPHA), json=body)
    assert r.status_code == 200, r.text
    assert r.json()["extensions"] == {"usage_allocation_seconds": 450_000, "instance_limit_seconds": 500_000}
    assert r.json()["parameters"] == body["parameters"]
    assert _unallocated(api) == BUDGET - 450_000 - 500_000 == 50_000

    # more than the budget allows: refused, nothing changes
    too_much = api.patch(
        rc_path(CRN_BETA),
        json={"parameters": {"usage_allocation_seconds": "550001", "instance_limit_seconds": None}},
    )
    assert too_much.status_code == 400
    msg = too_much.json()["message"]
    assert "550001" in msg and "550000 s" in msg
    assert too_much.json()["errors"][0]["message"] == msg
    assert emu.state.instance(CRN_BETA)["extensions"]["usage_allocation_seconds"] == 500_000
    assert _unallocated(api) == 50_000

    # exactly the budget is fine; a null limit removes the limit; a numeric JSON value works too
    ok = api.patch(
        rc_path(CRN_BETA),
        json={"parameters": {"usage_allocation_seconds": 550_000, "instance_limit_seconds": None}},
    )
    assert ok.status_code == 200
    assert ok.json()["extensions"] == {"usage_allocation_seconds": 550_000, "instance_limit_seconds": None}
    assert _unallocated(api) == 0

    # allocation 0 archives the instance and frees its allocation
    api.patch(
        rc_path(CRN_ALPHA),
        json={"parameters": {"usage_allocation_seconds": "0", "instance_limit_seconds": None}},
    )
    assert _unallocated(api) == 450_000
    assert emu.state.snapshot()["summary"]["plans"][0]["unallocated_usage_seconds"] == 450_000

    for bad in ("12.5", "-1", "ten", True):
        r = api.patch(rc_path(CRN_ALPHA), json={"parameters": {"usage_allocation_seconds": bad}})
        assert r.status_code == 400, bad
    assert api.patch(rc_path(CRN_ALPHA), json=["not", "an", "object"]).status_code == 400


def test_rc_patch_without_limit_removes_it(api: ApiClient) -> None:
    r = api.patch(rc_path(CRN_BETA), json={"parameters": {"usage_allocation_seconds": "400000"}})
    assert r.status_code == 200
    assert r.json()["extensions"] == {"usage_allocation_seconds": 400_000, "instance_limit_seconds": None}


def test_rc_create_instance(emu: Emulator, api: ApiClient) -> None:
    body = {
        "name": "gamma",
        "target": "eu-de",
        "resource_group": "rg-1",
        "resource_plan_id": PREMIUM_PLAN_ID,
        "parameters": {"usage_allocation_seconds": "36000", "instance_limit_seconds": "172800"},
        "tags": ["team:x"],
    }
    r = api.post("/v2/resource_instances", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"].startswith(f"crn:v1:bluemix:public:quantum-computing:eu-de:a/{ACCOUNT}:")
    assert created["id"].endswith("::")
    assert created["state"] == "active" and created["name"] == "gamma" and created["tags"] == ["team:x"]
    assert _unallocated(api) == BUDGET - 700_000 - 36_000
    assert emu.state.instance("gamma")["extensions"]["instance_limit_seconds"] == 172_800

    body["parameters"] = {"usage_allocation_seconds": str(BUDGET), "instance_limit_seconds": None}
    assert api.post("/v2/resource_instances", json=body).status_code == 400
    body["target"] = "mars"
    assert api.post("/v2/resource_instances", json=body).status_code == 400


# ---------------------------------------------------------------------------------------------------- usage


def test_instance_usage_is_a_28_day_rolling_window(emu: Emulator, api: ApiClient) -> None:
    r = api.get("/api/v1/instances/usage", crn=CRN_ALPHA)
    assert r.status_code == 200
    body = r.json()
    assert body["usage_consumed_seconds"] == sum(ALPHA_HISTORY[:28])
    assert body["usage_allocation_seconds"] == 200_000
    assert body["usage_limit_seconds"] is None and body["usage_limit_reached"] is None
    # one day later the oldest day in the window (27 days before the start) has rolled off
    emu.advance(86400)
    api.refresh()  # the token outlived its hour
    assert api.usage(CRN_ALPHA) == sum(ALPHA_HISTORY[:27])
    emu.advance(26 * 86400)
    api.refresh()
    assert api.usage(CRN_ALPHA) == ALPHA_HISTORY[0]
    emu.advance(86400)
    api.refresh()
    assert api.usage(CRN_ALPHA) == 0
    beta = api.get("/api/v1/instances/usage", crn=CRN_BETA).json()
    assert beta["usage_consumed_seconds"] == 0 and beta["usage_limit_reached"] is False


def test_analytics_usage_in_milliseconds(api: ApiClient) -> None:
    day0 = START.replace(hour=0)

    def usage(**params: str) -> int:
        r = api.get("/api/v1/analytics/usage", params=params, account=ACCOUNT)
        assert r.status_code == 200, r.text
        return int(r.json()["usage"])

    # qauvern's 28-day window (now-28d .. now), sent with a percent-encoded +00:00
    start = (START - timedelta(days=28)).isoformat()
    assert (
        usage(instance=CRN_ALPHA, interval_start=start, interval_end=START.isoformat())
        == sum(ALPHA_HISTORY[:28]) * 1000
    )
    # half-open: [day-2 00:00, day0 00:00) holds days 2 and 1 only
    assert (
        usage(
            instance=CRN_ALPHA,
            interval_start=(day0 - timedelta(days=2)).isoformat(),
            interval_end=day0.isoformat(),
        )
        == (ALPHA_HISTORY[1] + ALPHA_HISTORY[2]) * 1000
    )
    # 24 hours back from noon: only today's midnight
    assert usage(instance=CRN_ALPHA, interval_start=(START - timedelta(hours=24)).isoformat()) == 1000 * 1000
    # plan-wide (includes every instance of the plan in the account)
    assert (
        usage(plan="premium", interval_start=start, interval_end=START.isoformat())
        == sum(ALPHA_HISTORY[:28]) * 1000
    )

    other = api.get("/api/v1/analytics/usage", params={"instance": CRN_ALPHA}, account="acct2")
    assert other.status_code == 403
    bad = api.get("/api/v1/analytics/usage", params={"instance": CRN_ALPHA, "interval_start": "yesterday"})
    assert bad.status_code == 400


def test_usage_grouped_by_date_end_exclusive(api: ApiClient) -> None:
    day0 = START.replace(hour=0)
    r = api.get(
        "/api/v1/analytics/usage_grouped_by_date",
        params={
            "group_by": "instance",
            "instance": CRN_ALPHA,
            "interval_start": (day0 - timedelta(days=3)).isoformat(),
            "interval_end": day0.isoformat(),
        },
        account=ACCOUNT,
    )
    assert r.status_code == 200
    data = r.json()["data"]
    assert [(d["interval_start"][:10], d["usage"]) for d in data] == [
        ("2026-11-19", 1003_000),
        ("2026-11-20", 1002_000),
        ("2026-11-21", 1001_000),
    ]
    assert {d["key"] for d in data} == {CRN_ALPHA}
    assert data[0]["interval_end"] == "2026-11-20T00:00:00.000Z"


def test_job_usage_shows_in_daily_analytics(emu: Emulator, api: ApiClient) -> None:
    api.crn = CRN_BETA
    api.submit(quantum_seconds=42.5)
    emu.advance(43)
    r = api.get(
        "/api/v1/analytics/usage_grouped_by_date",
        params={
            "group_by": "instance",
            "instance": CRN_BETA,
            "interval_start": "2026-11-22",
            "interval_end": "2026-11-23",
        },
    )
    assert [(d["interval_start"], d["usage"]) for d in r.json()["data"]] == [
        ("2026-11-22T00:00:00.000Z", 42_500)
    ]
    assert api.usage(CRN_BETA) == 42  # rounded for usage_consumed_seconds
    assert emu.state.rolling_usage_seconds("beta") == 42.5


def test_account_plan(api: ApiClient) -> None:
    r = api.get(f"/api/v1/accounts/{ACCOUNT}", params={"plan_id": PREMIUM_PLAN_ID})
    plan = r.json()["plans"][0]
    assert plan["plan_id"] == PREMIUM_PLAN_ID
    assert plan["usage_allocation_seconds"] == BUDGET
    assert plan["unallocated_usage_seconds"] == 300_000
    assert plan["usage_limit_seconds"] is None
    assert plan["backends"] == ["ibm_torino", "ibm_fez"]
    assert api.get(f"/api/v1/accounts/{ACCOUNT}", params={"plan_id": "nope"}).json()["plans"] == []
    assert api.get("/api/v1/accounts/acct2").status_code == 403


def test_api_prefix_without_v1_is_accepted(api: ApiClient) -> None:
    a = api.get("/api/v1/instances/usage", crn=CRN_ALPHA).json()
    b = api.get("/api/instances/usage", crn=CRN_ALPHA).json()
    assert a["usage_consumed_seconds"] == b["usage_consumed_seconds"] == sum(ALPHA_HISTORY[:28])


def test_backends(api: ApiClient) -> None:
    r = api.get("/api/v1/backends", crn=CRN_ALPHA)
    devices = r.json()["devices"]
    assert [(d["name"], d["status"]["name"], d["qubits"], d["queue_length"]) for d in devices] == [
        ("ibm_torino", "online", 133, 0),
        ("ibm_fez", "online", 156, 0),
    ]
    st = api.get("/api/v1/backends/ibm_fez/status", crn=CRN_ALPHA).json()
    assert st == {
        "state": True,
        "status": "online",
        "message": "active",
        "length_queue": 0,
        "backend_version": "1.0.0",
    }
    assert api.get("/api/v1/backends/ibm_nowhere/status", crn=CRN_ALPHA).status_code == 404
    cfg = api.get("/api/v1/backends/ibm_torino/configuration", crn=CRN_ALPHA).json()
    assert cfg["backend_name"] == "ibm_torino" and cfg["n_qubits"] == 133


# ---------------------------------------------------------------------------------------------------- control


def test_state_get_put_patch_over_http(emu: Emulator, api: ApiClient) -> None:
    snap = api.http.get("/__emulator/state").json()
    assert [k["key"] for k in snap["api_keys"]] == [None, None]
    assert all(k["fingerprint"].startswith("sha256:") for k in snap["api_keys"])
    assert API_KEY not in json.dumps(snap)
    assert snap["clock"]["mode"] == "manual" and snap["clock"]["now"] == "2026-11-22T12:00:00.000Z"

    # PUT the dump back (keys only as fingerprints): the same key still works
    snap["page_size"] = 1
    put = api.http.put("/__emulator/state", json=snap)
    assert put.status_code == 200, put.text
    assert api.refresh()
    assert len(api.get("/v2/resource_instances").json()["resources"]) == 1

    patch = api.http.patch("/__emulator/state", json={"backends": [{"name": "ibm_fez", "status": "paused"}]})
    assert patch.status_code == 200
    assert api.get("/api/v1/backends/ibm_fez/status", crn=CRN_ALPHA).json()["status"] == "paused"
    assert api.get("/api/v1/backends/ibm_torino/status", crn=CRN_ALPHA).json()["status"] == "online"

    over = api.http.patch(
        "/__emulator/state", json={"instances": [{"crn": CRN_ALPHA, "usage_allocation_seconds": BUDGET}]}
    )
    assert over.status_code == 400
    assert "more than the plan's usage_allocation_seconds" in over.json()["errors"][0]["message"]
    bad = api.http.put("/__emulator/state", json={"accounts": [{"id": "x", "plans": [{"plan": "gold"}]}]})
    assert bad.status_code == 400 and "unknown plan 'gold'" in bad.json()["errors"][0]["message"]

    adv = api.http.post("/__emulator/advance", json={"seconds": 90})
    assert adv.json()["now"] == "2026-11-22T12:01:30.000Z"
    assert api.http.post("/__emulator/advance", json={"seconds": -1}).status_code == 400
    assert api.http.get("/__emulator/clock").json()["now"] == "2026-11-22T12:01:30.000Z"


def test_request_log_has_no_secrets(emu: Emulator, api: ApiClient) -> None:
    api.refresh()
    api.get("/api/v1/instances/usage", crn=CRN_ALPHA)
    api.http.get("/__emulator/state")  # control calls are not logged
    log = emu.requests
    assert [(e.method, e.path, e.status) for e in log] == [
        ("POST", "/identity/token", 200),
        ("GET", "/api/v1/instances/usage", 200),
    ]
    assert log[1].header("Service-CRN") == CRN_ALPHA
    assert log[1].header("Authorization") is None
    dumped = json.dumps([e.to_dict() for e in log])
    assert API_KEY not in dumped and api.token not in dumped
    over_http = api.http.get("/__emulator/requests", params={"since": log[0].seq}).json()["requests"]
    assert [e["path"] for e in over_http] == ["/api/v1/instances/usage"]
    assert api.http.delete("/__emulator/requests").json() == {"cleared": 2}
    assert emu.requests == []


# ---------------------------------------------------------------------------------------------------- HTTP


def _raw_exchange(port: int, payload: bytes, expect_responses: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        data = b""
        while data.count(b"HTTP/1.1 ") < expect_responses or not _complete(data, expect_responses):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _complete(data: bytes, n: int) -> bool:
    pos = 0
    for _ in range(n):
        head_end = data.find(b"\r\n\r\n", pos)
        if head_end < 0:
            return False
        head = data[pos:head_end].decode("latin-1").lower()
        length = 0
        for line in head.split("\r\n"):
            if line.startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        pos = head_end + 4 + length
        if len(data) < pos:
            return False
    return True


def test_keep_alive_and_content_length(emu: Emulator, api: ApiClient) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    headers = {"Authorization": f"Bearer {api.token}", "Service-CRN": CRN_ALPHA}
    conn.request("GET", "/api/v1/instances/usage", headers=headers)
    r1 = conn.getresponse()
    body1 = r1.read()
    sock = conn.sock
    assert r1.status == 200 and r1.version == 11
    assert int(r1.getheader("Content-Length") or -1) == len(body1)
    assert r1.getheader("Content-Type") == "application/json"
    conn.request("GET", "/api/v1/backends", headers=headers)
    r2 = conn.getresponse()
    assert r2.status == 200 and json.loads(r2.read())["devices"]
    assert conn.sock is sock  # the same connection served both
    conn.close()


def test_pipelined_requests_and_204_without_body(emu: Emulator, api: ApiClient) -> None:
    api.crn = CRN_ALPHA
    sid = api.open_session()["id"]
    auth = f"Authorization: Bearer {api.token}\r\nService-CRN: {CRN_ALPHA}\r\n"
    body = b'{"accepting_jobs":false}'
    payload = (
        f"PATCH /api/v1/sessions/{sid} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    payload += f"GET /api/v1/sessions/{sid} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode()
    raw = _raw_exchange(emu.port, payload, 2)
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 204")
    assert b"content-length" not in first.lower()
    assert rest.startswith(b"HTTP/1.1 200")  # no stray body bytes between the two replies
    head, _, body2 = rest.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.decode().split("\r\n") if h.lower().startswith("content-length")).split(":")[1]
    )
    assert len(body2) == length
    assert json.loads(body2)["state"] == "closed"


def test_chunked_request_body(emu: Emulator, api: ApiClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"parameters": {"usage_allocation_seconds": "1234",'
        yield b' "instance_limit_seconds": null}}'

    r = api.http.patch(
        rc_path(CRN_ALPHA),
        content=chunks(),
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"},
    )
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 200, r.text
    assert r.json()["extensions"]["usage_allocation_seconds"] == 1234


def test_unknown_paths_methods_and_bad_json(api: ApiClient) -> None:
    nf = api.get("/api/v1/nothing-here")
    assert nf.status_code == 404 and nf.json()["errors"][0]["code"] == "not_found"
    na = api.request("PUT", "/api/v1/instances/usage", crn=CRN_ALPHA)
    assert na.status_code == 405 and na.headers["Allow"] == "GET"
    bad = api.post(
        "/api/v1/sessions", crn=CRN_ALPHA, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == "invalid_json"
