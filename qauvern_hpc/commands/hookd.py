"""`qauvern-hpc hookd`: the resident half of the controller hooks (warm IBM clients for PrologSlurmctld)."""

from __future__ import annotations

import argparse

from qauvern_hpc.core.errors import UsageError

HELP = "serve the controller hooks from a resident process (fast --qpu job starts)"
DESCRIPTION = """\
Run the resident half of the PrologSlurmctld/EpilogSlurmctld hooks on the Slurm controller.

slurmctld starts a fresh hook process for every job, before the job may start. For a --qpu job a fresh
Python with the IBM client costs about half a second; `hookd` pays that once and keeps the IBM clients (HTTP
connection pools and IAM tokens) warm, so the hook (the sh wrapper from `qauvern-hpc install-hooks` running
hookc.py under `python -I -S`) only hands the job over a Unix socket and waits for the IBM calls themselves.

The socket is mode 0600, and only peers with the daemon's uid (root, or SlurmUser when the daemon runs as
that user) are served. Without a running daemon the hooks do the same work in-process (slower, same
result); with the wrappers' default `--hookd auto` the first QPU job starts the daemon for the next ones.
Under systemd (slurm-conf/qauvern-hpc-hookd.service) run it with --idle-timeout 0.

Stops on SIGTERM/SIGINT after the requests in flight, when idle for --idle-timeout seconds, or when its
socket file is removed."""
EPILOG = """\
examples:
  qauvern-hpc hookd --socket /var/lib/qauvern-hpc/hookd.sock --idle-timeout 0     under systemd
  qauvern-hpc hookd --socket /var/lib/qauvern-hpc/hookd.sock --policy /etc/slurm/policy.json

exit codes: 0 stopped normally (or another hookd already serves the socket), 2 bad usage."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qauvern_hpc.hooks.hookd import build_parser

    build_parser(parser)


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.hooks.hookd import run_daemon

    if args.idle_timeout < 0:
        raise UsageError(f"--idle-timeout must be >= 0, not {args.idle_timeout}")
    if len(args.socket.encode()) > 107:
        raise UsageError(f"--socket path is longer than a Unix socket allows (107 bytes): {args.socket}")
    return run_daemon(args.socket, args.idle_timeout, args.policy)
