"""`qauvern-hpc check-config`: validate the site config and print the resolved tables."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from qauvern_hpc.core.errors import ConfigError, ExitCode

if TYPE_CHECKING:
    from qauvern_hpc.config import LoadedConfig
    from qauvern_hpc.policy.compiled import Policy

HELP = "validate the site config and print the resolved table"
DESCRIPTION = """\
Validate the site config (default /etc/qauvern-hpc/config.yaml, or --config / $QAUVERN_HPC_CONFIG) and
print how it resolves: instances, QPU resources and the mapping rules in the order they are tried.

Every problem is reported with file:line:column and the key path, e.g.

  config.yaml:14:5: instances[1].crn: duplicate CRN: instances 'physics' and 'phys2' are the same IBM instance
  config.yaml:22:7: rules[0].match.user: use `users` (a list of globs)

Each instance's CRN must be an IBM Quantum instance's (crn:v1:...:quantum-computing:REGION:a/ACCOUNT:ID::).
API key files must exist and be readable by their owner only (chmod 600). Warnings (deprecated resource
types, rules that can never match, resources no rule allows, instances without a key) do not fail the
check. It also tells when the rendered policy.json is older than the config (run render-policy)."""
EPILOG = """\
examples:
  qauvern-hpc check-config                           validate /etc/qauvern-hpc/config.yaml
  qauvern-hpc check-config -c ./config.yaml --json   machine-readable result (errors too)
  qauvern-hpc check-config --no-key-check            on a machine without the key files
  qauvern-hpc check-config --example > config.yaml   start from the commented example

exit codes: 0 valid (warnings allowed), 3 invalid config."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--example", action="store_true", help="print the commented example config and exit")
    parser.add_argument(
        "--schema",
        choices=("json", "markdown"),
        help="print the config's JSON Schema or its Markdown reference (docs/) and exit",
    )
    parser.add_argument(
        "--no-key-check",
        action="store_true",
        help="do not check that the API key files exist and are mode 0600",
    )


def _fmt_seconds(v: int | None) -> str:
    from qauvern_hpc.core.units import format_seconds

    return "-" if v is None else format_seconds(v)


def _globs(v: tuple[str, ...] | None) -> str:
    from rich.markup import escape

    return "*" if v is None else escape(", ".join(v))


def _stale_policy_note(loaded: LoadedConfig) -> str | None:
    from qauvern_hpc.policy.compiled import default_policy_path

    path = default_policy_path()
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("source") != str(loaded.path.resolve()):
        return None
    if data.get("source_sha256") != loaded.sha256:
        return f"{path} was rendered from an older version of this config: run `qauvern-hpc render-policy`"
    return None


def _print_tables(loaded: LoadedConfig, policy: Policy, notes: list[str]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
    console = Console(width=width, highlight=False)
    cfg = loaded.config
    console.print(
        f"[bold]{escape(str(loaded.path))}[/bold]: valid (account {cfg.ibm.account_id}, plan {cfg.ibm.plan})"
    )

    inst = Table(title="instances", title_justify="left")
    for col in ("name", "plan", "region", "CRN", "API key file", "limit", "target", "net grants"):
        inst.add_column(col)
    for i in cfg.instances:
        key = cfg.api_key_file_for(i.name)
        grants = ", ".join(
            f"+{_fmt_seconds(g.net_grant_seconds)} {g.start_date.date()}..{g.end.date()}"
            for g in i.net_grants
        )
        inst.add_row(
            i.name,
            cfg.plan_of(i.name),
            i.region,
            i.crn,
            escape(str(key)) if key else "[red]none[/red]",
            _fmt_seconds(i.limit_seconds),
            _fmt_seconds(i.target_usage_seconds),
            grants or "-",
        )
    console.print(inst)

    via: dict[str, list[str]] = {}
    for rule in (*policy.rules, policy.default):
        if not rule.deny:
            for name in rule.resources:
                entry = f"{rule.instance} ({rule.name})"
                if entry not in via.setdefault(name, []):
                    via[name].append(entry)
    res = Table(title="QPU resources (--qpu names)", title_justify="left")
    for col in (
        "name",
        "backend",
        "type",
        "session",
        "max TTL",
        "fail mode",
        "API key in job",
        "instance (rule)",
    ):
        res.add_column(col)
    for r in policy.resources.values():
        res.add_row(
            r.name,
            r.backend,
            r.type,
            r.session_mode or "plan's default",
            _fmt_seconds(r.max_ttl_seconds),
            r.fail_mode,
            "yes" if r.expose_api_key else "no",
            "\n".join(via.get(r.name, [])) or "[yellow]no rule[/yellow]",
        )
    console.print(res)

    rules = Table(title="rules (first match wins)", title_justify="left")
    for col in ("#", "rule", "users", "accounts", "partitions", "qos", "decision"):
        rules.add_column(col)
    for n, rule in enumerate((*policy.rules, policy.default), 1):
        if rule.deny:
            decision = f"[red]deny[/red]: {escape(rule.message or '')}"
        else:
            decision = f"[green]{rule.instance}[/green]: {', '.join(rule.resources)}"
        m = rule.match
        number = str(n) if rule.name != "default" else "-"
        rules.add_row(
            number,
            rule.name,
            _globs(m.users),
            _globs(m.accounts),
            _globs(m.partitions),
            _globs(m.qos),
            decision,
        )
    console.print(rules)
    console.print(f"state_dir: {policy.state_dir}")
    for w in notes:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}")


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.config import compile_policy, example_config_text, load_config_full

    if args.example:
        sys.stdout.write(example_config_text())
        return ExitCode.OK
    if args.schema:
        from qauvern_hpc.config.docs import reference_markdown, schema_json

        sys.stdout.write(schema_json() if args.schema == "json" else reference_markdown())
        return ExitCode.OK
    try:
        loaded = load_config_full(args.config, check_key_files=not args.no_key_check)
    except ConfigError as exc:
        if args.json:
            lines = [ln for ln in exc.message.splitlines() if ln and ln != "invalid config:"]
            print(json.dumps({"valid": False, "config": str(args.config), "errors": lines}, indent=2))
            return ExitCode.CONFIG
        raise
    policy = compile_policy(loaded)
    notes = list(loaded.warnings)
    stale = _stale_policy_note(loaded)
    if stale:
        notes.append(stale)
    if args.json:
        out = {
            "valid": True,
            "config": str(loaded.path),
            "sha256": loaded.sha256,
            "warnings": notes,
            "policy": policy.to_dict(),
        }
        print(json.dumps(out, indent=2))
        return ExitCode.OK
    _print_tables(loaded, policy, notes)
    return ExitCode.OK
