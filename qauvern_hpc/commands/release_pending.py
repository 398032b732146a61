"""`qauvern-hpc release-pending`: close IBM sessions whose release failed or whose job vanished."""

from __future__ import annotations

import argparse
import json
import os

HELP = "close IBM sessions the epilog could not release (safety net; run from cron)"
DESCRIPTION = """\
EpilogSlurmctld closes a job's IBM sessions when the job ends. If IBM was unreachable at that moment, or the
controller lost the job between prolog and epilog, the session stays open and keeps the QPU locked until its
max_ttl. This command finds such job records in the state directory and closes their sessions. Jobs that
Slurm still runs are never touched; when Slurm cannot be asked, only jobs whose epilog already ran are
considered."""
EPILOG = """\
examples:
  qauvern-hpc release-pending --dry-run
  qauvern-hpc release-pending --json
  */10 * * * * root qauvern-hpc release-pending       (cron line)

exit codes: 0 nothing left open, 1 some session could not be closed (retried on the next run), 3 invalid
config."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", help="policy.json (default: $QAUVERN_HPC_POLICY or beside slurm.conf)")
    parser.add_argument("--state-dir", help="override the policy's state_dir")
    parser.add_argument("--dry-run", action="store_true", help="list what would be closed, close nothing")


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.hooks.release import release_pending, squeue_alive
    from qauvern_hpc.policy.compiled import load_policy

    policy = load_policy(args.policy or os.environ.get("QAUVERN_HPC_POLICY") or None)
    state_dir = args.state_dir or policy.state_dir
    report = release_pending(
        policy, state_dir, is_alive=squeue_alive(policy.slurm.squeue), dry_run=args.dry_run
    )
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "jobs": report}, indent=2))
    else:
        if not report:
            print("nothing pending")
        for e in report:
            verb = "would close" if args.dry_run else ("closed" if e["released"] else "could NOT close")
            print(f"job {e['job']}: {verb} {', '.join(e['sessions'])} ({e['why']})")
    return 0 if args.dry_run or all(e["released"] for e in report) else 1
