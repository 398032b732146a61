"""Gather a usage report's figures from the ledger with SQL aggregates: the database groups and sums, Python
only sees per-day and per-key totals (a ledger of millions of runs is never loaded row by row).

Semantics follow `usage`: a job run belongs to the window its job ended in; runs still going have no end
and count only in an open-ended window (their usage, not their day). A job run on two QPUs counts once in
job counts, waits and states; its quantum seconds are the sum over its resources.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from qauvern_hpc.accounting.ledger import Ledger
from qauvern_hpc.reports import query
from qauvern_hpc.reports.forecast import WINDOW_DAYS, Forecast, forecast_limit
from qauvern_hpc.reports.model import (
    DAY,
    NEVER_STARTED,
    OTHERS,
    WAIT_BUCKETS,
    AllocationPoint,
    Move,
    ReportData,
    Series,
    Share,
    TopJob,
    TopRow,
    Waits,
    Window,
)

BY = ("account", "user", "instance")
TOP = query.TOP  # rows of the top tables
SERIES_KEYS = 8  # keys drawn in the usage chart; the rest are folded into OTHERS
IBM_UPDATE = "ibm.update_instance"


def _series(days: list[int], parts: Iterable[tuple[int, str, float, float | None, int]]) -> Series:
    """Per day and key from (day, key, seconds, RUs, rows without RUs) totals; other days left out."""
    first = days[0]
    seconds: dict[str, list[float]] = {}
    units: dict[str, list[float | None]] = {}
    for day, key, qs, ru, missing in parts:
        i = day - first
        if not 0 <= i < len(days):
            continue
        seconds.setdefault(key, [0.0] * len(days))[i] += qs
        per = units.setdefault(key, [0.0] * len(days))
        prev = per[i]
        per[i] = None if missing or prev is None else prev + (ru or 0.0)
    return Series(days, dict(sorted(seconds.items())), dict(sorted(units.items())))


def _days(since: int, window: Window) -> list[int]:
    return list(range(since // DAY, (window.until - 1) // DAY + 1))


def _fold(series: Series, keep: int) -> Series:
    """The `keep` keys with the most usage; the others summed into OTHERS."""
    ranked = sorted(series.seconds, key=lambda k: (-series.total(k), k))
    if len(ranked) <= keep:
        return series
    head, tail = ranked[:keep], ranked[keep:]
    n = len(series.days)
    other_s = [sum(series.seconds[k][i] for k in tail) for i in range(n)]
    other_ru: list[float | None] = []
    for i in range(n):
        parts = [series.resource_units[k][i] for k in tail]
        other_ru.append(None if any(p is None for p in parts) else sum(p or 0.0 for p in parts))
    seconds = {k: series.seconds[k] for k in head} | {OTHERS: other_s}
    units = {k: series.resource_units[k] for k in head} | {OTHERS: other_ru}
    return Series(series.days, seconds, units)


def _state(text: object) -> str:
    """Slurm's state word: `CANCELLED by 0` -> CANCELLED."""
    words = str(text or "").split()
    return words[0] if words else "UNKNOWN"


def _allocations(
    ledger: Ledger, limits: Mapping[str, int | None], window: Window
) -> tuple[dict[str, list[AllocationPoint]], list[Move]]:
    """Each instance's allocation and limit over time from the rebalancer's audit log (the value before its
    first change holds from the window's start), the config's limit where no change is recorded; and the
    audited changes of the window."""
    points: dict[str, list[AllocationPoint]] = {}
    moves: list[Move] = []
    for e in ledger.audit_entries():
        before = e.before if isinstance(e.before, dict) else {}
        after = e.after if isinstance(e.after, dict) else {}
        target = after.get("target") or before.get("target") or {}
        if e.action == IBM_UPDATE:
            name = str(target.get("name") or target.get("crn") or "?")
            old, new = before.get("value") or {}, after.get("value") or {}
            series = points.setdefault(name, [])
            if not series:
                series.append(_point(0.0, old))
            series.append(_point(e.at, new))
        if e.at >= window.since and (window.open_end or e.at < window.until):
            moves.append(
                Move(e.at, e.run_id, e.action, _target(target), before.get("value"), after.get("value"),
                     e.reason or "")
            )  # fmt: skip
    for name, limit in limits.items():
        points.setdefault(name, [AllocationPoint(0.0, None, limit)])
    return dict(sorted(points.items())), moves


def _point(at: float, value: Mapping[str, Any]) -> AllocationPoint:
    def num(key: str) -> int | None:
        v = value.get(key)
        return None if v is None else int(v)

    return AllocationPoint(at, num("allocation_seconds"), num("limit_seconds"))


def _target(target: Mapping[str, Any]) -> str:
    if "name" in target or "crn" in target:
        return f"IBM instance {target.get('name') or target.get('crn')}"
    text = f"Slurm account {target.get('account', '?')} on {target.get('cluster', '?')}"
    return text + (f" ({target['tres']})" if target.get("tres") else "")


def current(points: list[AllocationPoint], at: float) -> AllocationPoint | None:
    """The allocation point in force at `at`."""
    now = [p for p in points if p.at <= at]
    return now[-1] if now else None


def _top_rows(
    rows: Iterable[tuple[str, int, float, float | None, int]], limit: int | None = None
) -> list[TopRow]:
    """Per key from (key, job runs, seconds, RUs, rows without RUs) totals: job runs, quantum seconds, RUs
    (None unless every run has them), most used first."""
    acc: dict[str, list[Any]] = {}
    for key, n, qs, ru, nru in rows:
        a = acc.setdefault(key, [0, 0.0, 0.0, 0])
        a[0] += n
        a[1] += qs
        a[2] += ru or 0.0
        a[3] += nru
    out = [TopRow(k, n, qs, None if nru else ru) for k, (n, qs, ru, nru) in acc.items()]
    out.sort(key=lambda r: (-r.quantum_seconds, r.key))
    return out if limit is None else out[:limit]


def _top_jobs(ledger: Ledger, rows: list[tuple[Any, ...]]) -> list[TopJob]:
    """The window's most used job runs; their job id text and wall time looked up by key (a few rows)."""
    picked = []
    for row in rows:
        (c, u, a, i, st), (j, r, nru, _), (qs, ru) = query.columns(row)
        picked.append((str(c), int(j), int(r), str(u), str(a), str(i), float(qs), nru, ru, st))
    picked.sort(key=lambda t: (-t[6], t[0], t[1], t[2]))
    out = []
    for c, j, r, u, a, i, qs, nru, ru, st in picked:
        ((job_id, wall),) = ledger.query(
            "SELECT MIN(job_id), MAX(COALESCE(wall_seconds, 0)) FROM runs "
            "WHERE cluster = ? AND job_id_raw = ? AND run = ?",
            [c, j, r],
        )
        out.append(
            TopJob(c, str(job_id), r, u, a, i, qs, None if nru else float(ru or 0), int(wall), _state(st))
        )
    return out


def _waits(rows: list[tuple[Any, ...]]) -> Waits:
    acc: dict[int, list[float]] = {}  # start day -> [runs, wait sum, max wait]
    buckets = {label: 0 for label, _ in WAIT_BUCKETS} | {NEVER_STARTED: 0}
    states: dict[str, int] = {}
    failed: dict[int, int] = {}
    total = 0
    for row in rows:
        (st, *_), (sd, ed, b, n), (wsum, wmax) = query.columns(row)
        n = int(n)
        total += n
        label = NEVER_STARTED if int(b) < 0 else WAIT_BUCKETS[int(b)][0]
        buckets[label] += n
        state = _state(st)
        states[state] = states.get(state, 0) + n
        if state != "COMPLETED" and ed is not None:
            failed[int(ed)] = failed.get(int(ed), 0) + n
        if sd is not None and wsum is not None:
            a = acc.setdefault(int(sd), [0, 0.0, 0.0])
            a[0] += n
            a[1] += float(wsum)
            a[2] = max(a[2], float(wmax))
    per_day = {d: (int(a[0]), a[1] / a[0], a[2]) for d, a in sorted(acc.items()) if a[0]}
    return Waits(per_day, buckets, dict(sorted(states.items())), dict(sorted(failed.items())), total)


def _shares(
    per: Mapping[str, Mapping[str, float]], allocations: Mapping[str, list[AllocationPoint]], end: float
) -> list[Share]:
    """Each instance's share of the window's usage (`per`: instance -> account -> seconds)."""
    total = sum(qs for accounts in per.values() for qs in accounts.values()) or 0.0
    alloc = {
        n: (p.allocation_seconds if (p := current(pts, end)) else None) for n, pts in allocations.items()
    }
    known = {n: a for n, a in alloc.items() if a is not None}
    budget = sum(known.values())
    out: list[Share] = []
    for name in sorted(set(per) | set(allocations)):
        used = sum(per.get(name, {}).values())
        a = alloc.get(name)
        out.append(
            Share(
                name,
                used,
                used / total if total else 0.0,
                a / budget if a is not None and budget else None,
                {k: (v / total if total else 0.0) for k, v in sorted(per.get(name, {}).items())},
            )
        )
    return out


def gather(
    ledger: Ledger,
    window: Window,
    *,
    by: str = "account",
    limits: Mapping[str, int | None] | None = None,
    now: float | None = None,
) -> ReportData:
    """Every figure of the report. `limits`: the configured instances and their config limit (seconds)."""
    if by not in BY:
        raise ValueError(f"cannot report by {by!r}; choose one of {', '.join(BY)}")
    at = time.time() if now is None else now
    end = min(at, window.until)
    lead = window.since - (WINDOW_DAYS - 1) * DAY  # 27 days before: the first day's rolling 28 days
    totals = query.run(ledger, window, lead, {"account": "a", "user": "u", "instance": "i"}[by])
    Part = tuple[int, str, float, float | None, int]  # (day, key, seconds, RUs, rows without RUs)
    instance_parts: list[Part] = []
    by_parts: list[Part] = []
    by_runs: list[tuple[str, int, float, float | None, int]] = []  # (key, runs, seconds, RUs, without RUs)
    per: dict[str, dict[str, float]] = {}  # the shares: instance -> account -> seconds
    for row in totals[query.LEAD]:
        (inst, *_), (day, nru, *_), (qs, ru) = query.columns(row)
        instance_parts.append((int(day), str(inst), float(qs or 0), ru, int(nru)))
    for row in totals[query.DAILY]:
        (inst, account, user, *_), (day, nru, dated, runs), (qs, ru) = query.columns(row)
        seconds = float(qs or 0)
        accounts = per.setdefault(str(inst), {})
        accounts[str(account)] = accounts.get(str(account), 0.0) + seconds
        key = str({"account": account, "user": user, "instance": inst}[by])
        by_runs.append((key, int(runs), seconds, ru, int(nru)))
        if day is None or not dated:
            continue
        instance_parts.append((int(day), str(inst), seconds, ru, int(nru)))
        by_parts.append((int(day), key, seconds, ru, int(nru)))
    instances = _series(_days(lead, window), instance_parts)
    start = window.since // DAY
    if by == "instance":
        cut = start - instances.days[0]
        usage = Series(
            instances.days[cut:],
            {k: v[cut:] for k, v in instances.seconds.items()},
            {k: v[cut:] for k, v in instances.resource_units.items()},
        )
    else:
        usage = _series(_days(window.since, window), by_parts)
    usage = _fold(usage, SERIES_KEYS)
    allocations, moves = _allocations(ledger, limits or {}, window)
    forecasts: dict[str, Forecast] = {}
    last_full = int(end // DAY) - 1  # the forecast starts from the last full day
    for name in sorted(set(instances.seconds) | set(allocations)):
        if not name:
            continue
        daily = instances.seconds.get(name, [0.0] * len(instances.days))
        upto = last_full - instances.days[0] + 1
        point = current(allocations.get(name, []), end)
        forecasts[name] = forecast_limit(daily[: max(0, upto)], point.limit_seconds if point else None)
    by_rows = _top_rows(by_runs)
    pending = sum(int(ints[0] or 0) for _, ints, _ in map(query.columns, totals[query.PENDING]))
    if by == "user":
        top_users = by_rows[:TOP]
    else:
        users = []
        for row in totals[query.BY_USER]:
            (user, *_), (n, nru, *_), (qs, ru) = query.columns(row)
            users.append((str(user), int(n), float(qs or 0), ru, int(nru)))
        top_users = _top_rows(users, TOP)
    notes: list[str] = []
    if any(not k for k in instances.seconds):
        notes.append("some runs have no IBM instance recorded; they show as an empty instance name")
    return ReportData(
        window=window,
        by=by,
        generated_at=at,
        totals={
            "jobs": sum(r.jobs for r in by_rows),
            "quantum_seconds": round(sum(r.quantum_seconds for r in by_rows), 3),
            "pending_runs": pending,
        },
        usage=usage,
        instances=instances,
        allocations=allocations,
        forecasts=forecasts,
        shares=_shares(per, allocations, end),
        moves=moves,
        waits=_waits(totals[query.WAITS]),
        top_jobs=_top_jobs(ledger, totals[query.TOP_JOBS]),
        top_users=top_users,
        by_rows=by_rows,
        notes=notes,
    )


__all__ = ["BY", "gather"]
