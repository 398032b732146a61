"""The one way qauvern-hpc talks to IBM Cloud IAM, the Resource Controller and the IBM Quantum API.

- IAM: the API key is exchanged for a bearer token, cached, refreshed a minute before it expires and once
  more whenever a call gets 401 (then that call is retried once).
- Retries (`RetryPolicy`): 429 (honouring Retry-After), 502/503/504, timeouts and connection errors, with
  exponential backoff and jitter, bounded in tries and in total time. A request that may have reached IBM is
  retried only when it is idempotent: GET, DELETE and the instance PATCH (it sets absolute values). POSTs
  (create instance, create session) are retried only when nothing was sent (connect errors) or on 429.
- Analytics answer milliseconds; we return whole seconds truncated like qauvern (`int(ms / 1000)`).
- The API key never appears in logs, errors, reprs or URLs (it only travels in the IAM form body).

Paths follow IBM's public APIs (see ../shared/reference/ibm-quantum-api.md and the emulator's docstring):
sessions are created with `POST /v1/sessions`, closed with `DELETE /v1/sessions/{id}/close` (cancels queued
jobs, lets the running one finish), a session's jobs are listed with `GET /v1/jobs?session_id=` and a job's
usage is `usage.quantum_seconds` (from `GET /v1/jobs/{id}`, or `/v1/jobs/{id}/metrics` when missing).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from qauvern_hpc.ibm import models as m
from qauvern_hpc.ibm.endpoints import Endpoints, parse_crn
from qauvern_hpc.ibm.errors import (
    IBMAuthError,
    IBMError,
    IBMNotFound,
    IBMRateLimited,
    IBMResponseError,
    ibm_message,
)
from qauvern_hpc.ibm.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after

log = logging.getLogger("qauvern_hpc.ibm")

API_VERSION = "2026-02-15"
QUANTUM_RESOURCE_ID = "b6049020-80f4-11eb-a0f7-e35ec9b4054f"
APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
TOKEN_MARGIN = 60.0  # refresh this many seconds before IBM says the token expires
MAX_PAGES = 10_000

T = TypeVar("T", bound=BaseModel)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def ms_to_seconds(ms: float) -> int:
    """Analytics milliseconds -> whole seconds, truncated (as qauvern 0.14 does)."""
    return int(ms / 1000)


class IBMClient:
    def __init__(
        self,
        api_key: str,
        endpoints: Endpoints,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_key or not api_key.strip():
            raise IBMAuthError("POST /identity/token", None, "no API key given")
        self._api_key = api_key.strip()
        self.endpoints = endpoints
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.Client(
            timeout=timeout, transport=transport, headers={"IBM-API-Version": API_VERSION}
        )
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires = 0.0

    def __repr__(self) -> str:
        return f"IBMClient(endpoints={self.endpoints!r}, api_key=<redacted>)"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IBMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- transport -------------------------------------------------------------------------------------

    def _token_value(self, *, force: bool = False) -> str:
        with self._lock:
            if not force and self._token and time.time() < self._token_expires - TOKEN_MARGIN:
                return self._token
            reply = self._send(
                "POST",
                self.endpoints.token_url,
                call="POST /identity/token",
                data={"grant_type": APIKEY_GRANT, "apikey": self._api_key},
                idempotent=True,
                auth=False,
            )
            tok = self._parse(m.Token, reply, "POST /identity/token")
            now = time.time()
            if tok.expiration:
                expires = tok.expiration
            elif tok.expires_in:
                expires = now + tok.expires_in
            else:
                expires = now + 3600
            self._token, self._token_expires = tok.access_token, expires
            return tok.access_token

    def _send(
        self,
        method: str,
        url: str,
        *,
        call: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        auth: bool = True,
    ) -> httpx.Response:
        policy = self.retry
        started = time.monotonic()
        attempt = 0
        reauthed = False
        while True:
            attempt += 1
            hdrs = {"Accept": "application/json", **(headers or {})}
            if auth:
                hdrs["Authorization"] = f"Bearer {self._token_value()}"
            t0 = time.monotonic()
            retry_after: float | None = None
            try:
                resp = self._http.request(method, url, params=params, json=json, data=data, headers=hdrs)
            except httpx.ConnectError as exc:  # nothing reached IBM: always safe to retry
                failure: IBMError = IBMError(call, None, f"cannot connect: {type(exc).__name__}")
                retryable = True
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                failure = IBMError(call, None, f"{type(exc).__name__} (no complete reply)")
                retryable = idempotent
            else:
                elapsed_ms = (time.monotonic() - t0) * 1000
                log.debug("%s -> %s in %.0f ms", call, resp.status_code, elapsed_ms)
                if resp.status_code < 400:
                    return resp
                body = _body(resp)
                message = ibm_message(body)
                if resp.status_code == 401 and auth and not reauthed:
                    reauthed = True
                    self._token_value(force=True)
                    attempt -= 1  # a token refresh is not a retry
                    continue
                if resp.status_code in (401, 403) or (not auth and resp.status_code == 400):
                    raise IBMAuthError(call, resp.status_code, message or "not authorized")
                if resp.status_code == 404:
                    raise IBMNotFound(call, 404, message)
                if resp.status_code not in RETRY_STATUSES:
                    raise IBMError(call, resp.status_code, message)
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                cls = IBMRateLimited if resp.status_code == 429 else IBMError
                failure = cls(call, resp.status_code, message)
                retryable = idempotent or resp.status_code == 429
            if not retryable or attempt >= policy.max_attempts:
                raise failure
            delay = policy.delay(attempt, retry_after)
            if time.monotonic() - started + delay > policy.deadline:
                raise failure
            log.info(
                "%s failed (%s); retry %d in %.1fs",
                call,
                failure.ibm_message or failure.status,
                attempt,
                delay,
            )
            self._sleep(delay)

    @staticmethod
    def _parse(model: type[T], resp: httpx.Response, call: str) -> T:
        try:
            payload = resp.json()
        except ValueError:
            raise IBMResponseError(call, resp.status_code, "reply is not JSON") from None
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "reply"
            raise IBMResponseError(
                call, resp.status_code, f"unexpected reply: {where}: {first['msg']}"
            ) from None

    def _quantum(self, crn: str, path: str) -> str:
        return f"{self.endpoints.quantum_for(crn)}{path}"

    # ----- Resource Controller ---------------------------------------------------------------------------

    def list_instances(self, plan_id: str | None = None) -> list[m.Instance]:
        call = "GET /v2/resource_instances"
        params: dict[str, str] = {"resource_id": QUANTUM_RESOURCE_ID}
        if plan_id:
            params["resource_plan_id"] = plan_id
        out: list[m.Instance] = []
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page = self._parse(
                m.InstancePage,
                self._send(
                    "GET",
                    f"{self.endpoints.resource_controller}/v2/resource_instances",
                    call=call,
                    params=params,
                    idempotent=True,
                ),
                call,
            )
            out.extend(page.resources)
            if not page.next_url:
                return out
            start = urllib.parse.parse_qs(urllib.parse.urlsplit(page.next_url).query).get("start", [""])[0]
            if not start or start in seen:
                raise IBMResponseError(call, 200, f"pagination does not advance (next_url {page.next_url!r})")
            seen.add(start)
            params = {**params, "start": start}
        raise IBMResponseError(call, 200, f"more than {MAX_PAGES} pages")

    def update_instance(self, crn: str, *, allocation_seconds: int, limit_seconds: int | None) -> None:
        """Set allocation and limit together: RC replaces `parameters` whole, so both are always sent."""
        parse_crn(crn)
        if allocation_seconds <= 0:
            raise ValueError(
                f"allocation must be > 0 seconds (0 archives the instance), got {allocation_seconds}"
            )
        if limit_seconds is not None and limit_seconds < 0:
            raise ValueError(f"limit must be >= 0 seconds or None, got {limit_seconds}")
        body = {
            "parameters": {
                "usage_allocation_seconds": str(int(allocation_seconds)),
                "instance_limit_seconds": None if limit_seconds is None else str(int(limit_seconds)),
            }
        }
        url = f"{self.endpoints.resource_controller}/v2/resource_instances/{urllib.parse.quote(crn, safe='')}"
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
    ) -> m.Instance:
        if allocation_seconds <= 0:
            raise ValueError(f"allocation must be > 0 seconds, got {allocation_seconds}")
        body: dict[str, Any] = {
            "name": name,
            "target": target,
            "resource_group": resource_group,
            "resource_plan_id": plan_id,
            "parameters": {
                "usage_allocation_seconds": str(allocation_seconds),
                "instance_limit_seconds": None if limit_seconds is None else str(limit_seconds),
            },
        }
        if tags:
            body["tags"] = tags
        call = "POST /v2/resource_instances"
        resp = self._send(
            "POST",
            f"{self.endpoints.resource_controller}/v2/resource_instances",
            call=call,
            json=body,
            idempotent=False,
        )
        return self._parse(m.Instance, resp, call)

    # ----- usage -----------------------------------------------------------------------------------------

    def instance_usage(self, crn: str) -> m.InstanceUsage:
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
        account_id: str,
        start: datetime,
        end: datetime,
        instance: str | None = None,
        plan: str | None = None,
    ) -> int:
        if (instance is None) == (plan is None):
            raise ValueError("give exactly one of instance= or plan=")
        params = {"interval_start": _iso(start), "interval_end": _iso(end)}
        params.update({"instance": instance} if instance else {"plan": plan or ""})
        base = self.endpoints.quantum_for(instance) if instance else self.endpoints.quantum
        call = "GET /v1/analytics/usage"
        resp = self._send(
            "GET",
            f"{base}/v1/analytics/usage",
            call=call,
            params=params,
            headers={"Account-Id": account_id},
            idempotent=True,
        )
        return ms_to_seconds(self._parse(m.AnalyticsUsage, resp, call).usage_ms)

    def daily_usage(self, crn: str, *, account_id: str, start: date, end: date) -> dict[date, int]:
        """Per-day usage over [start, end) (UTC days); same-date buckets are summed."""
        params = {
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
            headers={"Account-Id": account_id},
            idempotent=True,
        )
        out: dict[date, int] = {}
        for bucket in self._parse(m.DailyUsage, resp, call).data:
            day = m.day_of(bucket)
            out[day] = out.get(day, 0) + ms_to_seconds(bucket.usage_ms)
        return out

    def account_plan(self, account_id: str, plan_id: str) -> m.AccountPlan:
        call = "GET /v1/accounts/{id}"
        resp = self._send(
            "GET",
            f"{self.endpoints.quantum}/v1/accounts/{urllib.parse.quote(account_id, safe='')}",
            call=call,
            params={"plan_id": plan_id},
            idempotent=True,
        )
        plans = self._parse(m.AccountPlans, resp, call).plans
        chosen = next((p for p in plans if p.plan_id == plan_id), plans[0])
        return m.AccountPlan(**chosen.model_dump(), account_id=account_id)

    # ----- sessions and jobs (job path and accounting) ---------------------------------------------------

    def create_session(
        self, crn: str, backend: str, *, mode: str = "batch", max_ttl: int = 28800
    ) -> m.Session:
        if mode not in ("batch", "dedicated"):
            raise ValueError(f"session mode must be batch or dedicated, not {mode!r}")
        call = "POST /v1/sessions"
        body = {"max_ttl": int(max_ttl), "mode": mode, "backend": backend, "backend_name": backend}
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
        call = "GET /v1/sessions/{id}"
        resp = self._send(
            "GET",
            self._quantum(crn, f"/v1/sessions/{urllib.parse.quote(session_id, safe='')}"),
            call=call,
            headers={"Service-CRN": crn},
            idempotent=True,
        )
        return self._parse(m.Session, resp, call)

    def close_session(self, crn: str, session_id: str) -> None:
        """Close now: queued jobs are cancelled, a running one finishes. 404 raises IBMNotFound."""
        sid = urllib.parse.quote(session_id, safe="")
        self._send(
            "DELETE",
            self._quantum(crn, f"/v1/sessions/{sid}/close"),
            call="DELETE /v1/sessions/{id}/close",
            headers={"Service-CRN": crn},
            idempotent=True,
        )

    def session_jobs(self, crn: str, session_id: str, *, page_size: int = 100) -> list[m.RuntimeJob]:
        call = "GET /v1/jobs"
        out: list[m.RuntimeJob] = []
        offset = 0
        for _ in range(MAX_PAGES):
            resp = self._send(
                "GET",
                self._quantum(crn, "/v1/jobs"),
                call=call,
                params={"session_id": session_id, "limit": page_size, "offset": offset},
                headers={"Service-CRN": crn},
                idempotent=True,
            )
            page = self._parse(m.JobList, resp, call)
            out.extend(page.jobs)
            offset += len(page.jobs)
            if (
                not page.jobs
                or (page.count is not None and offset >= page.count)
                or len(page.jobs) < page_size
            ):
                break
        return [j if j.quantum_seconds is not None else self._with_metrics(crn, j) for j in out]

    def _with_metrics(self, crn: str, job: m.RuntimeJob) -> m.RuntimeJob:
        call = "GET /v1/jobs/{id}/metrics"
        jid = urllib.parse.quote(job.id, safe="")
        resp = self._send(
            "GET",
            self._quantum(crn, f"/v1/jobs/{jid}/metrics"),
            call=call,
            headers={"Service-CRN": crn},
            idempotent=True,
        )
        usage = _body(resp).get("usage") if isinstance(_body(resp), dict) else None
        try:
            parsed = m.JobUsage.model_validate(usage or {})
        except ValidationError:
            raise IBMResponseError(call, resp.status_code, "unexpected usage in job metrics") from None
        return job.model_copy(update={"usage": parsed})

    def backend_status(self, crn: str, backend: str) -> m.BackendStatus:
        call = "GET /v1/backends/{name}/status"
        name = urllib.parse.quote(backend, safe="")
        resp = self._send(
            "GET",
            self._quantum(crn, f"/v1/backends/{name}/status"),
            call=call,
            headers={"Service-CRN": crn},
            idempotent=True,
        )
        return self._parse(m.BackendStatus, resp, call)


def _body(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text
