"""IBM error bodies -> one-line messages; the error hierarchy and exit codes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qauvern_hpc.core.errors import ExitCode, QauvernError, ServiceUnavailable
from qauvern_hpc.ibm import (
    IBMAuthError,
    IBMError,
    IBMNotFound,
    IBMRateLimited,
    IBMResponseError,
    InvalidRequestError,
    UnknownCRNError,
)
from qauvern_hpc.ibm.errors import ibm_message
from tests.support.paths import UNIT_FIXTURES

FIXTURES = UNIT_FIXTURES / "ibm"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (json.loads((FIXTURES / "quantum_error.json").read_text()), "Instance not found"),
        (
            json.loads((FIXTURES / "iam_bad_key.json").read_text()),
            "Provided API key could not be found. (BXNIM0415E)",
        ),
        (
            {"errors": [{"code": "quota", "message": "over quota"}, {"message": "second"}]},
            "over quota (+1 more)",
        ),
        ({"errors": [{"code": "bad_request"}]}, "bad_request"),
        ({"errors": ["plain text error"]}, "plain text error"),
        ({"errorMessage": "no code"}, "no code"),
        ({"message": "RC says no", "status_code": 400}, "RC says no"),
        ({"error": "invalid_grant", "error_description": "expired"}, "expired"),
        ({"description": "described"}, "described"),
        ({"errors": [], "message": "fallback"}, "fallback"),
        ("Bad Gateway\n<html>...</html>", "Bad Gateway"),
        ({"unrelated": 1}, None),
        ("", None),
        (None, None),
        ([1, 2], None),
    ],
)
def test_ibm_message_shapes(body: Any, message: str | None) -> None:
    assert ibm_message(body) == message


def test_ibm_message_is_one_line_and_bounded() -> None:
    text = ibm_message({"message": "line one\nline two\t" + "x" * 1000})
    assert text is not None
    assert "\n" not in text and text.startswith("line one line two x")
    assert len(text) == 300 and text.endswith("…")


def test_str_names_call_status_and_message() -> None:
    err = IBMError("GET /v1/instances/usage", 503, "Service\nUnavailable")
    assert str(err) == "IBM GET /v1/instances/usage: HTTP 503: Service Unavailable"
    assert (err.call, err.status, err.ibm_message) == ("GET /v1/instances/usage", 503, "Service Unavailable")
    assert str(IBMError("GET /v1/jobs", None)) == "IBM GET /v1/jobs: no reply"
    assert str(IBMError("GET /v1/jobs", 500)) == "IBM GET /v1/jobs: HTTP 500: no error message"
    assert str(IBMError("GET /v1/jobs", None, "cannot connect to h (ConnectError)")) == (
        "IBM GET /v1/jobs: cannot connect to h (ConnectError)"
    )


def test_hint_stays_on_the_same_line() -> None:
    err = IBMAuthError("GET /v1/jobs", 401, "expired", hint="a fresh IAM token\nwas refused too")
    assert str(err) == "IBM GET /v1/jobs: HTTP 401: expired (hint: a fresh IAM token was refused too)"
    assert repr(err) == "IBMAuthError(call='GET /v1/jobs', status=401, ibm_message='expired')"


def test_hierarchy_and_exit_codes() -> None:
    for cls in (IBMAuthError, IBMNotFound, IBMRateLimited, IBMResponseError):
        err = cls("GET /x", 400, "m")
        assert isinstance(err, IBMError) and isinstance(err, ServiceUnavailable)
        assert err.exit_code == ExitCode.UNAVAILABLE
    crn_err = UnknownCRNError("crn:bad", "not a CRN")
    assert isinstance(crn_err, IBMError) and crn_err.exit_code == ExitCode.CONFIG
    assert str(crn_err) == "unknown IBM Cloud CRN: not a CRN in 'crn:bad'"
    invalid = InvalidRequestError("allocation must be > 0")
    assert isinstance(invalid, ValueError) and isinstance(invalid, QauvernError)
    assert not isinstance(invalid, IBMError)
    assert IBMRateLimited("GET /x", 429, "slow down", retry_after=7.0).retry_after == 7.0
