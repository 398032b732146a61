"""Usage accounting (IBM "Workload usage") and the quantum platform API that reports it.

What is charged:

- job mode and batch sessions: a job's QPU time, recorded when the job ends (cancelled or failed jobs are
  charged for the time they held the QPU; never-started ones for nothing);
- dedicated sessions: the wall clock while the session holds the QPU, from its first job start until it goes
  inactive (idle for `interactive_ttl`) or closes, recorded when that period ends; the jobs inside are not
  charged separately.

Windows: seeded daily history counts at 00:00 UTC of its day. The 28-day rolling usage at `t` is Σ usage in
(t − 28 days, t]; analytics intervals are half-open [start, end). The usage that counts against an instance's
allocation, limit and fair share (`counted`) is over its plan's period (`period`): the rolling 28 days on
Premium, Open and internal; the subscription [contract_start, contract_end] on Flex (the plan's
`contract_start`, default the instance's creation); everything up to `t` on Pay-As-You-Go (since creation;
seeded history counts as after it). Usage events are only ever appended; an
event of zero seconds or less is not recorded. The plan's `unallocated_usage_seconds` is always budget − Σ
allocations of the account's instances on that plan.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from qauvern_hpc.devtools.emulator.clock import iso, parse_iso
from qauvern_hpc.devtools.emulator.errors import bad_request, forbidden, not_found
from qauvern_hpc.devtools.emulator.iam import Principal
from qauvern_hpc.devtools.emulator.model import Account, Instance, PlanQuota, Session, UsageEvent
from qauvern_hpc.devtools.emulator.store import Store
from qauvern_hpc.devtools.emulator.versions import LEGACY, UsageShape
from qauvern_hpc.ibm.plans import PLAN_IDS, PLAN_NAMES

ROLLING_WINDOW = timedelta(days=28)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, UTC)


class Usage:
    """The usage ledger over a `Store`. Not thread-safe: call under `EmulatorState`'s lock."""

    def __init__(self, store: Store) -> None:
        self._s = store

    # ------------------------------------------------------------------ arithmetic

    def points(self, crn: str) -> Iterable[tuple[datetime, float]]:
        inst = self._s.instances[crn]
        for day, secs in inst.usage_history.items():
            yield _midnight(day), secs
        for ev in self._s.events.get(crn, []):
            yield ev.at, ev.seconds

    def between(self, crn: str, start: datetime, end: datetime) -> float:
        """Usage of an instance in [start, end)."""
        return sum(s for at, s in self.points(crn) if start <= at < end)

    def rolling(self, crn: str, at: datetime) -> float:
        """Usage of an instance in (at − 28 days, at]."""
        start = at - ROLLING_WINDOW
        return sum(s for t, s in self.points(crn) if start < t <= at)

    def _quota(self, inst: Instance) -> PlanQuota | None:
        acct = self._s.accounts.get(inst.account)
        return next((q for q in acct.plans if q.plan_id == inst.plan_id), None) if acct else None

    def period(self, crn: str, at: datetime) -> tuple[datetime, datetime | None]:
        """The instance's usage period at `at` (IBM's `usage_period`): start, and end (None: open-ended)."""
        inst = self._s.instances[crn]
        plan = PLAN_NAMES.get(inst.plan_id)
        if plan == "flex":
            quota = self._quota(inst)
            start = (quota.contract_start if quota else None) or inst.created_at
            return start, quota.contract_end if quota else None
        if plan == "paygo":
            first = min((t for t, _ in self.points(crn)), default=inst.created_at)
            return min(inst.created_at, first), None
        return at - ROLLING_WINDOW, at

    def counted(self, crn: str, at: datetime) -> float:
        """Usage that counts against the instance's allocation and limit at `at`: over its plan's period."""
        plan = PLAN_NAMES.get(self._s.instances[crn].plan_id)
        if plan not in ("flex", "paygo"):
            return self.rolling(crn, at)
        start, end = self.period(crn, at)
        until = at if end is None else min(at, end)
        return sum(s for t, s in self.points(crn) if start <= t <= until)

    def record(self, crn: str, at: datetime, seconds: float, source: str, ref: str | None) -> None:
        if seconds <= 0:
            return
        self._s.add_event(
            UsageEvent.model_validate(
                {"instance": crn, "at": at, "seconds": seconds, "source": source, "ref": ref}
            )
        )

    def ratio(self, crn: str, at: datetime) -> float:
        """Usage over the plan's period / allocation: the fair-share key (infinite without an allocation)."""
        inst = self._s.instances[crn]
        used = self.counted(crn, at)
        if inst.usage_allocation_seconds <= 0:
            return math.inf
        return used / inst.usage_allocation_seconds

    def session_usage(self, s: Session, now: datetime) -> float:
        """A session's `elapsed_time`: locked wall clock (dedicated) or Σ job QPU time so far (batch)."""
        if s.mode == "dedicated":
            return sum(((p.end or now) - p.start).total_seconds() for p in s.periods)
        total = 0.0
        for j in self._s.session_jobs(s.id):
            if j.status == "Running" and j.started_at is not None:
                total += (now - j.started_at).total_seconds()
            else:
                total += j.used_seconds
        return total

    def allocated(self, account: str, plan_id: str) -> int:
        return sum(
            i.usage_allocation_seconds
            for i in self._s.m.instances
            if i.account == account and i.plan_id == plan_id
        )

    def plan_view(self, acct: Account, q: PlanQuota) -> dict[str, Any]:
        return {
            "plan_id": q.plan_id,
            "usage_allocation_seconds": q.usage_allocation_seconds,
            "unallocated_usage_seconds": q.usage_allocation_seconds - self.allocated(acct.id, q.plan_id),
            "usage_limit_seconds": q.usage_limit_seconds,
            "backends": [b.name for b in self._s.m.backends],
            "max_ttl": q.max_ttl,
            "active_ttl": q.max_ttl,
            "interactive_ttl": self._s.m.interactive_ttl_seconds,
        }

    def summary(self, now: datetime) -> dict[str, Any]:
        """The computed `summary` of a state snapshot: plans with their allocations, instances with usage."""
        plans = []
        for acct in self._s.m.accounts:
            for plan in acct.plans:
                allocated = self.allocated(acct.id, plan.plan_id)
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
                "usage_consumed_seconds": round(self.counted(i.crn, now), 3),
            }
            for i in self._s.m.instances
        ]
        return {"now": iso(now), "plans": plans, "instances": instances}

    # ------------------------------------------------------------------ quantum platform API

    def instance_usage(
        self, p: Principal, crn: str | None, now: datetime, shape: UsageShape = LEGACY
    ) -> dict[str, Any]:
        """`GET /v1/instances/usage`: the usage over the plan's period (`usage_period`), in seconds and (from
        2026-04-15) in RUs; with the time fields removed only the RU figures remain (see `versions`). On
        Pay-As-You-Go the period ends now (IBM shows the time of the reading)."""
        inst = self._s.service_instance(p.account, crn)
        consumed = self.counted(inst.crn, now)
        limit = inst.instance_limit_seconds
        start, end = self.period(inst.crn, now)
        out: dict[str, Any] = {
            "instance_id": inst.crn,
            "plan_id": inst.plan_id,
            "usage_period": {"start_time": iso(start), "end_time": iso(now if end is None else end)},
        }
        if shape.time_fields:
            out["usage_consumed_seconds"] = round(consumed)
            out["usage_allocation_seconds"] = inst.usage_allocation_seconds
            out["usage_limit_seconds"] = limit
        if shape.resource_units:
            out["usage_consumed_ru"] = shape.ru(consumed)
            out["usage_allocation_ru"] = shape.ru(inst.usage_allocation_seconds)
            out["usage_limit_ru"] = None if limit is None else shape.ru(limit)
        out["usage_limit_reached"] = (consumed >= limit) if limit is not None else None
        return out

    def instance_info(self, p: Principal, crn: str | None) -> dict[str, Any]:
        """`GET /v1/instance` (the older per-instance call)."""
        inst = self._s.service_instance(p.account, crn)
        return {
            "crn": inst.crn,
            "name": inst.name,
            "plan_id": inst.plan_id,
            "usage_allocation_seconds": inst.usage_allocation_seconds,
            "instance_limit_seconds": inst.instance_limit_seconds,
            "backends": self._s.allowed_backends(inst),
        }

    def analytics_usage(
        self, p: Principal, account_id: str | None, query: Mapping[str, str], now: datetime
    ) -> dict[str, Any]:
        _check_account_header(p, account_id)
        start, end = _interval(query, now)
        items = self._analytics_instances(p, query)
        seconds = sum(self.between(i.crn, start, end) for i in items)
        return {"usage": round(seconds * 1000), "interval_start": iso(start), "interval_end": iso(end)}

    def analytics_grouped_by_date(
        self, p: Principal, account_id: str | None, query: Mapping[str, str], now: datetime
    ) -> dict[str, Any]:
        _check_account_header(p, account_id)
        start, end = _interval(query, now)
        group_by = query.get("group_by")
        if group_by not in (None, "", "instance"):
            raise bad_request(f"group_by={group_by!r} is not supported by the emulator (use instance)")
        items = self._analytics_instances(p, query)
        data: list[dict[str, Any]] = []
        for inst in items:
            per_day: dict[date, float] = {}
            for at, secs in self.points(inst.crn):
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
        if account_id != p.account:
            raise forbidden(f"You are not authorized to read account {account_id}", "account_forbidden")
        acct = self._s.accounts[account_id]
        plans = [q for q in acct.plans if plan_id is None or plan_id in (q.plan_id, q.plan)]
        return {"id": acct.id, "name": acct.name, "plans": [self.plan_view(acct, q) for q in plans]}

    def _analytics_instances(self, p: Principal, query: Mapping[str, str]) -> list[Instance]:
        items = [i for i in self._s.m.instances if i.account == p.account]
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


def _check_account_header(p: Principal, account_id: str | None) -> None:
    if account_id is not None and account_id != p.account:
        raise forbidden(
            f"You are not authorized to read analytics of account {account_id}", "account_forbidden"
        )


def _interval(query: Mapping[str, str], now: datetime) -> tuple[datetime, datetime]:
    try:
        start = parse_iso(query["interval_start"]) if query.get("interval_start") else now - ROLLING_WINDOW
        end = parse_iso(query["interval_end"]) if query.get("interval_end") else now
    except ValueError as exc:
        raise bad_request(
            f"interval_start/interval_end must be ISO 8601 timestamps: {exc}", "invalid_interval"
        ) from exc
    if end < start:
        raise bad_request("interval_end is before interval_start", "invalid_interval")
    return start, end
