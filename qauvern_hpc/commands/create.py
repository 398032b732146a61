"""`qauvern-hpc create`: a new IBM Quantum instance, checked against the plan's unallocated budget."""

from __future__ import annotations

import argparse
import json
from typing import Any

from qauvern_hpc.core.errors import ExitCode, QauvernError, UsageError

READS_API_KEY = True  # --api-key: the key comes from qauvern_hpc.ibm.factory
HELP = "create an IBM Quantum instance (allocation/limit like 10h, 2.5d, 1qau), checked against the budget"
DESCRIPTION = """\
Create an IBM Quantum instance in the config's account and plan (POST /v2/resource_instances) with an
initial allocation and, optionally, a limit.

Sizes take seconds or a number with a unit: 90s, 15m, 10h, 2.5d, 1w, 1qau (1 QAU = 1600 min = 96,000 s).
Before anything is created the allocation is checked against the plan's unallocated budget (an instance
cannot hold seconds the plan does not have; free some with `qauvern-hpc rebalance` or a smaller
--allocation), and a live instance of the same name in the plan is refused (config names must be unique).
--dry-run does every check and creates nothing. A create is sent once, never retried after IBM may have
acted, so a failed run never leaves two instances.

Afterwards add the printed `instances` entry to the config so the rebalancer manages it."""
EPILOG = """\
examples:
  qauvern-hpc create physics-2 --target us-east --resource-group RG_ID --allocation 10h
  qauvern-hpc create chem-eu -t eu-de -g RG_ID -a 2.5d -l 1qau --tag hpc --tag chemistry
  qauvern-hpc create teaching -t us-east -g RG_ID -a 0.5qau --dry-run
  qauvern-hpc create x -t us-east -g RG_ID -a 1qau --plan paygo --json

exit codes: 0 created (or the dry run passed), 1 refused (over the unallocated budget, duplicate name) or
IBM refused the create, 2 bad usage (size, region), 3 invalid config or no key, 4 IBM unavailable."""

REGIONS = ("us-east", "eu-de")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the new instance's name")
    parser.add_argument("--target", "-t", required=True, choices=REGIONS, help="region")
    parser.add_argument("--resource-group", "-g", required=True, help="IBM Cloud resource group id")
    parser.add_argument("--allocation", "-a", required=True, help="initial allocation, e.g. 10h, 2.5d, 1qau")
    parser.add_argument("--limit", "-l", help="instance limit, e.g. 20h (default: none)")
    parser.add_argument(
        "--plan", "-p", help="internal, premium, open, flex, paygo or a plan id (default: the config's)"
    )
    parser.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="check everything, create nothing")


def _size(text: str, what: str) -> int:
    from qauvern_hpc.core.units import parse_seconds

    try:
        return parse_seconds(text)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


def check_request(name: str, allocation: int, unallocated: int, existing_names: list[str]) -> list[str]:
    """Why the create must be refused (pure); empty = go."""
    from qauvern_hpc.core.units import format_seconds

    problems = []
    if allocation <= 0:
        problems.append("--allocation must be more than 0 seconds (an allocation of 0 archives an instance)")
    if allocation > unallocated:
        problems.append(
            f"--allocation {format_seconds(allocation)} ({allocation}s) is more than the plan's unallocated "
            f"{format_seconds(unallocated)} ({unallocated}s): lower it, or free allocation first "
            "(qauvern-hpc rebalance, or lower another instance)"
        )
    if name in existing_names:
        problems.append(f"the plan already has a live instance named {name!r}; pick another name")
    return problems


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.commands.admin_common import dur, emit_json, limit_text, load_admin_config
    from qauvern_hpc.commands.configure import _plan
    from qauvern_hpc.config.ibm_access import client_from_config

    name = args.name.strip()
    if not name:
        raise UsageError("the instance name must not be empty")
    allocation = _size(args.allocation, "--allocation")
    limit = _size(args.limit, "--limit") if args.limit is not None else None
    cfg = load_admin_config(args)
    plan, plan_id = _plan(args.plan) if args.plan else (cfg.ibm.plan, cfg.ibm.plan_id)
    with client_from_config(cfg, args) as client:
        account = client.account_plan(cfg.ibm.account_id, plan_id)
        live = [i.name for i in client.list_instances(plan_id) if not i.archived]
        problems = check_request(name, allocation, max(0, account.unallocated_seconds), live)
        request: dict[str, Any] = {
            "name": name,
            "target": args.target,
            "resource_group": args.resource_group,
            "plan": plan,
            "plan_id": plan_id,
            "allocation_seconds": allocation,
            "limit_seconds": limit,
            "tags": list(args.tag),
            "unallocated_seconds_before": account.unallocated_seconds,
        }
        notes = []
        if limit is not None and limit < allocation:
            notes.append(f"the limit ({dur(limit)}) is below the allocation ({dur(allocation)})")
        if problems:
            if args.json:
                emit_json(
                    {"created": False, "dry_run": args.dry_run, "request": request, "problems": problems}
                )
            raise QauvernError("; ".join(problems))
        if args.dry_run:
            if args.json:
                emit_json({"created": False, "dry_run": True, "request": request, "notes": notes})
            else:
                print(
                    f"[dry run] would create {name!r} in {args.target} ({plan} plan): allocation "
                    f"{dur(allocation)}, limit {limit_text(limit)}; unallocated "
                    f"{dur(account.unallocated_seconds)} -> {dur(account.unallocated_seconds - allocation)}"
                )
                for n in notes:
                    print(f"note: {n}")
            return ExitCode.OK
        made = client.create_instance(
            name,
            target=args.target,
            resource_group=args.resource_group,
            plan_id=plan_id,
            allocation_seconds=allocation,
            limit_seconds=limit,
            tags=list(args.tag) or None,
        )
    from qauvern_hpc.planner.admin_report import config_name

    entry = {"name": config_name(made.name, set()), "crn": made.crn}
    if limit is not None:
        entry["limit_seconds"] = str(limit)
    if args.json:
        emit_json(
            {
                "created": True,
                "dry_run": False,
                "request": request,
                "instance": {"name": made.name, "crn": made.crn, "state": made.state, "region": args.target},
                "config_entry": entry,
                "notes": notes,
            }
        )
        return ExitCode.OK
    print(f"Name:       {made.name}")
    print(f"CRN:        {made.crn}")
    print(f"State:      {made.state or 'unknown'}")
    print(f"Region:     {args.target}")
    print(f"Plan:       {plan}")
    print(f"Allocation: {dur(allocation)} ({allocation}s)")
    print(f"Limit:      {limit_text(limit)}")
    for n in notes:
        print(f"note: {n}")
    print("\nAdd to the config's `instances:` so the rebalancer manages it:")
    print(f"  - name: {entry['name']}\n    crn: {json.dumps(made.crn)}")
    if limit is not None:
        print(f"    limit_seconds: {limit}")
    return ExitCode.OK
