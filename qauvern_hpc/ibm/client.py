"""`IBMClient`: qauvern-hpc's only way to talk to IBM Cloud IAM, the Resource Controller and IBM Quantum.

The endpoints' requests and replies live here; how one request is sent (IAM token, one re-authentication
on a 401, retries, error mapping, secrets kept out of messages) lives in `qauvern_hpc.ibm.base`.

Headers
  ``Authorization: Bearer …`` and ``IBM-API-Version: 2026-04-15`` (`API_VERSION`) on every RC and quantum
  call; ``Service-CRN: <crn>`` on instance-scoped calls; ``Account-Id: <account>`` on analytics calls. The
  IAM call carries neither (like qauvern's). Account and plan-wide analytics calls go to the us-east host,
  instance-scoped calls to the CRN's regional host (`Endpoints.quantum_for`).

Units
  IBM bills in resource units (RUs) from API version 2026-04-15 on and still sends the time fields beside
  them (docs/ibm-platform.md). Usage replies are read RU-first and keep working without the time fields
  (`models`: `unit`, `consumed`, `JobUsage.charged`). When IBM sent RUs only, `instance_usage` and
  `session_jobs` give seconds at the instance's own rate (`ru_rate`, from its RC entry; `units`), marked
  `seconds_from_ru`. Where seconds are read, analytics answer milliseconds; they become whole seconds by
  truncation, ``int(ms / 1000)``, as qauvern 0.14 does (so the numbers agree with qauvern's). `daily_usage`
  sums the milliseconds of same-date entries first and truncates each day once (qauvern overwrote same-date
  entries).

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
    has ``status`` (Queued | Running | Completed | Cancelled | Failed) and ``usage`` (``value`` in RUs and
    ``qpu_charge_time_seconds``; ``quantum_seconds`` before 2026-03-15); when the list leaves the usage out we
    read ``GET /v1/jobs/{id}/metrics`` (the same ``usage``), which is what qiskit-ibm-runtime's
    ``RuntimeJobV2.usage()`` reads.
"""

from __future__ import annotations

import functools
import re
import threading
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import Any, Literal

from qauvern_hpc.ibm import models as m
from qauvern_hpc.ibm.base import BaseClient, T
from qauvern_hpc.ibm.crn import parse_crn, valid_region
from qauvern_hpc.ibm.endpoints import Endpoints
from qauvern_hpc.ibm.errors import (
    IBMAuthError,
    IBMError,
    IBMNotFound,
    IBMResponseError,
    InvalidRequestError,
)
from qauvern_hpc.ibm.units import rate_of, valid_rate

API_VERSION = "2026-04-15"
"""Sent as ``IBM-API-Version`` on every Resource Controller and quantum API call: the newest version IBM lists
(``GET /v1/versions``), the first whose jobs, metrics and instance usage carry resource units."""

QUANTUM_RESOURCE_ID = "b6049020-80f4-11eb-a0f7-e35ec9b4054f"
"""The Resource Controller ``resource_id`` of IBM Quantum instances."""


MAX_PAGES = 1000
RATE_TTL = 3600.0
"""Seconds an instance's RU rate is kept before its Resource Controller entry is read again."""

SessionMode = Literal["batch", "dedicated"]


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


def _parameters(allocation_seconds: int, limit_seconds: int | None, why: str = "") -> dict[str, str | None]:
    """An instance's ``parameters`` as the RC takes them (strings); refuses allocation <= 0, limit < 0."""
    allocation = _whole_seconds(allocation_seconds, "allocation_seconds")
    if allocation <= 0:
        raise InvalidRequestError(f"allocation must be > 0 seconds{why}, got {allocation}")
    limit = None if limit_seconds is None else _whole_seconds(limit_seconds, "limit_seconds")
    if limit is not None and limit < 0:
        raise InvalidRequestError(f"limit must be >= 0 seconds or None (no limit), got {limit}")
    return {
        "usage_allocation_seconds": str(allocation),
        "instance_limit_seconds": None if limit is None else str(limit),
    }


def _whole_seconds(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{what} must be a whole number of seconds, got {value!r}")
    return value


class IBMClient(BaseClient):
    """Synchronous client for IAM, the Resource Controller and the IBM Quantum API. Thread-safe.

    ``IBMClient(api_key, endpoints, *, timeout=30.0, retry=RetryPolicy())``; `sleep` and `clock` (monotonic
    seconds) are injectable for tests, `transport` takes e.g. an ``httpx.MockTransport``. Use it as a
    context manager or call `close()`.
    """

    api_version = API_VERSION

    def __init__(self, api_key: str, endpoints: Endpoints, *, ru_per_second: float | None = None, **kw: Any):
        """`ru_per_second`: the rate for an instance whose Resource Controller entry shows no allocation or
        limit in both units (the config's ``ibm.resource_units_per_second``); see `ru_rate`."""
        super().__init__(api_key, endpoints, **kw)
        self.ru_per_second = valid_rate(ru_per_second)
        self._rates: dict[str, tuple[float, float | None]] = {}
        self._rates_lock = threading.Lock()

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

    def get_instance(self, crn: str) -> m.Instance:
        """``GET /v2/resource_instances/{url-encoded CRN}``: one instance with its extensions."""
        parse_crn(crn)
        call = "GET /v2/resource_instances/{crn}"
        url = f"{self.endpoints.resource_controller}/v2/resource_instances/{_quote(crn)}"
        return self._parse(m.Instance, self._send("GET", url, call=call, idempotent=True), call)

    def ru_rate(self, crn: str) -> float | None:
        """The instance's RUs per second (`units.rate_of` its RC entry), else the configured fallback; None
        when neither is known. Asked only when IBM sent RUs without seconds; kept `RATE_TTL` seconds. A key
        the RC refuses (or that cannot see the instance there) gets the fallback, else the refusal."""
        now = self._clock()
        with self._rates_lock:
            hit = self._rates.get(crn)
        if hit is not None and now - hit[0] < RATE_TTL:
            return hit[1]
        try:
            rate = rate_of(self.get_instance(crn)) or self.ru_per_second
        except (IBMAuthError, IBMNotFound):  # a per-instance key may not read the RC
            if self.ru_per_second is None:
                raise
            rate = self.ru_per_second
        with self._rates_lock:
            self._rates[crn] = (now, rate)
        return rate

    def update_instance(self, crn: str, *, allocation_seconds: int, limit_seconds: int | None) -> None:
        """Set an instance's allocation and limit (None = no limit).

        ``PATCH {rc}/v2/resource_instances/{url-encoded CRN}`` with ``{"parameters":
        {"usage_allocation_seconds": "N", "instance_limit_seconds": "M" | null}}``: the RC replaces
        ``parameters`` whole, so both are always sent, as strings. An allocation of 0 would archive the
        instance and is refused here, as are negative limits (`InvalidRequestError`, nothing sent). Retried
        like a GET: it sets absolute values.
        """
        parse_crn(crn)
        body = {"parameters": _parameters(allocation_seconds, limit_seconds, " (0 archives the instance)")}
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
        parameters = _parameters(allocation_seconds, limit_seconds)
        body: dict[str, Any] = {
            "name": name,
            "target": target,
            "resource_group": resource_group,
            "resource_plan_id": plan_id,
            "parameters": parameters,
        }
        if tags:
            body["tags"] = list(tags)
        call = "POST /v2/resource_instances"
        url = f"{self.endpoints.resource_controller}/v2/resource_instances"
        return self._parse(
            m.CreatedInstance, self._send("POST", url, call=call, json=body, idempotent=False), call
        )

    # ----- usage and accounts ------------------------------------------------------------------------------

    def api_versions(self) -> list[m.ApiVersion]:
        """``GET /v1/versions``: the API versions IBM serves, with their status and sunset dates."""
        call = "GET /v1/versions"
        resp = self._send("GET", f"{self.endpoints.quantum}/v1/versions", call=call, idempotent=True)
        return list(self._parse(m.ApiVersions, resp, call).versions)

    def instance_usage(self, crn: str) -> m.InstanceUsage:
        """``GET /v1/instances/usage`` (Service-CRN): usage over the instance's period, in RUs and (while IBM
        sends them) seconds, its allocation and limit, and whether the limit is reached."""
        call = "GET /v1/instances/usage"
        resp = self._send(
            "GET",
            self._quantum(crn, "/v1/instances/usage"),
            call=call,
            headers={"Service-CRN": crn},
            idempotent=True,
        )
        usage = self._parse(m.InstanceUsage, resp, call)
        if not usage.seconds_from_ru:
            return usage
        return usage.with_rate_source(functools.partial(self.ru_rate, crn))

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
        """Every job of a session with its status and usage (RUs and/or charged seconds; all pages).

        ``GET /v1/jobs?session_id=&limit=&offset=&exclude_params=true``; a job listed without usage (neither
        RUs nor seconds) gets it from ``GET /v1/jobs/{id}/metrics``.
        """
        return self._with_usage(
            crn, self._job_pages(crn, {"session_id": session_id, "exclude_params": "true"}, page_size)
        )

    def _with_usage(self, crn: str, listed: list[m.RuntimeJob]) -> list[m.RuntimeJob]:
        """Listed jobs with their usage: from the metrics when the listing has none, seconds from RUs."""
        jobs = [j if j.usage is not None and j.usage.unit else self._with_metrics(crn, j) for j in listed]
        return [self._seconds_of(crn, j) for j in jobs]

    def _seconds_of(self, crn: str, job: m.RuntimeJob) -> m.RuntimeJob:
        """`job` with its charged seconds converted from its RUs when IBM sent RUs only (`ru_rate`)."""
        u = job.usage
        if u is None or u.quantum_seconds is not None or u.resource_units is None:
            return job
        return job.model_copy(update={"usage": u.with_rate(self.ru_rate(crn))})

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

    def jobs_created_between(
        self, crn: str, backend: str, after: datetime, before: datetime, *, page_size: int = 100
    ) -> list[m.RuntimeJob]:
        """The instance's jobs on `backend` created between `after` and `before` (IBM's filters; whether
        IBM counts the bounds in is not documented, so callers widen them and filter on `created`), oldest
        first, all pages, each with its status and usage like `session_jobs`:
        ``GET /v1/jobs?backend=B&created_after=&created_before=&sort=ASC&exclude_params=true``."""
        params: dict[str, Any] = {
            "backend": backend,
            "created_after": _iso(after),
            "created_before": _iso(before),
            "sort": "ASC",  # jobs created while paging go to the end, not into the pages already read
            "exclude_params": "true",
        }
        return self._with_usage(crn, self._job_pages(crn, params, page_size))

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


_HEADER_VALUE = re.compile(r"[\x21-\x7e]+")


def _header_value(value: str, what: str) -> str:
    """A value sent in an HTTP header: printable ASCII without blanks, else refused before sending."""
    if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
        raise InvalidRequestError(f"{what} must be printable ASCII without spaces, got {value!r}")
    return value
