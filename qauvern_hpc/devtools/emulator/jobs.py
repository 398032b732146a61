"""The compute API's jobs: submit, list, read, cancel, delete, metrics, results and logs.

Invariants: a job belongs to one instance (visible only through its `Service-CRN`) and one backend, and to
the session it names, which must be open, accepting jobs and on the same backend; an instance without an
allocation (archived) or at its `instance_limit_seconds` cannot submit; a job's QPU time comes from
`workload.estimate_work` (or the `emulator` params); `seq` orders jobs. Listings take IBM's "List jobs"
filters (session_id, backend, program, pending, created_after / created_before, exclusive here) and `sort`
(`DESC`, newest first, by default; `ASC`). Only a final job may be deleted, only a completed one has
results. Starting and ending jobs is the scheduler's. Not thread-safe: call under `EmulatorState`'s lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from qauvern_hpc.devtools.emulator import views
from qauvern_hpc.devtools.emulator.clock import iso, parse_iso
from qauvern_hpc.devtools.emulator.errors import ApiError, bad_request, conflict, forbidden
from qauvern_hpc.devtools.emulator.iam import Principal
from qauvern_hpc.devtools.emulator.model import FINAL_JOB_STATUSES, PENDING_JOB_STATUSES, Job, Session
from qauvern_hpc.devtools.emulator.scheduler import Scheduler
from qauvern_hpc.devtools.emulator.sessions import Sessions
from qauvern_hpc.devtools.emulator.store import Store, new_id
from qauvern_hpc.devtools.emulator.usage import Usage
from qauvern_hpc.devtools.emulator.versions import LEGACY, UsageShape
from qauvern_hpc.devtools.emulator.workload import estimate_work


class Jobs:
    """`/jobs[/{id}[/...]]` over a `Store`; starting and ending jobs goes through the `Scheduler`."""

    def __init__(self, store: Store, usage: Usage, scheduler: Scheduler, sessions: Sessions) -> None:
        self._s = store
        self._usage = usage
        self._sched = scheduler
        self._sessions = sessions

    def find(self, p: Principal, crn: str | None, job_id: str) -> Job:
        return self._s.owned(p.account, crn, self._s.jobs.get(job_id), "Job", job_id)

    def create(self, p: Principal, crn: str | None, body: Any, now: datetime) -> dict[str, Any]:
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
        inst = self._s.service_instance(p.account, crn)
        session: Session | None = None
        sid = body.get("session_id")
        if sid is not None:
            session = self._sessions.find(p, crn, str(sid))
            if session.state == "closed" or not session.accepting_jobs:
                raise ApiError(400, "session_closed", f"Session {sid} is closed or not accepting jobs")
        name = body.get("backend") or (session.backend if session else None)
        if not isinstance(name, str) or not name:
            raise bad_request("backend is required", "backend_required")
        b = self._s.backend(p.account, crn, name)
        if session is not None and session.backend != b.name:
            raise bad_request(
                f"Job backend {b.name} differs from the session's backend {session.backend}",
                "backend_mismatch",
            )
        if inst.usage_allocation_seconds == 0:
            raise forbidden(f"Instance {inst.crn} has no allocation (archived)", "instance_archived")
        limit = inst.instance_limit_seconds
        if limit is not None and self._usage.counted(inst.crn, now) >= limit:
            raise forbidden(
                f"Instance {inst.crn} has reached its usage limit of {limit} s", "usage_limit_reached"
            )
        work = estimate_work(program_id, params)
        tags = body.get("tags") or []
        job = Job(
            id=new_id(),
            seq=self._s.next_seq(),
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
        self._s.add_job(job)
        if session is not None:
            session.idle_since = None
        self._sched.dispatch(b, now)
        return {"id": job.id, "backend": job.backend}

    def list(
        self,
        p: Principal,
        crn: str | None,
        query: Mapping[str, str],
        now: datetime,
        shape: UsageShape = LEGACY,
    ) -> dict[str, Any]:
        inst = self._s.service_instance(p.account, crn)
        jobs = [j for j in self._s.m.jobs if j.instance == inst.crn]
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
        order = (query.get("sort") or "DESC").upper()
        if order not in ("ASC", "DESC"):
            raise bad_request(f"sort must be ASC or DESC, not {query['sort']!r}", "invalid_sort")
        jobs.sort(key=lambda j: j.seq, reverse=order == "DESC")
        exclude = query.get("exclude_params", "").lower() in ("true", "1")
        page = jobs[offset : offset + limit]
        return {
            "jobs": [views.job_view(j, exclude_params=exclude, now=now, shape=shape) for j in page],
            "count": len(jobs),
            "offset": offset,
            "limit": limit,
        }

    def cancel(self, p: Principal, crn: str | None, job_id: str, now: datetime) -> None:
        j = self.find(p, crn, job_id)
        if j.status in FINAL_JOB_STATUSES:
            raise conflict(f"Job {job_id} is already in a final state ({j.status})", "job_final")
        if j.status == "Running":
            self._sched.finish_job(j, now, "Cancelled", "cancelled by the user")
        else:
            self._sched.end_unstarted(j, now, "Cancelled", "cancelled by the user")

    def delete(self, p: Principal, crn: str | None, job_id: str) -> None:
        j = self.find(p, crn, job_id)
        if j.status not in FINAL_JOB_STATUSES:
            raise conflict(f"Job {job_id} is {j.status}; cancel it before deleting it", "job_not_final")
        self._s.remove_job(j)

    def metrics(
        self, p: Principal, crn: str | None, job_id: str, now: datetime, shape: UsageShape = LEGACY
    ) -> dict[str, Any]:
        j = self.find(p, crn, job_id)
        position, start = self._sched.estimate(j, now) if j.status == "Queued" else (None, None)
        return views.job_metrics(j, now=now, position=position, estimated_start=start, shape=shape)

    def results(self, p: Principal, crn: str | None, job_id: str) -> dict[str, Any]:
        j = self.find(p, crn, job_id)
        if j.status != "Completed":
            raise conflict(f"Job {job_id} has no results ({j.status})", "job_not_completed")
        return views.job_results(j)

    def logs(self, p: Principal, crn: str | None, job_id: str) -> str:
        j = self.find(p, crn, job_id)
        lines = [f"{iso(j.created_at)} job {j.id} created"]
        if j.started_at:
            lines.append(f"{iso(j.started_at)} job started on {j.backend}")
        if j.finished_at:
            lines.append(f"{iso(j.finished_at)} job {j.status}" + (f": {j.reason}" if j.reason else ""))
        return "\n".join(lines) + "\n"


def _query_int(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    if not query.get(name):
        return default
    text = query[name].strip()
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise bad_request(f"{name} must be an integer between {lo} and {hi}", f"invalid_{name}")
    return int(text)
