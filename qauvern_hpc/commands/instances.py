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
    parser.add_argument(
        "--all", action="store_true", help="also list the plan's instances the config does not name"
    )


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.commands.admin_common import (
        console,
        dur,
        emit_json,
        fairness_markup,
        limit_text,
        load_admin_config,
        period_text,
    )
    from qauvern_hpc.config.ibm_access import client_from_config
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
    if args.json:
        emit_json(
            {
                "plan": cfg.ibm.plan,
                "instances": [r.to_dict() for r in rows],
                "totals": totals,
                "problems": [f"{r.name}: {r.error}" for r in rows if r.error],
            }
        )
    else:
        from rich.table import Table

        con = console(args)
        table = Table(title=f"IBM Quantum instances ({cfg.ibm.plan} plan)")
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
                dur(r.allocation_seconds),
                dur(r.consumed_28d_seconds),
                r.note or period_text(r),
                "-" if r.utilization is None else f"{r.utilization:.1f}%",
                limit_text(r.limit_seconds) if r.allocation_seconds is not None else "-",
                "-" if r.error else fairness_markup(r.fairness),
            ]
            if args.all:
                cells.append("yes" if r.configured else "no")
            table.add_row(*cells)
        con.print(table)
        util = totals["utilization_percent"]
        con.print(
            f"TOTALS (configured instances): {totals['configured_instances']} instances, allocation "
            f"{dur(alloc)}, consumed {dur(totals['total_consumed_seconds'])}, utilization "
            + ("-" if util is None else f"{util:.1f}%")
        )
    for r in rows:
        if r.error:
            print(f"qauvern-hpc instances: {r.name} ({r.crn}): {r.error}", file=sys.stderr)
    return code
