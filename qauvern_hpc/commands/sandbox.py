"""`qauvern-hpc sandbox`: start, stop and use a throwaway local Slurm cluster."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qauvern_hpc.core.errors import QauvernError, UsageError

if TYPE_CHECKING:
    from qauvern_hpc.devtools.sandbox import Hooks, Sandbox

DEFAULT_EMULATOR_URL = "http://127.0.0.1:8765"
SITE_DIR = "site"

HELP = (
    "start/stop a throwaway local Slurm cluster; `up` wires in the --qpu SPANK plugin, job_submit.lua and "
    "the controller hooks (--bare: a plain cluster)"
)
DESCRIPTION = """\
A private one-node Slurm cluster with accounting, entirely inside one directory and on loopback: its own
munged, MariaDB, slurmdbd, slurmctld and slurmd on free ports, so it never meets a system Slurm and several
can run side by side. Partitions `debug` (default) and `quantum`, licenses qpu:8 (wired: also qpu_physics and
qpu_chemistry), associations enforced, multifactor priority. Needs root and Debian's slurm-wlm, slurmdbd,
munge and mariadb-server (and, wired, a C compiler and libslurm-dev for the plugin).

By default `up` wires qauvern-hpc in, as `qauvern-hpc demo` does: it writes the demo's site (config.yaml,
the rendered policy, the emulator seed) to WORKDIR/site, builds the --qpu SPANK plugin there and starts the
cluster with it in plugstack.conf, job_submit.lua (JobSubmitPlugins=lua, adding the per-instance licenses),
and PrologSlurmctld/EpilogSlurmctld running qauvern-hpc's hooks (through hookd). The site's config points
at the IBM emulator given by --emulator; jobs with --qpu need it running:
  qauvern-hpc emulator --port 8765 --seed WORKDIR/site/emulator-seed.json
With --bare, or any hook option below, nothing of qauvern-hpc is wired: the hooks are the options given or,
with none, those of an existing WORKDIR/hooks.env.

  up      start it (idempotent; restarts slurmctld/slurmd when the config or hooks changed), create the
          test accounts and users, print the exports a shell needs (stdout); with --foreground, stay and
          stop the sandbox on SIGINT, SIGTERM or SIGHUP. Stopped by one of them while starting, it stops
          what it started.
  down    stop every process of the sandbox (and the site's hookd); logs stay in WORKDIR/log
  env     print the exports:  eval "$(qauvern-hpc sandbox env)"
  status  which daemons run (exit 0 only when all do)
  logs    the last lines of every log"""
EPILOG = """\
examples:
  eval "$(qauvern-hpc sandbox up)"
  runuser -u qalice -- sbatch -A physics -p quantum --wrap 'hostname'
  sacct -X -o JobID,User,Account,Partition,State
  qauvern-hpc sandbox up --prolog-slurmctld /usr/local/sbin/qauvern-hpc-prolog \\
      --job-submit-lua slurm-conf/job_submit.lua --etc-file /etc/slurm/qpu_policy.lua
  qauvern-hpc sandbox down

Hooks can also be written to WORKDIR/hooks.env (QAUVERN_SANDBOX_* variables, see
qauvern_hpc/devtools/sandbox/scripts/up.sh); options given to `up` replace that file. Jobs run as the test
users
(qalice, qbob in account physics; qcarol in chemistry), whose Unix accounts `up` creates when missing.

exit codes: 0 done (status: every daemon runs), 1 status: some daemon is stopped, or a daemon would not
start (its log is printed), 2 bad usage or not root."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qauvern_hpc.devtools.sandbox import default_workdir

    parser.add_argument(
        "action", choices=("up", "down", "env", "status", "logs"), help="what to do (see above)"
    )
    parser.add_argument(
        "--workdir",
        "-w",
        default=None,
        help=f"the sandbox's directory (default: $QAUVERN_HPC_SANDBOX or {default_workdir()})",
    )
    w = parser.add_argument_group("up: qauvern-hpc wiring")
    w.add_argument(
        "--bare", action="store_true", help="wire nothing of qauvern-hpc in (a plain Slurm cluster)"
    )
    w.add_argument(
        "--emulator",
        metavar="URL",
        default=DEFAULT_EMULATOR_URL,
        help=f"the IBM emulator the wired site's config points at (default: {DEFAULT_EMULATOR_URL})",
    )
    w.add_argument(
        "--foreground",
        action="store_true",
        help="stay in the foreground after `up`; SIGINT, SIGTERM or SIGHUP stops the sandbox",
    )
    g = parser.add_argument_group("up: hooks (any of these replaces WORKDIR/hooks.env and implies --bare)")
    g.add_argument("--hooks-file", metavar="FILE", help="use this file as WORKDIR/hooks.env")
    g.add_argument("--plugstack", metavar="FILE", help="plugstack.conf to use (default: an empty one)")
    g.add_argument(
        "--plugstack-line", action="append", default=[], metavar="LINE", help="plugstack.conf line"
    )
    g.add_argument("--job-submit-lua", metavar="FILE", help="job_submit.lua (enables JobSubmitPlugins=lua)")
    g.add_argument("--etc-file", action="append", default=[], metavar="FILE", help="copy beside slurm.conf")
    g.add_argument("--prolog-slurmctld", metavar="PROGRAM", help="PrologSlurmctld=")
    g.add_argument("--epilog-slurmctld", metavar="PROGRAM", help="EpilogSlurmctld=")
    g.add_argument("--prolog-flags", metavar="FLAGS", help="PrologFlags=")
    g.add_argument("--extra-conf", action="append", default=[], metavar="LINE", help="a slurm.conf line")
    g.add_argument(
        "--daemon-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable for the daemons' environment (e.g. read by job_submit.lua)",
    )
    a = parser.add_argument_group("up: accounts")
    a.add_argument(
        "--accounts",
        action="append",
        metavar="SPEC",
        help="ACCOUNT[@PARENT]:USER,USER... to create (repeatable; default: physics:qalice,qbob "
        "chemistry:qcarol)",
    )
    a.add_argument("--no-accounts", action="store_true", help="create no accounts or users")
    parser.add_argument("--lines", type=int, default=40, help="logs: lines per log (default: 40)")


def _hooks_given(args: argparse.Namespace) -> bool:
    return bool(
        args.plugstack
        or args.plugstack_line
        or args.job_submit_lua
        or args.etc_file
        or args.prolog_slurmctld
        or args.epilog_slurmctld
        or args.prolog_flags
        or args.extra_conf
        or args.daemon_env
    )


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _exports(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.devtools.sandbox import Sandbox, missing_prerequisites

    sb = Sandbox(args.workdir)
    if args.action in ("up", "down", "status"):
        problems = missing_prerequisites()
        if problems:
            raise UsageError(
                f"cannot run `sandbox {args.action}`: " + "; ".join(problems),
                hint="run it as root (sudo) on a machine set up with .ci/install-debian-deps.sh",
            )
    if args.action in ("env", "status") and not sb.slurm_conf.is_file():
        raise UsageError(f"no sandbox in {sb.workdir}", hint="start one with `qauvern-hpc sandbox up`")

    if args.action == "up":
        return _up(sb, args)
    if args.action == "down":
        _down(sb)
        _emit(args, {"workdir": str(sb.workdir), "down": True}, f"sandbox in {sb.workdir} is down")
        return 0
    if args.action == "env":
        env_vars = sb.env()
        _emit(args, env_vars, _exports(env_vars))
        return 0
    if args.action == "status":
        status = sb.status()
        up = all(pid is not None for pid in status.values())
        text = "\n".join(
            f"{name:10} {'running ' + str(pid) if pid else 'stopped'}" for name, pid in status.items()
        )
        _emit(args, {"workdir": str(sb.workdir), "up": up, "daemons": status}, text)
        return 0 if up else 1
    # logs
    print(sb.logs(lines=args.lines))
    return 0


def _bare_hooks(sb: Sandbox, args: argparse.Namespace) -> Hooks | None:
    """The hooks of a bare sandbox: from the options (None: keep WORKDIR/hooks.env as it is)."""
    from qauvern_hpc.devtools.sandbox import Hooks

    if args.hooks_file and _hooks_given(args):
        raise UsageError("--hooks-file cannot be combined with other hook options")
    if args.hooks_file:
        sb.workdir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.hooks_file, sb.hooks_env)
    if not _hooks_given(args):
        return None
    env: dict[str, str] = {}
    for item in args.daemon_env:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--daemon-env {item!r}: expected NAME=VALUE")
        env[key] = value
    for path in (args.plugstack, args.job_submit_lua, *args.etc_file):
        if path and not Path(path).is_file():
            raise UsageError(f"{path}: no such file")
    return Hooks(
        plugstack_conf=args.plugstack,
        plugstack_lines=args.plugstack_line,
        job_submit_lua=args.job_submit_lua,
        etc_files=args.etc_file,
        prolog_slurmctld=args.prolog_slurmctld,
        epilog_slurmctld=args.epilog_slurmctld,
        prolog_flags=args.prolog_flags,
        env=env,
    )


def _up(sb: Sandbox, args: argparse.Namespace) -> int:
    from qauvern_hpc.devtools import qpu_site
    from qauvern_hpc.devtools.sandbox import DEFAULT_ACCOUNTS
    from qauvern_hpc.devtools.signals import Stopped, stop_on_signals

    wired = not (args.bare or args.hooks_file or _hooks_given(args))
    with stop_on_signals():
        try:
            site: qpu_site.Site | None = None
            settings = None
            hooks: Hooks | None
            if wired:
                try:
                    site, hooks = qpu_site.wired_site(sb.workdir / SITE_DIR, args.emulator)
                except QauvernError as exc:
                    exc.hint = "; ".join(filter(None, [exc.hint, "or start a plain cluster with --bare"]))
                    raise
                settings = qpu_site.SANDBOX_SETTINGS
            else:
                hooks = _bare_hooks(sb, args)
            seconds = sb.up(
                hooks=hooks, extra_conf=args.extra_conf if hooks else None, settings=settings, echo=True
            )
            if site is not None:
                qpu_site.set_hook_env(site, {"SLURM_CONF": str(sb.slurm_conf)})
            accounts: list[str] = []
            if not args.no_accounts:
                accounts = args.accounts or [f"{a}:{','.join(u)}" for a, u in DEFAULT_ACCOUNTS.items()]
                sb.add_accounts(accounts, echo=True)
            env_vars = sb.env()
            wiring = f"qauvern-hpc wired in from {site.directory}" if site else "bare"
            print(
                f"sandbox up in {seconds:.1f}s ({wiring}); accounts: {' '.join(accounts) or '(none)'}",
                file=sys.stderr,
                flush=True,
            )
            data = {"workdir": str(sb.workdir), "seconds": round(seconds, 1), "env": env_vars}
            data |= {"accounts": accounts, "wired": site is not None}
            _emit(args, data, _exports(env_vars))
            sys.stdout.flush()
            if not args.foreground:
                return 0
            print(
                "sandbox: in the foreground; SIGINT, SIGTERM or SIGHUP stops it", file=sys.stderr, flush=True
            )
            while True:
                time.sleep(3600)
        except Stopped as exc:
            print(f"sandbox: stopped by {exc}; stopping what was started", file=sys.stderr, flush=True)
            _down(sb)
            if args.foreground:
                return 0
            raise


def _down(sb: Sandbox) -> None:
    """Stop the cluster and the hookd of its wired site."""
    from qauvern_hpc.devtools import qpu_site

    sb.down(echo=True)
    if (sb.workdir / SITE_DIR / "config.yaml").is_file():
        qpu_site.stop_hookd(qpu_site.site_of(sb.workdir / SITE_DIR))
