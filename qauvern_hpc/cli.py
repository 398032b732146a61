"""The `qauvern-hpc` command line.

Start-up stays fast: the top level imports only the standard library, and a subcommand's module is imported
only when that subcommand runs. Each command module exposes:

    HELP: str                          one line for the command list
    DESCRIPTION: str                   the longer text shown by `qauvern-hpc CMD --help` (optional)
    def add_arguments(parser) -> None
    def run(args) -> int               the exit code (see qauvern_hpc.core.errors.ExitCode)
    READS_API_KEY: bool                True if it takes --api-key (reads keys via qauvern_hpc.ibm.factory)

Global options (before or after the command): --config, --json, --staging, --api-key-file, --api-key, -v.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("qauvern_hpc.commands.demo", "run the end-to-end demo on a throwaway cluster and emulator"),
    "emulator": ("qauvern_hpc.commands.emulator", "run the local IBM Cloud IAM + IBM Quantum API emulator"),
    "check-config": (
        "qauvern_hpc.commands.check_config",
        "validate the site config and print the resolved table",
    ),
    "doctor": (
        "qauvern_hpc.commands.doctor",
        "check the installation end to end (config, slurm.conf, hooks, SPANK, hookd, IBM, ledger)",
    ),
    "map": (
        "qauvern_hpc.commands.map_cmd",
        "explain which rule maps a user/account/partition/QOS to an instance",
    ),
    "render-policy": (
        "qauvern_hpc.commands.render_policy",
        "write the submit-time policy table for job_submit.lua",
    ),
    "release-pending": (
        "qauvern_hpc.commands.release_pending",
        "close IBM sessions the epilog could not release (safety net; run from cron)",
    ),
    "collect": (
        "qauvern_hpc.commands.collect",
        "collect finished QPU jobs from sacct and their IBM usage into the usage ledger",
    ),
    "usage": (
        "qauvern_hpc.commands.usage",
        "quantum usage per user, account, partition, instance or resource (from the ledger)",
    ),
    "report": (
        "qauvern_hpc.commands.report",
        "an HTML usage report for directors and project leads (usage, shares, forecast, waits, top jobs)",
    ),
    "metrics": (
        "qauvern_hpc.commands.metrics",
        "Prometheus metrics: allocations, limits, usage, queue, rebalance runs (textfile or HTTP)",
    ),
    "install-hooks": (
        "qauvern_hpc.commands.install_hooks",
        "write the PrologSlurmctld/EpilogSlurmctld wrapper scripts for slurm.conf",
    ),
    "hookd": (
        "qauvern_hpc.commands.hookd",
        "serve the controller hooks from a resident process (fast --qpu job starts)",
    ),
    "rebalance": (
        "qauvern_hpc.commands.rebalance",
        "move QAU between instances from IBM usage and Slurm's queue; enforce it in IBM and Slurm",
    ),
    "admit": (
        "qauvern_hpc.commands.admit",
        "admission controller: start QPU jobs in Slurm only when IBM will serve them (run, status, why)",
    ),
    "optimize": ("qauvern_hpc.commands.rebalance", "alias of rebalance (qauvern's name)"),
    "configure": (
        "qauvern_hpc.commands.configure",
        "generate a site config from the account's IBM Quantum instances",
    ),
    "show": ("qauvern_hpc.commands.show", "the account plan and each instance's allocation, usage, fairness"),
    "instances": (
        "qauvern_hpc.commands.instances",
        "list the instances with allocation, limit, 28-day usage, fairness (no admin rights needed)",
    ),
    "analyze": (
        "qauvern_hpc.commands.analyze",
        "usage per instance and day, trends, over/under target, the allocations qauvern's rules propose",
    ),
    "create": ("qauvern_hpc.commands.create", "create an IBM Quantum instance (sizes like 10h, 2.5d, 1qau)"),
    "sandbox": (
        "qauvern_hpc.commands.sandbox",
        "start/stop a throwaway local Slurm cluster with the plugin wired in",
    ),
    "spank": ("qauvern_hpc.commands.spank", "build or locate the --qpu SPANK plugin"),
    "simulate": (
        "qauvern_hpc.commands.simulate",
        "replay a QPU workload trace under static, qauvern and qauvern-hpc allocation policies",
    ),
}

EPILOG = """\
Global options may come before or after the command. The IBM Cloud API key is read from stdin with
--api-key (a flag: `qauvern-hpc --api-key show < keyfile`, or typed at its prompt), else from
--api-key-file, then $IBMCLOUD_API_KEY, then the key files named in the config; it is never taken on the
command line because argv is visible to every user of the machine.

Exit codes: 0 ok, 1 operation failed, 2 bad usage or input, 3 invalid config, 4 service unavailable,
5 another run holds the lock.

Run `qauvern-hpc COMMAND --help` for a command's options and examples."""


def _staging_from_env() -> bool:
    from qauvern_hpc.ibm.factory import staging_from_env  # standard library only at import time

    return staging_from_env()


def _global_options(p: argparse.ArgumentParser, *, suppress: bool) -> None:
    d = argparse.SUPPRESS if suppress else None
    p.add_argument(
        "-c",
        "--config",
        default=d if suppress else os.environ.get("QAUVERN_HPC_CONFIG", "/etc/qauvern-hpc/config.yaml"),
        help="site config (default: $QAUVERN_HPC_CONFIG or /etc/qauvern-hpc/config.yaml)",
    )
    p.add_argument(
        "--json", action="store_true", default=d if suppress else False, help="machine-readable output"
    )
    p.add_argument(
        "--staging",
        action="store_true",
        default=d if suppress else _staging_from_env(),
        help="use IBM's staging hosts (also $IBMCLOUD_STAGING)",
    )
    p.add_argument("--api-key-file", default=d, help="file holding the IBM Cloud API key (mode 0600)")
    p.add_argument(
        "--api-key",
        action="store_true",
        default=d if suppress else False,
        help="read the IBM Cloud API key from stdin (prompted for on a terminal); takes no value",
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=d if suppress else 0, help="more logging (repeatable)"
    )


def _top_parser() -> argparse.ArgumentParser:
    width = max(len(n) for n in COMMANDS)
    listing = "\n".join(f"  {n.ljust(width)}  {h}" for n, (_, h) in COMMANDS.items())
    p = argparse.ArgumentParser(
        prog="qauvern-hpc",
        description="IBM Quantum time as a fairly shared, accounted Slurm resource.\n\ncommands:\n" + listing,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    p.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    _global_options(p, suppress=False)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("command", nargs="?", help="one of the commands above")
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


def build_command_parser(name: str, module: Any, parent: argparse.ArgumentParser | None = None) -> Any:
    p = argparse.ArgumentParser(
        prog=f"qauvern-hpc {name}",
        description=getattr(module, "DESCRIPTION", None) or COMMANDS[name][1],
        epilog=getattr(module, "EPILOG", None),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(p, suppress=True)
    module.add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from qauvern_hpc.core.errors import QauvernError
    from qauvern_hpc.ibm.factory import refuse_api_key_in_argv, take_api_key

    try:
        refuse_api_key_in_argv(argv, COMMANDS)
    except QauvernError as exc:
        print(f"qauvern-hpc: error: {exc}", file=sys.stderr)
        return exc.exit_code
    top = _top_parser()
    ns, _ = top.parse_known_args(argv)
    if ns.version:
        from qauvern_hpc import __version__

        print(f"qauvern-hpc {__version__}")
        return 0
    if not ns.command:
        top.print_help()
        return 0 if ns.help else 2
    if ns.command not in COMMANDS:
        top.print_usage(sys.stderr)
        known = ", ".join(COMMANDS)
        print(f"qauvern-hpc: unknown command {ns.command!r} (known: {known})", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[ns.command][0])
    parser = build_command_parser(ns.command, module)
    # Global options given before the command land in `ns`; those given after it in `args`.
    idx = argv.index(ns.command)
    rest = argv[idx + 1 :]
    if ns.help and "-h" not in rest and "--help" not in rest:
        rest.append("--help")
    args = parser.parse_args(rest)
    for key in ("config", "json", "staging", "api_key_file", "api_key", "verbose"):
        if not hasattr(args, key):
            setattr(args, key, getattr(ns, key, None))
    try:
        if args.api_key:
            take_api_key(args, command=ns.command, accepted=bool(getattr(module, "READS_API_KEY", False)))
        return int(module.run(args) or 0)
    except QauvernError as exc:
        print(f"qauvern-hpc {ns.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"qauvern-hpc {ns.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
