"""The one IBM fake of the tests: the emulator, in process, with a real `IBMClient` pointed at it.

    with EmulatedIBM({CRN: (allocation, limit)}) as ibm:
        ibm.client                       # IBMClient (one try per call, no waiting)
        ibm.live()                       # {crn: {"allocation_seconds", "limit_seconds"}} as IBM has them
        ibm.set_live(CRN, 123, None)     # someone else changes an instance
        ibm.add_session("s-1", CRN, ("Completed", 2.5), ("Running", None), state="open")
        ibm.add_jobs(CRN, ("j-1", created, "Completed", 2.5))  # job mode: no session
        ibm.fail(path, status=503)       # an emulator fault rule (see docs/DESIGN.md "IBM side")
        ibm.writes(), ibm.session_reads()  # what was asked, from the emulator's request log

Every CRN must name the same account (`a/<account>`), which gets a plan (premium unless `plan=` says, with
`plan_extra` such as a Flex contract) whose budget fits any test, and `other_plans` as well; `instance_extra`
adds seed keys per CRN (`usage_history`, `created_at`, `plan` for an instance of one of the other plans).
The emulator's clock is manual (at `START`), so nothing runs or expires unless a test advances it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote

from qauvern_hpc.devtools.emulator import Emulator, FaultRule, start_emulator
from qauvern_hpc.ibm import Endpoints, IBMClient, RetryPolicy

API_KEY = "unit-test-api-key-0001"
START = "2026-11-22T12:00:00+00:00"
BACKEND = "ibm_torino"
ONE_TRY = RetryPolicy(max_attempts=1, base_delay=0.0, max_delay=0.0, deadline=60.0, jitter=False)
_RC = "/v2/resource_instances/"
_SESSION = re.compile(r"^/api/v1/sessions/([^/?]+)$")


def rc_path(crn: str) -> str:
    """The regular expression of an instance's Resource Controller path (for fault rules)."""
    return "^" + re.escape(_RC + quote(crn, safe="")) + "$"


def session_path(session_id: str) -> str:
    """The regular expression of `GET /api/v1/sessions/{id}` (for fault rules)."""
    return "^" + re.escape(f"/api/v1/sessions/{session_id}") + "$"


class EmulatedIBM:
    """See the module docstring."""

    def __init__(
        self,
        instances: Mapping[str, tuple[int, int | None]],
        *,
        budget: int = 10**9,
        plan: str = "premium",
        plan_extra: Mapping[str, Any] | None = None,
        instance_extra: Mapping[str, Mapping[str, Any]] | None = None,
        other_plans: tuple[str, ...] = (),
    ) -> None:
        accounts = {crn.split(":")[6].removeprefix("a/") for crn in instances}
        if len(accounts) != 1:
            raise ValueError(f"the CRNs must name one account, not {sorted(accounts)}")
        account = accounts.pop()
        seed = {
            "clock": {"start": START, "mode": "manual"},
            "accounts": [
                {
                    "id": account,
                    "plans": [
                        {"plan": plan, "usage_allocation_seconds": budget, **(plan_extra or {})},
                        *({"plan": p, "usage_allocation_seconds": budget} for p in other_plans),
                    ],
                }
            ],
            "api_keys": [{"key": API_KEY, "account": account}],
            "backends": [{"name": BACKEND}],
            "instances": [
                {
                    "name": f"instance-{n}",
                    "crn": crn,
                    "usage_allocation_seconds": alloc,
                    "instance_limit_seconds": limit,
                    **(instance_extra or {}).get(crn, {}),
                }
                for n, (crn, (alloc, limit)) in enumerate(instances.items())
            ],
        }
        self.emu: Emulator = start_emulator(seed)
        self.client = self.new_client()

    def new_client(self) -> IBMClient:
        """Another `IBMClient` on the emulator (for code that closes the client it is given)."""
        return IBMClient(
            API_KEY, Endpoints.single(self.emu.base_url), retry=ONE_TRY, sleep=lambda _: None, timeout=5.0
        )

    def close(self) -> None:
        self.client.close()
        self.emu.stop()

    def __enter__(self) -> EmulatedIBM:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ instances

    def live(self) -> dict[str, dict[str, int | None]]:
        """Every instance's allocation and limit, as IBM has them now."""
        return {
            i["id"]: {
                "allocation_seconds": i["extensions"]["usage_allocation_seconds"],
                "limit_seconds": i["extensions"]["instance_limit_seconds"],
            }
            for i in self.emu.state.instances()
        }

    def set_live(self, crn: str, allocation_seconds: int, limit_seconds: int | None) -> None:
        """Change an instance behind the client's back (another administrator, the IBM console)."""
        self.emu.state.patch(
            {
                "instances": [
                    {
                        "crn": crn,
                        "usage_allocation_seconds": allocation_seconds,
                        "instance_limit_seconds": limit_seconds,
                        "parameters": None,
                    }
                ]
            }
        )

    def writes(self) -> list[str]:
        """CRNs of the instance updates IBM accepted, in order."""
        return [
            unquote(r.path.removeprefix(_RC))
            for r in self.emu.requests
            if r.method == "PATCH" and r.path.startswith(_RC) and r.status == 200
        ]

    # ------------------------------------------------------------------ sessions

    def add_session(
        self, session_id: str, crn: str, *jobs: tuple[str, float | None], state: str = "closed"
    ) -> None:
        """A batch session with `jobs` as (status, quantum seconds; None for a job still running). Adding a
        session again replaces its state and jobs (the jobs are matched by position)."""
        now = self.emu.state.now()
        created = now - timedelta(hours=1)
        job_items = [
            self._job(session_id, n, crn, status, q, created, now) for n, (status, q) in enumerate(jobs)
        ]
        session = {
            "id": session_id,
            "instance": crn,
            "backend": BACKEND,
            "mode": "batch",
            "max_ttl": 28800,
            "interactive_ttl": 60,
            "created_at": created.isoformat(),
            "state": state,
            "accepting_jobs": state != "closed",
            "closed_at": now.isoformat() if state == "closed" else None,
        }
        self.emu.state.patch({"sessions": [session], "jobs": job_items})

    def _job(
        self, sid: str, n: int, crn: str, status: str, q: float | None, created: datetime, now: datetime
    ) -> dict[str, Any]:
        running = q is None
        return {
            "id": f"{sid}-job{n}",
            "seq": 1 + n + 1000 * sum(map(ord, sid)),
            "instance": crn,
            "backend": BACKEND,
            "program_id": "sampler",
            "session_id": sid,
            "created_at": created.isoformat(),
            "status": status,
            "started_at": now.isoformat() if running else (now - timedelta(seconds=q or 0.0)).isoformat(),
            "finished_at": None if running else now.isoformat(),
            "quantum_seconds": 3600.0 if running else q,
            "used_seconds": 0.0 if running else q,
        }

    def add_jobs(
        self, crn: str, *jobs: tuple[str, datetime, str, float | None], backend: str = BACKEND
    ) -> None:
        """Jobs outside any session (job mode), each (id, created, status, quantum seconds; None for a job
        still running). Adding a job again replaces it."""
        now = self.emu.state.now()
        items = []
        for job_id, created, status, q in jobs:
            item = self._job("", 0, crn, status, q, created, now)
            item.update({"id": job_id, "seq": 10**6 + int(created.timestamp()), "session_id": None})
            item["backend"] = backend
            items.append(item)
        self.emu.state.patch({"jobs": items})

    def job_listings(self) -> list[str]:
        """The query strings of the `GET /api/v1/jobs` requests, in order."""
        return [
            r.path.partition("?")[2]
            for r in self.emu.requests
            if r.method == "GET" and r.path.partition("?")[0] == "/api/v1/jobs"
        ]

    def session_reads(self) -> list[str]:
        """Ids of the sessions asked for with `GET /api/v1/sessions/{id}`, in order."""
        return [m.group(1) for r in self.emu.requests if r.method == "GET" and (m := _SESSION.match(r.path))]

    # ------------------------------------------------------------------ faults and time

    def fail(self, path: str, *, status: int, method: str | None = None, message: str = "") -> FaultRule:
        """Answer `status` to every request matching `path` (a regular expression) until `heal`."""
        body = {"errors": [{"code": "fault", "message": message}]} if message else None
        return self.emu.faults.add(path=path, method=method, status=status, body=body)

    def heal(self) -> None:
        """Remove every fault rule."""
        self.emu.faults.clear()
