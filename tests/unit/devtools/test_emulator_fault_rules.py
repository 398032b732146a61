"""Fault rules: matching, counting, validation."""

from __future__ import annotations

import pytest

from qauvern_hpc.devtools.emulator.faults import FaultSet


def test_first_matching_rule_with_uses_left_applies() -> None:
    faults = FaultSet()
    a = faults.add(r"^/api/v1/jobs", method="post", status=429, times=1)
    b = faults.add(r"/jobs", status=503)
    assert faults.take("GET", "/api/v1/jobs") is b  # method filter (case-insensitive)
    assert faults.take("POST", "/api/v1/jobs") is a
    assert faults.take("POST", "/api/v1/jobs") is b  # a is spent
    assert (a.hits, a.remaining, b.hits, b.remaining) == (1, 0, 2, None)
    assert faults.take("GET", "/v2/resource_instances") is None
    assert faults.remove(b.id) and not faults.remove(b.id)
    assert faults.take("GET", "/api/v1/jobs") is None


def test_error_reply_and_retry_after() -> None:
    rule = FaultSet().add(".*", status=429, retry_after=1.0)
    err = rule.error()
    assert (err.status, err.headers, err.body()["errors"][0]["code"]) == (
        429,
        {"Retry-After": "1"},
        "rate_limited",
    )
    assert FaultSet().add(".*", status=418).error().body()["errors"][0]["code"] == "injected_418"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"path": "("}, "not a valid regular expression"),
        ({"path": ".*"}, "needs status, delay or drop"),
        ({"status": 99}, "HTTP status"),
        ({"delay": -1}, "negative"),
        ({"status": 500, "times": -1}, "negative"),
        ({"status": "500"}, "must be an integer"),
        ({"delay": "slow"}, "must be a number"),
        ({"status": 500, "when": "now"}, "unknown fault field"),
        ([1], "JSON object"),
        ({"status": 200, "raw": {"a": 1}}, "raw must be a string"),
        ({"status": 200, "raw": "x", "body": {}}, "not both"),
        ({"delay": 1, "raw": "{"}, "needs a status"),
        ({"delay": 1, "body": {"a": 1}}, "needs a status"),
    ],
)
def test_invalid_specs(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultSet().add_from_dict(spec)


def test_to_dict() -> None:
    rule = FaultSet().add_from_dict({"path": "x", "drop": True, "times": 2})
    assert rule.to_dict() == {
        "id": 1,
        "method": None,
        "path": "x",
        "status": None,
        "retry_after": None,
        "delay": None,
        "drop": True,
        "times": 2,
        "body": None,
        "raw": None,
        "hits": 0,
        "remaining": 2,
    }


def test_raw_body_is_kept_as_bytes_and_listed_as_text() -> None:
    rule = FaultSet().add_from_dict({"path": "x", "status": 200, "raw": '{"usage": 1'})
    assert rule.body == b'{"usage": 1'
    listed = rule.to_dict()
    assert (listed["body"], listed["raw"], listed["status"]) == (None, '{"usage": 1', 200)
    from_python = FaultSet().add("x", status=502, body=b"<html>bad gateway</html>").to_dict()
    assert (from_python["body"], from_python["raw"]) == (None, "<html>bad gateway</html>")
