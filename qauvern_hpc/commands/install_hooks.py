"""`qauvern-hpc install-hooks`: write the PrologSlurmctld/EpilogSlurmctld wrappers slurm.conf points at."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from qauvern_hpc.core.errors import ExitCode, QauvernError

HELP = "write the PrologSlurmctld/EpilogSlurmctld wrapper scripts for slurm.conf"
DESCRIPTION = """\
Write the two sh wrappers slurm.conf's PrologSlurmctld and EpilogSlurmctld name (see
slurm-conf/slurm.conf.snippet): DIR/qauvern-hpc-prolog and DIR/qauvern-hpc-epilog, mode 0755, atomically.

slurmctld runs them for EVERY job. A job without --qpu costs one shell test (no Python starts). A --qpu job
runs hookc.py with this Python under `-I -S` (no site-packages), which hands the job to `qauvern-hpc hookd`
over its Unix socket, or runs the full hook in-process when no daemon answers. The wrappers carry the paths
they need (policy.json, state dir, socket), since slurmctld gives hooks almost no environment; re-run this
after moving the state dir or reinstalling qauvern-hpc into another Python.

--hookd auto   use hookd; the first QPU job starts it when it is not running (default; nothing else to run)
--hookd on     use hookd, never start it (run slurm-conf/qauvern-hpc-hookd.service)
--hookd off    always in-process (about half a second per --qpu job start)"""
EPILOG = """\
examples:
  qauvern-hpc install-hooks                               /usr/local/sbin/qauvern-hpc-{prolog,epilog}
  qauvern-hpc install-hooks --hookd on                    with the systemd unit running hookd
  qauvern-hpc install-hooks --dir /opt/slurm/hooks --hook-env /etc/qauvern-hpc/hook.env
  qauvern-hpc install-hooks --print prolog                show the prolog wrapper, write nothing

exit codes: 0 written, 1 could not write, 3 invalid config."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default="/usr/local/sbin", help="where to write (default /usr/local/sbin)")
    parser.add_argument(
        "--policy",
        help="policy.json the hooks read (default: $QAUVERN_HPC_POLICY, else beside slurm.conf)",
    )
    parser.add_argument("--hookd", choices=("auto", "on", "off"), default="auto", help="see above")
    parser.add_argument("--socket", help="hookd socket (default: STATE_DIR/hookd.sock)")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        help="seconds an auto-started hookd waits idle before exiting (default: hookd's, 3600)",
    )
    parser.add_argument("--log-file", help="hook log file (default: syslog, facility daemon)")
    parser.add_argument(
        "--hook-env",
        default="/etc/qauvern-hpc/hook.env",
        help="sh file the wrappers source when present, e.g. for SLURM_CONF (default %(default)s)",
    )
    parser.add_argument(
        "--print", choices=("prolog", "epilog"), dest="print_kind", help="print, write nothing"
    )


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.config import load_config_full
    from qauvern_hpc.hooks.wrapper import render_wrapper, write_wrapper
    from qauvern_hpc.policy.compiled import default_policy_path

    loaded = load_config_full(args.config, check_key_files=False)
    state_dir = Path(loaded.config.slurm.state_dir)
    policy = Path(args.policy) if args.policy else default_policy_path()
    socket = Path(args.socket) if args.socket else state_dir / "hookd.sock"
    if len(os.fsencode(socket)) > 107:
        raise QauvernError(f"hookd socket path too long for a Unix socket: {socket}", hint="pass --socket")
    texts = {
        kind: render_wrapper(
            kind,
            policy=policy,
            state_dir=state_dir,
            hookd=args.hookd,
            socket=socket,
            idle_timeout=args.idle_timeout,
            log_file=args.log_file,
            hook_env=args.hook_env,
        )
        for kind in ("prolog", "epilog")
    }
    if args.print_kind:
        sys.stdout.write(texts[args.print_kind])
        return ExitCode.OK
    directory = Path(args.dir)
    written = []
    try:
        for kind, text in texts.items():
            written.append(str(write_wrapper(directory / f"qauvern-hpc-{kind}", text)))
    except OSError as exc:
        raise QauvernError(
            f"cannot write the hook wrappers into {directory}: {exc.strerror or exc}"
        ) from None
    if not policy.exists():
        print(
            f"qauvern-hpc install-hooks: warning: {policy} does not exist yet: run render-policy",
            file=sys.stderr,
        )
    if args.json:
        print(
            json.dumps(
                {"written": written, "policy": str(policy), "socket": str(socket), "hookd": args.hookd}
            )
        )
    else:
        for path in written:
            print(f"wrote {path}")
        print(f"policy {policy}, state dir {state_dir}, hookd {args.hookd} ({socket})")
    return ExitCode.OK
