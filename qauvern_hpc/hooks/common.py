"""What the controller hooks share: the job as Slurm describes it, state paths, records, logging.

Standard library only (hot path).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from qauvern_hpc.hooks.jobenv import ERROR_KEY, FAIL_MODE_KEY, format_env_file, write_private
from qauvern_hpc.record.job_record import JobRecord

DEFAULT_STATE_DIR = "/var/lib/qauvern-hpc"


@dataclass(frozen=True)
class JobContext:
    job_id: str
    user: str
    account: str
    partition: str
    qos: str
    qpu: str
    time_limit_seconds: int | None
    cluster: str = ""

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> JobContext:
        job_id = env.get("SLURM_JOB_ID", "")
        if not job_id.isdigit():
            raise ValueError(f"SLURM_JOB_ID is missing or not a number: {job_id[:20]!r}")
        limit = env.get("SLURM_JOB_TIME_LIMIT") or env.get("SLURM_TIME_LIMIT") or ""
        return cls(
            job_id=job_id,
            user=env.get("SLURM_JOB_USER", ""),
            account=env.get("SLURM_JOB_ACCOUNT", ""),
            partition=env.get("SLURM_JOB_PARTITION", ""),
            qos=env.get("SLURM_JOB_QOS", ""),
            qpu=env.get("SPANK_QPU", ""),
            time_limit_seconds=_minutes_to_seconds(limit),
            cluster=env.get("SLURM_CLUSTER_NAME", ""),
        )


def _minutes_to_seconds(text: str) -> int | None:
    # Slurm exports time limits in minutes; "UNLIMITED"/"" -> None.
    try:
        minutes = int(text)
    except ValueError:
        return None
    return minutes * 60 if minutes > 0 else None


@dataclass(frozen=True)
class StatePaths:
    state_dir: str
    job_id: str

    @property
    def jobs_dir(self) -> str:
        return os.path.join(self.state_dir, "jobs")

    @property
    def env_file(self) -> str:
        return os.path.join(self.jobs_dir, f"{self.job_id}.env")

    @property
    def record_file(self) -> str:
        return os.path.join(self.jobs_dir, f"{self.job_id}.json")


def write_record(paths: StatePaths, record: JobRecord) -> None:
    write_private(paths.record_file, record.to_json())


def read_record(paths: StatePaths) -> JobRecord | None:
    """The job's record; None when there is none. ValueError when the file is not a JSON object."""
    try:
        with open(paths.record_file, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    try:
        return JobRecord.from_json(text, job_id=paths.job_id)
    except ValueError as exc:
        raise ValueError(f"{paths.record_file}: {exc}") from None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def setup_logging(env: Mapping[str, str]) -> None:
    """Hooks log to $QAUVERN_HPC_LOG_FILE, else syslog (facility daemon), else stderr."""
    root = logging.getLogger("qauvern_hpc")
    if root.handlers:
        return
    root.setLevel(logging.DEBUG if env.get("QAUVERN_HPC_DEBUG") else logging.INFO)
    path = env.get("QAUVERN_HPC_LOG_FILE")
    handler: logging.Handler
    if path:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"))
    elif os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log", facility="daemon")
        handler.setFormatter(logging.Formatter("%(name)s[%(process)d]: %(levelname)s %(message)s"))
    else:
        handler = logging.StreamHandler()
    root.addHandler(handler)


def last_resort(env: Mapping[str, str], exc: BaseException, log: logging.Logger) -> None:
    """The hook could not do its job at all: tell the job (if we can), log, and still exit 0."""
    log.exception("job %s: qauvern-hpc hook failed: %s", env.get("SLURM_JOB_ID"), exc)
    job_id = env.get("SLURM_JOB_ID", "")
    if not job_id.isdigit():
        return
    state_dir = env.get("QAUVERN_HPC_STATE_DIR") or DEFAULT_STATE_DIR
    mode = env.get("QAUVERN_HPC_DEFAULT_FAIL_MODE", "closed")
    paths = StatePaths(state_dir, job_id)
    try:
        message = f"qpu: qauvern-hpc could not prepare the job: {one_line(exc)}"
        write_private(paths.env_file, format_env_file({ERROR_KEY: message, FAIL_MODE_KEY: mode}))
    except Exception:
        log.exception("job %s: cannot write %s either", job_id, paths.env_file)


def set_admin_comment(job_id: str, record: JobRecord, env: Mapping[str, str]) -> None:
    """Record what the job used in its AdminComment, merged with what is already there, without waiting
    (Slurm's docs advise hooks not to block on Slurm commands): `admin_comment_set.py` runs detached, reads
    the current value, merges and updates. The collector falls back to the JSON record if this is lost."""
    import sys

    from qauvern_hpc.record.admin_comment import format_admin_comment

    text = format_admin_comment(record.to_dict())
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "admin_comment_set.py")
    # The hook's own PATH/SLURM_CONF, also when the work runs in hookd (whose environment is older).
    child_env = dict(os.environ)
    child_env.update({k: v for k, v in env.items() if k in ("PATH", "SLURM_CONF", "QAUVERN_HPC_SCONTROL")})
    try:
        subprocess.Popen(
            [sys.executable, "-I", "-S", script, job_id, text],
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        logging.getLogger("qauvern_hpc.prolog").warning("job %s: cannot run %s: %s", job_id, script, exc)
