"""`IBMClient`: qauvern-hpc's only way to talk to IBM Cloud IAM, the Resource Controller and IBM Quantum.

Authentication
  The API key is exchanged at IAM (``POST {iam}/identity/token``, form
  ``grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=KEY``) for a bearer token. The token is cached
  (thread-safe) and fetched again shortly before it expires (``expires_in``, else ``expiration``; the margin
  is a minute, or a fifth of a short lifetime). A call answered 401 triggers exactly one re-authentication
  and is sent once more; a second 401 is an `IBMAuthError`. Concurrent 401s share one refresh.

Headers
  ``Authorization: Bearer …`` and ``IBM-API-Version: 2026-02-15`` (`API_VERSION`) on every RC and quantum
  call; ``Service-CRN: <crn>`` on instance-scoped calls; ``Account-Id: <account>`` on analytics calls. The
  IAM call carries neither (like qauvern's). Account and plan-wide analytics calls go to the us-east host,
  instance-scoped calls to the CRN's regional host (`Endpoints.quantum_for`).

Retries (`RetryPolicy`, see `qauvern_hpc.ibm.retry`)
  429 (Retry-After honoured, capped), 502/503/504, timeouts and connection errors, with exponential backoff
  and jitter, bounded in tries and in total time (each try's timeout is cut to what is left of the
  deadline). A request that may have reached IBM is retried only when it is idempotent: GET, DELETE, the IAM
  exchange, the session close (PATCH/DELETE) and the instance PATCH (it sets absolute values). POSTs that
  create something (`create_instance`, `create_session`) are retried after a connect error or connect
  timeout (nothing was sent) and after a 429 (IBM refused before acting) — not after 5xx or a read timeout.

Units
  Seconds everywhere. Analytics answer milliseconds; they become whole seconds by truncation,
  ``int(ms / 1000)``, as qauvern 0.14 does (so the numbers agree with qauvern's). `daily_usage` sums the
  milliseconds of same-date entries first and truncates each day once (qauvern overwrote same-date entries).

Secrets
  The API key travels only in the IAM form body: never in a URL, a log record, an exception or a repr; IBM
  error messages are scrubbed of it (and of the bearer token) before they are kept.

Sessions and jobs (what IBM's Qiskit Runtime REST API really does; checked against IBM's API reference at
quantum.cloud.ibm.com/docs/api/qiskit-runtime-rest, qiskit-ibm-runtime's REST adapters and qrmi 0.26)
  - ``POST /v1/sessions {"mode", "max_ttl", "backend"}`` -> the session (``id``, ``backend_name``, ``mode``,
    ``state``, ...); we also send ``backend_name`` as qrmi does.
  - ``GET /v1/sessions/{id}`` -> ``state`` (open | active | inactive | closed), ``accepting_jobs``,
    ``started_at``, ``closed_at``, ``elapsed_time`` (seconds), ...
  - Closing has two shapes. ``DELETE /v1/sessions/{id}/close`` (204; qiskit-ibm-runtime's
    ``Session.cancel()``) closes at once: queued jobs are cancelled, a running job finishes.
    ``PATCH /v1/sessions/{id} {"accepting_jobs": false}`` (204; ``Session.close()``) stops new jobs and lets
    the queued ones run. qrmi's ``release()`` uses the DELETE when jobs are pending, else the PATCH.
    `close_session` uses the DELETE by default (the Slurm job is over, nothing it queued should run on after
    it), the PATCH with ``cancel_queued=False``.
  - A session's jobs: ``GET /v1/jobs?session_id=ID&limit=&offset=`` -> ``{"jobs": [...], "count"}``; each job
    has ``status`` (Queued | Running | Completed | Cancelled | Failed) and ``usage.quantum_seconds``; when the
    list leaves the usage out we read ``GET /v1/jobs/{id}/metrics`` (``usage.quantum_seconds``), which is what
    qiskit-ibm-runtime's ``RuntimeJobV2.usage()`` reads.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from qauvern_hpc import __version__
from qauvern_hpc.core.secret import Secret
from qauvern_hpc.ibm import models as m
from qauvern_hpc.ibm.crn import parse_crn, valid_region
from qauvern_hpc.ibm.endpoints import Endpoints
from qauvern_hpc.ibm.errors import (
    IBMAuthError,
    IBMError,
    IBMNotFound,
    IBMRateLimited,
    IBMResponseError,
    InvalidRequestError,
    ibm_message,
    one_line,
)
from qauvern_hpc.ibm.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after

log = logging.getLogger("qauvern_hpc.ibm")

API_VERSION = "2026-02-15"
"""Sent as ``IBM-API-Version`` on every Resource Controller and quantum API call."""

QUANTUM_RESOURCE_ID = "b6049020-80f4-11eb-a0f7-e35ec9b4054f"
"""The Resource Controller ``resource_id`` of IBM Quantum instances."""

PLAN_IDS = {
    "internal": "91b2c828-2952-4f05-aed8-bedf92c6c480",
    "premium": "7f666d17-7893-47d8-bf9d-2b2389fc4dfc",
    "paygo": "5304b575-3cff-4455-90dc-ae4367762093",
}
"""Plan name -> Resource Controller plan id (the same in production and staging)."""

APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
TOKEN_MARGIN = 60.0  # refresh at most this many seconds before the token expires...
TOKEN_MARGIN_FRACTION = 0.2  # ...and at most this fraction of its lifetime (short-lived tokens)
DEFAULT_TOKEN_LIFETIME = 600.0  # when IAM gives neither expires_in nor expiration
MAX_PAGES = 1000
TOKEN_CALL = "POST /identity/token"

SessionMode = Literal["batch", "dedicated"]
T = TypeVar("T", bound=BaseModel)


def ms_to_seconds(ms: float) -> int:
    """Analytics milliseconds -> whole seconds, truncated like qauvern 0.14's ``int(ms / 1000)``."""
    return int(ms / 1000)


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with ``+00:00`` (qauvern's format). A naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _whole_seconds(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{what} must be a whole number of seconds, got {value!r}")
    return value


class IBMClient:
    """Synchronous client for IAM, the Resource Controller and the IBM Quantum API. Thread-safe.

    ``IBMClient(api_key, endpoints, *, timeout=30.0, retry=RetryPolicy())``; `sleep` and `clock` (monotonic
    seconds) are injectable for tests, `transport` takes e.g. an ``httpx.MockTransport``. Use it as a
    context manager or call `close()`.
    """

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
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def __repr__(self) -> str:
        return f"IBMClient(endpoints={self.endpoints!r}, api_key=<redacted>)"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IBMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- IAM ---------------------------------------------------------------------------------------------

    def _bearer(self, deadline_at: float) -> str:
        """The cached token, fetched first when missing or about to expire."""
        with self._lock:
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token
            resp = self._send(
                "POST",
                self.endpoints.token_url,
                call=TOKEN_CALL,
                data={"grant_type": APIKEY_GRANT, "apikey": self._api_key.get()},
                idempotent=True,
                auth=False,
                deadline_at=deadline_at,
            )
            tok = self._parse(m.Token, resp, TOKEN_CALL)
            if tok.expires_in is not None:
                lifetime = tok.expires_in
            elif tok.expiration is not None:
                lifetime = max(0.0, tok.expiration - time.time())
            else:
                lifetime = DEFAULT_TOKEN_LIFETIME
            margin = min(TOKEN_MARGIN, lifetime * TOKEN_MARGIN_FRACTION)
            self._token = tok.access_token
            self._refresh_at = self._clock() + lifetime - margin
            log.debug("IAM token obtained, valid for %.0f s", lifetime)
            return tok.access_token

    def _forget_token(self, stale: str) -> None:
        """Drop the token a 401 refused, unless another thread already replaced it."""
        with self._lock:
            if self._token == stale:
                self._token = None

    # ----- transport ---------------------------------------------------------------------------------------

    def _scrub(self, text: str | None) -> str | None:
        if not text:
            return text
        for secret in (self._api_key.get(), self._token):
            if secret and secret in text:
                text = text.replace(secret, "<redacted>")
        return text

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
        """Send one logical request: re-authentication, retries and error mapping. Returns a 2xx reply."""
        policy = self.retry
        if deadline_at is None:
            deadline_at = self._clock() + policy.deadline
        host = urllib.parse.urlsplit(url).netloc
        attempt = 0
        reauthed = False
        failure: IBMError | None = None
        while True:
            attempt += 1
            remaining = deadline_at - self._clock()
            if remaining <= 0:
                raise failure or IBMError(
                    call, None, f"deadline of {policy.deadline:g} s passed before sending"
                )
            hdrs = {"Accept": "application/json", **(headers or {})}
            token: str | None = None
            if auth:
                token = self._bearer(deadline_at)
                hdrs["Authorization"] = f"Bearer {token}"
                hdrs["IBM-API-Version"] = API_VERSION
                remaining = deadline_at - self._clock()
                if remaining <= 0:
                    raise failure or IBMError(
                        call, None, f"deadline of {policy.deadline:g} s passed before sending"
                    )
            retry_after: float | None = None
            t0 = self._clock()
            try:
                resp = self._http.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    data=data,
                    headers=hdrs,
                    timeout=min(self.timeout, remaining),
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # The request never left: safe to retry whatever it is.
                failure = IBMError(call, None, f"cannot connect to {host} ({type(exc).__name__})")
                retryable = True
            except httpx.TimeoutException as exc:
                failure = IBMError(
                    call,
                    None,
                    f"no reply from {host} within {min(self.timeout, remaining):.1f} s "
                    f"({type(exc).__name__})",
                )
                retryable = idempotent
            except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
                failure = IBMError(call, None, f"connection to {host} failed ({type(exc).__name__})")
                retryable = idempotent
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise IBMError(call, None, f"cannot send to {host} ({type(exc).__name__})") from None
            else:
                status = resp.status_code
                log.debug("%s %s -> %d in %.0f ms", call, host, status, (self._clock() - t0) * 1000)
                if 200 <= status < 300:
                    return resp
                message = self._scrub(ibm_message(_body(resp)))
                if status == 401 and auth and not reauthed and token is not None:
                    reauthed = True
                    self._forget_token(token)
                    attempt -= 1  # a re-authentication is not a retry
                    log.debug("%s got 401: re-authenticating once", call)
                    continue
                if not auth and status in (400, 401, 403):
                    raise IBMAuthError(call, status, message or "IAM refused the API key")
                if status == 401:
                    raise IBMAuthError(
                        call, status, message or "unauthorized", hint="a fresh IAM token was refused too"
                    )
                if status == 403:
                    raise IBMAuthError(
                        call, status, message or "forbidden", hint="the API key has no access to this"
                    )
                if status == 404:
                    raise IBMNotFound(call, status, message or "not found")
                if status not in RETRY_STATUSES:
                    if 300 <= status < 400:
                        message = f"unexpected redirect to {resp.headers.get('Location', '?')}"
                    raise IBMError(call, status, message)
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                if status == 429:
                    failure = IBMRateLimited(call, status, message or "rate limited", retry_after=retry_after)
                else:
                    failure = IBMError(call, status, message)
                # A 429 is IBM refusing before acting: even a create is safe to send again.
                retryable = idempotent or status == 429
            log.debug("%s %s -> %s", call, host, failure.ibm_message)
            if not retryable:
                raise failure
            delay = policy.delay(attempt, retry_after)
            if attempt >= policy.max_attempts or self._clock() + delay >= deadline_at:
                if attempt > 1:
                    failure.hint = f"gave up after {attempt} tries"
                raise failure
            log.info(
                "%s failed (%s); retry %d of %d in %.1f s",
                call,
                failure.message,
                attempt,
                policy.max_attempts - 1,
                delay,
            )
            self._sleep(delay)

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

    def _quantum(self, crn: str, path: str) -> str:
        return f"{self.endpoints.quantum_for(crn)}{path}"

    # ----- Resource Controller -----------------------------------------------------------------------------

    def list_instances(self, plan_id: str | None = None) -> list[m.Instance]:
        """Every IBM Quantum instance this key sees (optionally of one plan id), all pages.

        Pages follow ``next_url``'s ``start`` token until it is null; a token seen twice, a ``next_url``
        without ``start`` or more than `MAX_PAGES` pages is an `IBMResponseError`.
        """
        call = "GET /v2/resource_instances"
        params: dict[str, str | int] = {"resource_id": QUANTUM_RESOURCE_ID}
        if plan_id:
            params["resource_plan_id"] = plan_id
        url = f"{self.endpoints.resource_controller}/v2/resource_instances"
        out: list[m.Instance] = []
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page = self._parse(
                m.InstancePage, self._send("GET", url, call=call, params=params, idempotent=True), call
            )
            out.extend(page.resources)
            if not page.next_url:
                return out
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.next_url).query)
            start = (query.get("start") or [""])[0]
            if not start:
                raise IBMResponseError(call, 200, f"next_url without a start token: {page.next_url[:200]!r}")
            if start in seen:
                raise IBMResponseError(call, 200, f"pagination loops (start token {start[:60]!r} came twice)")
            seen.add(start)
            params = {**params, "start": start}
        raise IBMResponseError(call, 200, f"more than {MAX_PAGES} pages")

    def update_instance(self, crn: str, *, allocation_seconds: int, limit_seconds: int | None) -> None:
        """Set an instance's allocation and limit (None = no limit).

        ``PATCH {rc}/v2/resource_instances/{url-encoded CRN}`` with ``{"parameters":
        {"usage_allocation_seconds": "N", "instance_limit_seconds": "M" | null}}``: the RC replaces
        ``parameters`` whole, so both are always sent, as strings. An allocation of 0 would archive the
        instance and is refused here, as are negative limits (`InvalidRequestError`, nothing sent). Retried
        like a GET: it sets absolute values.
        """
        parse_crn(crn)
        allocation = _whole_seconds(allocation_seconds, "allocation_seconds")
        if allocation <= 0:
            raise InvalidRequestError(
                f"allocation must be > 0 seconds (0 archives the instance), got {allocation}"
            )
        limit = None if limit_seconds is None else _whole_seconds(limit_seconds, "limit_seconds")
        if limit is not None and limit < 0:
            raise InvalidRequestError(f"limit must be >= 0 seconds or None (no limit), got {limit}")
        body = {
            "parameters": {
                "usage_allocation_seconds": str(allocation),
                "instance_limit_seconds": None if limit is None else str(limit),
            }
        }
        url = f"{self.endpoints.resource_controller}/v2/resource_instances/{_quote(crn)}"
        self._send("PATCH", url, call="PATCH /v2/resource_instances/{crn}", json=body, idempotent=True)

    def create_instance(
        self,
        name: str,
        *,
        target: str,
        resource_group: str,
        plan_id: str,
        allocation_seconds: int,
        limit_seconds: int | None = None,
        tags: list[str] | None = None,
    ) -> m.CreatedInstance:
        """Create an instance in region `target` (``POST /v2/resource_instances``); not retried once sent."""
        if not name.strip():
            raise InvalidRequestError("instance name must not be empty")
        if not valid_region(target):
            raise InvalidRequestError(f"target must be a region such as us-east or eu-de, got {target!r}")
        allocation = _whole_seconds(allocation_seconds, "allocation_seconds")
        if allocation <= 0:
            raise InvalidRequestError(f"allocation must be > 0 seconds, got {allocation}")
        limit = None if limit_seconds is None else _whole_seconds(limit_seconds, "limit_seconds")
        if limit is not None and limit < 0:
            raise InvalidRequestError(f"limit must be >= 0 seconds or None (no limit), got {limit}")
        body: dict[str, Any] = {
            "name": name,
            "target": target,
            "resource_group": resource_group,
            "resource_plan_id": plan_id,
            "parameters": {
                "usage_allocation_seconds": str(allocation),
                "instance_limit_seconds": None if limit is None else str(limit),
            },
        }
        if tags:
            body["tags"] = list(tags)
        call = "POST /v2/resource_instances"
        url = f"{self.endpoints.resource_controller}/v2/resource_instances"
        return self._parse(
            m.CreatedInstance, self._send("POST", url, call=call, json=body, idempotent=False), call
        )

    # ----- usage and accounts ------------------------------------------------------------------------------

    def instance_usage(self, crn: str) -> m.InstanceUsage:
        """``GET /v1/instances/usage`` (Service-CRN): the 28-day rolling usage and what IBM adds."""
        call = "GET /v1/instances/usage"
        resp = self._send(
            "GET",
            self._quantum(crn, "/v1/instances/usage"),
            call=call,
            headers={"Service-CRN": crn},
            idempotent=True,
        )
        return self._parse(m.InstanceUsage, resp, call)

    def analytics_usage(
        self,
        *,
        instance: str | None = None,
        plan: str | None = None,
        account_id: str,
        start: datetime,
        end: datetime,
    ) -> int:
        """Usage in [start, end) in whole seconds (truncated), of one instance CRN or one plan name.

        `plan` is the plan *name* IBM's analytics take (internal | premium | paygo), not its id. Instance
        usage is asked of the instance's regional host, plan usage of the us-east host. Naive datetimes are
        taken as UTC.
        """
        if (instance is None) == (plan is None):
            raise InvalidRequestError("give exactly one of instance= or plan=")
        if _aware(start) >= _aware(end):
            raise InvalidRequestError(f"start {_iso(start)} must be before end {_iso(end)}")
        params: dict[str, str | int] = {}
        if instance is not None:
            params["instance"] = instance
            base = self.endpoints.quantum_for(instance)
        else:
            params["plan"] = plan or ""
            base = self.endpoints.quantum
        params.update({"interval_start": _iso(start), "interval_end": _iso(end)})
        call = "GET /v1/analytics/usage"
        resp = self._send(
            "GET",
            f"{base}/v1/analytics/usage",
            call=call,
            params=params,
            headers={"Account-Id": _header_value(account_id, "account_id")},
            idempotent=True,
        )
        return ms_to_seconds(self._parse(m.AnalyticsUsage, resp, call).usage_ms)

    def daily_usage(self, crn: str, *, account_id: str, start: date, end: date) -> dict[date, int]:
        """Per-day usage of an instance over [start, end) (UTC days, end excluded), whole seconds.

        Days IBM reports nothing for are absent. Entries of the same date are summed (in milliseconds, then
        truncated once per day).
        """
        if start >= end:
            raise InvalidRequestError(f"start {start} must be before end {end}")
        params: dict[str, str | int] = {
            "group_by": "instance",
            "instance": crn,
            "interval_start": _iso(datetime.combine(start, dtime(), UTC)),
            "interval_end": _iso(datetime.combine(end, dtime(), UTC)),
        }
        call = "GET /v1/analytics/usage_grouped_by_date"
        resp = self._send(
            "GET",
            self._quantum(crn, "/v1/analytics/usage_grouped_by_date"),
            call=call,
            params=params,
            headers={"Account-Id": _header_value(account_id, "account_id")},
            idempotent=True,
        )
        per_day_ms: dict[date, float] = {}
        for bucket in self._parse(m.DailyUsage, resp, call).data:
            day = bucket.interval_start.date()  # the date as IBM wrote it (qauvern reads its first 10 chars)
            per_day_ms[day] = per_day_ms.get(day, 0.0) + bucket.usage_ms
        return {day: ms_to_seconds(ms) for day, ms in sorted(per_day_ms.items())}

    def account_plan(self, account_id: str, plan_id: str) -> m.AccountPlan:
        """``GET /v1/accounts/{id}?plan_id=``: the plan's budget, unallocated seconds and limit."""
        if not account_id:
            raise InvalidRequestError("account_id must not be empty")
        call = "GET /v1/accounts/{id}"
        resp = self._send(
            "GET",
            f"{self.endpoints.quantum}/v1/accounts/{_quote(account_id)}",
            call=call,
            params={"plan_id": plan_id},
            idempotent=True,
        )
        plans = self._parse(m.AccountPlans, resp, call).plans
        if any(p.plan_id is not None for p in plans):
            chosen = next((p for p in plans if p.plan_id == plan_id), None)
            if chosen is None:
                raise IBMResponseError(call, resp.status_code, f"no plan {plan_id!r} in the reply")
        else:
            chosen = plans[0]  # the server filtered by plan_id (qauvern relies on that too)
        return m.AccountPlan.model_validate({**chosen.model_dump(), "account_id": account_id})

    # ----- sessions and jobs -------------------------------------------------------------------------------

    def create_session(
        self, crn: str, backend: str, *, mode: SessionMode | str = "batch", max_ttl: int = 28800
    ) -> m.Session:
        """Open a `mode` (batch | dedicated) session on `backend` via the instance (``POST /v1/sessions``).

        Not retried once sent (a retry could open a second session).
        """
        if mode not in ("batch", "dedicated"):
            raise InvalidRequestError(f"session mode must be batch or dedicated, not {mode!r}")
        ttl = _whole_seconds(max_ttl, "max_ttl")
        if ttl <= 0:
            raise InvalidRequestError(f"max_ttl must be > 0 seconds, got {ttl}")
        if not backend:
            raise InvalidRequestError("backend must not be empty")
        call = "POST /v1/sessions"
        body = {"max_ttl": ttl, "mode": mode, "backend": backend, "backend_name": backend}
        resp = self._send(
            "POST",
            self._quantum(crn, "/v1/sessions"),
            call=call,
            json=body,
            headers={"Service-CRN": crn},
            idempotent=False,
        )
        return self._parse(m.Session, resp, call)

    def get_session(self, crn: str, session_id: str) -> m.Session:
        """``GET /v1/sessions/{id}``: state, mode, backend, start/close times and elapsed seconds."""
        call = "GET /v1/sessions/{id}"
        resp = self._send(
            "GET",
            self._quantum(crn, f"/v1/sessions/{_quote(session_id)}"),
            call=call,
            headers={"Service-CRN": crn},
            idempotent=True,
        )
        return self._parse(m.Session, resp, call)

    def close_session(self, crn: str, session_id: str, *, cancel_queued: bool = True) -> None:
        """Close a session. A session IBM does not know (any more) raises `IBMNotFound`.

        ``cancel_queued=True``: ``DELETE /v1/sessions/{id}/close`` — no new jobs, queued ones cancelled, a
        running one finishes. ``cancel_queued=False``: ``PATCH /v1/sessions/{id} {"accepting_jobs": false}``
        — no new jobs, queued ones still run. Both are idempotent and retried.
        """
        sid = _quote(session_id)
        if cancel_queued:
            self._send(
                "DELETE",
                self._quantum(crn, f"/v1/sessions/{sid}/close"),
                call="DELETE /v1/sessions/{id}/close",
                headers={"Service-CRN": crn},
                idempotent=True,
            )
        else:
            self._send(
                "PATCH",
                self._quantum(crn, f"/v1/sessions/{sid}"),
                call="PATCH /v1/sessions/{id}",
                json={"accepting_jobs": False},
                headers={"Service-CRN": crn},
                idempotent=True,
            )

    def session_jobs(self, crn: str, session_id: str, *, page_size: int = 100) -> list[m.RuntimeJob]:
        """Every job of a session with its status and ``usage.quantum_seconds`` (all pages).

        ``GET /v1/jobs?session_id=&limit=&offset=&exclude_params=true``; a job listed without usage gets it
        from ``GET /v1/jobs/{id}/metrics``.
        """
        out = self._job_pages(crn, {"session_id": session_id, "exclude_params": "true"}, page_size)
        return [j if j.quantum_seconds is not None else self._with_metrics(crn, j) for j in out]

    def _with_metrics(self, crn: str, job: m.RuntimeJob) -> m.RuntimeJob:
        call = "GET /v1/jobs/{id}/metrics"
        resp = self._send(
            "GET",
            self._quantum(crn, f"/v1/jobs/{_quote(job.id)}/metrics"),
            call=call,
            headers={"Service-CRN": crn},
            idempotent=True,
        )
        metrics = self._parse(m.JobMetrics, resp, call)
        return job.model_copy(update={"usage": metrics.usage})

    def cancel_job(self, crn: str, job_id: str) -> bool:
        """``POST /v1/jobs/{id}/cancel``: stop a queued or running job (IBM charges a cancelled job only for
        the time it held the QPU). True: cancelled now; False: it had already ended (IBM answers 409).
        Retried like an idempotent call, since a repeat of a cancel that landed is that 409."""
        try:
            self._send(
                "POST",
                self._quantum(crn, f"/v1/jobs/{_quote(job_id)}/cancel"),
                call="POST /v1/jobs/{id}/cancel",
                headers={"Service-CRN": crn},
                idempotent=True,
            )
        except IBMError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def backend_status(self, crn: str, backend: str) -> m.BackendStatus:
        """``GET /v1/backends/{name}/status`` through the instance."""
        path = f"/v1/backends/{_quote(backend)}/status"
        return self._quantum_get(m.BackendStatus, crn, path, "GET /v1/backends/{name}/status")

    # ----- what an admission controller reads (issue 12) -----------------------------------------------

    def backends(self, crn: str, *, with_wait: bool = True) -> list[m.BackendDevice]:
        """``GET /v1/backends[?fields=wait_time_seconds]``: every backend the instance can use, with IBM's
        status, queue length (all customers) and, with `with_wait`, the wait estimate."""
        params = {"fields": "wait_time_seconds"} if with_wait else None
        return list(self._quantum_get(m.BackendList, crn, "/v1/backends", "GET /v1/backends", params).devices)

    def pending_jobs(
        self, crn: str, backend: str | None = None, *, page_size: int = 100
    ) -> list[m.RuntimeJob]:
        """The instance's Queued and Running jobs (on `backend`, if given), all pages:
        ``GET /v1/jobs?pending=true[&backend=B]&exclude_params=true``."""
        params: dict[str, Any] = {"pending": "true", "exclude_params": "true"}
        if backend is not None:
            params["backend"] = backend
        return self._job_pages(crn, params, page_size)

    def job_queue_metrics(self, crn: str, job_id: str) -> m.JobQueueMetrics:
        """``GET /v1/jobs/{id}/metrics``: the estimated start and the position of a queued job."""
        path = f"/v1/jobs/{_quote(job_id)}/metrics"
        return self._quantum_get(m.JobQueueMetrics, crn, path, "GET /v1/jobs/{id}/metrics")

    def _quantum_get(
        self, model: type[T], crn: str, path: str, call: str, params: Mapping[str, str] | None = None
    ) -> T:
        """An idempotent GET of the quantum API through the `Service-CRN` instance, parsed as `model`."""
        url = self._quantum(crn, path)
        headers = {"Service-CRN": crn}
        resp = self._send("GET", url, call=call, params=params, headers=headers, idempotent=True)
        return self._parse(model, resp, call)

    def _job_pages(self, crn: str, params: dict[str, Any], page_size: int) -> list[m.RuntimeJob]:
        """Every job ``GET /v1/jobs`` lists with `params` (``limit``/``offset`` paging, by rows received)."""
        if page_size < 1:
            raise InvalidRequestError(f"page_size must be >= 1, got {page_size}")
        call = "GET /v1/jobs"
        out: list[m.RuntimeJob] = []
        seen: set[str] = set()
        offset = 0  # advances by rows received: a job submitted while paging shifts pages, not our offset
        for _ in range(MAX_PAGES):
            resp = self._send(
                "GET",
                self._quantum(crn, "/v1/jobs"),
                call=call,
                params={**params, "limit": page_size, "offset": offset},
                headers={"Service-CRN": crn},
                idempotent=True,
            )
            page = self._parse(m.JobList, resp, call)
            new = [j for j in page.jobs if j.id not in seen]
            if page.jobs and not new:
                raise IBMResponseError(
                    call, resp.status_code, "pagination does not advance (same jobs again)"
                )
            seen.update(j.id for j in new)
            out.extend(new)
            offset += len(page.jobs)
            done = not page.jobs or len(page.jobs) < page_size
            if page.count is not None:
                done = len(out) >= page.count or not page.jobs
            if done:
                break
        else:
            raise IBMResponseError(call, 200, f"more than {MAX_PAGES} pages")
        return out


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _body(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return one_line(resp.text, 200) if resp.text else None


_HEADER_VALUE = re.compile(r"[\x21-\x7e]+")


def _header_value(value: str, what: str) -> str:
    """A value sent in an HTTP header: printable ASCII without blanks, else refused before sending."""
    if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
        raise InvalidRequestError(f"{what} must be printable ASCII without spaces, got {value!r}")
    return value
