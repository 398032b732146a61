"""A scripted IBM at the httpx transport, for the client's wire-level unit tests only.

Everything else fakes IBM with the emulator (`tests.support.ibm.EmulatedIBM`). This stays for what the
emulator cannot express: a transport that raises a given httpx exception, a reply scripted byte for byte
(malformed or drifted bodies, odd headers, page tokens that loop), replies that inspect the request, and
exact per-call sequences for retry arithmetic on a fake clock.

    fake = ScriptedIBM()
    fake.on("GET", "/api/v1/instances/usage", httpx.Response(503), httpx.Response(200, json={...}))
    IBMClient(key, endpoints, transport=httpx.MockTransport(fake))

Routes are keyed by (method, path) and answer their queued replies in order (the last one repeats); a reply
is an `httpx.Response`, an exception to raise, or a function of the request. An unscripted
`POST /identity/token` issues a token (`token_format` with n = 1, 2, ...; the reply carries `token_reply`);
with `check_bearer` any other path answers 401 to a bearer it did not issue or that `expire_tokens`
revoked. Anything else unscripted is 404.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx

TOKEN = "/identity/token"

Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"code": "x", "message": message}]})


class ScriptedIBM:
    """See the module docstring."""

    def __init__(
        self,
        *,
        token_format: str = "tok-{n}",
        token_reply: dict[str, Any] | None = None,
        check_bearer: bool = True,
    ) -> None:
        self.token_format = token_format
        self.token_reply: dict[str, Any] = {"expires_in": 3600} if token_reply is None else token_reply
        self.check_bearer = check_bearer
        self.routes: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[httpx.Request] = []
        self.issued: list[str] = []
        self.valid: set[str] = set()
        self.lock = threading.Lock()

    def on(self, method: str, path: str, *replies: Reply) -> ScriptedIBM:
        self.routes.setdefault((method, path), []).extend(replies)
        return self

    def expire_tokens(self) -> None:
        self.valid.clear()

    def calls(self, path: str, method: str | None = None) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path and method in (None, r.method)]

    @property
    def api_calls(self) -> list[httpx.Request]:
        """Every request but IAM's."""
        return [r for r in self.requests if r.url.path != TOKEN]

    @property
    def iam_calls(self) -> int:
        return len(self.calls(TOKEN))

    @property
    def tokens(self) -> int:
        """How many tokens were issued."""
        return len(self.issued)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            queue = self.routes.get((request.method, request.url.path))
            reply = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else None
            if reply is None and request.url.path == TOKEN:
                token = self.token_format.format(n=len(self.issued) + 1)
                self.issued.append(token)
                self.valid.add(token)
                return httpx.Response(
                    200, json={"access_token": token, "token_type": "Bearer", **self.token_reply}
                )
            if self.check_bearer and request.url.path != TOKEN:
                bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
                if bearer not in self.valid:
                    return _error(401, "The IAM token is not valid")
        if reply is None:
            return _error(404, f"no route for {request.method} {request.url.path}")
        if isinstance(reply, Exception):
            raise reply
        return reply if isinstance(reply, httpx.Response) else reply(request)


class FakeClock:
    """A monotonic clock whose sleeps advance it at once and are recorded (retry timing without waiting)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
