"""Release IBM sessions the epilog could not: the safety net behind EpilogSlurmctld.

A job record (`{state_dir}/jobs/{jobid}.json`) whose sessions are not all closed is *pending* when either
the epilog ran (`ended_at` is set: its close failed, e.g. IBM answered 503) or Slurm no longer knows the job
(slurmctld lost it, e.g. a controller crash between prolog and epilog). `qauvern-hpc release-pending` (run by
cron/scrontab, and by the rebalancer before it plans) closes those sessions and records the result.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from qauvern_hpc.hooks import common
from qauvern_hpc.policy.compiled import Policy
from qauvern_hpc.record.job_record import JobRecord

log = logging.getLogger("qauvern_hpc.hooks.release")

ALIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}


def iter_records(state_dir: str | Path) -> Iterator[tuple[Path, JobRecord]]:
    jobs = Path(state_dir) / "jobs"
    if not jobs.is_dir():
        return
    for path in sorted(jobs.glob("*.json")):
        try:
            record = JobRecord.from_json(path.read_text(encoding="utf-8"), job_id=path.stem)
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable job record: %s", path, exc)
            continue
        yield path, record


def squeue_alive(squeue: str = "squeue", env: dict[str, str] | None = None) -> Callable[[str], bool | None]:
    """True/False when Slurm says the job is alive/gone; None when Slurm could not be asked."""

    def alive(job_id: str) -> bool | None:
        try:
            proc = subprocess.run(
                [squeue, "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30, env=env
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode == 0:
            return any(s.strip() in ALIVE_STATES for s in proc.stdout.split())
        if "Invalid job id" in proc.stderr:
            return False
        return None  # controller unreachable: decide nothing

    return alive


def release_pending(
    policy: Policy,
    state_dir: str | Path,
    *,
    is_alive: Callable[[str], bool | None],
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Close what is pending; returns one entry per job considered (job, why, sessions, released)."""
    from qauvern_hpc.hooks import ibm_session

    report: list[dict[str, Any]] = []
    for _path, record in iter_records(state_dir):
        pending = record.open_sessions
        if not pending:
            continue
        job_id = record.job_id
        if record.ended_at:
            why = "epilog could not close"
        else:
            alive = is_alive(job_id)
            if alive is not False:
                continue  # running, or unknown: leave it to the epilog
            why = "job no longer known to Slurm"
        entry: dict[str, Any] = {
            "job": job_id,
            "why": why,
            "sessions": [r.session_id for r in pending],
            "released": False,
        }
        if not dry_run:
            record, entry["released"] = ibm_session.close_all(policy, record, log)
            common.write_record(common.StatePaths(str(state_dir), job_id), record)
        report.append(entry)
    return report
