"""`qauvern-hpc map`: explain which rule maps a job to an instance, and why."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from qauvern_hpc.core.errors import ExitCode

if TYPE_CHECKING:
    from qauvern_hpc.policy.compiled import Policy

HELP = "explain which rule maps a user/account/partition/QOS to an instance"
DESCRIPTION = """\
Decide, exactly as job_submit.lua (at submit time) and the prolog (before the job starts) do, whether a job
of this user, account, partition and QOS may use the QPU resources named, and on which IBM Quantum
instance. Every rule tried is listed with why it did or did not match; the first matching rule decides.

By default the YAML config is read (--config); --policy FILE uses a rendered policy.json instead, to see
what the hooks see. --partition may be a comma list, as with sbatch -p a,b: every partition must map the
same way. An empty --qos means the QOS is unknown (only `*` or an absent `qos` key matches it)."""
EPILOG = """\
examples:
  qauvern-hpc map --user alice --account physics --partition cpu --qpu ibm_torino
  qauvern-hpc map --user bob --account chemistry --partition cpu,quantum --qos normal --qpu ibm_fez,ibm_torino
  qauvern-hpc map --user carol --account course101 --partition cpu --qpu ibm_marrakesh --json
  qauvern-hpc map --policy /etc/slurm/policy.json --user alice --account physics --partition cpu --qpu ibm_fez

exit codes: 0 allowed, 1 denied, 3 invalid config or policy."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", "-u", required=True, help="the job's user name")
    parser.add_argument("--account", "-A", required=True, help="the job's Slurm account")
    parser.add_argument("--partition", "-p", required=True, help="the job's partition(s), comma-separated")
    parser.add_argument("--qos", "-q", default="", help="the job's QOS (default: unknown)")
    parser.add_argument("--cluster", "-M", default="", help="the job's Slurm cluster (default: unknown)")
    parser.add_argument(
        "--qpu", required=True, metavar="R[,R...]", help="the QPU resources, as for sbatch --qpu"
    )
    parser.add_argument("--policy", metavar="FILE", help="use a rendered policy.json instead of the config")


def _policy(args: argparse.Namespace) -> Policy:
    if args.policy:
        from qauvern_hpc.policy.compiled import load_policy

        return load_policy(args.policy)
    from qauvern_hpc.config import load_config

    return load_config(args.config, check_key_files=False).to_policy()


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.policy.mapping import JobIdentity, decide, parse_request

    policy = _policy(args)
    identity = JobIdentity(args.user, args.account, args.partition, args.qos, args.cluster)
    decision = decide(policy, identity, parse_request(args.qpu))
    code = ExitCode.OK if decision.allowed else ExitCode.FAILURE
    if args.json:
        out = {
            "identity": {"user": identity.user, "account": identity.account, "partition": identity.partition,
                         "qos": identity.qos},
            **decision.to_dict(),
        }  # fmt: skip
        print(json.dumps(out, indent=2))
        return code
    import os
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
    console = Console(width=width, highlight=False)
    verdict = "[bold green]ALLOWED[/bold green]" if decision.allowed else "[bold red]DENIED[/bold red]"
    console.print(f"{verdict} ({decision.code}): {escape(decision.message)}")
    console.print(f"job: {escape(identity.describe())}  --qpu={escape(args.qpu)}")
    if len(decision.reasons) > 1 or decision.rule is not None:
        console.print("rules tried:")
        for reason in decision.reasons:
            if reason != decision.message:
                console.print(f"  {escape(reason)}")
    if decision.allowed:
        table = Table(title="what the prolog will open", title_justify="left")
        for col in ("resource", "backend", "instance", "session", "max TTL", "fail mode", "API key file"):
            table.add_column(col)
        from qauvern_hpc.core.units import format_seconds

        for g in decision.resources:
            table.add_row(
                g.resource,
                g.backend,
                g.instance,
                g.session_mode,
                format_seconds(g.max_ttl_seconds),
                g.fail_mode,
                g.api_key_file or "none",
            )
        console.print(table)
    return code
