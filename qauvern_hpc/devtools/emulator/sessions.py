"""The compute API's sessions: open, read, stop accepting jobs, cancel.

Invariants: a session belongs to one instance and one backend, and is visible only through its instance's
`Service-CRN`; its `max_ttl` is capped by the plan's; an Open-plan instance gets no dedicated session
(IBM's 400, code 1352); it moves open -> active -> inactive/closed (the scheduler drives the time-based
changes) and never leaves `closed`. `PATCH accepting_jobs=false` closes it once its queued and running
jobs are done; `DELETE .../close` cancels the queued ones first. Not thread-safe: call under
`EmulatorState`'s lock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from qauvern_hpc.devtools.emulator import views
from qauvern_hpc.devtools.emulator.errors import bad_request, conflict
from qauvern_hpc.devtools.emulator.iam import Principal
from qauvern_hpc.devtools.emulator.model import Session, SessionTransition
from qauvern_hpc.devtools.emulator.scheduler import Scheduler
from qauvern_hpc.devtools.emulator.store import Store, new_id
from qauvern_hpc.devtools.emulator.usage import Usage
from qauvern_hpc.ibm.plans import PLAN_NAMES, allows

OPEN_PLAN_CODE = "1352"
OPEN_PLAN_REFUSAL = "You are not authorized to run a session when using the open plan."


class Sessions:
    """`/sessions[/{id}]` over a `Store`; state changes go through the `Scheduler`."""

    def __init__(self, store: Store, usage: Usage, scheduler: Scheduler) -> None:
        self._s = store
        self._usage = usage
        self._sched = scheduler

    def find(self, p: Principal, crn: str | None, session_id: str) -> Session:
        return self._s.owned(p.account, crn, self._s.sessions.get(session_id), "Session", session_id)

    def view(self, s: Session, now: datetime) -> dict[str, Any]:
        return views.session_view(s, now=now, elapsed=self._usage.session_usage(s, now))

    def create(self, p: Principal, crn: str | None, body: Any, now: datetime) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        inst = self._s.service_instance(p.account, crn)
        name = body.get("backend") or body.get("backend_name")
        if not isinstance(name, str) or not name:
            raise bad_request("backend is required", "backend_required")
        b = self._s.backend(p.account, crn, name)
        mode = body.get("mode", "dedicated")
        if mode not in ("batch", "dedicated"):
            raise bad_request(f"mode must be batch or dedicated, not {mode!r}", "invalid_mode")
        if not allows(PLAN_NAMES.get(inst.plan_id, ""), mode):
            # IBM's reply to a dedicated session on the Open plan, as public clients record it (400, code
            # 1352); batch sessions and job mode stay allowed there (docs/ibm-platform.md, "Open plan").
            raise bad_request(OPEN_PLAN_REFUSAL, OPEN_PLAN_CODE)
        quota = next(q for q in self._s.accounts[inst.account].plans if q.plan_id == inst.plan_id)
        max_ttl = body.get("max_ttl", quota.max_ttl)
        if isinstance(max_ttl, bool) or not isinstance(max_ttl, int) or max_ttl < 1:
            raise bad_request(f"max_ttl must be a positive integer, not {max_ttl!r}", "invalid_max_ttl")
        s = Session(
            id=new_id(),
            instance=inst.crn,
            backend=b.name,
            mode=mode,
            max_ttl=min(max_ttl, quota.max_ttl),
            interactive_ttl=self._s.m.interactive_ttl_seconds,
            created_at=now,
            timestamps=[SessionTransition(status="open", timestamp=now)],
            user_id=p.key_fingerprint,
        )
        self._s.add_session(s)
        return views.session_view(s, now=now, elapsed=0.0)

    def update(self, p: Principal, crn: str | None, session_id: str, body: Any, now: datetime) -> None:
        """`PATCH /v1/sessions/{id}` `{"accepting_jobs": false}`: stop accepting jobs; the session closes once
        its queued and running jobs are done (qiskit-ibm-runtime's `Session.close()`)."""
        if not isinstance(body, dict) or not isinstance(body.get("accepting_jobs"), bool):
            raise bad_request('body must be {"accepting_jobs": true|false}', "invalid_body")
        s = self.find(p, crn, session_id)
        if s.state == "closed":
            if body["accepting_jobs"]:
                raise conflict(f"Session {session_id} is closed", "session_closed")
            return
        s.accepting_jobs = body["accepting_jobs"]
        if not s.accepting_jobs and not self._s.pending(s):
            self._sched.mark_closed(s, now, "closed by the user")

    def close(self, p: Principal, crn: str | None, session_id: str, now: datetime) -> None:
        """`DELETE /v1/sessions/{id}/close`: stop accepting jobs and cancel the queued ones; a running job
        runs to completion, then the session closes (qiskit-ibm-runtime's `Session.cancel()`)."""
        s = self.find(p, crn, session_id)
        if s.state != "closed":
            self._sched.close(s, now, "cancelled by the user", cancel_queued=True)
