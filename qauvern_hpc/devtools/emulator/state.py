"""`EmulatorState`: everything the emulator knows, behind one lock; the facade the server and tests call.

The work is done by parts that share one `Store` (the model and its indexes) and hold no lock of their own:
`iam` (API keys and tokens), `instances` (the Resource Controller: allocations and limits), `usage` (usage
accounting and the analytics windows), `backends`, `sessions`, `jobs`, and `scheduler` (queues, fair share,
job ends and session time-outs).

Invariants: every public method takes the one lock, then brings the state up to the clock's "now"
(`_sync`: the scheduler replays the events that fell due since the last call, in time order; the emulated
time never goes backwards), then calls exactly one part. There is no background thread, so a manual clock
gives fully deterministic runs and a real clock behaves like wall time. See `usage` for what is charged and
`scheduler` for who runs when.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from qauvern_hpc.devtools.emulator import status as backend_status
from qauvern_hpc.devtools.emulator import views
from qauvern_hpc.devtools.emulator.backends import Backends
from qauvern_hpc.devtools.emulator.clock import Clock
from qauvern_hpc.devtools.emulator.iam import Iam, Principal, bearer, check_token_form
from qauvern_hpc.devtools.emulator.instances import ResourceController
from qauvern_hpc.devtools.emulator.jobs import Jobs
from qauvern_hpc.devtools.emulator.model import Backend, StateModel, maintenance_is_paused
from qauvern_hpc.devtools.emulator.scheduler import Scheduler
from qauvern_hpc.devtools.emulator.seed import SeedError, SeedSource, normalize, read_seed
from qauvern_hpc.devtools.emulator.sessions import Sessions
from qauvern_hpc.devtools.emulator.store import Store
from qauvern_hpc.devtools.emulator.usage import Usage
from qauvern_hpc.devtools.emulator.versions import LEGACY, UsageShape, usage_shape


class EmulatorState:
    """See the module docstring. All public methods are thread-safe."""

    def __init__(self, model: StateModel, clock: Clock) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._synced = clock.now()
        self._store = Store(model)
        self._iam = Iam(self._store)
        self._rc = ResourceController(self._store)
        self._usage = Usage(self._store)
        self._sched = Scheduler(self._store, self._usage)
        self._backends = Backends(self._store, self._sched.others)
        self._sessions = Sessions(self._store, self._usage, self._sched)
        self._jobs = Jobs(self._store, self._usage, self._sched, self._sessions)
        self._sched.others.prime(self._synced)

    @classmethod
    def from_seed(cls, seed: SeedSource, clock: Clock) -> EmulatorState:
        return cls(normalize(read_seed(seed), now=clock.now()), clock)

    @property
    def clock(self) -> Clock:
        return self._clock

    def _sync(self) -> datetime:
        now = self._clock.now()
        if now < self._synced:
            now = self._synced
        self._sched.run_until(now)
        self._synced = now
        return now

    @contextmanager
    def _at_now(self) -> Iterator[datetime]:
        """Hold the lock, with the state brought up to now (yielded)."""
        with self._lock:
            yield self._sync()

    # ------------------------------------------------------------------ control surface

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-able data (API keys only as fingerprints), plus a computed `summary`."""
        with self._at_now() as now:
            data = self._store.m.model_dump(mode="json")
            for key in data["api_keys"]:
                key["key"] = None
            data["clock"] = self._clock.describe()
            data["summary"] = self._usage.summary(now)
            return data

    def replace(self, seed: SeedSource) -> None:
        """Replace the state with `seed`. Without an `api_keys` section the current keys are kept."""
        raw = read_seed(seed)
        with self._at_now() as now:
            current_keys = self._store.m.api_keys
            model = normalize(raw, now=now, existing_keys=list(current_keys))
            if "api_keys" not in raw:
                model.api_keys = [k.model_copy() for k in current_keys]
            self._store.load(model)
            self._sched.others.prime(now)
            for backend in model.backends:
                self._sched.dispatch(backend, now)

    def patch(self, partial: Mapping[str, Any]) -> None:
        """Merge `partial` into the state: list items are matched by id/name/crn/key and updated field by
        field (new ones are added), `usage_events` are appended, scalar settings are replaced."""
        raw = read_seed(partial)
        with self._at_now():
            current = self._store.m.model_dump(mode="json")
            keys = {"accounts": "id", "backends": "name", "instances": "crn", "api_keys": "key"}
            keys |= {"sessions": "id", "jobs": "id"}
            for section, value in raw.items():
                if section in ("clock", "now", "summary"):
                    continue
                if (section in keys or section == "usage_events") and not isinstance(value or [], list):
                    raise SeedError(f"{section}: must be a list")
                if section == "backends":  # a status without a message gets the status's own message back
                    value = [_status_resets_message(i) for i in value or []]
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
            return self._iam.expire_tokens()

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and replay what fell due. Returns the new now."""
        with self._lock:
            self._clock.advance(seconds)
            return self._sync()

    def now(self) -> datetime:
        with self._at_now() as now:
            return now

    # Convenience views for tests and tools -------------------------------------------------------

    def instance(self, ident: str) -> dict[str, Any]:
        """An instance (by CRN or name) as RC shows it, plus `usage_consumed_seconds` (over its period)."""
        with self._at_now() as now:
            inst = self._store.find_instance(ident)
            out = views.rc_resource(inst, self._store.m.resource_units_per_second)
            out["usage_consumed_seconds"] = self._usage.counted(inst.crn, now)
            return out

    def instances(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.instance(i.crn) for i in self._store.m.instances]

    def session(self, session_id: str) -> dict[str, Any]:
        with self._at_now() as now:
            s = self._store.sessions.get(session_id)
            if s is None:
                raise KeyError(f"no session {session_id!r}")
            return self._sessions.view(s, now)

    def sessions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.session(s.id) for s in self._store.m.sessions]

    def job(self, job_id: str) -> dict[str, Any]:
        with self._at_now() as now:
            j = self._store.jobs.get(job_id)
            if j is None:
                raise KeyError(f"no job {job_id!r}")
            return views.job_view(j, exclude_params=False, now=now)

    def jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.job(j.id) for j in self._store.m.jobs]

    def usage_seconds(self, ident: str, start: datetime, end: datetime) -> float:
        """Usage of an instance in [start, end)."""
        with self._at_now():
            return self._usage.between(self._store.find_instance(ident).crn, start, end)

    def rolling_usage_seconds(self, ident: str) -> float:
        with self._at_now() as now:
            return self._usage.rolling(self._store.find_instance(ident).crn, now)

    def add_usage(self, ident: str, seconds: float, at: datetime | None = None) -> None:
        """Record usage directly (as if a workload had run), at `at` (default now)."""
        with self._at_now() as now:
            inst = self._store.find_instance(ident)
            self._usage.record(inst.crn, at or now, seconds, "manual", None)

    def account_plan(self, account: str, plan: str) -> dict[str, Any]:
        """`plans[0]` of `GET /v1/accounts/{account}?plan_id=` (plan by name or id)."""
        with self._at_now():
            acct = self._store.accounts[account]
            quota = next(p for p in acct.plans if plan in (p.plan, p.plan_id))
            return self._usage.plan_view(acct, quota)

    def set_backend_status(
        self, name: str, status: str, message: str | None = None, for_seconds: float | None = None
    ) -> dict[str, Any]:
        """Set a backend's status (and message; None: the status's default) now; with `for_seconds` it
        reverts afterwards. An old "maintenance" status means paused, message maintenance. Returns
        `backend_control_view`. KeyError for an unknown backend, ValueError for a bad change."""
        body: dict[str, Any] = {"status": status, "message": message, "for_seconds": for_seconds}
        with self._at_now() as now:
            b = self._control_backend(name)
            change = backend_status.change(maintenance_is_paused(body), now, "status")
            backend_status.apply_change(b, change, now)
            return self._settle(b, now)

    def wait_spike(self, name: str, **spike: Any) -> dict[str, Any]:
        """Other customers' burst on a backend: `extra_jobs=N` and/or `rate_factor=X`, `for_seconds=S`,
        optional `after_seconds`. Returns `backend_control_view`."""
        with self._at_now() as now:
            b = self._control_backend(name)
            b.wait_spikes.append(backend_status.wait_spike(spike, now, "wait_spike"))
            return self._settle(b, now)

    def flap(self, name: str, **flap: Any) -> dict[str, Any]:
        """Make a backend flap (paused/online every `period_seconds` for `for_seconds`, optional
        `after_seconds`), then return to its current status. Returns `backend_control_view`."""
        with self._at_now() as now:
            b = self._control_backend(name)
            b.schedule += backend_status.flap((b.status, b.message), flap, now, "flap")
            return self._settle(b, now)

    def backend_control_view(self, name: str) -> dict[str, Any]:
        """A backend as the control surface shows it: IBM's status reply plus the wait estimate, the
        pending schedule and wait spikes, and the other customers' queued jobs."""
        with self._at_now() as now:
            return self._backend_view(self._control_backend(name), now)

    def _control_backend(self, name: str) -> Backend:
        b = self._store.backends.get(name)
        if b is None:
            raise KeyError(f"no backend {name!r}")
        return b

    def _settle(self, b: Backend, now: datetime) -> dict[str, Any]:
        self._sched.dispatch(b, now)
        self._sched.run_until(now)
        return self._backend_view(b, now)

    def _backend_view(self, b: Backend, now: datetime) -> dict[str, Any]:
        out = views.backend_status(b, self._store.queue_length(b))
        dump = b.model_dump(mode="json", include={"schedule", "wait_spikes", "external"})
        return {
            "name": b.name,
            **out,
            "wait_time_seconds": self._sched.others.wait_time(b, now),
            "external_queued": len(self._sched.others.queued(b)),
            **dump,
        }

    # ------------------------------------------------------------------ IAM

    def issue_token(self, form: Mapping[str, str]) -> dict[str, Any]:
        apikey = check_token_form(form)
        with self._at_now() as now:
            return self._iam.issue_token(apikey, now)

    def authenticate(self, authorization: str | None) -> Principal:
        token = bearer(authorization)
        with self._at_now() as now:
            return self._iam.authenticate(token, now)

    # ------------------------------------------------------------------ Resource Controller

    def rc_list(self, p: Principal, query: Mapping[str, str]) -> dict[str, Any]:
        with self._at_now():
            return self._rc.list(p, query)

    def rc_get(self, p: Principal, ident: str) -> dict[str, Any]:
        with self._at_now():
            return self._rc.get(p, ident)

    def rc_patch(self, p: Principal, ident: str, body: Any) -> dict[str, Any]:
        with self._at_now() as now:
            return self._rc.patch(p, ident, body, now)

    def rc_create(self, p: Principal, body: Any) -> dict[str, Any]:
        with self._at_now() as now:
            return self._rc.create(p, body, now)

    # ------------------------------------------------------------------ Quantum platform API: usage

    # ------------------------------------------------------------------ API versions and units

    def usage_shape(self, api_version: str | None) -> UsageShape:
        """How a reply to a request with this IBM-API-Version shapes usage (400 for an unknown version)."""
        with self._lock:
            m = self._store.m
            return usage_shape(
                api_version,
                time_fields_removed=m.time_fields_removed,
                ru_per_second=m.resource_units_per_second,
            )

    def remove_time_fields(self, removed: bool = True) -> None:
        """IBM's announced next step: versions that carry RUs no longer carry the time fields."""
        with self._lock:
            self._store.m.time_fields_removed = bool(removed)

    @property
    def time_fields_removed(self) -> bool:
        with self._lock:
            return self._store.m.time_fields_removed

    def instance_usage(self, p: Principal, crn: str | None, shape: UsageShape = LEGACY) -> dict[str, Any]:
        with self._at_now() as now:
            return self._usage.instance_usage(p, crn, now, shape)

    def instance_info(self, p: Principal, crn: str | None) -> dict[str, Any]:
        """`GET /v1/instance` (the older per-instance call)."""
        with self._at_now():
            return self._usage.instance_info(p, crn)

    def analytics_usage(
        self, p: Principal, account_id: str | None, query: Mapping[str, str]
    ) -> dict[str, Any]:
        with self._at_now() as now:
            return self._usage.analytics_usage(p, account_id, query, now)

    def analytics_grouped_by_date(
        self, p: Principal, account_id: str | None, query: Mapping[str, str]
    ) -> dict[str, Any]:
        with self._at_now() as now:
            return self._usage.analytics_grouped_by_date(p, account_id, query, now)

    def account(self, p: Principal, account_id: str, plan_id: str | None) -> dict[str, Any]:
        with self._at_now():
            return self._usage.account(p, account_id, plan_id)

    # ------------------------------------------------------------------ compute API: backends

    def backends(self, p: Principal, crn: str | None, fields: str = "") -> dict[str, Any]:
        with self._at_now() as now:
            return self._backends.devices(p, crn, fields, now)

    def backend_status(self, p: Principal, crn: str | None, name: str) -> dict[str, Any]:
        with self._at_now():
            return self._backends.status(p, crn, name)

    def backend_configuration(self, p: Principal, crn: str | None, name: str) -> dict[str, Any]:
        with self._at_now():
            return self._backends.configuration(p, crn, name)

    def backend_properties(self, p: Principal, crn: str | None, name: str) -> dict[str, Any]:
        with self._at_now() as now:
            return self._backends.properties(p, crn, name, now)

    # ------------------------------------------------------------------ compute API: sessions

    def create_session(self, p: Principal, crn: str | None, body: Any) -> dict[str, Any]:
        with self._at_now() as now:
            return self._sessions.create(p, crn, body, now)

    def get_session(self, p: Principal, crn: str | None, session_id: str) -> dict[str, Any]:
        with self._at_now() as now:
            return self._sessions.view(self._sessions.find(p, crn, session_id), now)

    def update_session(self, p: Principal, crn: str | None, session_id: str, body: Any) -> None:
        with self._at_now() as now:
            self._sessions.update(p, crn, session_id, body, now)

    def close_session(self, p: Principal, crn: str | None, session_id: str) -> None:
        with self._at_now() as now:
            self._sessions.close(p, crn, session_id, now)

    # ------------------------------------------------------------------ compute API: jobs

    def create_job(self, p: Principal, crn: str | None, body: Any) -> dict[str, Any]:
        with self._at_now() as now:
            return self._jobs.create(p, crn, body, now)

    def get_job(
        self, p: Principal, crn: str | None, job_id: str, exclude_params: bool, shape: UsageShape = LEGACY
    ) -> dict[str, Any]:
        with self._at_now() as now:
            job = self._jobs.find(p, crn, job_id)
            return views.job_view(job, exclude_params=exclude_params, now=now, shape=shape)

    def list_jobs(
        self, p: Principal, crn: str | None, query: Mapping[str, str], shape: UsageShape = LEGACY
    ) -> dict[str, Any]:
        with self._at_now() as now:
            return self._jobs.list(p, crn, query, now, shape)

    def cancel_job(self, p: Principal, crn: str | None, job_id: str) -> None:
        with self._at_now() as now:
            self._jobs.cancel(p, crn, job_id, now)

    def delete_job(self, p: Principal, crn: str | None, job_id: str) -> None:
        with self._at_now():
            self._jobs.delete(p, crn, job_id)

    def job_metrics(
        self, p: Principal, crn: str | None, job_id: str, shape: UsageShape = LEGACY
    ) -> dict[str, Any]:
        with self._at_now() as now:
            return self._jobs.metrics(p, crn, job_id, now, shape)

    def job_results(self, p: Principal, crn: str | None, job_id: str) -> dict[str, Any]:
        with self._at_now():
            return self._jobs.results(p, crn, job_id)

    def job_logs(self, p: Principal, crn: str | None, job_id: str) -> str:
        with self._at_now():
            return self._jobs.logs(p, crn, job_id)


def _status_resets_message(item: Any) -> Any:
    if isinstance(item, dict) and "status" in item:
        return {"message": None, **item}
    return item


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
