"""`qauvern-hpc configure`: write a starter site config from the IBM account's instances."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qauvern_hpc.core.errors import ExitCode, QauvernError, UsageError
from qauvern_hpc.core.files import atomic_write

READS_API_KEY = True  # --api-key: the key comes from qauvern_hpc.ibm.factory
HELP = "generate a site config from the account's IBM Quantum instances (names, CRNs, limits, starter rules)"
DESCRIPTION = """\
Read the account's IBM Quantum instances of one plan from the Resource Controller and write a starter
qauvern-hpc config: the ibm section (account, plan, hosts), minimum_allocation_seconds 60, no reserve, one
`instances` entry per live instance (a config-safe name, the CRN, its current limit as limit_seconds), and a
starter `resources` / `rules` section (with --resource NAME: one resource per QPU and one rule per instance
allowing the Slurm account of the same name; without: commented examples). The default rule denies.

Archived instances (allocation 0) are skipped. The account is taken from the instances' CRNs unless
--account-id is given, which then also filters them. The file holds no secret: only the path of the key
file (ibm.api_key_file, from --api-key-file or --key-file-path). It is written 0644, atomically, and an
existing file is never overwritten without --force.

Then: edit the names and rules, `qauvern-hpc check-config`, `qauvern-hpc render-policy`."""
EPILOG = """\
examples:
  qauvern-hpc configure --plan premium                       writes --config (/etc/qauvern-hpc/config.yaml)
  qauvern-hpc configure --plan premium -o site.yaml --resource ibm_torino --resource ibm_fez
  qauvern-hpc configure --plan internal --region eu-de -o - | less      print instead of writing
  qauvern-hpc --api-key configure --plan premium -o new.yaml < key.txt
  qauvern-hpc configure --plan premium --emulator http://127.0.0.1:8790 -o /tmp/try.yaml --force

exit codes: 0 written, 1 no live instance found, 2 bad usage or the file exists (use --force),
3 no API key, 4 IBM unavailable."""

REGIONS = ("us-east", "eu-de")
DEFAULT_KEY_PATH = "/etc/qauvern-hpc/ibmcloud.key"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plan", "-p", required=True, help="internal, premium, open, flex or paygo (or the plan id)"
    )
    parser.add_argument("--account-id", "-a", help="the IBM Cloud account id (default: from the CRNs)")
    parser.add_argument("--region", choices=REGIONS, help="only instances in this region")
    parser.add_argument(
        "--output", "-o", help="where to write (default: the --config path); '-' prints to stdout"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.add_argument(
        "--resource",
        action="append",
        default=[],
        metavar="QPU",
        help="a QPU (IBM backend) --qpu may name, e.g. ibm_torino (repeatable): adds it and starter rules",
    )
    parser.add_argument(
        "--emulator", metavar="URL", help="read from `qauvern-hpc emulator` at URL (and write it)"
    )
    parser.add_argument(
        "--key-file-path",
        help=f"ibm.api_key_file to write (default: --api-key-file if given, else {DEFAULT_KEY_PATH})",
    )


def _plan(text: str) -> tuple[str, str]:
    from qauvern_hpc.config import PLAN_IDS

    v = text.strip().lower()
    if v in PLAN_IDS:
        return v, PLAN_IDS[v]
    for name, pid in PLAN_IDS.items():
        if v == pid:
            return name, pid
    raise UsageError(f"unknown plan {text!r} (use internal, premium, open, flex or paygo, or their plan id)")


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.ibm import factory

    plan, plan_id = _plan(args.plan)
    out = args.output or args.config
    if out != "-" and Path(out).exists() and not args.force:
        raise UsageError(f"{out} exists; not overwriting it", hint="pass --force, or choose another --output")
    where = factory.endpoints(emulator=args.emulator, staging=bool(args.staging))
    with factory.client(args, where) as client:
        listed = client.list_instances(plan_id)
    doc = build(
        listed,
        plan=plan,
        account_id=args.account_id,
        region=args.region,
        resources=args.resource,
        emulator=args.emulator,
        staging=bool(args.staging),
        key_file=args.key_file_path or args.api_key_file or DEFAULT_KEY_PATH,
    )
    text = render(doc)
    _check(text, out)
    for note in doc["notes"]:
        print(f"qauvern-hpc configure: {note}", file=sys.stderr)
    if not doc["instances"]:
        print("qauvern-hpc configure: no live instance found; nothing written", file=sys.stderr)
        return ExitCode.FAILURE
    if out == "-" and not args.json:
        sys.stdout.write(text)
    elif out != "-":
        write_new(Path(out), text, force=args.force)
    if args.json:
        result: dict[str, Any] = {
            "output": out,
            "account_id": doc["account_id"],
            "plan": plan,
            "instances": doc["instances"],
            "skipped": doc["skipped"],
        }
        if out == "-":
            result["config"] = text  # with --json the YAML travels inside the JSON document
        print(json.dumps(result, indent=2))
    elif out != "-":
        print(f"wrote {out}: {len(doc['instances'])} instance(s); next: qauvern-hpc check-config -c {out}")
    return ExitCode.OK


def build(
    listed: list[Any],
    *,
    plan: str,
    account_id: str | None,
    region: str | None,
    resources: list[str],
    emulator: str | None,
    staging: bool,
    key_file: str,
) -> dict[str, Any]:
    """What the file will say (pure): instances sorted by IBM name, skipped ones with the reason."""
    from qauvern_hpc.ibm.crn import crn_account, crn_or_none
    from qauvern_hpc.planner.admin_report import config_name

    notes: list[str] = []
    skipped: list[dict[str, str]] = []
    accounts = sorted({a for i in listed if (a := crn_account(i.crn))})
    if account_id is None:
        if len(accounts) > 1:
            raise UsageError(
                f"the key sees instances of {len(accounts)} accounts ({', '.join(accounts)})",
                hint="choose one with --account-id",
            )
        if not accounts:
            raise UsageError("cannot tell the account from the instances' CRNs", hint="give --account-id")
        account_id = accounts[0]
    taken: set[str] = set()
    instances: list[dict[str, Any]] = []
    for inst in sorted(listed, key=lambda i: (i.name, i.crn)):
        why = None
        parsed = crn_or_none(inst.crn)
        if parsed is None:
            why = "not an IBM Quantum instance CRN"
        elif parsed.account_id != account_id:
            why = f"account {parsed.account_id}, not {account_id}"
        elif region and parsed.region != region:
            why = f"region {parsed.region}, not {region}"
        elif inst.archived:
            why = "archived (allocation 0)"
        if why:
            skipped.append({"name": inst.name, "crn": inst.crn, "reason": why})
            continue
        instances.append(
            {
                "name": config_name(inst.name, taken),
                "ibm_name": inst.name,
                "crn": inst.crn,
                "limit_seconds": inst.limit_seconds,
                "allocation_seconds": inst.allocation_seconds,
            }
        )
    if skipped:
        notes.append(
            f"skipped {len(skipped)} instance(s): "
            + "; ".join(f"{s['name']} ({s['reason']})" for s in skipped)
        )
    for r in resources:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", r):
            raise UsageError(f"--resource {r!r}: use 1 to 64 letters, digits, '_', '.' or '-'")
    return {
        "account_id": account_id,
        "plan": plan,
        "emulator": emulator,
        "staging": staging,
        "key_file": key_file,
        "instances": instances,
        "skipped": skipped,
        "resources": list(dict.fromkeys(resources)),
        "notes": notes,
    }


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def render(doc: dict[str, Any]) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# qauvern-hpc site config, generated by `qauvern-hpc configure` on {stamp}.",
        "# Review the instance names and the rules, then run qauvern-hpc check-config and render-policy.",
        "# No secret is stored here: the API key lives in ibm.api_key_file (root-owned, mode 0600).",
        "",
        "ibm:",
        f"  account_id: {_q(doc['account_id'])}",
        f"  plan: {doc['plan']}",
    ]
    if doc["staging"]:
        lines.append("  staging: true")
    if doc["emulator"]:
        lines += ["  endpoints:", f"    emulator: {_q(doc['emulator'])}"]
    lines += [
        f"  api_key_file: {_q(doc['key_file'])}",
        "",
        "# Rebalancing never drops an instance's allocation below this.",
        "minimum_allocation_seconds: 60",
        "# Share of the budget kept out of rebalancing, for instances not listed below (0 <= x < 100).",
        "allocation_reserve_percent: 0",
        "",
        "# One entry per live instance of the plan (names are ours; IBM's name is in the comment).",
        "instances:",
    ]
    for i in doc["instances"]:
        lines.append(
            f"  - name: {i['name']}"
            + (f"    # IBM: {_q(i['ibm_name'])}" if i["ibm_name"] != i["name"] else "")
        )
        lines.append(f"    crn: {_q(i['crn'])}")
        if i["limit_seconds"] is not None:
            lines.append(f"    limit_seconds: {i['limit_seconds']}")
        else:
            lines.append("    # limit_seconds: 40h        # no limit is set at IBM")
    lines += ["", "# QPU resources `sbatch --qpu=NAME` may name (see `qauvern-hpc check-config --example`)."]
    if doc["resources"]:
        lines.append("resources:")
        for r in doc["resources"]:
            lines += [f"  - name: {r}", "    session_mode: batch", "    fail_mode: closed"]
    else:
        lines += [
            "resources: []",
            "# resources:",
            "#   - name: ibm_torino",
            "#     session_mode: batch",
            "#     fail_mode: closed",
        ]
    lines += [
        "",
        "# Mapping rules, tried in order; the first match decides. Starter: the Slurm account named like the",
        "# instance may use every resource. Adjust the accounts (globs) before going live.",
    ]
    if doc["resources"]:
        lines.append("rules:")
        for i in doc["instances"]:
            lines += [
                f"  - name: {i['name']}",
                f"    match: {{accounts: [{_q(i['name'])}]}}",
                f"    instance: {i['name']}",
                '    resources: ["*"]',
            ]
    else:
        lines.append("rules: []")
        for i in doc["instances"][:3]:
            lines += [
                f"#   - name: {i['name']}",
                f"#     match: {{accounts: [{_q(i['name'])}]}}",
                f"#     instance: {i['name']}",
                '#     resources: ["*"]',
            ]
    lines += ["", "# When no rule matches.", "default: deny", ""]
    return "\n".join(lines)


def _check(text: str, out: str) -> None:
    """The generated file must load (a bug here would otherwise surface later in check-config)."""
    from qauvern_hpc.config import parse_config

    base = Path.cwd() / "config.yaml" if out == "-" else Path(out)
    try:
        parse_config(text, base, check_key_files=False)
    except QauvernError as exc:  # pragma: no cover - a bug in render()
        raise QauvernError(f"internal error: the generated config does not validate: {exc}") from None


def write_new(path: Path, text: str, *, force: bool) -> None:
    """Write atomically, mode 0644 (the file holds no secret); refuse to replace a file without `force`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # without `force`, a file that appeared meanwhile is never overwritten
        atomic_write(path, text, mode=0o644, replace=force)
    except FileExistsError:
        raise UsageError(f"{path} exists; not overwriting it", hint="pass --force") from None
