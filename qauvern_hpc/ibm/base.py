"""`BaseClient`: how `IBMClient` sends one request, in short steps like httpx's ``Client.send``.

    _send                      one logical request; its deadline (`RetryPolicy.deadline`)
     └ send_with_retries       bounded retries (`qauvern_hpc.ibm.retry`)
        └ _send_handling_auth  the bearer token (`qauvern_hpc.ibm.auth`); one re-authentication on a 401
           └ _send_single_request   one HTTP exchange; httpx exceptions and non-2xx replies become typed
                                    errors (`qauvern_hpc.ibm.wire`)

Authentication
  The API key is exchanged at IAM (``POST {iam}/identity/token``, form
  ``grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=KEY``) for a bearer token. The token is cached
  (thread-safe) and fetched again shortly before it expires (``expires_in``, else ``expiration``; the margin
  is a minute, or a fifth of a short lifetime). A call answered 401 triggers exactly one re-authentication
  and is sent once more; a second 401 is an `IBMAuthError`. Concurrent 401s share one refresh.

Retries (`RetryPolicy`, see `qauvern_hpc.ibm.retry`)
  429 (Retry-After honoured, capped), 502/503/504, timeouts and connection errors, with exponential backoff
  and jitter, bounded in tries and in total time (each try's timeout is cut to what is left of the
  deadline). A request that may have reached IBM is retried only when it is idempotent: GET, DELETE, the IAM
  exchange, the session close (PATCH/DELETE) and the instance PATCH (it sets absolute values). POSTs that
  create something (`create_instance`, `create_session`) are retried after a connect error or connect
  timeout (nothing was sent) and after a 429 (IBM refused before acting) — not after 5xx or a read timeout.

Secrets
  The API key travels only in the IAM form body: never in a URL, a log record, an exception or a repr; IBM
  error messages are scrubbed of it (and of the bearer token) before they are kept.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from qauvern_hpc import __version__
from qauvern_hpc.core.secret import Secret
from qauvern_hpc.ibm import models as m
from qauvern_hpc.ibm import wire
from qauvern_hpc.ibm.auth import TokenCache
from qauvern_hpc.ibm.endpoints import Endpoints
from qauvern_hpc.ibm.errors import IBMAuthError, IBMResponseError, ibm_message
from qauvern_hpc.ibm.retry import DeadlinePassed, Failure, RetryPolicy, send_with_retries

log = logging.getLogger("qauvern_hpc.ibm")

TOKEN_CALL = "POST /identity/token"
T = TypeVar("T", bound=BaseModel)


@dataclass(slots=True)
class _Call:
    """One logical request as `_send` was asked for it; `reauthed` spans its tries."""

    method: str
    url: str
    call: str
    params: Mapping[str, str | int] | None
    json: Any
    data: Mapping[str, str] | None
    headers: Mapping[str, str] | None
    idempotent: bool
    auth: bool
    deadline_at: float
    reauthed: bool = False

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).netloc


class BaseClient:
    """The sending half of `IBMClient`: construction, closing, and `_send`/`_parse` for its endpoints."""

    api_version: ClassVar[str]  # sent as ``IBM-API-Version`` on every authenticated call

    def __init__(
        self,
        api_key: str,
        endpoints: Endpoints,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise IBMAuthError(TOKEN_CALL, None, "no API key given")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self._api_key = Secret(api_key.strip())
        self._auth = TokenCache(self._api_key, clock)
        self.endpoints = endpoints
        self.retry = retry or RetryPolicy()
        self.timeout = float(timeout)
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(
            timeout=self.timeout,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": f"qauvern-hpc/{__version__}"},
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoints={self.endpoints!r}, api_key=<redacted>)"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- sending: retries -> authentication -> one request (like httpx's Client.send) -------------------

    def _bearer(self, deadline_at: float) -> str:
        """The cached IAM token, fetched first when missing or about to expire."""
        return self._auth.bearer(deadline_at, self._fetch_token)

    def _fetch_token(self, form: dict[str, str], deadline_at: float) -> m.Token:
        resp = self._send(
            "POST",
            self.endpoints.token_url,
            call=TOKEN_CALL,
            data=form,
            idempotent=True,
            auth=False,
            deadline_at=deadline_at,
        )
        return self._parse(m.Token, resp, TOKEN_CALL)

    def _send(
        self,
        method: str,
        url: str,
        *,
        call: str,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        auth: bool = True,
        deadline_at: float | None = None,
    ) -> httpx.Response:
        """Send one logical request: retries, re-authentication and error mapping. Returns a 2xx reply."""
        if deadline_at is None:
            deadline_at = self._clock() + self.retry.deadline
        req = _Call(method, url, call, params, json, data, headers, idempotent, auth, deadline_at)
        return send_with_retries(
            self.retry,
            lambda: self._send_handling_auth(req),
            call=call,
            host=req.host,
            deadline_at=deadline_at,
            clock=self._clock,
            sleep=self._sleep,
        )

    def _time_left(self, req: _Call) -> float:
        remaining = req.deadline_at - self._clock()
        if remaining <= 0:
            raise DeadlinePassed
        return remaining

    def _send_handling_auth(self, req: _Call) -> httpx.Response | Failure:
        """One try: the bearer token, and one re-authentication per call on a 401 (not counted as a try)."""
        while True:
            remaining = self._time_left(req)
            hdrs = {"Accept": "application/json", **(req.headers or {})}
            token: str | None = None
            if req.auth:
                token = self._bearer(req.deadline_at)
                hdrs["Authorization"] = f"Bearer {token}"
                hdrs["IBM-API-Version"] = self.api_version
                remaining = self._time_left(req)
            resp = self._send_single_request(req, hdrs, min(self.timeout, remaining))
            if isinstance(resp, Failure) or 200 <= resp.status_code < 300:
                return resp
            message = self._auth.scrub(ibm_message(wire.body(resp)))
            if resp.status_code == 401 and token is not None and not req.reauthed:
                req.reauthed = True
                self._auth.forget(token)
                log.debug("%s got 401: re-authenticating once", req.call)
                continue
            return wire.status_failure(req.call, resp, message, iam=not req.auth, idempotent=req.idempotent)

    def _send_single_request(
        self, req: _Call, headers: dict[str, str], timeout: float
    ) -> httpx.Response | Failure:
        """One HTTP exchange; an httpx exception becomes a `Failure` (or a raised `IBMError`)."""
        t0 = self._clock()
        try:
            resp = self._http.request(
                req.method,
                req.url,
                params=req.params,
                json=req.json,
                data=req.data,
                headers=headers,
                timeout=timeout,
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return wire.transport_failure(exc, req.call, req.host, timeout=timeout, idempotent=req.idempotent)
        log.debug("%s %s -> %d in %.0f ms", req.call, req.host, resp.status_code, (self._clock() - t0) * 1000)
        return resp

    def _parse(self, model: type[T], resp: httpx.Response, call: str) -> T:
        try:
            payload = resp.json()
        except ValueError:
            what = "empty" if not resp.content else "not JSON"
            raise IBMResponseError(call, resp.status_code, f"reply is {what}") from None
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            first = errors[0]
            where = ".".join(str(p) for p in first["loc"]) or "reply"
            more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
            raise IBMResponseError(
                call, resp.status_code, f"unexpected reply: {where}: {first['msg']}{more}"
            ) from None
