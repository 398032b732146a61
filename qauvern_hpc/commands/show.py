"""`qauvern-hpc show`: the account plan and every configured instance's allocation, limit, usage, fairness."""

from __future__ import annotations

import argparse
import sys

READS_API_KEY = True  # --api-key: the key comes from qauvern_hpc.ibm.factory
HELP = "show the account plan (budget, unallocated, reserve) and each instance's allocation and fairness"
DESCRIPTION = """\
Show the IBM Quantum account plan and the configured instances as IBM reports them now.

Account: the plan's allocation budget, what is still unallocated, the plan-wide usage of the rolling 28 days
(all instances, and the configured ones), whether the account is over its allocation budget (then the
rebalancer caps allocations at usage), what instances the config does not list hold, the reserve
(allocation_reserve_percent of the budget) and what a rebalance could move now.

Instances (config order): allocation, limit, usage over the plan's period (`Period`; --json: usage_period),
utilization, fairness (= usage / allocation; IBM's
fair share runs the lowest first) and standing: `over` (fairness > 1, used more than its allocation),
`under` (fairness < 0.5, plenty of headroom) or `on target`.

Figures are in --unit (ru, qau, hours or seconds; see --help of --unit); --json keeps every *_seconds
field and adds `unit` and each figure in it (`in_unit`; null where no RU rate is known).

Needs a key with administrator rights on the account (the account plan and analytics are read);
`qauvern-hpc instances` needs none."""
EPILOG = """\
examples:
  qauvern-hpc show
  qauvern-hpc show --json | jq .account.unallocated_seconds
  qauvern-hpc --staging show -c staging.yaml
  IBMCLOUD_API_KEY=... qauvern-hpc show        (prefer --api-key-file or --api-key < file on shared hosts)

exit codes: 0 ok, 3 invalid config or a configured instance missing from the plan, 4 IBM unavailable or an
instance's usage unreadable."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qauvern_hpc.commands.admin_common import add_unit_argument

    add_unit_argument(parser)


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.commands.admin_common import (
        console,
        emit_json,
        fairness_markup,
        limit_text,
        load_admin_config,
        period_text,
        print_account,
        report_units,
        summary_dict,
    )
    from qauvern_hpc.config.ibm_access import client_from_config
    from qauvern_hpc.ops.account import problems_exit_code, read_account, read_instances

    cfg = load_admin_config(args)
    with client_from_config(cfg, args) as client:
        rows = read_instances(client, cfg)
        summary = read_account(client, cfg, rows)
    code = problems_exit_code(rows)
    units = report_units(
        args, cfg, [r.usage_unit for r in rows], {r.crn: r.ru_rate for r in rows if r.error is None}
    )
    if args.json:
        emit_json(
            {
                **units.to_dict(),
                "account": summary_dict(summary, units),
                "instances": [{**r.to_dict(), "in_unit": r.in_unit(units)} for r in rows],
                "problems": [f"{r.name}: {r.error}" for r in rows if r.error],
            }
        )
    else:
        from rich.table import Table

        con = console(args)
        con.print("[bold]ACCOUNT SUMMARY[/bold]")
        print_account(con, summary, units)
        table = Table(title=f"Configured instances (figures in {units.unit})")
        for col in (
            "Instance",
            "Allocation",
            "Limit",
            "Consumed",
            "Period",
            "Utilization",
            "Fairness",
            "Standing",
        ):
            table.add_column(col, justify="left" if col in ("Instance", "Period", "Standing") else "right")
        for r in rows:
            d = r.to_dict()
            table.add_row(
                r.name[:35],
                units.text(r.allocation_seconds, r.crn),
                limit_text(r.limit_seconds, units, r.crn) if r.allocation_seconds is not None else "-",
                units.text(r.consumed_28d_seconds, r.crn, ru=r.consumed_ru),
                period_text(r),
                "-" if r.utilization is None else f"{r.utilization:.1f}%",
                "-" if r.error else fairness_markup(r.fairness, over_budget=summary.over_allocation_budget),
                d["standing"] or r.note or f"[red]{r.error}[/red]",
            )
        con.print(table)
    for r in rows:
        if r.error:
            print(f"qauvern-hpc show: {r.name} ({r.crn}): {r.error}", file=sys.stderr)
    return code
