"""The report's gather as it was before the one-pass query (commit 5acbad1, `qauvern_hpc/reports/gather.py`),
kept verbatim as the reference `test_gather_equivalence.py` compares the current one with: one SQL
aggregate per figure.

Semantics follow `usage`: a job run belongs to the window its job ended in; runs still going have no end
and count only in an open-ended window (their usage, not their day). A job run on two QPUs counts once in
job counts, waits and states; its quantum seconds are the sum over its resources.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from qauvern_hpc.accounting.ledger import Ledger
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
TOP = 10  # rows of the top tables
SERIES_KEYS = 8  # keys drawn in the usage chart; the rest are folded into OTHERS
IBM_UPDATE = "ibm.update_instance"

_PER_RUN_KEY = "cluster, job_id_raw, run"


def _where(window: Window, since: int | None = None, *, dated: bool = False) -> tuple[str, list[Any]]:
    """Runs that ended in the window (from `since` when given); `dated`: only runs with an end."""
    start = window.since if since is None else since
    if window.open_end and not dated:
        return '("end" >= ? OR "end" IS NULL)', [start]
    return '"end" >= ? AND "end" < ?', [start, window.until]


def _daily(ledger: Ledger, column: str, window: Window, since: int) -> Series:
    where, params = _where(window, since, dated=True)
    rows = ledger.query(
        f"SELECT \"end\" / {DAY}, COALESCE({column}, ''), SUM(COALESCE(quantum_seconds, 0)), "
        "SUM(resource_units), SUM(CASE WHEN resource_units IS NULL THEN 1 ELSE 0 END) "
        f"FROM runs WHERE {where} GROUP BY 1, 2",
        params,
    )
    first, last = since // DAY, (window.until - 1) // DAY
    days = list(range(first, last + 1))
    seconds: dict[str, list[float]] = {}
    units: dict[str, list[float | None]] = {}
    for day, key, qs, ru, missing in rows:
        i = int(day) - first
        if not 0 <= i < len(days):
            continue
        k = str(key)
        seconds.setdefault(k, [0.0] * len(days))[i] += float(qs or 0)
        per = units.setdefault(k, [0.0] * len(days))
        prev = per[i]
        per[i] = None if missing or prev is None else prev + float(ru or 0)
    return Series(days, dict(sorted(seconds.items())), dict(sorted(units.items())))


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


def _grouped(ledger: Ledger, column: str, window: Window, limit: int | None) -> list[TopRow]:
    """Per key: job runs, quantum seconds, RUs (None unless every run has them), most used first."""
    where, params = _where(window)
    sql = (
        "SELECT k, COUNT(*), SUM(qs), SUM(ru), SUM(nru) FROM ("
        f"SELECT COALESCE({column}, '') AS k, SUM(COALESCE(quantum_seconds, 0)) AS qs, "
        "SUM(resource_units) AS ru, SUM(CASE WHEN resource_units IS NULL THEN 1 ELSE 0 END) AS nru "
        f"FROM runs WHERE {where} GROUP BY COALESCE({column}, ''), {_PER_RUN_KEY}) AS per_run "
        "GROUP BY k ORDER BY SUM(qs) DESC, k"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [
        TopRow(str(k), int(n), float(qs or 0), None if nru else float(ru or 0))
        for k, n, qs, ru, nru in ledger.query(sql, params)
    ]


def _top_jobs(ledger: Ledger, window: Window) -> list[TopJob]:
    where, params = _where(window)
    rows = ledger.query(
        "SELECT cluster, MIN(job_id), run, MIN(\"user\"), MIN(account), MIN(COALESCE(instance, '')), "
        "SUM(COALESCE(quantum_seconds, 0)) AS qs, SUM(resource_units), "
        "SUM(CASE WHEN resource_units IS NULL THEN 1 ELSE 0 END), MAX(COALESCE(wall_seconds, 0)), "
        f"MIN(slurm_state) FROM runs WHERE {where} GROUP BY {_PER_RUN_KEY} "
        f"ORDER BY qs DESC, cluster, job_id_raw, run LIMIT {TOP}",
        params,
    )
    return [
        TopJob(str(c), str(j), int(r), str(u), str(a), str(i), float(qs), None if nru else float(ru or 0),
               int(w), _state(st))
        for c, j, r, u, a, i, qs, ru, nru, w, st in rows
    ]  # fmt: skip


def _state(text: object) -> str:
    """Slurm's state word: `CANCELLED by 0` -> CANCELLED."""
    words = str(text or "").split()
    return words[0] if words else "UNKNOWN"


def _waits(ledger: Ledger, window: Window) -> Waits:
    where, params = _where(window)
    bucket = "CASE WHEN w IS NULL THEN -1 " + " ".join(
        f"WHEN w < {int(bound)} THEN {i}" for i, (_, bound) in enumerate(WAIT_BUCKETS[:-1])
    )
    bucket += f" ELSE {len(WAIT_BUCKETS) - 1} END"
    rows = ledger.query(
        f"SELECT sd, ed, st, {bucket}, COUNT(*), SUM(w), MAX(w) FROM ("
        f'SELECT MIN(start) / {DAY} AS sd, MIN("end") / {DAY} AS ed, MIN(slurm_state) AS st, '
        f"MIN(start - submit) AS w FROM runs WHERE {where} GROUP BY {_PER_RUN_KEY}) AS per_run "
        "GROUP BY 1, 2, 3, 4",
        params,
    )
    acc: dict[int, list[float]] = {}  # start day -> [runs, wait sum, max wait]
    buckets = {label: 0 for label, _ in WAIT_BUCKETS} | {NEVER_STARTED: 0}
    states: dict[str, int] = {}
    failed: dict[int, int] = {}
    total = 0
    for sd, ed, st, b, n, wsum, wmax in rows:
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


def _shares(
    ledger: Ledger, window: Window, allocations: Mapping[str, list[AllocationPoint]], end: float
) -> list[Share]:
    where, params = _where(window)
    rows = ledger.query(
        "SELECT COALESCE(instance, ''), account, SUM(COALESCE(quantum_seconds, 0)) "
        f"FROM runs WHERE {where} GROUP BY 1, 2",
        params,
    )
    total = sum(float(qs or 0) for *_, qs in rows) or 0.0
    per: dict[str, dict[str, float]] = {}
    for inst, account, qs in rows:
        per.setdefault(str(inst), {})[str(account)] = float(qs or 0)
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
    instances = _daily(ledger, "instance", window, lead)
    start = window.since // DAY
    if by == "instance":
        cut = start - instances.days[0]
        usage = Series(
            instances.days[cut:],
            {k: v[cut:] for k, v in instances.seconds.items()},
            {k: v[cut:] for k, v in instances.resource_units.items()},
        )
    else:
        usage = _daily(ledger, by if by != "user" else '"user"', window, window.since)
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
    column = '"user"' if by == "user" else by
    by_rows = _grouped(ledger, column, window, None)
    where, params = _where(window)
    pending = ledger.query(f"SELECT COUNT(*) FROM runs WHERE {where} AND usage_state = 'pending'", params)[0][
        0
    ]
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
            "pending_runs": int(pending or 0),
        },
        usage=usage,
        instances=instances,
        allocations=allocations,
        forecasts=forecasts,
        shares=_shares(ledger, window, allocations, end),
        moves=moves,
        waits=_waits(ledger, window),
        top_jobs=_top_jobs(ledger, window),
        top_users=_grouped(ledger, '"user"', window, TOP),
        by_rows=by_rows,
        notes=notes,
    )


__all__ = ["BY", "gather"]
