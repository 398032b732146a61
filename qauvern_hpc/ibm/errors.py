"""Errors from IBM Cloud IAM, the Resource Controller and the IBM Quantum API.

Every `IBMError` is a `qauvern_hpc.core.errors.ServiceUnavailable` (exit code 4) and carries:

- `call`: what was attempted, as ``METHOD /path-template`` (e.g. ``"GET /v1/instances/usage"``); never a URL
  with query values and never a secret;
- `status`: the HTTP status, or ``None`` when no reply came (connection refused, timeout, ...);
- `ibm_message`: IBM's own words, parsed from whichever error body the service uses, or our description of
  what went wrong on the wire.

``str(error)`` is always one line: ``IBM <call>: HTTP <status>: <message>``.

Hierarchy::

    IBMError                    any failed call (5xx after retries, 4xx not listed below, no reply)
    ├── IBMAuthError            the API key was refused, 401 after one re-authentication, 403
    ├── IBMNotFound             404 (instance, session, job or backend unknown or not visible to this key)
    ├── IBMRateLimited          429 after every retry the policy allowed
    ├── IBMResponseError        IBM answered 2xx but not with what the API documents (bad JSON / fields)
    └── UnknownCRNError         a CRN we cannot route (malformed; exit code 3, it is a config problem)

`InvalidRequestError` (a `ValueError`, not an `IBMError`) is raised before anything is sent when the caller
asks for something the client refuses to send (e.g. an allocation of 0 seconds, which archives an instance).
"""

from __future__ import annotations

import re
from typing import Any

from qauvern_hpc.core.errors import ExitCode, QauvernError, ServiceUnavailable

_WS = re.compile(r"\s+")
MAX_MESSAGE = 300


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """Collapse whitespace (newlines included) and cut to `limit` characters."""
    flat = _WS.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class IBMError(ServiceUnavailable):
    """A call to IBM failed. `status` is None when no reply came."""

    def __init__(
        self, call: str, status: int | None, ibm_message: str | None = None, *, hint: str | None = None
    ) -> None:
        self.call = call
        self.status = status
        self.ibm_message = one_line(ibm_message) if ibm_message else None
        head = f"IBM {call}: HTTP {status}" if status is not None else f"IBM {call}"
        text = self.ibm_message or ("no reply" if status is None else "no error message")
        super().__init__(f"{head}: {text}", hint=one_line(hint) if hint else None)

    def __str__(self) -> str:  # one line, always (QauvernError would put the hint on a second line)
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(call={self.call!r}, status={self.status!r}, ibm_message={self.ibm_message!r})"


class IBMAuthError(IBMError):
    """The API key was refused (IAM 400/401), a fresh token still got 401, or IBM answered 403."""


class IBMNotFound(IBMError):
    """404: the instance, session, job or backend does not exist (or is not visible to this key)."""


class IBMRateLimited(IBMError):
    """429 after every retry the policy allowed (or a Retry-After beyond the deadline)."""

    def __init__(
        self,
        call: str,
        status: int | None,
        ibm_message: str | None = None,
        *,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(call, status, ibm_message, hint=hint)
        self.retry_after = retry_after


class IBMResponseError(IBMError):
    """IBM answered, but not with what the API documents (malformed JSON, missing or invalid fields)."""


class TimeFieldsMissing(IBMResponseError):
    """Seconds were asked of a reply in which IBM sent resource units only (the time fields are gone)."""

    def __init__(self, call: str, field: str) -> None:
        super().__init__(
            call,
            None,
            f"IBM sent no {field} (resource units only) and the instance's RUs-per-second rate is unknown",
            hint="IBM has removed the time fields; qauvern-hpc converts RUs at the instance's own rate, "
            "read from its allocation or limit as the Resource Controller shows it in both units; give the "
            "instance an allocation, or set ibm.resource_units_per_second in the config",
        )


class UnknownCRNError(IBMError):
    """A CRN that is not ``crn:v1:<cloud>:<type>:<service>:<region>:a/<account>:<instance>::``."""

    exit_code = ExitCode.CONFIG

    def __init__(self, crn: str, why: str) -> None:
        self.crn = crn
        super().__init__("CRN", None, f"{why} in {one_line(crn, 160)!r}")
        self.message = f"unknown IBM Cloud CRN: {self.ibm_message}"


class InvalidRequestError(QauvernError, ValueError):
    """The caller asked for a request the client refuses to send; nothing was sent."""


def ibm_message(body: Any) -> str | None:
    """IBM's error text from the body shapes its services use, or None.

    - Quantum API: ``{"errors": [{"code", "message", "more_info"}], "trace", "status_code"}``
    - IAM: ``{"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found."}``
    - Resource Controller and others: ``{"message": ...}``, ``{"error": ...}``, ``{"description": ...}``
    - anything else: the first line of a text body.
    """
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            texts = []
            for item in errors:
                if isinstance(item, dict):
                    text = item.get("message") or item.get("code")
                    if isinstance(text, str) and text.strip():
                        texts.append(text.strip())
                elif isinstance(item, str) and item.strip():
                    texts.append(item.strip())
            if texts:
                more = f" (+{len(texts) - 1} more)" if len(texts) > 1 else ""
                return one_line(texts[0] + more)
        if isinstance(body.get("errorMessage"), str) and body["errorMessage"].strip():
            code = body.get("errorCode")
            suffix = f" ({code})" if isinstance(code, str) and code else ""
            return one_line(body["errorMessage"] + suffix)
        for key in ("message", "error_description", "error", "description", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return one_line(value)
        return None
    if isinstance(body, str) and body.strip():
        return one_line(body.strip().splitlines()[0], 200)
    return None
