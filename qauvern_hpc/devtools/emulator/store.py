"""`Store`: the emulator's model plus the indexes every part of the emulator reads it through.

Invariants:

- every index (`accounts`, `instances`, `by_guid`, `backends`, `sessions`, `jobs`, `by_session`, `keys`,
  `events`) mirrors `m`: an object is added to or removed from the model only through the methods below, which
  keep both in step; `load` rebuilds them all;
- `seq` is the highest job sequence number handed out (job order for FIFO and listings);
- a backend's `running_job` / `running_external` / `locked_by_session` names an existing job / other
  customer's job / session (dangling ones are cleared on load);
- the store holds no lock and knows no time: `EmulatorState` calls it under its lock, after bringing the
  state up to "now".
"""

from __future__ import annotations

import secrets
from typing import TypeVar

from qauvern_hpc.devtools.emulator.errors import bad_request, forbidden, not_found
from qauvern_hpc.devtools.emulator.model import (
    PENDING_JOB_STATUSES,
    Account,
    ApiKey,
    Backend,
    Instance,
    Job,
    Session,
    StateModel,
    UsageEvent,
)

_Owned = TypeVar("_Owned", Job, Session)
_ID_ALPHABET = "abcdefghijklmnopqrstuv0123456789"


def new_id(prefix: str = "") -> str:
    """A random id in IBM's style (20 characters of [a-v0-9])."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(20 - len(prefix)))


class Store:
    """See the module docstring."""

    def __init__(self, model: StateModel) -> None:
        self.load(model)

    def load(self, model: StateModel) -> None:
        """Make `model` the state and rebuild every index."""
        self.m = model
        self.accounts: dict[str, Account] = {a.id: a for a in model.accounts}
        self.instances: dict[str, Instance] = {i.crn: i for i in model.instances}
        self.by_guid: dict[str, Instance] = {i.guid: i for i in model.instances}
        self.backends: dict[str, Backend] = {b.name: b for b in model.backends}
        self.sessions: dict[str, Session] = {s.id: s for s in model.sessions}
        self.jobs: dict[str, Job] = {j.id: j for j in model.jobs}
        self.by_session: dict[str, list[Job]] = {}
        for j in model.jobs:
            if j.session_id is not None:
                self.by_session.setdefault(j.session_id, []).append(j)
        self.keys: dict[str, ApiKey] = {k.key: k for k in model.api_keys if k.key}
        self.events: dict[str, list[UsageEvent]] = {}
        for ev in model.usage_events:
            self.events.setdefault(ev.instance, []).append(ev)
        self.seq = max((j.seq for j in model.jobs), default=0)
        external = {x.id for x in model.external_jobs}
        for b in model.backends:
            if b.running_job is not None and b.running_job not in self.jobs:
                b.running_job = None
            if b.running_external is not None and b.running_external not in external:
                b.running_external = None
            if b.locked_by_session is not None and b.locked_by_session not in self.sessions:
                b.locked_by_session = None

    # ------------------------------------------------------------------ adding and removing

    def add_instance(self, inst: Instance) -> None:
        self.m.instances.append(inst)
        self.instances[inst.crn] = inst
        self.by_guid[inst.guid] = inst

    def add_session(self, s: Session) -> None:
        self.m.sessions.append(s)
        self.sessions[s.id] = s

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def add_job(self, j: Job) -> None:
        self.m.jobs.append(j)
        self.jobs[j.id] = j
        if j.session_id is not None:
            self.by_session.setdefault(j.session_id, []).append(j)

    def remove_job(self, j: Job) -> None:
        self.m.jobs.remove(j)
        del self.jobs[j.id]
        if j.session_id is not None:
            self.by_session[j.session_id].remove(j)

    def add_event(self, ev: UsageEvent) -> None:
        self.m.usage_events.append(ev)
        self.events.setdefault(ev.instance, []).append(ev)

    # ------------------------------------------------------------------ lookups

    def find_instance(self, ident: str) -> Instance:
        """An instance by CRN, guid or (unique) name; KeyError otherwise (for tests and tools)."""
        inst = self.instances.get(ident) or self.by_guid.get(ident)
        if inst is None:
            named = [i for i in self.m.instances if i.name == ident]
            if len(named) != 1:
                raise KeyError(f"no (unique) instance {ident!r}")
            inst = named[0]
        return inst

    def service_instance(self, account: str, crn: str | None) -> Instance:
        """The instance a quantum API call names in its `Service-CRN` header, checked against the caller."""
        if not crn:
            raise bad_request("The Service-CRN header is required for this call", "missing_service_crn")
        inst = self.instances.get(crn.strip())
        if inst is None:
            raise not_found(f"Instance {crn} was not found", "instance_not_found")
        if inst.account != account:
            raise forbidden(f"You are not authorized to use instance {crn}", "instance_forbidden")
        return inst

    def owned(self, account: str, crn: str | None, found: _Owned | None, kind: str, ident: str) -> _Owned:
        """`found` (a job or session looked up by `ident`) if it belongs to the `Service-CRN` instance; 404
        as IBM answers otherwise (`kind` is "Job" or "Session")."""
        inst = self.service_instance(account, crn)
        if found is None or found.instance != inst.crn:
            raise not_found(f"{kind} {ident} was not found", f"{kind.lower()}_not_found")
        return found

    def allowed_backends(self, inst: Instance) -> list[str]:
        names = [b.name for b in self.m.backends]
        return [n for n in names if inst.backends is None or n in inst.backends]

    def backend(self, account: str, crn: str | None, name: str) -> Backend:
        """A backend by name, as seen by the caller (and by the `Service-CRN` instance, if given)."""
        b = self.backends.get(name)
        if crn:
            inst = self.service_instance(account, crn)
            if b is not None and name not in self.allowed_backends(inst):
                b = None
        if b is None:
            raise not_found(f"Backend {name} was not found", "backend_not_found")
        return b

    def queue_length(self, b: Backend) -> int:
        """IBM's `length_queue`: the display-only extra, our queued jobs and other customers' queued jobs."""
        ours = sum(1 for j in self.m.jobs if j.backend == b.name and j.status == "Queued")
        others = sum(1 for x in self.m.external_jobs if x.backend == b.name and x.started_at is None)
        return b.queue_length + ours + others

    def session_jobs(self, session_id: str) -> list[Job]:
        return self.by_session.get(session_id, [])

    def pending(self, s: Session) -> list[Job]:
        """The session's jobs that are queued or running."""
        return [j for j in self.session_jobs(s.id) if j.status in PENDING_JOB_STATUSES]
