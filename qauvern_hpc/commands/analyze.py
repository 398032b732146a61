"""`qauvern-hpc analyze`: usage analysis over a window and what the rebalancer's IBM-side rules would do."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from qauvern_hpc.core.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from qauvern_hpc.config import Config
    from qauvern_hpc.core.report_units import Units
    from qauvern_hpc.planner.model import AccountSnapshot, InstanceSettings, PlanResult

READS_API_KEY = True  # --api-key: the key comes from qauvern_hpc.ibm.factory
HELP = "usage per instance and day, trends, who is over/under target, and the allocations proposed"
DESCRIPTION = """\
Analyse the configured instances' IBM usage over a window of whole UTC days (--days, default 28, today
excluded as IBM's per-day analytics do) and show what qauvern 0.14's rules would allocate now.

Per instance:
  usage      over its plan's period (IBM's own figure over IBM's usage_period, as the rebalancer plans
             on it: the rolling 28 days on Premium and Open, the Flex contract, Pay-As-You-Go since
             creation; the column is "28d" only when every period is 28 days, else "Period" says which),
             14d, 7d, 3d, 24h; per day over the window: total, mean, peak, active days, a sparkline
             (--daily prints every day)
  trend      the last --span days (default 7) against the --span days before them: up/down (more than 10 %
             change), flat, new (nothing before) or idle (nothing at all)
  standing   against the allocation (IBM's expected usage over the period): over (fairness > 1), under
             (fairness < 0.5: plenty of headroom), on target
  pace       with target_usage_seconds and rebalance.balance_period: the period's usage against the target
             pro-rated to today: ahead / behind (by more than --tolerance, default 10 %), on pace, reached
  plan       current -> proposed allocation and limit, and why (floors, reserve, water-fill up to each
             effective limit, net grants, the over-budget regime)

Figures are in --unit (ru, qau, hours or seconds); --json keeps every *_seconds field and adds `unit`
and each instance's figures in it (`in_unit`; null where no RU rate is known). As in `show`,
`consumed_28d_seconds` is IBM's figure over the instance's `usage_period` (its period, with its label);
the account's `usage_period` says what the plan-wide usage counts over.

The plan here uses IBM's figures only; `qauvern-hpc rebalance --dry-run` adds Slurm's queue and the ledger
(and is what applies it). Needs administrator rights (analytics are read)."""
EPILOG = """\
examples:
  qauvern-hpc analyze                         the last 28 days and the proposed allocations
  qauvern-hpc analyze --days 14 --daily       two weeks, every day per instance
  qauvern-hpc analyze --json | jq '.instances[] | {name, standing, trend}'
  qauvern-hpc analyze --span 3                trend: the last 3 days against the 3 before

exit codes: 0 ok, 1 the proposed plan breaks an invariant (rebalance would refuse it; see VALIDATION),
2 bad usage, 3 invalid config or a configured instance missing/archived, 4 IBM unavailable or an
instance's usage unreadable."""

MAX_DAYS = 366


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qauvern_hpc.commands.admin_common import add_unit_argument

    parser.add_argument(
        "--days", type=int, default=28, help="window of whole days, today excluded (default 28)"
    )
    parser.add_argument(
        "--span", type=int, default=7, help="trend: compare the last N days with the N before"
    )
    parser.add_argument(
        "--tolerance", type=float, default=10.0, help="pace: percent off the pro-rated target (default 10)"
    )
    parser.add_argument("--daily", action="store_true", help="print the usage of every day of the window")
    add_unit_argument(parser)


def _check(args: argparse.Namespace) -> None:
    if not 1 <= args.days <= MAX_DAYS:
        raise UsageError(f"--days must be between 1 and {MAX_DAYS}, got {args.days}")
    if not 1 <= args.span <= args.days:
        raise UsageError(f"--span must be between 1 and --days ({args.days}), got {args.span}")
    if not 0 <= args.tolerance < 100:
        raise UsageError(f"--tolerance must be a percentage in [0, 100), got {args.tolerance}")


def run(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from qauvern_hpc.commands.admin_common import load_admin_config
    from qauvern_hpc.config.ibm_access import client_from_config
    from qauvern_hpc.planner.optimizer import plan_allocations
    from qauvern_hpc.rebalance.gather import ibm_snapshot, plan_usage_window
    from qauvern_hpc.rebalance.settings import instance_settings, plan_options

    _check(args)
    cfg = load_admin_config(args)
    now = datetime.now(UTC)
    today = now.date()
    start = today - timedelta(days=args.days)
    settings = instance_settings(cfg)
    options = plan_options(cfg)
    with client_from_config(cfg, args) as client:
        account = ibm_snapshot(client, cfg, settings, now=now, today=today)

        def daily(crn: str) -> dict[date, int]:
            result: dict[date, int] = client.daily_usage(
                crn, account_id=cfg.ibm.account_id, start=start, end=today
            )
            return result

        with ThreadPoolExecutor(max_workers=min(8, max(1, len(settings)))) as pool:
            per_day = dict(
                zip([s.crn for s in settings], pool.map(daily, [s.crn for s in settings]), strict=True)
            )
    plan = plan_allocations(account, settings, today=today, options=options)
    period = plan_usage_window(cfg, list(account.instances), now).label
    doc = analysis(
        cfg, account, settings, plan, per_day, today=today, start=start, args=args, usage_period=period
    )
    if args.json:
        from qauvern_hpc.commands.admin_common import emit_json

        emit_json(doc)
    else:
        _print(args, doc)
    for v in doc["validation_errors"]:
        print(f"qauvern-hpc analyze: validation: {v}", file=sys.stderr)
    return ExitCode.FAILURE if doc["validation_errors"] else ExitCode.OK


def analysis(
    cfg: Config,
    account: AccountSnapshot,
    settings: list[InstanceSettings],
    plan: PlanResult,
    per_day: dict[str, dict[date, int]],
    *,
    today: date,
    start: date,
    args: argparse.Namespace,
    usage_period: str = "rolling 28 days",
) -> dict[str, Any]:
    """The JSON document (pure: from the snapshot, the plan and the per-day usage). `usage_period`: what
    the plan-wide usage counts over."""
    from qauvern_hpc.commands.admin_common import report_units, summary_dict
    from qauvern_hpc.planner.admin_report import account_summary, day_range, pace, standing, trend

    snaps = {s.crn: s for s in account.instances}
    managed = [snaps[s.crn] for s in settings]
    units = report_units(args, cfg, [i.usage_unit for i in managed], {i.crn: i.ru_rate for i in managed})
    days = day_range(start, today)
    summary = account_summary(
        account_id=cfg.ibm.account_id,
        plan=cfg.ibm.plan,
        budget=account.allocation_budget_seconds,
        unallocated=account.unallocated_seconds,
        consumed=account.consumed_seconds,
        limit=account.limit_seconds,
        configured=[(snaps[s.crn].allocation_seconds, snaps[s.crn].consumed_28d_seconds) for s in settings],
        minimum=cfg.minimum_allocation_seconds,
        reserve_percent=cfg.allocation_reserve_percent,
        usage_period=usage_period,
    )
    instances = []
    for s, p in zip(settings, plan.instances, strict=True):
        snap = snaps[s.crn]
        series = [per_day[s.crn].get(d, 0) for d in days]
        total = sum(series)
        peak = max(series, default=0)
        t = trend(per_day[s.crn], today, span=args.span)
        pc = None
        if s.target_usage_seconds is not None and s.balance_period is not None:
            pr = pace(
                s.target_usage_seconds,
                snap.balance_period_consumed_seconds or 0,
                s.balance_period.start_date,
                s.balance_period.end_date,
                today,
                tolerance=args.tolerance / 100,
            )
            pc = {
                "target_seconds": pr.target_seconds,
                "used_seconds": pr.used_seconds,
                "expected_seconds": pr.expected_seconds,
                "elapsed_fraction": round(pr.elapsed_fraction, 4),
                "status": pr.status,
            }
        bd = p.limit_breakdown

        def fig(seconds: float | None, *, ru: float | None = None, crn: str = s.crn) -> float | None:
            return units.value(seconds, crn, ru=ru)

        instances.append(
            {
                "name": p.name,
                "crn": s.crn,
                "usage_period": None if snap.window is None else snap.window.to_dict(),
                "consumed_28d_seconds": snap.consumed_28d_seconds,
                "consumed_14d_seconds": snap.consumed_14d_seconds,
                "consumed_7d_seconds": snap.consumed_7d_seconds,
                "consumed_3d_seconds": snap.consumed_3d_seconds,
                "consumed_24h_seconds": snap.consumed_24h_seconds,
                "current_allocation_seconds": p.current_allocation_seconds,
                "new_allocation_seconds": p.new_allocation_seconds,
                "allocation_delta_seconds": p.new_allocation_seconds - p.current_allocation_seconds,
                "current_limit_seconds": p.current_limit_seconds,
                "new_limit_seconds": p.new_limit_seconds,
                "effective_limit_seconds": p.effective_limit_seconds,
                "limit_breakdown": None
                if bd is None
                else {
                    "base_seconds": bd.base_seconds,
                    "grant_funded_seconds": bd.grant_funded_seconds,
                    "unspent_grant_seconds": bd.unspent_grant_seconds,
                    "pre_boost_overage_seconds": bd.pre_boost_overage_seconds,
                    "total_seconds": bd.total_seconds,
                },
                "limit_reached": p.limit_reached,
                "fairness": None if p.fairness == float("inf") else p.fairness,
                "activity_score": p.activity_score,
                "standing": standing(snap.consumed_28d_seconds, snap.allocation_seconds),
                "reason": p.reason,
                "window": {
                    "total_seconds": total,
                    "mean_seconds_per_day": round(total / len(days), 1) if days else 0.0,
                    "peak_seconds": peak,
                    "peak_date": days[series.index(peak)].isoformat() if peak > 0 else None,
                    "active_days": sum(1 for v in series if v > 0),
                },
                "trend": {
                    "span_days": args.span,
                    "recent_seconds": t.recent_seconds,
                    "previous_seconds": t.previous_seconds,
                    "change": None if t.change is None else round(t.change, 4),
                    "label": t.label,
                },
                "pace": pc,
                "daily": {d.isoformat(): v for d, v in zip(days, series, strict=True)},
                "in_unit": {
                    "consumed_28d": fig(snap.consumed_28d_seconds, ru=snap.consumed_ru),
                    "consumed_14d": fig(snap.consumed_14d_seconds),
                    "consumed_7d": fig(snap.consumed_7d_seconds),
                    "consumed_3d": fig(snap.consumed_3d_seconds),
                    "consumed_24h": fig(snap.consumed_24h_seconds),
                    "current_allocation": fig(p.current_allocation_seconds),
                    "new_allocation": fig(p.new_allocation_seconds),
                    "current_limit": fig(p.current_limit_seconds),
                    "new_limit": fig(p.new_limit_seconds),
                    "window_total": fig(total),
                    "window_mean_per_day": fig(total / len(days) if days else 0.0),
                    "window_peak": fig(peak),
                },
            }
        )
    return {
        **units.to_dict(),
        "today": today.isoformat(),
        "window": {"start": start.isoformat(), "end": today.isoformat(), "days": len(days)},
        "account": summary_dict(summary, units),
        "reserve": {
            "percent": cfg.allocation_reserve_percent,
            "reserve_seconds": plan.reserve_seconds,
            "distributable_pool_seconds": plan.distributable_seconds,
        },
        "instances": instances,
        "over_target": [i["name"] for i in instances if i["standing"] == "over"],
        "under_target": [i["name"] for i in instances if i["standing"] == "under"],
        "validation_errors": [v.message for v in plan.violations],
        "warnings": [w.message for w in plan.warnings],
        "changes": sum(
            1
            for p in plan.instances
            if p.new_allocation_seconds != p.current_allocation_seconds
            or p.new_limit_seconds != p.current_limit_seconds
        ),
    }


def _delta(cur: int | None, new: int | None, units: Units, crn: str) -> str:
    def text(seconds: int | None) -> str:
        return "none" if seconds is None else units.text(seconds, crn)

    if cur == new:
        return text(cur)
    sign = ""
    if cur is not None and new is not None:
        sign = f" ({units.signed(new - cur, crn)})"
    return f"{text(cur)} → {text(new)}{sign}"


ROLLING_LABEL = "rolling 28 days"


def period_label(instance: dict[str, Any]) -> str:
    """The period an instance's usage figure counts over (no period from IBM: qauvern 0.14's 28 days)."""
    period = instance.get("usage_period")
    return ROLLING_LABEL if period is None else str(period["label"])


def _print(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    from rich.table import Table

    from qauvern_hpc.commands.admin_common import console, print_account, summary_from_dict
    from qauvern_hpc.core.report_units import Units
    from qauvern_hpc.planner.admin_report import format_fairness, sparkline

    con = console(args)
    units = Units.from_dict(doc)
    if doc["validation_errors"]:
        con.print("[bold red]VALIDATION ERRORS[/bold red] (rebalance would refuse this plan)")
        for v in doc["validation_errors"]:
            con.print(f"  [red]✗[/red] {v}")
    if doc["warnings"]:
        con.print("[bold yellow]WARNINGS[/bold yellow]")
        for w in doc["warnings"]:
            con.print(f"  [yellow]![/yellow] {w}")
    con.print("[bold]ACCOUNT PLAN[/bold]")
    print_account(con, summary_from_dict(doc["account"]), units)

    t = Table(
        title=f"Instance analysis in {units.unit} (IBM usage only; rebalance --dry-run adds Slurm's queue)"
    )
    periods = [period_label(i) for i in doc["instances"]]
    rolling = all(p == ROLLING_LABEL for p in periods)
    head = ("Instance", "28d") if rolling else ("Instance", "Period", "Usage")
    for col in (*head, "14d", "7d", "3d", "24h", "Allocation", "Limit", "Fairness", "Reason"):
        t.add_column(col, justify="left" if col in ("Instance", "Period", "Reason") else "right")
    for i, period in zip(doc["instances"], periods, strict=True):
        crn = i["crn"]

        def dur(seconds: float | None, crn: str = crn) -> str:
            return units.text(seconds, crn)

        t.add_row(
            i["name"][:35],
            *(() if rolling else (period,)),
            units.quantity(i["in_unit"]["consumed_28d"]),  # IBM's RUs where it sent them
            dur(i["consumed_14d_seconds"]),
            dur(i["consumed_7d_seconds"]),
            dur(i["consumed_3d_seconds"]),
            dur(i["consumed_24h_seconds"]),
            _delta(i["current_allocation_seconds"], i["new_allocation_seconds"], units, crn),
            _delta(i["current_limit_seconds"], i["new_limit_seconds"], units, crn),
            format_fairness(i["fairness"]),
            i["reason"][:60],
        )
    con.print(t)

    w = doc["window"]
    u = Table(title=f"Usage per day, {w['start']} .. {w['end']} (today excluded)")
    for col in ("Instance", "Total", "Mean/day", "Peak", "Active days", "Trend", "Standing", "Pace", "Days"):
        u.add_column(
            col, justify="left" if col in ("Instance", "Trend", "Standing", "Pace", "Days") else "right"
        )
    for i in doc["instances"]:
        win, tr, pc = i["window"], i["trend"], i["pace"]

        def dur(seconds: float | None, crn: str = i["crn"]) -> str:
            return units.text(seconds, crn)

        change = "" if tr["change"] is None else f" {tr['change'] * 100:+.0f}%"
        pace_text = (
            "-"
            if pc is None
            else f"{pc['status']} ({dur(pc['used_seconds'])} of {dur(pc['expected_seconds'])})"
        )
        u.add_row(
            i["name"][:35],
            dur(win["total_seconds"]),
            dur(win["mean_seconds_per_day"]),
            "-" if win["peak_date"] is None else f"{dur(win['peak_seconds'])} {win['peak_date']}",
            f"{win['active_days']}/{w['days']}",
            tr["label"] + change,
            i["standing"],
            pace_text,
            sparkline(list(i["daily"].values())[-28:]),
        )
    con.print(u)
    if args.daily and doc["instances"]:
        d = Table(title=f"Every day ({units.unit})")
        d.add_column("Date")
        for i in doc["instances"]:
            d.add_column(i["name"][:20], justify="right")
        for day in doc["instances"][0]["daily"]:
            d.add_row(day, *(units.text(i["daily"][day], i["crn"]) for i in doc["instances"]))
        con.print(d)
    con.print(f"Over target (fairness > 1): {', '.join(doc['over_target']) or 'none'}")
    con.print(f"Under target (fairness < 0.5): {', '.join(doc['under_target']) or 'none'}")
    if doc["changes"]:
        con.print(f"Proposed changes: {doc['changes']} instance(s); apply with `qauvern-hpc rebalance`")
    else:
        con.print("[green]✓[/green] No changes proposed")
