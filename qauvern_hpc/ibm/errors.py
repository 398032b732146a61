"""Errors from IBM Cloud / IBM Quantum calls. Every message names the call, the status and IBM's words."""

from __future__ import annotations

from typing import Any

from qauvern_hpc.errors import ServiceUnavailable


class IBMError(ServiceUnavailable):
    """A call to IBM failed. `call` is e.g. "GET /v1/instances/usage"; `status` is None when no reply came."""

    def __init__(
        self, call: str, status: int | None, ibm_message: str | None = None, *, hint: str | None = None
    ):
        self.call = call
        self.status = status
        self.ibm_message = ibm_message
        where = f"{call}: HTTP {status}" if status is not None else f"{call}: no reply"
        super().__init__(f"IBM {where}" + (f": {ibm_message}" if ibm_message else ""), hint=hint)


class IBMAuthError(IBMError):
    """The API key was refused, or a fresh token still got 401/403."""


class IBMNotFound(IBMError):
    """404: the instance, session or job does not exist (or is not visible to this key)."""


class IBMRateLimited(IBMError):
    """429 after every retry."""


class IBMResponseError(IBMError):
    """IBM answered, but not with what the API documents (malformed JSON, missing or invalid fields)."""


class UnknownCRNError(IBMError):
    """A CRN that is not `crn:v1:<cloud>:<type>:quantum-computing:<region>:a/<account>:<instance>::`."""

    def __init__(self, crn: str, why: str):
        super().__init__("CRN", None, f"{why}: {crn[:120]!r}")


def ibm_message(body: Any) -> str | None:
    """IBM's error text from the shapes its services use."""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            msg = errors[0].get("message") or errors[0].get("code")
            if msg:
                return str(msg)[:500]
        for key in ("errorMessage", "message", "error_description", "error", "description"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])[:500]
    if isinstance(body, str) and body.strip():
        return body.strip().splitlines()[0][:200]
    return None
