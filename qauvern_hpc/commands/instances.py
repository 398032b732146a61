"""`qauvern-hpc instances`: the instances' allocation, limit, 28-day usage and fairness (no admin rights)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qauvern_hpc.ops.account import InstanceRow

READS_API_KEY = True  # --api-key: the key comes from qauvern_hpc.ibm.factory
HELP = "list the IBM Quantum instances with allocation, limit, 28-day usage and fairness (read-only)"
DESCRIPTION = """\
List the configured IBM Quantum instances (config order is kept in --json; the table is sorted by fairness,
highest first) with what IBM reports for each: allocation, limit, usage over its plan's period
(rolling 28 days on Premium and Open, the contract on Flex, since creation on Pay-As-You-Go; --json:
usage_period), utilization and fairness (= usage / allocation; IBM runs the lowest first), then the totals.

This reads only the Resource Controller's instance list and each instance's own usage
(GET /v1/instances/usage): no account-plan or analytics call, so it works with a key that has no
administrator rights on the account. `qauvern-hpc show` adds the account's budget and what is unallocated.

Figures are in --unit (ru, qau, hours or seconds); --json keeps every *_seconds field and adds `unit`
and each figure in it (`in_unit`; null where no RU rate is known). In RUs the totals add each instance's
own figure, and are null if one of them is.

A configured instance that IBM does not list (deleted, archived, another plan) or whose usage cannot be read
is shown with the reason and makes the command exit non-zero."""
EPILOG = """\
examples:
  qauvern-hpc instances                        the configured instances
  qauvern-hpc instances --all                  also the plan's instances the config does not list
  qauvern-hpc instances --json | jq '.instances[] | select(.fairness > 1)'
  qauvern-hpc --api-key instances < key.txt    the key from stdin (no admin rights needed)

exit codes: 0 ok, 3 invalid config or a configured instance missing from the plan, 4 IBM unavailable or an
instance's usage unreadable."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qauvern_hpc.commands.admin_common import add_unit_argument

    parser.add_argument(
        "--all", action="store_true", help="also list the plan's instances the config does not name"
    )
    add_unit_argument(parser)


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.commands.admin_common import (
        console,
        emit_json,
        fairness_markup,
        limit_text,
        load_admin_config,
        period_text,
        report_units,
    )
    from qauvern_hpc.config.ibm_access import client_from_config
    from qauvern_hpc.core.report_units import total
    from qauvern_hpc.ops.account import problems_exit_code, read_instances

    cfg = load_admin_config(args)
    with client_from_config(cfg, args) as client:
        rows = read_instances(client, cfg, include_unconfigured=args.all)
    ok = [r for r in rows if r.error is None]
    totals: dict[str, Any] = {
        "configured_instances": sum(1 for r in rows if r.configured and r.other_plan is None),
        "total_allocation_seconds": sum(r.allocation_seconds or 0 for r in ok if r.configured),
        "total_consumed_seconds": sum(r.consumed_28d_seconds or 0 for r in ok if r.configured),
    }
    alloc = totals["total_allocation_seconds"]
    totals["utilization_percent"] = (
        round(totals["total_consumed_seconds"] / alloc * 100, 2) if alloc else None
    )
    code = problems_exit_code(rows)
    units = report_units(
        args, cfg, [r.usage_unit for r in rows], {r.crn: r.ru_rate for r in rows if r.error is None}
    )
    # each instance at its own rate (IBM's RUs for the usage where it sent them); null if one is unknown
    figures = [r.in_unit(units) for r in ok if r.configured]
    totals["in_unit"] = {
        "total_allocation": total(f["allocation"] for f in figures),
        "total_consumed": total(f["consumed"] for f in figures),
    }
    if args.json:
        emit_json(
            {
                **units.to_dict(),
                "plan": cfg.ibm.plan,
                "instances": [{**r.to_dict(), "in_unit": r.in_unit(units)} for r in rows],
                "totals": totals,
                "problems": [f"{r.name}: {r.error}" for r in rows if r.error],
            }
        )
    else:
        from rich.table import Table

        con = console(args)
        table = Table(title=f"IBM Quantum instances ({cfg.ibm.plan} plan, figures in {units.unit})")
        for col in (
            "Instance",
            "Region",
            "Allocation",
            "Consumed",
            "Period",
            "Utilization",
            "Limit",
            "Fairness",
        ):
            table.add_column(col, justify="left" if col in ("Instance", "Region", "Period") else "right")
        if args.all:
            table.add_column("Configured")

        def key(r: InstanceRow) -> float:
            f = r.fairness
            return -1.0 if r.error else (float("inf") if f is None else f)

        for r in sorted(rows, key=key, reverse=True):
            cells = [
                r.name[:35],
                r.region,
                units.text(r.allocation_seconds, r.crn),
                units.text(r.consumed_28d_seconds, r.crn, ru=r.consumed_ru),
                r.note or period_text(r),
                "-" if r.utilization is None else f"{r.utilization:.1f}%",
                limit_text(r.limit_seconds, units, r.crn) if r.allocation_seconds is not None else "-",
                "-" if r.error else fairness_markup(r.fairness),
            ]
            if args.all:
                cells.append("yes" if r.configured else "no")
            table.add_row(*cells)
        con.print(table)
        util = totals["utilization_percent"]
        in_unit = totals["in_unit"]
        con.print(
            f"TOTALS (configured instances): {totals['configured_instances']} instances, allocation "
            f"{units.quantity(in_unit['total_allocation'])}, consumed "
            f"{units.quantity(in_unit['total_consumed'])}, utilization "
            + ("-" if util is None else f"{util:.1f}%")
        )
    for r in rows:
        if r.error:
            print(f"qauvern-hpc instances: {r.name} ({r.crn}): {r.error}", file=sys.stderr)
    return code
