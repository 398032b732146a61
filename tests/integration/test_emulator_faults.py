"""Fault injection over HTTP: status codes with Retry-After, counts, delays, dropped connections, the HTTP
control endpoints, and what the request log records about faulted requests."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from qauvern_hpc.devtools.emulator import Emulator, run_emulator
from qauvern_hpc.devtools.emulator.testing import CRN_ALPHA, ApiClient, make_seed

USAGE = r"^/api/v1/instances/usage$"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with run_emulator(make_seed()) as e:
        yield e


@pytest.fixture
def api(emu: Emulator) -> Iterator[ApiClient]:
    with ApiClient(emu.base_url, crn=CRN_ALPHA) as c:
        c.refresh()
        yield c


def test_429_with_retry_after_for_a_limited_number_of_times(emu: Emulator, api: ApiClient) -> None:
    rule = emu.faults.add(path=USAGE, method="GET", status=429, retry_after=1, times=2)
    statuses = []
    for _ in range(3):
        r = api.get("/api/v1/instances/usage")
        statuses.append((r.status_code, r.headers.get("Retry-After")))
    assert statuses == [(429, "1"), (429, "1"), (200, None)]
    assert rule.hits == 2 and rule.remaining == 0
    first = api.get("/api/v1/instances/usage")
    assert first.status_code == 200
    faulted = [e for e in emu.requests if e.fault is not None]
    assert [(e.status, e.fault) for e in faulted] == [(429, rule.id), (429, rule.id)]


def test_429_body_is_ibm_style(emu: Emulator, api: ApiClient) -> None:
    emu.faults.add(path=USAGE, status=429, retry_after=2.5)
    r = api.get("/api/v1/instances/usage")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "2.5"
    assert r.json()["errors"][0]["code"] == "rate_limited"
    assert int(r.headers["Content-Length"]) == len(r.content)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors(emu: Emulator, api: ApiClient, status: int) -> None:
    emu.faults.add(path=r"^/v2/resource_instances", status=status, times=1)
    r = api.get("/v2/resource_instances")
    assert r.status_code == status
    assert r.json()["errors"][0]["message"]
    assert api.get("/v2/resource_instances").status_code == 200


def test_method_filter_and_custom_body(emu: Emulator, api: ApiClient) -> None:
    emu.faults.add(path=r"^/api/v1/sessions$", method="POST", status=503, body={"custom": True})
    assert api.get("/api/v1/backends").status_code == 200
    r = api.post("/api/v1/sessions", json={"backend": "ibm_torino", "mode": "batch"})
    assert r.status_code == 503 and r.json() == {"custom": True}


def test_iam_can_be_faulted_too(emu: Emulator, api: ApiClient) -> None:
    emu.faults.add(path=r"^/identity/token$", status=500, times=1)
    assert api.iam().status_code == 500
    assert api.iam().status_code == 200


def test_delay_then_normal_answer(emu: Emulator, api: ApiClient) -> None:
    emu.faults.add(path=USAGE, delay=0.3, times=1)
    t0 = time.monotonic()
    r = api.get("/api/v1/instances/usage")
    slow = time.monotonic() - t0
    t0 = time.monotonic()
    api.get("/api/v1/instances/usage")
    fast = time.monotonic() - t0
    assert r.status_code == 200 and slow >= 0.3 and fast < 0.3
    assert emu.requests[-2].duration_ms >= 300


def test_delay_with_status(emu: Emulator, api: ApiClient) -> None:
    emu.faults.add(path=USAGE, delay=0.2, status=504, times=1)
    t0 = time.monotonic()
    r = api.get("/api/v1/instances/usage")
    assert r.status_code == 504 and time.monotonic() - t0 >= 0.2


def test_delay_beyond_client_timeout(emu: Emulator) -> None:
    emu.faults.add(path=USAGE, delay=0.5, times=1)
    with ApiClient(emu.base_url, crn=CRN_ALPHA, timeout=0.2) as quick:
        quick.refresh()
        with pytest.raises(httpx.ReadTimeout):
            quick.get("/api/v1/instances/usage")
        time.sleep(0.4)
        assert quick.get("/api/v1/instances/usage").status_code == 200


def test_drop_closes_the_connection_without_answering(emu: Emulator, api: ApiClient) -> None:
    rule = emu.faults.add(path=USAGE, drop=True, times=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.get("/api/v1/instances/usage")
    assert rule.hits == 1
    last = emu.requests[-1]
    assert last.dropped is True and last.status is None and last.fault == rule.id
    assert api.get("/api/v1/instances/usage").status_code == 200  # a new connection works


def test_faults_over_http_control_surface(emu: Emulator, api: ApiClient) -> None:
    http = api.http
    r = http.post(
        "/__emulator/faults",
        json=[
            {"path": USAGE, "method": "GET", "status": 429, "retry_after": 1, "times": 1},
            {"path": r"^/api/v1/backends$", "status": 502},
        ],
    )
    assert r.status_code == 201
    ids = [f["id"] for f in r.json()["faults"]]
    assert api.get("/api/v1/instances/usage").status_code == 429
    listed = http.get("/__emulator/faults").json()["faults"]
    assert [(f["id"], f["hits"], f["remaining"]) for f in listed] == [(ids[0], 1, 0), (ids[1], 0, None)]
    assert http.delete(f"/__emulator/faults/{ids[1]}").status_code == 204
    assert http.delete(f"/__emulator/faults/{ids[1]}").status_code == 404
    assert api.get("/api/v1/backends").status_code == 200
    http.post("/__emulator/faults", json={"path": ".*", "status": 500})
    assert api.get("/api/v1/backends").status_code == 500
    # control paths are never faulted, so the rule can always be removed
    assert http.delete("/__emulator/faults").json() == {"cleared": 2}
    assert api.get("/api/v1/backends").status_code == 200


@pytest.mark.parametrize(
    "spec",
    [
        {"path": "("},
        {"path": ".*"},
        {"path": ".*", "status": 42},
        {"path": ".*", "status": 500, "colour": "red"},
    ],
)
def test_invalid_fault_specs_are_refused(emu: Emulator, spec: dict[str, object]) -> None:
    r = httpx.post(emu.base_url + "/__emulator/faults", json=spec)
    assert r.status_code == 400
    assert r.json()["errors"][0]["message"]
    assert emu.faults.rules() == []


def test_raw_body_is_sent_verbatim_over_the_control_surface(emu: Emulator, api: ApiClient) -> None:
    """`raw` makes a reply IBM would never send: truncated JSON, HTML from a proxy, an empty body."""
    r = httpx.post(
        emu.base_url + "/__emulator/faults",
        json=[
            {"path": USAGE, "status": 200, "raw": '{"usage_consumed_seconds": 12', "times": 1},
            {"path": USAGE, "status": 502, "raw": "<html>Bad Gateway</html>", "times": 1},
            {"path": USAGE, "status": 200, "raw": "", "times": 1},
        ],
    )
    assert r.status_code == 201
    assert [f["raw"] for f in r.json()["faults"]] == [
        '{"usage_consumed_seconds": 12',
        "<html>Bad Gateway</html>",
        "",
    ]
    truncated = api.get("/api/v1/instances/usage")
    assert (truncated.status_code, truncated.content) == (200, b'{"usage_consumed_seconds": 12')
    with pytest.raises(ValueError):
        truncated.json()
    html = api.get("/api/v1/instances/usage")
    assert (html.status_code, html.text) == (502, "<html>Bad Gateway</html>")
    empty = api.get("/api/v1/instances/usage")
    assert (empty.status_code, empty.content, empty.headers["Content-Length"]) == (200, b"", "0")
    assert api.get("/api/v1/instances/usage").json()["usage_consumed_seconds"] > 0  # rules spent
    listed = httpx.get(emu.base_url + "/__emulator/faults").json()["faults"]
    assert [(f["raw"], f["remaining"]) for f in listed] == [
        ('{"usage_consumed_seconds": 12', 0),
        ("<html>Bad Gateway</html>", 0),
        ("", 0),
    ]


def test_clear_from_python(emu: Emulator, api: ApiClient) -> None:
    emu.faults.add(path=".*", status=503)
    assert api.get("/api/v1/backends").status_code == 503
    assert emu.faults.clear() == 1
    assert api.get("/api/v1/backends").status_code == 200
