"""EpilogSlurmctld hook: release a job's QPUs when it ends, however it ends. Always exits 0.

Slurm runs EpilogSlurmctld on the controller for every job end: completed, failed, cancelled, timed out,
preempted, and node failures (the job's node could not clean up; the controller still can). It is the
safest hook: its failure is only logged. A session we could not close keeps `close_error` in the job record
and is retried by `qauvern-hpc release-pending` (the rebalancer runs it too).
"""

from __future__ import annotations

# Module level stays at os/sys: Slurm runs this hook for EVERY job, and most jobs have no --qpu.
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qauvern_hpc.record.job_record import JobRecord

DEFAULT_STATE_DIR = "/var/lib/qauvern-hpc"  # == hooks.common.DEFAULT_STATE_DIR (not imported: fast path)


def release(environ: Mapping[str, str]) -> JobRecord | None:
    import contextlib
    import logging
    import time
    from dataclasses import replace

    from qauvern_hpc.hooks import common
    from qauvern_hpc.policy.compiled import load_policy

    log = logging.getLogger("qauvern_hpc.epilog")

    job_id = environ.get("SLURM_JOB_ID", "")
    policy = load_policy(environ.get("QAUVERN_HPC_POLICY") or None)
    paths = common.StatePaths(environ.get("QAUVERN_HPC_STATE_DIR") or policy.state_dir, job_id)
    record = common.read_record(paths)
    if record is None:
        log.info("job %s: no QPU record, nothing to release", job_id)
        return None
    from qauvern_hpc.hooks import ibm_session

    record, _ = ibm_session.close_all(policy, record, log)
    record = replace(
        record,
        ended_at=time.time(),
        slurm_exit_code=environ.get("SLURM_JOB_EXIT_CODE2") or environ.get("SLURM_JOB_EXIT_CODE"),
    )
    common.write_record(paths, record)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(paths.env_file)  # the tasks are gone; the session id in it is dead
    return record


def _has_record(environ: Mapping[str, str]) -> bool:
    job_id = environ.get("SLURM_JOB_ID", "")
    state_dir = environ.get("QAUVERN_HPC_STATE_DIR") or DEFAULT_STATE_DIR
    return job_id.isdigit() and os.path.exists(os.path.join(state_dir, "jobs", f"{job_id}.json"))


def main(argv: list[str] | None = None) -> int:
    environ = os.environ
    if not environ.get("SPANK_QPU") and not _has_record(environ):
        return 0  # not a QPU job: the fast path
    import logging

    from qauvern_hpc.hooks import common

    common.setup_logging(environ)
    try:
        release(environ)
    except Exception as exc:
        logging.getLogger("qauvern_hpc.epilog").exception(
            "job %s: qauvern-hpc epilog failed: %s", environ.get("SLURM_JOB_ID"), exc
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
