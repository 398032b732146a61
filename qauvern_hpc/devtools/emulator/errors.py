"""Errors the emulator answers with, in the body shapes IBM's services use."""

from __future__ import annotations

import uuid
from typing import Any, Literal

ErrorStyle = Literal["ibm", "iam", "rc"]

MORE_INFO = "https://quantum.cloud.ibm.com/docs/api/qiskit-runtime-rest"


class ApiError(Exception):
    """An HTTP error reply. `style` picks the body shape:

    - ``ibm`` (Quantum API): ``{"errors": [{"code", "message", "more_info"}], "trace", "status_code"}``
    - ``iam``: ``{"errorCode", "errorMessage", "context": {...}}``
    - ``rc`` (Resource Controller):
      ``{"message", "status_code", "error_code", "transaction_id", "errors": [...]}``
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        style: ErrorStyle = "ibm",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.style: ErrorStyle = style
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        trace = str(uuid.uuid4())
        if self.style == "iam":
            return {
                "errorCode": self.code,
                "errorMessage": self.message,
                "context": {"requestId": trace, "requestType": "incoming.Identity_Token"},
            }
        error = {"code": self.code, "message": self.message, "more_info": MORE_INFO}
        if self.style == "rc":
            return {
                "message": self.message,
                "status_code": self.status,
                "error_code": self.code,
                "transaction_id": trace,
                "errors": [error],
            }
        return {"errors": [error], "trace": trace, "status_code": self.status}


def bad_request(message: str, code: str = "bad_request", style: ErrorStyle = "ibm") -> ApiError:
    return ApiError(400, code, message, style=style)


def not_found(message: str, code: str = "not_found", style: ErrorStyle = "ibm") -> ApiError:
    return ApiError(404, code, message, style=style)


def forbidden(message: str, code: str = "forbidden", style: ErrorStyle = "ibm") -> ApiError:
    return ApiError(403, code, message, style=style)


def conflict(message: str, code: str = "conflict", style: ErrorStyle = "ibm") -> ApiError:
    return ApiError(409, code, message, style=style)
