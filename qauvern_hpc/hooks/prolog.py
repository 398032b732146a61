"""PrologSlurmctld hook: acquire a job's QPUs once, before it starts. Always exits 0.

Slurm runs this on the controller for every job (see slurm-conf/slurm.conf.snippet). A job without `--qpu`
costs one environment lookup. For a `--qpu` job (the SPANK plugin put `SPANK_QPU=a,b` in our environment):

1. map the job's user/account/partition/QOS to an instance with the compiled policy (`policy.json`);
2. open one IBM session per resource through that instance (a resource in job mode gets none: the prolog
   only checks that the instance sees its backend, and the job's IBM jobs run outside any session);
3. write `{state_dir}/jobs/{jobid}.env` (what the job's tasks get, read by the SPANK plugin) and
   `{state_dir}/jobs/{jobid}.json` (the record the epilog and the collector read);
4. record `qauvern:v1;...` in the job's AdminComment so sacct alone can tell later what the job used.

Any failure is written into the env file (`QAUVERN_HPC_ERROR` + the resource's fail mode) instead of being
returned to Slurm: a non-zero PrologSlurmctld would requeue the job, and the admin asked for fail-open or
fail-closed per resource, not for requeues.
"""

from __future__ import annotations

# Module level stays at os/sys: Slurm runs this hook for EVERY job, and most jobs have no --qpu.
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

    from qauvern_hpc.hooks.common import StatePaths
    from qauvern_hpc.hooks.jobenv import AcquiredResource
    from qauvern_hpc.policy.compiled import Policy
    from qauvern_hpc.policy.mapping import ResourceGrant
    from qauvern_hpc.record.job_record import JobRecord


def _log() -> logging.Logger:
    import logging

    return logging.getLogger("qauvern_hpc.prolog")


def _error_env(message: str, fail_mode: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    from qauvern_hpc.hooks.jobenv import ERROR_KEY, FAIL_MODE_KEY

    env = dict(base or {})
    env[ERROR_KEY] = message.replace("\n", " ")[:900]
    env[FAIL_MODE_KEY] = fail_mode
    return env


def prepare(environ: Mapping[str, str]) -> JobRecord:
    """Do the prolog's work for one job; returns the job record (also written to the state dir)."""
    import time
    from dataclasses import replace

    from qauvern_hpc.hooks import common
    from qauvern_hpc.hooks.jobenv import format_env_file, render, write_private
    from qauvern_hpc.policy.compiled import load_policy
    from qauvern_hpc.policy.mapping import JobIdentity, decide, parse_request
    from qauvern_hpc.record.job_record import JobRecord, ResourceRecord

    log = _log()

    job = common.JobContext.from_environ(environ)
    policy = load_policy(environ.get("QAUVERN_HPC_POLICY") or None)
    paths = common.StatePaths(environ.get("QAUVERN_HPC_STATE_DIR") or policy.state_dir, job.job_id)
    prepared_at = time.time()
    _close_previous_attempt(policy, paths, log)
    requested = parse_request(job.qpu)
    identity = JobIdentity(job.user, job.account, job.partition, job.qos, job.cluster)
    decision = decide(policy, identity, requested)
    record = JobRecord(
        job_id=job.job_id,
        user=job.user,
        account=job.account,
        partition=job.partition,
        qos=job.qos,
        requested=job.qpu,
        prepared_at=prepared_at,
        rule=decision.rule,
        instance=decision.instance,
    )
    if not decision.allowed:
        # A refusal here means job_submit.lua was bypassed or the policy changed after submission.
        error = f"qpu: {decision.message}"
        record = replace(record, error=error)
        write_private(paths.env_file, format_env_file(_error_env(error, "closed")))
        common.write_record(paths, record)
        return record

    grants = decision.resources
    fail_mode = "closed" if any(g.fail_mode == "closed" for g in grants) else "open"
    acquired: list[AcquiredResource] = []
    try:
        from qauvern_hpc.hooks import ibm_session

        for grant in grants:
            opened = ibm_session.acquire(policy, grant, job_id=job.job_id)
            acquired.append(opened)
            record = record.with_resource(
                ResourceRecord(
                    resource=grant.resource,
                    instance=grant.instance,
                    crn=grant.crn,
                    backend=grant.backend,
                    session_mode=grant.session_mode,
                    session_id=opened.session_id,
                    api_key_file=grant.api_key_file,
                )
            )
            # Write the record after every session so the epilog can close what was opened even if
            # we die before the end.
            common.write_record(paths, record)
    except Exception as exc:  # every failure goes to the job, never to Slurm
        error = f"qpu: could not acquire {', '.join(g.resource for g in grants)}: {common.one_line(exc)}"
        record = replace(record, error=error)
        log.error("job %s: %s", job.job_id, error)
        base = render(
            _without_sessions(grants, policy),
            time_limit_seconds=job.time_limit_seconds,
            instance=decision.instance or "",
            rule=decision.rule or "",
        )
        write_private(paths.env_file, format_env_file(_error_env(error, fail_mode, base)))
        common.write_record(paths, record)
        if fail_mode == "closed":
            # Nothing will use what we opened: give it back now rather than at job end.
            from qauvern_hpc.hooks import ibm_session

            record, _ = ibm_session.close_all(policy, record, log)
            common.write_record(paths, record)
        return record

    env = render(
        acquired,
        time_limit_seconds=job.time_limit_seconds,
        instance=decision.instance or "",
        rule=decision.rule or "",
    )
    write_private(paths.env_file, format_env_file(env))
    common.write_record(paths, record)
    if policy.slurm.admin_comment:
        common.set_admin_comment(job.job_id, record, environ)
    return record


def _close_previous_attempt(policy: Policy, paths: StatePaths, log: logging.Logger) -> None:
    """Sessions a previous run of this hook opened for the same job id and nobody closed (hookd died mid-job
    and the hook re-ran in-process; a requeued job whose epilog could not close): close them before opening
    new ones, so nothing leaks and nothing is billed twice."""
    from qauvern_hpc.hooks import common

    try:
        previous = common.read_record(paths)
        if previous is not None and previous.open_sessions:
            from qauvern_hpc.hooks import ibm_session

            log.warning("job %s: closing sessions a previous prolog run left open", paths.job_id)
            ibm_session.close_all(policy, previous, log)
    except Exception as exc:  # best effort: `release-pending` sweeps what is left
        log.warning("job %s: cannot close a previous attempt's sessions: %s", paths.job_id, exc)


def _without_sessions(grants: Sequence[ResourceGrant], policy: Policy) -> list[AcquiredResource]:
    from qauvern_hpc.hooks import ibm_session

    return [ibm_session.describe(policy, g, session_id=None) for g in grants]


def main(argv: list[str] | None = None) -> int:
    environ = os.environ
    if not environ.get("SPANK_QPU"):
        return 0  # not a QPU job: the fast path
    import json
    import time

    from qauvern_hpc.hooks import common

    log = _log()
    common.setup_logging(environ)
    started = time.monotonic()
    try:
        record = prepare(environ)
        log.info(
            "job %s: %s in %.0f ms",
            environ.get("SLURM_JOB_ID"),
            record.error or f"acquired {json.dumps([r.to_dict() for r in record.resources])}",
            (time.monotonic() - started) * 1000,
        )
    except Exception as exc:
        # Even the failure path failed (no policy, unwritable state dir): log loudly, never fail the hook.
        common.last_resort(environ, exc, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
