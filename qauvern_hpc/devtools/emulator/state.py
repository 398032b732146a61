"""`EmulatorState`: everything the emulator knows, behind one lock, and the rules that change it.

Time is lazy: every public method first brings the state up to the clock's "now" by replaying the events
that fell due since the last call (job ends, session TTLs) in time order. There is no background thread, so a
manual clock gives fully deterministic runs and a real clock behaves like wall time.

Usage accounting (IBM "Workload usage"):

- job mode and batch sessions: a job's QPU time, recorded when the job ends (cancelled or failed jobs are
  charged for the time they held the QPU; never-started ones for nothing);
- dedicated sessions: the wall clock while the session holds the QPU, from its first job start until it goes
  inactive (idle for `interactive_ttl`) or closes, recorded when that period ends; the jobs inside are not
  charged separately.

Seeded daily history counts at 00:00 UTC of its day. The 28-day rolling usage at `t` is Σ usage in
(t − 28 days, t]; analytics intervals are half-open [start, end).

Scheduling: one job at a time per backend. A dedicated session that is running holds the backend: only its
jobs start until it goes inactive or closes. Otherwise the queued job of the instance with the lowest
(28-day usage / allocation) starts first, FIFO among equals (IBM's fair share).
"""

from __future__ import annotations

import base64
import math
import secrets
import threading
import time as time_module
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from qauvern_hpc.devtools.emulator import views
from qauvern_hpc.devtools.emulator.clock import Clock, iso, parse_iso
from qauvern_hpc.devtools.emulator.errors import ApiError, bad_request, conflict, forbidden, not_found
from qauvern_hpc.devtools.emulator.model import (
    FINAL_JOB_STATUSES,
    PENDING_JOB_STATUSES,
    PLAN_IDS,
    QUANTUM_RESOURCE_ID,
    REGIONS,
    Account,
    Backend,
    Instance,
    Job,
    JobStatus,
    PlanQuota,
    Session,
    SessionPeriod,
    SessionState,
    SessionTransition,
    StateModel,
    UsageEvent,
)
from qauvern_hpc.devtools.emulator.seed import SeedError, SeedSource, make_crn, normalize, read_seed
from qauvern_hpc.devtools.emulator.workload import estimate_work

ROLLING_WINDOW = timedelta(days=28)
APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
_ID_ALPHABET = "abcdefghijklmnopqrstuv0123456789"


def _new_id(prefix: str = "") -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(20 - len(prefix)))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, UTC)


def _int_param(value: Any, field: str, *, allow_null: bool, style: str = "rc") -> int | None:
    """An integer as qauvern sends it: a JSON number or a decimal string. None only if allowed."""
    if value is None:
        if allow_null:
            return None
        raise bad_request(f"{field} is required", "RC-ParameterInvalid", "rc")
    if isinstance(value, bool):
        raise bad_request(
            f"{field} must be an integer number of seconds, not {value!r}", "RC-ParameterInvalid", "rc"
        )
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            raise bad_request(
                f"{field} must be a non-negative integer number of seconds, not {value!r}",
                "RC-ParameterInvalid",
                "rc",
            )
        value = int(text)
    if not isinstance(value, int):
        raise bad_request(
            f"{field} must be an integer number of seconds, not {value!r}", "RC-ParameterInvalid", "rc"
        )
    if value < 0:
        raise bad_request(f"{field} cannot be negative ({value})", "RC-ParameterInvalid", "rc")
    return value


@dataclass
class _Token:
    account: str
    key_fingerprint: str
    expires_at: datetime
    revoked: bool = False


@dataclass(frozen=True)
class Principal:
    """Who a bearer token belongs to."""

    account: str
    key_fingerprint: str


class EmulatorState:
    """See the module docstring. All public methods are thread-safe."""

    def __init__(self, model: StateModel, clock: Clock) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._tokens: dict[str, _Token] = {}
        self._m = model
        self._synced = clock.now()
        self._reindex()

    @classmethod
    def from_seed(cls, seed: SeedSource, clock: Clock) -> EmulatorState:
        return cls(normalize(read_seed(seed), now=clock.now()), clock)

    @property
    def clock(self) -> Clock:
        return self._clock

    # ------------------------------------------------------------------ indexes

    def _reindex(self) -> None:
        self._accounts = {a.id: a for a in self._m.accounts}
        self._instances = {i.crn: i for i in self._m.instances}
        self._by_guid = {i.guid: i for i in self._m.instances}
        self._backends = {b.name: b for b in self._m.backends}
        self._sessions = {s.id: s for s in self._m.sessions}
        self._jobs = {j.id: j for j in self._m.jobs}
        self._by_session: dict[str, list[Job]] = {}
        for j in self._m.jobs:
            if j.session_id is not None:
                self._by_session.setdefault(j.session_id, []).append(j)
        self._keys = {k.key: k for k in self._m.api_keys if k.key}
        self._events: dict[str, list[UsageEvent]] = {}
        for ev in self._m.usage_events:
            self._events.setdefault(ev.instance, []).append(ev)
        self._seq = max((j.seq for j in self._m.jobs), default=0)
        for b in self._m.backends:
            if b.running_job is not None and b.running_job not in self._jobs:
                b.running_job = None
            if b.locked_by_session is not None and b.locked_by_session not in self._sessions:
                b.locked_by_session = None

    # ------------------------------------------------------------------ control surface

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-able data (API keys only as fingerprints), plus a computed `summary`."""
        with self._lock:
            now = self._sync()
            data = self._m.model_dump(mode="json")
            for key in data["api_keys"]:
                key["key"] = None
            data["clock"] = self._clock.describe()
            data["summary"] = self._summary(now)
            return data

    def _summary(self, now: datetime) -> dict[str, Any]:
        plans = []
        for acct in self._m.accounts:
            for plan in acct.plans:
                allocated = self._allocated(acct.id, plan.plan_id)
                plans.append(
                    {
                        "account": acct.id,
                        "plan": plan.plan,
                        "plan_id": plan.plan_id,
                        "usage_allocation_seconds": plan.usage_allocation_seconds,
                        "allocated_seconds": allocated,
                        "unallocated_usage_seconds": plan.usage_allocation_seconds - allocated,
                    }
                )
        instances = [
            {
                "crn": i.crn,
                "name": i.name,
                "usage_allocation_seconds": i.usage_allocation_seconds,
                "instance_limit_seconds": i.instance_limit_seconds,
                "usage_consumed_seconds": round(self._rolling(i.crn, now), 3),
            }
            for i in self._m.instances
        ]
        return {"now": iso(now), "plans": plans, "instances": instances}

    def replace(self, seed: SeedSource) -> None:
        """Replace the state with `seed`. Without an `api_keys` section the current keys are kept."""
        raw = read_seed(seed)
        with self._lock:
            now = self._sync()
            keep_keys = "api_keys" not in raw
            model = normalize(raw, now=now, existing_keys=list(self._m.api_keys))
            if keep_keys:
                model.api_keys = [k.model_copy() for k in self._m.api_keys]
            self._m = model
            self._reindex()
            for backend in self._m.backends:
                self._dispatch(backend, now)

    def patch(self, partial: Mapping[str, Any]) -> None:
        """Merge `partial` into the state: list items are matched by id/name/crn/key and updated field by
        field (new ones are added), `usage_events` are appended, scalar settings are replaced."""
        raw = read_seed(partial)
        with self._lock:
            self._sync()
            current = self._m.model_dump(mode="json")
            keys = {"accounts": "id", "backends": "name", "instances": "crn", "api_keys": "key"}
            keys |= {"sessions": "id", "jobs": "id"}
            for section, value in raw.items():
                if section in ("clock", "now", "summary"):
                    continue
                if (section in keys or section == "usage_events") and not isinstance(value or [], list):
                    raise SeedError(f"{section}: must be a list")
                if section == "usage_events":
                    current.setdefault(section, []).extend(value or [])
                elif section in keys:
                    current[section] = _merge_items(
                        current.get(section, []), value or [], keys[section], section
                    )
                else:
                    current[section] = value
            self.replace(current)

    def expire_tokens(self) -> int:
        """Make every issued token invalid (clients get 401 and must ask IAM again). Returns how many."""
        with self._lock:
            live = [t for t in self._tokens.values() if not t.revoked]
            for tok in live:
                tok.revoked = True
            return len(live)

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and replay what fell due. Returns the new now."""
        with self._lock:
            self._clock.advance(seconds)
            return self._sync()

    def now(self) -> datetime:
        with self._lock:
            return self._sync()

    # Convenience views for tests and tools -------------------------------------------------------

    def instance(self, ident: str) -> dict[str, Any]:
        """An instance (by CRN or name) as RC shows it, plus `usage_consumed_seconds` (28-day rolling)."""
        with self._lock:
            now = self._sync()
            inst = self._find_instance(ident)
            out = views.rc_resource(inst)
            out["usage_consumed_seconds"] = self._rolling(inst.crn, now)
            return out

    def instances(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.instance(i.crn) for i in self._m.instances]

    def session(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            now = self._sync()
            s = self._sessions.get(session_id)
            if s is None:
                raise KeyError(f"no session {session_id!r}")
            return views.session_view(s, now=now, elapsed=self._session_usage(s, now))

    def sessions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.session(s.id) for s in self._m.sessions]

    def job(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            now = self._sync()
            j = self._jobs.get(job_id)
            if j is None:
                raise KeyError(f"no job {job_id!r}")
            return views.job_view(j, exclude_params=False, now=now)

    def jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.job(j.id) for j in self._m.jobs]

    def usage_seconds(self, ident: str, start: datetime, end: datetime) -> float:
        """Usage of an instance in [start, end)."""
        with self._lock:
            self._sync()
            return self._usage(self._find_instance(ident).crn, start, end)

    def rolling_usage_seconds(self, ident: str) -> float:
        with self._lock:
            now = self._sync()
            return self._rolling(self._find_instance(ident).crn, now)

    def add_usage(self, ident: str, seconds: float, at: datetime | None = None) -> None:
        """Record usage directly (as if a workload had run), at `at` (default now)."""
        with self._lock:
            now = self._sync()
            inst = self._find_instance(ident)
            self._record(inst.crn, at or now, seconds, "manual", None)

    def account_plan(self, account: str, plan: str) -> dict[str, Any]:
        """`plans[0]` of `GET /v1/accounts/{account}?plan_id=` (plan by name or id)."""
        with self._lock:
            self._sync()
            acct = self._accounts[account]
            quota = next(p for p in acct.plans if plan in (p.plan, p.plan_id))
            return self._plan_view(acct, quota)

    def set_backend_status(self, name: str, status: str) -> None:
        self.patch({"backends": [{"name": name, "status": status}]})

    def _find_instance(self, ident: str) -> Instance:
        inst = self._instances.get(ident) or self._by_guid.get(ident)
        if inst is None:
            named = [i for i in self._m.instances if i.name == ident]
            if len(named) != 1:
                raise KeyError(f"no (unique) instance {ident!r}")
            inst = named[0]
        return inst

    # ------------------------------------------------------------------ IAM

    def issue_token(self, form: Mapping[str, str]) -> dict[str, Any]:
        grant = form.get("grant_type", "")
        if grant != APIKEY_GRANT:
            raise ApiError(
                400, "BXNIM0103E", f"Property 'grant_type' is missing or unsupported: {grant!r}.", style="iam"
            )
        apikey = form.get("apikey", "")
        if not apikey:
            raise ApiError(
                400, "BXNIM0109E", "Property missing or empty. Property name(s): apikey", style="iam"
            )
        with self._lock:
            now = self._sync()
            key = self._keys.get(apikey)
            if key is None:
                raise ApiError(400, "BXNIM0415E", "Provided API key could not be found.", style="iam")
            ttl = self._m.token_ttl_seconds
            token = secrets.token_urlsafe(32)
            self._tokens[token] = _Token(key.account, key.fingerprint or "", now + timedelta(seconds=ttl))
            if len(self._tokens) > 10000:  # forget the oldest
                for old in list(self._tokens)[:1000]:
                    del self._tokens[old]
            return {
                "access_token": token,
                "refresh_token": "not_supported",
                "ims_user_id": 1,
                "token_type": "Bearer",
                "expires_in": ttl,
                # Clients compare `expiration` with their own wall clock to refresh ahead of time, so it is
                # wall-clock based; the emulator itself expires the token on its emulated clock.
                "expiration": int(time_module.time()) + ttl,
                "scope": "ibm openid",
            }

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise ApiError(
                401, "unauthorized", "Missing Authorization header (expected 'Bearer <IAM token>')"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "Authorization header must be 'Bearer <IAM token>'")
        with self._lock:
            now = self._sync()
            tok = self._tokens.get(token.strip())
            if tok is None:
                raise ApiError(401, "unauthorized", "The IAM token is not valid")
            if tok.revoked or now >= tok.expires_at:
                raise ApiError(401, "unauthorized", "The IAM token has expired")
            if tok.account not in self._accounts:
                raise ApiError(401, "unauthorized", "The IAM token's account no longer exists")
            return Principal(tok.account, tok.key_fingerprint)

    # ------------------------------------------------------------------ Resource Controller

    def _rc_instance(self, p: Principal, ident: str) -> Instance:
        inst = self._instances.get(ident) or self._by_guid.get(ident)
        if inst is None or inst.account != p.account:
            raise not_found(f"Instance with ID {ident} was not found", "RC-ResourceNotFound", "rc")
        return inst

    def rc_list(self, p: Principal, query: Mapping[str, str]) -> dict[str, Any]:
        with self._lock:
            self._sync()
            items = [i for i in self._m.instances if i.account == p.account]
            rid = query.get("resource_id")
            if rid is not None and rid != QUANTUM_RESOURCE_ID:
                items = []
            if "resource_plan_id" in query:
                items = [i for i in items if i.plan_id == query["resource_plan_id"]]
            if "name" in query:
                items = [i for i in items if i.name == query["name"]]
            if "resource_group_id" in query:
                items = [i for i in items if i.resource_group_id == query["resource_group_id"]]
            if "guid" in query:
                items = [i for i in items if i.guid == query["guid"]]
            limit = self._m.page_size
            if "limit" in query:
                lim = _int_param(query["limit"], "limit", allow_null=False)
                assert lim is not None
                if not 1 <= lim <= 100:
                    raise bad_request("limit must be between 1 and 100", "RC-QueryInvalid", "rc")
                limit = lim
            offset = _decode_start(query["start"]) if query.get("start") else 0
            page = items[offset : offset + limit]
            next_url = None
            if offset + limit < len(items):
                params = {k: v for k, v in query.items() if k != "start"}
                params["start"] = _encode_start(offset + limit)
                next_url = "/v2/resource_instances?" + urlencode(params)
            return {
                "rows_count": len(page),
                "next_url": next_url,
                "resources": [views.rc_resource(i) for i in page],
            }

    def rc_get(self, p: Principal, ident: str) -> dict[str, Any]:
        with self._lock:
            self._sync()
            return views.rc_resource(self._rc_instance(p, ident))

    def _check_budget(self, inst_account: str, plan_id: str, new_alloc: int, exclude: str | None) -> None:
        acct = self._accounts[inst_account]
        quota = next((q for q in acct.plans if q.plan_id == plan_id), None)
        if quota is None:
            raise bad_request(f"account {inst_account} has no plan {plan_id}", "RC-PlanNotFound", "rc")
        others = sum(
            i.usage_allocation_seconds
            for i in self._m.instances
            if i.account == inst_account and i.plan_id == plan_id and i.crn != exclude
        )
        if others + new_alloc > quota.usage_allocation_seconds:
            available = quota.usage_allocation_seconds - others
            raise bad_request(
                f"usage_allocation_seconds {new_alloc} exceeds the allocation available to this instance: "
                f"{available} s (plan budget {quota.usage_allocation_seconds} s, {others} s allocated to "
                "other instances)",
                "RC-AllocationExceedsBudget",
                "rc",
            )

    def rc_patch(self, p: Principal, ident: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object", "RC-BodyInvalid", "rc")
        with self._lock:
            now = self._sync()
            inst = self._rc_instance(p, ident)
            if "name" in body and (not isinstance(body["name"], str) or not body["name"].strip()):
                raise bad_request("name must be a non-empty string", "RC-ParameterInvalid", "rc")
            params = body.get("parameters")
            if params is not None:
                if not isinstance(params, dict):
                    raise bad_request("parameters must be a JSON object", "RC-ParameterInvalid", "rc")
                alloc = inst.usage_allocation_seconds
                if "usage_allocation_seconds" in params:
                    got = _int_param(
                        params["usage_allocation_seconds"], "usage_allocation_seconds", allow_null=False
                    )
                    assert got is not None
                    alloc = got
                limit = _int_param(
                    params.get("instance_limit_seconds"), "instance_limit_seconds", allow_null=True
                )
                self._check_budget(inst.account, inst.plan_id, alloc, exclude=inst.crn)
                inst.usage_allocation_seconds = alloc
                inst.instance_limit_seconds = limit
                inst.parameters = dict(params)
            if "name" in body:
                inst.name = str(body["name"]).strip()
            inst.updated_at = now
            return views.rc_resource(inst)

    def rc_create(self, p: Principal, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object", "RC-BodyInvalid", "rc")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad_request("name is required", "RC-ParameterInvalid", "rc")
        target = body.get("target")
        if target not in REGIONS:
            raise bad_request(
                f"target must be one of {', '.join(REGIONS)}, not {target!r}", "RC-TargetInvalid", "rc"
            )
        plan_id = body.get("resource_plan_id")
        if not isinstance(plan_id, str):
            raise bad_request("resource_plan_id is required", "RC-ParameterInvalid", "rc")
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise bad_request("parameters must be a JSON object", "RC-ParameterInvalid", "rc")
        tags = body.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise bad_request("tags must be a list of strings", "RC-ParameterInvalid", "rc")
        with self._lock:
            now = self._sync()
            acct = self._accounts[p.account]
            if plan_id not in {q.plan_id for q in acct.plans}:
                raise bad_request(f"the account has no plan {plan_id}", "RC-PlanNotFound", "rc")
            alloc = _int_param(
                params.get("usage_allocation_seconds", 0), "usage_allocation_seconds", allow_null=False
            )
            assert alloc is not None
            limit = _int_param(
                params.get("instance_limit_seconds"), "instance_limit_seconds", allow_null=True
            )
            self._check_budget(p.account, plan_id, alloc, exclude=None)
            guid = str(uuid.uuid4())
            inst = Instance(
                name=name.strip(),
                crn=make_crn(target, p.account, guid),
                guid=guid,
                account=p.account,
                region=target,
                plan_id=plan_id,
                usage_allocation_seconds=alloc,
                instance_limit_seconds=limit,
                resource_group_id=str(body.get("resource_group") or "default"),
                tags=list(tags),
                parameters=dict(params),
                created_at=now,
                updated_at=now,
            )
            self._m.instances.append(inst)
            self._instances[inst.crn] = inst
            self._by_guid[inst.guid] = inst
            return views.rc_resource(inst)

    # ------------------------------------------------------------------ Quantum platform API: usage

    def _service_instance(self, p: Principal, crn: str | None) -> Instance:
        if not crn:
            raise bad_request("The Service-CRN header is required for this call", "missing_service_crn")
        inst = self._instances.get(crn.strip())
        if inst is None:
            raise not_found(f"Instance {crn} was not found", "instance_not_found")
        if inst.account != p.account:
            raise forbidden(f"You are not authorized to use instance {crn}", "instance_forbidden")
        return inst

    def _check_account_header(self, p: Principal, account_id: str | None) -> None:
        if account_id is not None and account_id != p.account:
            raise forbidden(
                f"You are not authorized to read analytics of account {account_id}", "account_forbidden"
            )

    def instance_usage(self, p: Principal, crn: str | None) -> dict[str, Any]:
        with self._lock:
            now = self._sync()
            inst = self._service_instance(p, crn)
            consumed = self._rolling(inst.crn, now)
            limit = inst.instance_limit_seconds
            return {
                "instance_id": inst.crn,
                "plan_id": inst.plan_id,
                "usage_period": {"start_time": iso(now - ROLLING_WINDOW), "end_time": iso(now)},
                "usage_consumed_seconds": round(consumed),
                "usage_allocation_seconds": inst.usage_allocation_seconds,
                "usage_limit_seconds": limit,
                "usage_limit_reached": (consumed >= limit) if limit is not None else None,
            }

    def instance_info(self, p: Principal, crn: str | None) -> dict[str, Any]:
        """`GET /v1/instance` (the older per-instance call)."""
        with self._lock:
            self._sync()
            inst = self._service_instance(p, crn)
            return {
                "crn": inst.crn,
                "name": inst.name,
                "plan_id": inst.plan_id,
                "usage_allocation_seconds": inst.usage_allocation_seconds,
                "instance_limit_seconds": inst.instance_limit_seconds,
                "backends": self._allowed_backends(inst),
            }

    def _interval(self, query: Mapping[str, str], now: datetime) -> tuple[datetime, datetime]:
        try:
            start = (
                parse_iso(query["interval_start"]) if query.get("interval_start") else now - ROLLING_WINDOW
            )
            end = parse_iso(query["interval_end"]) if query.get("interval_end") else now
        except ValueError as exc:
            raise bad_request(
                f"interval_start/interval_end must be ISO 8601 timestamps: {exc}", "invalid_interval"
            ) from exc
        if end < start:
            raise bad_request("interval_end is before interval_start", "invalid_interval")
        return start, end

    def _analytics_instances(self, p: Principal, query: Mapping[str, str]) -> list[Instance]:
        items = [i for i in self._m.instances if i.account == p.account]
        if query.get("instance"):
            crns = {c.strip() for c in query["instance"].split(",")}
            unknown = crns - {i.crn for i in items}
            if unknown:
                raise not_found(f"Instance {sorted(unknown)[0]} was not found", "instance_not_found")
            items = [i for i in items if i.crn in crns]
        if query.get("plan"):
            plan = query["plan"].strip()
            plan_id = PLAN_IDS.get(plan.lower(), plan)
            items = [i for i in items if i.plan_id == plan_id]
        return items

    def analytics_usage(
        self, p: Principal, account_id: str | None, query: Mapping[str, str]
    ) -> dict[str, Any]:
        with self._lock:
            now = self._sync()
            self._check_account_header(p, account_id)
            start, end = self._interval(query, now)
            items = self._analytics_instances(p, query)
            seconds = sum(self._usage(i.crn, start, end) for i in items)
            return {"usage": round(seconds * 1000), "interval_start": iso(start), "interval_end": iso(end)}

    def analytics_grouped_by_date(
        self, p: Principal, account_id: str | None, query: Mapping[str, str]
    ) -> dict[str, Any]:
        with self._lock:
            now = self._sync()
            self._check_account_header(p, account_id)
            start, end = self._interval(query, now)
            group_by = query.get("group_by")
            if group_by not in (None, "", "instance"):
                raise bad_request(f"group_by={group_by!r} is not supported by the emulator (use instance)")
            items = self._analytics_instances(p, query)
            data: list[dict[str, Any]] = []
            for inst in items:
                per_day: dict[date, float] = {}
                for at, secs in self._usage_points(inst.crn):
                    if start <= at < end and secs > 0:
                        per_day[at.date()] = per_day.get(at.date(), 0.0) + secs
                for day in sorted(per_day):
                    data.append(
                        {
                            "key": inst.crn if group_by == "instance" else "all",
                            "interval_start": iso(max(start, _midnight(day))),
                            "interval_end": iso(min(end, _midnight(day + timedelta(days=1)))),
                            "usage": round(per_day[day] * 1000),
                            "jobs": 0,
                            "sessions": 0,
                        }
                    )
            data.sort(key=lambda d: (d["interval_start"], d["key"]))
            return {"data": data}

    def account(self, p: Principal, account_id: str, plan_id: str | None) -> dict[str, Any]:
        with self._lock:
            self._sync()
            if account_id != p.account:
                raise forbidden(f"You are not authorized to read account {account_id}", "account_forbidden")
            acct = self._accounts[account_id]
            plans = [q for q in acct.plans if plan_id is None or plan_id in (q.plan_id, q.plan)]
            return {"id": acct.id, "name": acct.name, "plans": [self._plan_view(acct, q) for q in plans]}

    def _allocated(self, account: str, plan_id: str) -> int:
        return sum(
            i.usage_allocation_seconds
            for i in self._m.instances
            if i.account == account and i.plan_id == plan_id
        )

    def _plan_view(self, acct: Account, q: PlanQuota) -> dict[str, Any]:
        return {
            "plan_id": q.plan_id,
            "usage_allocation_seconds": q.usage_allocation_seconds,
            "unallocated_usage_seconds": q.usage_allocation_seconds - self._allocated(acct.id, q.plan_id),
            "usage_limit_seconds": q.usage_limit_seconds,
            "backends": [b.name for b in self._m.backends],
            "max_ttl": q.max_ttl,
            "active_ttl": q.max_ttl,
            "interactive_ttl": self._m.interactive_ttl_seconds,
        }

    # ------------------------------------------------------------------ usage arithmetic

    def _usage_points(self, crn: str) -> Iterable[tuple[datetime, float]]:
        inst = self._instances[crn]
        for day, secs in inst.usage_history.items():
            yield _midnight(day), secs
        for ev in self._events.get(crn, []):
            yield ev.at, ev.seconds

    def _usage(self, crn: str, start: datetime, end: datetime) -> float:
        return sum(s for at, s in self._usage_points(crn) if start <= at < end)

    def _rolling(self, crn: str, at: datetime) -> float:
        start = at - ROLLING_WINDOW
        return sum(s for t, s in self._usage_points(crn) if start < t <= at)

    def _record(self, crn: str, at: datetime, seconds: float, source: str, ref: str | None) -> None:
        if seconds <= 0:
            return
        ev = UsageEvent.model_validate(
            {"instance": crn, "at": at, "seconds": seconds, "source": source, "ref": ref}
        )
        self._m.usage_events.append(ev)
        self._events.setdefault(crn, []).append(ev)

    def _ratio(self, crn: str, at: datetime) -> float:
        inst = self._instances[crn]
        used = self._rolling(crn, at)
        if inst.usage_allocation_seconds <= 0:
            return math.inf
        return used / inst.usage_allocation_seconds

    def _session_usage(self, s: Session, now: datetime) -> float:
        if s.mode == "dedicated":
            return sum(((p.end or now) - p.start).total_seconds() for p in s.periods)
        total = 0.0
        for j in self._session_jobs(s.id):
            if j.status == "Running" and j.started_at is not None:
                total += (now - j.started_at).total_seconds()
            else:
                total += j.used_seconds
        return total

    # ------------------------------------------------------------------ backends

    def _allowed_backends(self, inst: Instance) -> list[str]:
        names = [b.name for b in self._m.backends]
        return [n for n in names if inst.backends is None or n in inst.backends]

    def _queue_length(self, b: Backend) -> int:
        return b.queue_length + sum(1 for j in self._m.jobs if j.backend == b.name and j.status == "Queued")

    def _backend(self, p: Principal, crn: str | None, name: str) -> Backend:
        b = self._backends.get(name)
        if crn:
            inst = self._service_instance(p, crn)
            if b is not None and name not in self._allowed_backends(inst):
                b = None
        if b is None:
            raise not_found(f"Backend {name} was not found", "backend_not_found")
        return b

    def backends(self, p: Principal, crn: str | None) -> dict[str, Any]:
        with self._lock:
            self._sync()
            names = self._allowed_backends(self._service_instance(p, crn)) if crn else list(self._backends)
            return {
                "devices": [
                    views.backend_device(self._backends[n], self._queue_length(self._backends[n]))
                    for n in names
                ]
            }

    def backend_status(self, p: Principal, crn: str | None, name: str) -> dict[str, Any]:
        with self._lock:
            self._sync()
            b = self._backend(p, crn, name)
            return views.backend_status(b, self._queue_length(b))

    def backend_configuration(self, p: Principal, crn: str | None, name: str) -> dict[str, Any]:
        with self._lock:
            self._sync()
            return views.backend_configuration(self._backend(p, crn, name))

    def backend_properties(self, p: Principal, crn: str | None, name: str) -> dict[str, Any]:
        with self._lock:
            now = self._sync()
            return views.backend_properties(self._backend(p, crn, name), now)

    # ------------------------------------------------------------------ sessions

    def _session(self, p: Principal, crn: str | None, session_id: str) -> Session:
        inst = self._service_instance(p, crn)
        s = self._sessions.get(session_id)
        if s is None or s.instance != inst.crn:
            raise not_found(f"Session {session_id} was not found", "session_not_found")
        return s

    def _session_jobs(self, session_id: str) -> list[Job]:
        return self._by_session.get(session_id, [])

    def create_session(self, p: Principal, crn: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        with self._lock:
            now = self._sync()
            inst = self._service_instance(p, crn)
            name = body.get("backend") or body.get("backend_name")
            if not isinstance(name, str) or not name:
                raise bad_request("backend is required", "backend_required")
            b = self._backend(p, crn, name)
            mode = body.get("mode", "dedicated")
            if mode not in ("batch", "dedicated"):
                raise bad_request(f"mode must be batch or dedicated, not {mode!r}", "invalid_mode")
            quota = next(q for q in self._accounts[inst.account].plans if q.plan_id == inst.plan_id)
            max_ttl = body.get("max_ttl", quota.max_ttl)
            if isinstance(max_ttl, bool) or not isinstance(max_ttl, int) or max_ttl < 1:
                raise bad_request(f"max_ttl must be a positive integer, not {max_ttl!r}", "invalid_max_ttl")
            s = Session(
                id=_new_id(),
                instance=inst.crn,
                backend=b.name,
                mode=mode,
                max_ttl=min(max_ttl, quota.max_ttl),
                interactive_ttl=self._m.interactive_ttl_seconds,
                created_at=now,
                timestamps=[SessionTransition(status="open", timestamp=now)],
                user_id=p.key_fingerprint,
            )
            self._m.sessions.append(s)
            self._sessions[s.id] = s
            return views.session_view(s, now=now, elapsed=0.0)

    def get_session(self, p: Principal, crn: str | None, session_id: str) -> dict[str, Any]:
        with self._lock:
            now = self._sync()
            s = self._session(p, crn, session_id)
            return views.session_view(s, now=now, elapsed=self._session_usage(s, now))

    def update_session(self, p: Principal, crn: str | None, session_id: str, body: Any) -> None:
        """`PATCH /v1/sessions/{id}` `{"accepting_jobs": false}`: stop accepting jobs; the session closes once
        its queued and running jobs are done (qiskit-ibm-runtime's `Session.close()`)."""
        if not isinstance(body, dict) or not isinstance(body.get("accepting_jobs"), bool):
            raise bad_request('body must be {"accepting_jobs": true|false}', "invalid_body")
        with self._lock:
            now = self._sync()
            s = self._session(p, crn, session_id)
            if s.state == "closed":
                if body["accepting_jobs"]:
                    raise conflict(f"Session {session_id} is closed", "session_closed")
                return
            s.accepting_jobs = body["accepting_jobs"]
            if not s.accepting_jobs and not self._pending(s):
                self._mark_closed(s, now, "closed by the user")

    def close_session(self, p: Principal, crn: str | None, session_id: str) -> None:
        """`DELETE /v1/sessions/{id}/close`: stop accepting jobs and cancel the queued ones; a running job
        runs to completion, then the session closes (qiskit-ibm-runtime's `Session.cancel()`)."""
        with self._lock:
            now = self._sync()
            s = self._session(p, crn, session_id)
            if s.state != "closed":
                self._close(s, now, "cancelled by the user", cancel_queued=True)

    # ------------------------------------------------------------------ jobs

    def _job(self, p: Principal, crn: str | None, job_id: str) -> Job:
        inst = self._service_instance(p, crn)
        j = self._jobs.get(job_id)
        if j is None or j.instance != inst.crn:
            raise not_found(f"Job {job_id} was not found", "job_not_found")
        return j

    def create_job(self, p: Principal, crn: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        program_id = body.get("program_id")
        if not isinstance(program_id, str) or not program_id:
            raise bad_request("program_id is required", "program_id_required")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise bad_request("params must be a JSON object", "invalid_params")
        cost = body.get("cost")
        if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int) or cost < 1):
            raise bad_request(f"cost must be a positive integer, not {cost!r}", "invalid_cost")
        with self._lock:
            now = self._sync()
            inst = self._service_instance(p, crn)
            session: Session | None = None
            sid = body.get("session_id")
            if sid is not None:
                session = self._session(p, crn, str(sid))
                if session.state == "closed" or not session.accepting_jobs:
                    raise ApiError(400, "session_closed", f"Session {sid} is closed or not accepting jobs")
            name = body.get("backend") or (session.backend if session else None)
            if not isinstance(name, str) or not name:
                raise bad_request("backend is required", "backend_required")
            b = self._backend(p, crn, name)
            if session is not None and session.backend != b.name:
                raise bad_request(
                    f"Job backend {b.name} differs from the session's backend {session.backend}",
                    "backend_mismatch",
                )
            if inst.usage_allocation_seconds == 0:
                raise forbidden(f"Instance {inst.crn} has no allocation (archived)", "instance_archived")
            limit = inst.instance_limit_seconds
            if limit is not None and self._rolling(inst.crn, now) >= limit:
                raise forbidden(
                    f"Instance {inst.crn} has reached its usage limit of {limit} s", "usage_limit_reached"
                )
            work = estimate_work(program_id, params)
            self._seq += 1
            tags = body.get("tags") or []
            job = Job(
                id=_new_id(),
                seq=self._seq,
                instance=inst.crn,
                backend=b.name,
                program_id=program_id,
                session_id=session.id if session else None,
                params=params,
                created_at=now,
                quantum_seconds=work.quantum_seconds,
                fail_after_seconds=work.fail_after_seconds,
                reason=work.fail_reason,
                cost=cost,
                executions=work.executions,
                num_circuits=work.num_circuits,
                tags=[str(t) for t in tags] if isinstance(tags, list) else [],
                runtime=body.get("runtime") if isinstance(body.get("runtime"), str) else None,
                private=bool(body.get("private", False)),
                user_id=p.key_fingerprint,
            )
            self._m.jobs.append(job)
            self._jobs[job.id] = job
            if job.session_id is not None:
                self._by_session.setdefault(job.session_id, []).append(job)
            if session is not None:
                session.idle_since = None
            self._dispatch(b, now)
            return {"id": job.id, "backend": job.backend}

    def get_job(self, p: Principal, crn: str | None, job_id: str, exclude_params: bool) -> dict[str, Any]:
        with self._lock:
            now = self._sync()
            return views.job_view(self._job(p, crn, job_id), exclude_params=exclude_params, now=now)

    def list_jobs(self, p: Principal, crn: str | None, query: Mapping[str, str]) -> dict[str, Any]:
        with self._lock:
            now = self._sync()
            inst = self._service_instance(p, crn)
            jobs = [j for j in self._m.jobs if j.instance == inst.crn]
            if query.get("session_id"):
                jobs = [j for j in jobs if j.session_id == query["session_id"]]
            if query.get("backend"):
                jobs = [j for j in jobs if j.backend == query["backend"]]
            if query.get("program"):
                jobs = [j for j in jobs if j.program_id == query["program"]]
            pending = query.get("pending", "").lower()
            if pending in ("true", "1"):
                jobs = [j for j in jobs if j.status in PENDING_JOB_STATUSES]
            elif pending in ("false", "0"):
                jobs = [j for j in jobs if j.status in FINAL_JOB_STATUSES]
            try:
                if query.get("created_after"):
                    after = parse_iso(query["created_after"])
                    jobs = [j for j in jobs if j.created_at > after]
                if query.get("created_before"):
                    before = parse_iso(query["created_before"])
                    jobs = [j for j in jobs if j.created_at < before]
            except ValueError as exc:
                raise bad_request(f"created_after/created_before must be ISO 8601: {exc}") from exc
            limit = _query_int(query, "limit", 200, 1, 200)
            offset = _query_int(query, "offset", 0, 0, 10**9)
            jobs.sort(key=lambda j: j.seq, reverse=True)
            exclude = query.get("exclude_params", "").lower() in ("true", "1")
            page = jobs[offset : offset + limit]
            return {
                "jobs": [views.job_view(j, exclude_params=exclude, now=now) for j in page],
                "count": len(jobs),
                "offset": offset,
                "limit": limit,
            }

    def cancel_job(self, p: Principal, crn: str | None, job_id: str) -> None:
        with self._lock:
            now = self._sync()
            j = self._job(p, crn, job_id)
            if j.status in FINAL_JOB_STATUSES:
                raise conflict(f"Job {job_id} is already in a final state ({j.status})", "job_final")
            if j.status == "Running":
                self._finish_job(j, now, "Cancelled", "cancelled by the user")
            else:
                self._end_unstarted(j, now, "Cancelled", "cancelled by the user")

    def delete_job(self, p: Principal, crn: str | None, job_id: str) -> None:
        with self._lock:
            self._sync()
            j = self._job(p, crn, job_id)
            if j.status not in FINAL_JOB_STATUSES:
                raise conflict(f"Job {job_id} is {j.status}; cancel it before deleting it", "job_not_final")
            self._m.jobs.remove(j)
            del self._jobs[j.id]
            if j.session_id is not None:
                self._by_session[j.session_id].remove(j)

    def job_metrics(self, p: Principal, crn: str | None, job_id: str) -> dict[str, Any]:
        with self._lock:
            now = self._sync()
            j = self._job(p, crn, job_id)
            position = None
            if j.status == "Queued":
                order = self._queue_order(self._backends[j.backend], now)
                position = order.index(j.id) + 1 if j.id in order else None
            return views.job_metrics(j, now=now, position=position)

    def job_results(self, p: Principal, crn: str | None, job_id: str) -> dict[str, Any]:
        with self._lock:
            self._sync()
            j = self._job(p, crn, job_id)
            if j.status != "Completed":
                raise conflict(f"Job {job_id} has no results ({j.status})", "job_not_completed")
            return views.job_results(j)

    def job_logs(self, p: Principal, crn: str | None, job_id: str) -> str:
        with self._lock:
            self._sync()
            j = self._job(p, crn, job_id)
            lines = [f"{iso(j.created_at)} job {j.id} created"]
            if j.started_at:
                lines.append(f"{iso(j.started_at)} job started on {j.backend}")
            if j.finished_at:
                lines.append(f"{iso(j.finished_at)} job {j.status}" + (f": {j.reason}" if j.reason else ""))
            return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ the scheduler

    def _sync(self) -> datetime:
        now = self._clock.now()
        if now < self._synced:
            now = self._synced
        self._run_until(now)
        self._synced = now
        return now

    def _run_plan(self, j: Job) -> tuple[float, JobStatus, str | None]:
        """How long a started job holds the QPU and how it ends."""
        options: list[tuple[float, JobStatus, str | None]] = [(j.quantum_seconds, "Completed", None)]
        if j.fail_after_seconds is not None:
            options.append((j.fail_after_seconds, "Failed", j.reason or "the job failed (emulated failure)"))
        if j.cost is not None:
            options.append(
                (float(j.cost), "Cancelled - Ran too long", "the job exceeded its maximum execution time")
            )
        return min(options, key=lambda o: o[0])

    def _next_event(self) -> tuple[datetime, int, str, str] | None:
        best: tuple[datetime, int, str, str] | None = None

        def consider(ev: tuple[datetime, int, str, str]) -> None:
            nonlocal best
            if best is None or ev[:2] < best[:2]:
                best = ev

        for b in self._m.backends:
            if b.running_job is not None:
                j = self._jobs[b.running_job]
                assert j.started_at is not None
                consider((j.started_at + timedelta(seconds=self._run_plan(j)[0]), 0, "job_end", j.id))
        for s in self._m.sessions:
            if s.state == "closed":
                continue
            if s.state == "open" and not s.closing and not self._session_jobs(s.id):
                consider(
                    (
                        s.created_at + timedelta(seconds=self._m.open_session_timeout_seconds),
                        1,
                        "open_timeout",
                        s.id,
                    )
                )
            if s.started_at is not None and not s.ttl_expired:
                consider((s.started_at + timedelta(seconds=s.max_ttl), 2, "max_ttl", s.id))
            if s.state == "active" and s.idle_since is not None and not self._pending(s):
                consider((s.idle_since + timedelta(seconds=s.interactive_ttl), 3, "idle", s.id))
        return best

    def _run_until(self, now: datetime) -> None:
        for _ in range(1_000_000):
            ev = self._next_event()
            if ev is None or ev[0] > now:
                return
            at, _, kind, ident = ev
            if kind == "job_end":
                j = self._jobs[ident]
                _, status, reason = self._run_plan(j)
                self._finish_job(j, at, status, reason)
            elif kind == "open_timeout":
                s = self._sessions[ident]
                self._close(
                    s,
                    at,
                    f"no job was submitted within {self._m.open_session_timeout_seconds} s",
                    cancel_queued=True,
                )
            elif kind == "max_ttl":
                s = self._sessions[ident]
                s.ttl_expired = True
                self._close(s, at, "the session reached its max_ttl", cancel_queued=True)
            elif kind == "idle":
                self._deactivate(self._sessions[ident], at)
        raise RuntimeError("the emulator's scheduler did not settle")

    def _pending(self, s: Session) -> list[Job]:
        return [j for j in self._session_jobs(s.id) if j.status in PENDING_JOB_STATUSES]

    def _transition(self, s: Session, state: SessionState, at: datetime, reason: str | None = None) -> None:
        if s.state != state:
            s.state = state
            s.timestamps.append(SessionTransition(status=state, timestamp=at))
        if reason is not None:
            s.state_reason = reason

    def _queue_order(self, b: Backend, at: datetime) -> list[str]:
        queued = [j for j in self._m.jobs if j.backend == b.name and j.status == "Queued"]
        if b.locked_by_session is not None:
            own = sorted((j for j in queued if j.session_id == b.locked_by_session), key=lambda j: j.seq)
            rest = [j for j in queued if j.session_id != b.locked_by_session]
        else:
            own, rest = [], queued
        ratios = {crn: self._ratio(crn, at) for crn in {j.instance for j in rest}}
        rest.sort(key=lambda j: (ratios[j.instance], j.seq))
        return [j.id for j in own + rest]

    def _dispatch(self, b: Backend, at: datetime) -> None:
        while b.status == "online" and b.running_job is None:
            queued = [j for j in self._m.jobs if j.backend == b.name and j.status == "Queued"]
            if b.locked_by_session is not None:
                queued = [j for j in queued if j.session_id == b.locked_by_session]
                if not queued:
                    return
                job = min(queued, key=lambda j: j.seq)
            else:
                if not queued:
                    return
                ratios = {crn: self._ratio(crn, at) for crn in {j.instance for j in queued}}
                job = min(queued, key=lambda j: (ratios[j.instance], j.seq))
            inst = self._instances[job.instance]
            limit = inst.instance_limit_seconds
            if limit is not None and self._rolling(inst.crn, at) >= limit:
                self._end_unstarted(job, at, "Failed", f"the instance reached its usage limit of {limit} s")
                continue
            self._start_job(job, b, at)

    def _start_job(self, j: Job, b: Backend, at: datetime) -> None:
        j.status = "Running"
        j.started_at = at
        b.running_job = j.id
        s = self._sessions.get(j.session_id) if j.session_id else None
        if s is None:
            return
        if s.started_at is None:
            s.started_at = at
        s.last_job_started = at
        s.idle_since = None
        if s.state != "active":
            if s.activated_at is None:
                s.activated_at = at
            self._transition(s, "active", at)
        if s.mode == "dedicated" and b.locked_by_session is None:
            b.locked_by_session = s.id
            s.periods.append(SessionPeriod(start=at))

    def _finish_job(self, j: Job, at: datetime, status: JobStatus, reason: str | None) -> None:
        assert j.started_at is not None
        j.status = status
        j.reason = reason
        j.finished_at = at
        j.used_seconds = max(0.0, (at - j.started_at).total_seconds())
        b = self._backends[j.backend]
        if b.running_job == j.id:
            b.running_job = None
        s = self._sessions.get(j.session_id) if j.session_id else None
        if s is None or s.mode != "dedicated":
            self._record(j.instance, at, j.used_seconds, "job", j.id)
        if s is not None:
            s.last_job_completed = at
            self._after_session_job(s, at)
        self._dispatch(b, at)

    def _end_unstarted(self, j: Job, at: datetime, status: JobStatus, reason: str) -> None:
        j.status = status
        j.reason = reason
        j.finished_at = at
        j.used_seconds = 0.0
        s = self._sessions.get(j.session_id) if j.session_id else None
        if s is not None:
            self._after_session_job(s, at)

    def _after_session_job(self, s: Session, at: datetime) -> None:
        if self._pending(s):
            return
        if not s.accepting_jobs or s.closing:
            self._mark_closed(s, at, s.state_reason or "closed by the user")
        elif s.state == "active":
            s.idle_since = at

    def _close(self, s: Session, at: datetime, reason: str, *, cancel_queued: bool) -> None:
        s.accepting_jobs = False
        s.state_reason = reason
        if cancel_queued:
            for j in self._session_jobs(s.id):
                if j.status == "Queued":
                    j.status, j.reason, j.finished_at, j.used_seconds = "Cancelled", reason, at, 0.0
        if any(j.status == "Running" for j in self._session_jobs(s.id)):
            s.closing = True
            return
        self._mark_closed(s, at, reason)

    def _release_lock(self, s: Session, at: datetime) -> None:
        b = self._backends.get(s.backend)
        if b is None or b.locked_by_session != s.id:
            return
        b.locked_by_session = None
        if s.periods and s.periods[-1].end is None:
            period = s.periods[-1]
            period.end = at
            self._record(s.instance, at, (at - period.start).total_seconds(), "session", s.id)
        self._dispatch(b, at)

    def _mark_closed(self, s: Session, at: datetime, reason: str) -> None:
        s.accepting_jobs = False
        s.closing = False
        s.idle_since = None
        s.closed_at = at
        self._transition(s, "closed", at, reason)
        self._release_lock(s, at)

    def _deactivate(self, s: Session, at: datetime) -> None:
        s.idle_since = None
        self._transition(s, "inactive", at, "no job was submitted within the interactive TTL")
        self._release_lock(s, at)


def _encode_start(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_start(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "offset" or not value.isdigit():
            raise ValueError(raw)
        return int(value)
    except ValueError as exc:
        raise bad_request(f"start={token!r} is not a valid page token", "RC-QueryInvalid", "rc") from exc


def _query_int(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    if not query.get(name):
        return default
    text = query[name].strip()
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise bad_request(f"{name} must be an integer between {lo} and {hi}", f"invalid_{name}")
    return int(text)


def _merge_items(current: list[Any], patch: list[Any], key: str, section: str) -> list[Any]:
    out = [dict(c) for c in current]
    for i, item in enumerate(patch):
        if not isinstance(item, dict):
            raise SeedError(f"{section}[{i}]: must be a mapping")
        ident = item.get(key)
        match = None
        if ident is not None:
            match = next((c for c in out if c.get(key) == ident), None)
        elif section == "instances" and "name" in item:
            named = [c for c in out if c.get("name") == item["name"]]
            match = named[0] if len(named) == 1 else None
        elif section == "api_keys" and "fingerprint" in item:
            match = next((c for c in out if c.get("fingerprint") == item["fingerprint"]), None)
        if match is None:
            out.append(dict(item))
        else:
            match.update(item)
    return out
