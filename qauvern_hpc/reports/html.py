"""Render a report's figures as one self-contained HTML file: inline CSS, charts as inline SVG data URIs, no
script and nothing fetched. Every value from the ledger is HTML-escaped. Figures go through the one unit
path (`core.report_units.Units`); each section has a stable id (`SECTIONS`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from qauvern_hpc.core.report_units import Units
from qauvern_hpc.reports import charts
from qauvern_hpc.reports.forecast import WINDOW_DAYS
from qauvern_hpc.reports.gather import current
from qauvern_hpc.reports.model import DAY, ReportData, day_text, time_text

SECTIONS: dict[str, str] = {
    "summary": "Summary",
    "usage": "Usage over time against allocation and limit",
    "shares": "Each project's share against its entitlement",
    "forecast": "When each instance reaches its limit",
    "moves": "The rebalancer's moves",
    "waits": "QPU job waits and failures",
    "top": "Top jobs and users",
}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1000px;
padding:1rem 1.5rem;color:#1b1b1b;background:#fff}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.88rem}
th,td{padding:.2rem .6rem;border-bottom:1px solid #eee;text-align:left}td.n{text-align:right}
th{background:#f4f6f8}.muted{color:#666;font-size:.85rem}img{width:100%;height:auto}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}
.card{border:1px solid #ddd;border-radius:6px;padding:.5rem .9rem}
.card b{display:block;font-size:1.2rem}.bad{color:#b00020}.ok{color:#1b5e20}
"""


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Iterable[int] = ()) -> str:
    nums = set(numeric)
    out = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    count = 0
    for row in rows:
        count += 1
        cells = (f'<td class="n">{escape(str(c))}</td>' if i in nums else f"<td>{escape(str(c))}</td>"
                 for i, c in enumerate(row))  # fmt: skip
        out.append("<tr>" + "".join(cells) + "</tr>")
    if not count:
        out.append(f'<tr><td colspan="{len(head)}" class="muted">none in this window</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _img(uri: str, alt: str) -> str:
    return f'<img src="{escape(uri)}" alt="{escape(alt)}">'


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _rolling(values: Sequence[float | None], days: int) -> list[float | None]:
    out: list[float | None] = []
    for i in range(len(values)):
        part = values[max(0, i - days + 1) : i + 1]
        out.append(None if any(v is None for v in part) else sum(v or 0.0 for v in part))
    return out


def _usage_section(data: ReportData, units: Units) -> str:
    inst = data.instances
    first = data.window.since // DAY
    cut = max(0, first - inst.days[0]) if inst.days else 0
    days = inst.days[cut:]
    rolling: dict[str, list[float | None]] = {}
    alloc: dict[str, list[float | None]] = {}
    limit: dict[str, list[float | None]] = {}
    for name in sorted(set(inst.seconds) | set(data.allocations)):
        secs = inst.seconds.get(name, [0.0] * len(inst.days))
        rus = inst.resource_units.get(name, [0.0] * len(inst.days))
        daily = [units.value(s, name, ru=r) for s, r in zip(secs, rus, strict=True)]
        rolling[name] = _rolling(daily, WINDOW_DAYS)[cut:]
        points = data.allocations.get(name, [])
        at = [current(points, (d + 1) * DAY) for d in days]
        alloc[name] = [units.value(p.allocation_seconds, name) if p else None for p in at]
        limit[name] = [units.value(p.limit_seconds, name) if p else None for p in at]
    usage = data.usage
    stacked: dict[str, list[float | None]] = {}
    for k, v in usage.seconds.items():
        key = k if data.by == "instance" else None
        stacked[k] = [units.value(s, key, ru=r) for s, r in zip(v, usage.resource_units[k], strict=True)]
    rows = [
        (r.key or "-", r.jobs, units.text(r.quantum_seconds, r.key if data.by == "instance" else None,
                                          ru=r.resource_units),
         _pct(r.quantum_seconds / data.totals["quantum_seconds"] if data.totals["quantum_seconds"] else None))
        for r in data.by_rows
    ]  # fmt: skip
    missing = [n for n, v in alloc.items() if all(a is None for a in v)]
    note = (
        f'<p class="muted">No allocation known for {escape(", ".join(missing))}: the ledger\'s audit log '
        "holds an instance's allocation once the rebalancer has changed it.</p>"
        if missing
        else ""
    )
    return (
        "<p>Each instance's usage over the rolling 28 days IBM counts its limit over, from the ledger's "
        "attributed quantum time, against its allocation (from the rebalancer's audit log) and its limit.</p>"
        + _img(charts.instance_usage(days, rolling, alloc, limit, units.unit), "usage per instance")
        + note
        + _img(charts.stacked_usage(usage.days, stacked, units.unit, data.by), f"usage per day by {data.by}")
        + _table((data.by, "job runs", f"usage ({units.unit})", "share"), rows, (1, 2, 3))
    )


def _shares_section(data: ReportData, units: Units) -> str:
    s = data.shares
    rows = []
    for share in s:
        rows.append((share.instance or "-", "", units.text(share.seconds, share.instance), _pct(share.share),
                     _pct(share.entitlement)))  # fmt: skip
        rows.extend(("", account, "", _pct(v), "") for account, v in share.accounts.items())
    chart = _img(
        charts.shares([x.instance for x in s], [x.share for x in s], [x.entitlement for x in s]), "shares"
    )
    return (
        "<p>A project is an IBM instance; its entitlement is its allocation's share of all the allocations "
        "known (IBM's fair-share scheduler runs the instance furthest below its allocation first). The "
        "Slurm accounts that used each instance are listed below it.</p>"
        + chart
        + _table(("project (instance)", "account", "usage", "usage share", "entitlement"), rows, (2, 3, 4))
    )


def _forecast_section(data: ReportData, units: Units) -> str:
    end = min(data.generated_at, data.window.until)
    base = int(end // DAY) - 1
    rows = []
    for name, f in data.forecasts.items():
        if f.status == "on_pace" and f.days is not None:
            when = f"{day_text(base + f.days)} (in {f.days} days)"
        else:
            when = {"reached": "reached now", "never": "not at this pace", "no_limit": "no limit known",
                    "no_usage": "no usage"}.get(f.status, f.status)  # fmt: skip
        rows.append((name, units.text(f.used_seconds, name), units.text(f.limit_seconds, name),
                     units.text(f.pace_seconds_per_day, name) + " / day", when,
                     f.period or f"rolling {WINDOW_DAYS} days"))  # fmt: skip
    text = (
        f"<p>From the window's end ({escape(day_text(base + 1))}), at each instance's mean daily usage of "
        "the last 7 days, day by day: the oldest day leaves the rolling 28-day window and a day at that pace "
        "comes in (IBM's Premium and Open plans). Usage IBM saw that no Slurm job explains is not in the "
        "ledger (<code>collect --reconcile</code> shows it).</p>"
    )
    if all(f.period is None for f in data.forecasts.values()):
        return text + _table(
            ("instance", "28-day usage", "limit", "pace", "limit reached"), [r[:5] for r in rows], (1, 2, 3)
        )
    return (
        text + "<p>A Flex instance's usage counts over its whole contract and a Pay-As-You-Go instance's "
        "since its creation: nothing leaves it, so its limit is reached when its usage plus the pace "
        "reaches it (on Flex not after the contract ends; on Pay-As-You-Go the limit is a cost limit and "
        "the instance then runs nothing more).</p>"
        + _table(("instance", "usage", "limit", "pace", "limit reached", "period"), rows, (1, 2, 3))
    )


def _value(value: Any, units: Units, key: str | None) -> str:
    if isinstance(value, dict):
        return f"allocation {units.text(value.get('allocation_seconds'), key)}, limit " + (
            "none" if value.get("limit_seconds") is None else units.text(value.get("limit_seconds"), key)
        )
    return "none" if value is None else str(value)


def _moves_section(data: ReportData, units: Units) -> str:
    rows = [
        (time_text(m.at), m.run_id, m.action, m.target, _value(m.before, units, m.target.split()[-1]),
         _value(m.after, units, m.target.split()[-1]), m.reason)
        for m in data.moves
    ]  # fmt: skip
    return "<p>Every change the rebalancer applied in the window, from the ledger's audit log.</p>" + _table(
        ("when", "run", "action", "target", "before", "after", "why"), rows
    )


def _waits_section(data: ReportData) -> str:
    w = data.waits
    days = list(data.usage.days)
    per = [w.per_day.get(d) for d in days]
    mean = [p[1] / 60 if p else float("nan") for p in per]
    longest = [p[2] / 60 if p else float("nan") for p in per]
    failed = [w.failed_per_day.get(d, 0) for d in days]
    chart = _img(charts.waits(w.buckets, days, mean, longest, failed), "waits")
    states = _table(("Slurm state", "job runs"), sorted(w.states.items(), key=lambda x: -x[1]), (1,))
    return (
        "<p>Slurm pending time (submit to start) of the window's QPU job runs, by the day they started, "
        f"and how they ended ({w.runs} runs). Time spent in IBM's queue is not in the ledger: "
        "<code>admit status</code> and the Grafana dashboard show IBM's queue and wait estimate live.</p>"
        + chart
        + states
    )


def _top_section(data: ReportData, units: Units) -> str:
    jobs = [
        (
            j.job_id if not j.run else f"{j.job_id} (run {j.run})",
            j.cluster,
            j.user,
            j.account,
            j.instance or "-",
            units.text(j.quantum_seconds, j.instance, ru=j.resource_units),
            f"{j.wall_seconds / 60:.1f}",
            j.state,
        )
        for j in data.top_jobs
    ]
    users = [
        (u.key, u.jobs, units.text(u.quantum_seconds, None, ru=u.resource_units)) for u in data.top_users
    ]
    return (
        "<h3>Jobs using the most quantum time</h3>"
        + _table(
            ("job", "cluster", "user", "account", "instance", "usage", "wall min", "state"), jobs, (5, 6)
        )
        + "<h3>Users</h3>"
        + _table(("user", "job runs", "usage"), users, (1, 2))
    )


def _summary(data: ReportData, units: Units) -> str:
    reached = [n for n, f in data.forecasts.items() if f.status == "reached"]
    soon = [n for n, f in data.forecasts.items() if f.status == "on_pace" and (f.days or 99) <= 7]
    cards = [
        ("quantum usage", units.text(data.totals["quantum_seconds"])),
        ("QPU job runs", str(data.totals["jobs"])),
        ("awaiting IBM's figure", str(data.totals["pending_runs"])),
        ("rebalancer changes", str(len(data.moves))),
        ("at their limit", ", ".join(reached) or "none"),
        ("limit within 7 days", ", ".join(soon) or "none"),
    ]
    html = '<div class="cards">' + "".join(
        f'<div class="card"><b>{escape(v)}</b>{escape(k)}</div>' for k, v in cards
    ) + "</div>"  # fmt: skip
    return html + "".join(f'<p class="muted">{escape(n)}</p>' for n in data.notes)


def render(data: ReportData, units: Units, *, title: str = "QPU usage report") -> str:
    """The whole page."""
    w = data.window
    until = "now" if w.open_end else time_text(w.until)
    body = {
        "summary": _summary(data, units),
        "usage": _usage_section(data, units),
        "shares": _shares_section(data, units),
        "forecast": _forecast_section(data, units),
        "moves": _moves_section(data, units),
        "waits": _waits_section(data),
        "top": _top_section(data, units),
    }
    generated = datetime.fromtimestamp(data.generated_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = "".join(
        f'<section id="{sid}"><h2>{escape(SECTIONS[sid])}</h2>{body[sid]}</section>' for sid in SECTIONS
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<p class="muted">{escape(time_text(w.since))} to {escape(until)} ({escape(w.label)}); figures in '
        f"{escape(units.unit)}; generated {escape(generated)} by qauvern-hpc from the usage ledger.</p>"
        f"{sections}</body></html>\n"
    )


__all__ = ["SECTIONS", "render"]
