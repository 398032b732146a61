"""`qauvern-hpc doctor`: check a live installation end to end and say what to fix."""

from __future__ import annotations

import argparse
import json

from qauvern_hpc.core.errors import ExitCode
from qauvern_hpc.ops.doctor import worst

HELP = "check the installation end to end (config, slurm.conf, hooks, SPANK, hookd, IBM, ledger)"
DESCRIPTION = """\
Check everything a `--qpu` job and the periodic jobs depend on, on this host, and say what to fix:

  config            the site config parses, key files are 0600
  rendered policy   policy.json / qpu_policy.lua exist and come from this config
  slurm.conf        PrologSlurmctld / EpilogSlurmctld run our wrappers, with this config's state_dir;
                    PrologEpilogTimeout is bounded; JobSubmitPlugins has lua; per-instance licenses exist
  SPANK             plugstack.conf loads qpu.so (`required`, same state_dir) and `sbatch --help` lists --qpu
  hookd             the resident hook daemon answers (when the wrappers use it)
  state directory   exists, root-owned, not group/world writable
  accounting        sacctmgr reaches slurmdbd; the mapped accounts exist
  IBM               each instance's key gets a token and sees its CRN (skip with --no-ibm)
  ledger            opens; when `collect` and `rebalance` last ran

Run it on the controller (slurmctld's host) as root; on a login node the controller-side checks tell
what this host sees. Nothing is changed."""
EPILOG = """\
examples:
  qauvern-hpc doctor                       all checks, a table
  qauvern-hpc doctor --no-ibm              without calling IBM (offline, or to spare the API)
  qauvern-hpc --json doctor | jq '.checks[] | select(.status != "ok")'

exit codes: 0 everything ok (warnings allowed), 1 a check failed, 3 the config is invalid."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-ibm", action="store_true", help="skip the checks that call IBM")
    parser.add_argument(
        "--slurm-conf",
        help="slurm.conf to check (default: $SLURM_CONF, else what scontrol reports)",
    )


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.ibm.factory import resolve_api_key
    from qauvern_hpc.ops.doctor_gather import DoctorOptions, gather

    options = DoctorOptions(
        config=args.config,
        api_key=lambda key_file: resolve_api_key(args, key_file),
        slurm_conf=args.slurm_conf,
        ibm=not args.no_ibm,
        staging=bool(args.staging),
    )
    checks = gather(options)
    status = worst(checks)
    if args.json:
        print(json.dumps({"status": status, "checks": [c.to_dict() for c in checks]}, indent=2))
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        style = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
        t = Table(title="qauvern-hpc doctor", show_lines=False)
        for col in ("check", "", "what was found", "fix"):
            t.add_column(col, overflow="fold")
        for c in checks:
            t.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", escape(c.detail), escape(c.hint))
        Console(highlight=False).print(t)
    if checks and checks[0].name == "config" and checks[0].status == "fail":
        return ExitCode.CONFIG
    return ExitCode.FAILURE if status == "fail" else ExitCode.OK
