"""The rebalance diff for humans (a rich table) and scripts (`--json`). Pure apart from printing."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from qauvern_hpc.core.report_units import Units, default_unit
from qauvern_hpc.core.units import format_seconds
from qauvern_hpc.planner.model import AccountSnapshot, PlanResult
from qauvern_hpc.planner.optimizer import explain_score
from qauvern_hpc.rebalance.apply import FINISH, ResumePreview, describe_target, fmt_value
from qauvern_hpc.rebalance.demand import QueueSummary
from qauvern_hpc.rebalance.enforce import SlurmPlan
from qauvern_hpc.rebalance.journal import Journal, Step
from qauvern_hpc.rebalance.settings import LeftOut

if TYPE_CHECKING:
    from rich.console import Console


def plan_units(asked: str | None, configured: str | None, account: AccountSnapshot) -> Units:
    """The report's unit (--unit, report.unit, else IBM's) with the managed instances' RU rates (those
    whose usage was read; the others' rates are not known)."""
    managed = [i for i in account.instances if i.usage_unit is not None]
    unit = default_unit(asked or configured, [i.usage_unit for i in managed])
    return Units(unit, {i.crn: i.ru_rate for i in managed})


def instance_rows(
    plan: PlanResult,
    slurm: SlurmPlan,
    queue: QueueSummary | None,
    recent: dict[str, float],
    names: dict[str, str],
    units: Units | None = None,
    consumed_ru: dict[str, float | None] | None = None,
) -> list[dict[str, Any]]:
    """One dict per managed instance: current vs new allocation/limit, Slurm settings, demand, why; with
    `units`, `in_unit` gives the figures in it (`consumed_ru`: IBM's RUs of the usage, per CRN)."""
    rows: list[dict[str, Any]] = []
    for p in plan.instances:
        name = names.get(p.crn, p.name)
        st = slurm.instances.get(name)
        q = queue.by_instance.get(name) if queue else None
        why = p.reason
        if p.score_breakdown.get("total", 0.0) > 0:
            why += "; " + explain_score(p.score_breakdown)
        rows.append(
            {
                "instance": name,
                "crn": p.crn,
                "allocation_seconds": {
                    "current": p.current_allocation_seconds,
                    "new": p.new_allocation_seconds,
                },
                "limit_seconds": {"current": p.current_limit_seconds, "new": p.new_limit_seconds},
                "effective_limit_seconds": p.effective_limit_seconds,
                "consumed_28d_seconds": p.consumed_28d_seconds,
                "usage_period": p.window.to_dict() if p.window is not None else None,
                "fairness": p.fairness if math.isfinite(p.fairness) else None,
                "limit_reached": p.limit_reached,
                "active": p.active,
                "activity_score": p.activity_score,
                "score_breakdown": dict(p.score_breakdown),
                "queue": q.to_dict() if q else None,
                "recent_ledger_seconds": recent.get(name, 0.0),
                "slurm": None
                if st is None
                else {
                    "accounts": list(st.accounts),
                    "fairshare": {
                        a: {"current": st.fairshare_before.get(a), "new": st.fairshare_after.get(a)}
                        for a in st.accounts
                    },
                    "license": st.license,
                    "gate_available": st.gate_available,
                    "gated": {"current": st.gated_before, "new": st.gated_after},
                },
                "why": why,
            }
        )
        if units is not None:
            fig = units.value
            rows[-1]["in_unit"] = {
                "allocation": {
                    "current": fig(p.current_allocation_seconds, p.crn),
                    "new": fig(p.new_allocation_seconds, p.crn),
                },
                "limit": {
                    "current": fig(p.current_limit_seconds, p.crn),
                    "new": fig(p.new_limit_seconds, p.crn),
                },
                "consumed": fig(p.consumed_28d_seconds, p.crn, ru=(consumed_ru or {}).get(p.crn)),
                "recent_ledger": fig(recent.get(name, 0.0), p.crn),
            }
    return rows


def step_dict(s: Step) -> dict[str, Any]:
    return {
        "id": s.id,
        "kind": s.kind,
        "target": s.target,
        "before": s.before,
        "after": s.after,
        "why": s.why,
        "state": s.state,
        "note": s.note,
    }


def plan_json(
    plan: PlanResult,
    rows: list[dict[str, Any]],
    steps: list[Step],
    slurm: SlurmPlan,
    notes: list[str],
    left_out: Sequence[LeftOut] = (),
    units: Units | None = None,
) -> dict[str, Any]:
    figures = ("allocation_budget", "reserve", "unmanaged_allocation", "pool", "distributable", "awarded")
    return {
        **({} if units is None else units.to_dict()),
        **(
            {}
            if units is None
            else {"in_unit": {k: units.value(getattr(plan, f"{k}_seconds")) for k in figures}}
        ),
        "today": plan.today.isoformat(),
        "ok": plan.ok,
        "over_allocation_budget": plan.over_allocation_budget,
        "allocation_budget_seconds": plan.allocation_budget_seconds,
        "reserve_seconds": plan.reserve_seconds,
        "unmanaged_allocation_seconds": plan.unmanaged_allocation_seconds,
        "pool_seconds": plan.pool_seconds,
        "distributable_seconds": plan.distributable_seconds,
        "awarded_seconds": plan.awarded_seconds,
        "instances": rows,
        "violations": [
            {
                "invariant": v.invariant.value,
                "crn": v.crn,
                "message": v.message,
                "value": v.value,
                "bound": v.bound,
            }
            for v in plan.violations
        ],
        "warnings": [w.message for w in plan.warnings] + list(slurm.warnings) + list(notes),
        "steps": [step_dict(s) for s in steps],
        "left_out": [s.to_dict() for s in left_out],  # configured instances of other plans: not planned
    }


def interrupted_json(p: ResumePreview) -> dict[str, Any]:
    """A dry run's view of an unfinished run: what the next real run will do with it."""
    j = p.journal
    return {
        "run_id": j.run_id,
        "kind": j.kind,
        "actor": j.actor,
        "created_at": j.created_at,
        "status": j.status,
        "error": j.error,
        "steps_done": p.steps_done,
        "steps_total": len(j.steps),
        "next_run": p.action,  # finish | abandon | stuck
        "found_in_place": [s.id for s in p.found_in_place],
        "to_apply": [s.id for s in p.to_apply],
        "conflict": p.conflict,
        "message": p.message,
    }


def print_interrupted(console: Console, p: ResumePreview) -> None:
    from rich.markup import escape

    colour = "yellow" if p.action == FINISH else "red"
    console.print(f"[{colour}]{escape(p.message)}[/{colour}]")
    for label, steps in (("in place", p.found_in_place), ("to apply", p.to_apply)):
        for s in steps:
            console.print(
                f"  {label}: {escape(describe_target(s))}: {escape(fmt_value(s.before))} → "
                f"{escape(fmt_value(s.after))}"
            )
    console.print("  (this dry run leaves it as it is)")


def _change(cur: object, new: object, fmt: Callable[[Any], str] = str) -> str:
    if cur == new:
        return str(fmt(cur))
    return f"{fmt(cur)} → [bold]{fmt(new)}[/bold]"


def print_plan(
    console: Console,
    rows: list[dict[str, Any]],
    plan: PlanResult,
    steps: list[Step],
    warnings: list[str],
    units: Units,
) -> None:
    from rich.table import Table

    def _secs(v: float | None, crn: str | None = None) -> str:
        return "none" if v is None else units.text(v, crn)

    title = f"rebalance plan ({plan.today.isoformat()}, figures in {units.unit})"
    t = Table(title=title, show_lines=True, expand=False)
    for col in ("instance", "allocation", "limit", "28d used", "queue", "Slurm", "why"):
        t.add_column(col, overflow="fold")
    for r in rows:
        a, lim = r["allocation_seconds"], r["limit_seconds"]
        q = r["queue"]
        queue = "-"
        if q:
            queue = f"{q['pending_jobs']} jobs, {format_seconds(q['queued_seconds'])}"
            if q["oldest_pending_age_seconds"]:
                queue += f", oldest {format_seconds(int(q['oldest_pending_age_seconds']))}"
            if q["max_priority"]:
                queue += f", prio ≤{q['max_priority']}"
            if q["held_jobs"]:
                queue += f" (+{q['held_jobs']} held)"
            if len(q.get("by_cluster") or {}) > 1:
                queue += " [" + ", ".join(f"{c} {n}" for c, n in q["by_cluster"].items()) + "]"
        if r["recent_ledger_seconds"]:
            queue += f"; ledger 24h {units.text(r['recent_ledger_seconds'], r['crn'])}"
        slurm = "-"
        s = r["slurm"]
        if s:
            parts = [
                f"{acct} fairshare {_change(v['current'], v['current'] if v['new'] is None else v['new'])}"
                for acct, v in s["fairshare"].items()
            ]
            if s["license"]:
                gate = _change(
                    "gated" if s["gated"]["current"] else "open", "gated" if s["gated"]["new"] else "open"
                )
                parts.append(f"{s['license']}: {gate}" + ("" if s["gate_available"] else " (not a TRES)"))
            slurm = "\n".join(parts) or "-"
        fairness = "∞" if r["fairness"] is None else f"{r['fairness']:.2f}"

        def fig(v: float | None, crn: str = r["crn"]) -> str:
            return _secs(v, crn)

        used = units.quantity(r["in_unit"]["consumed"]) if "in_unit" in r else fig(r["consumed_28d_seconds"])
        t.add_row(
            r["instance"],
            _change(a["current"], a["new"], fig),
            _change(lim["current"], lim["new"], fig),
            f"{used} (fairness {fairness})"
            + (f"\nover {r['usage_period']['label']}" if r["usage_period"] else "")
            + (" [red]limit reached[/red]" if r["limit_reached"] else ""),
            queue,
            slurm,
            r["why"],
        )
    console.print(t)
    console.print(
        f"budget {_secs(plan.allocation_budget_seconds)}, reserve {_secs(plan.reserve_seconds)}, unmanaged "
        f"{_secs(plan.unmanaged_allocation_seconds)}, pool {_secs(plan.pool_seconds)}, awarded "
        f"{_secs(plan.awarded_seconds)}"
        + (" [yellow](account over its allocation budget)[/yellow]" if plan.over_allocation_budget else "")
    )
    for v in plan.violations:
        console.print(f"[red]invariant {v.invariant.value}:[/red] {v.message}")
    for w in warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    print_steps(console, steps, title="changes to apply")


def print_steps(console: Console, steps: list[Step], *, title: str) -> None:
    if not steps:
        console.print("no changes: IBM and Slurm already match the plan")
        return
    console.print(f"{title} ({len(steps)}, in order):")
    for n, s in enumerate(steps, 1):
        state = "" if s.state == "pending" else f" [{s.state}]"
        console.print(f"  {n:>2}. {describe_target(s)}: {fmt_value(s.before)} → {fmt_value(s.after)}{state}")


def print_journal(console: Console, j: Journal) -> None:
    console.print(f"run {j.run_id} ({j.kind}) by {j.actor}: {j.status}" + (f": {j.error}" if j.error else ""))
    print_steps(console, j.steps, title="steps")


__all__ = [
    "instance_rows",
    "interrupted_json",
    "plan_json",
    "print_interrupted",
    "print_journal",
    "print_plan",
    "print_steps",
    "step_dict",
]
