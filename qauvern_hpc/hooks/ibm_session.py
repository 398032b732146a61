"""Open and close the IBM sessions a job holds, through the instance its mapping rule chose.

Imported by the hooks only when a job asked for a QPU (it pulls in httpx through the IBM client).
Time is bounded: the hooks must finish well within Slurm's PrologEpilogTimeout even when IBM is down.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from qauvern_hpc.hooks.jobenv import JOB_MODE, AcquiredResource
from qauvern_hpc.ibm import Endpoints, IBMClient, RetryPolicy
from qauvern_hpc.ibm.factory import ClientPool, endpoints
from qauvern_hpc.policy.compiled import Policy
from qauvern_hpc.policy.mapping import ResourceGrant
from qauvern_hpc.record.job_record import JobRecord, ResourceRecord

# One short retry budget for the job path: a job should not wait minutes for a flapping API.
HOOK_RETRY = RetryPolicy(max_attempts=3, base_delay=0.2, max_delay=2.0, deadline=20.0)
HOOK_TIMEOUT = 10.0

# Warm clients (connection pool + IAM token), per key file and endpoints. A hook process makes at most one per
# key file; the resident hookd keeps them across jobs, so a rotated key file (new inode/mtime/size) or changed
# endpoints get a new client.
POOL = ClientPool(timeout=HOOK_TIMEOUT, retry=HOOK_RETRY)


def endpoints_for(policy: Policy) -> Endpoints:
    ep = policy.endpoints
    return endpoints(
        emulator=ep.emulator,
        staging=ep.staging,
        iam=ep.iam,
        resource_controller=ep.resource_controller,
        quantum=ep.quantum,
    )


def read_api_key(path: str | None, instance: str) -> str:
    if not path:
        raise RuntimeError(f"instance {instance!r} has no api_key_file in the config")
    from qauvern_hpc.core.keyfile import read_key_file

    return read_key_file(path)


def client_for(policy: Policy, api_key_file: str | None, instance: str) -> IBMClient:
    """One client per key file (tokens are reused across a job's resources and, in hookd, across jobs)."""
    return POOL.get(api_key_file, endpoints_for(policy), lambda: read_api_key(api_key_file, instance))


def describe(policy: Policy, grant: ResourceGrant, *, session_id: str | None) -> AcquiredResource:
    endpoints = endpoints_for(policy)
    api_key = read_api_key(grant.api_key_file, grant.instance) if grant.expose_api_key else None
    return AcquiredResource(
        name=grant.resource,
        type=grant.type,
        crn=grant.crn,
        session_mode=grant.session_mode,
        max_ttl_seconds=grant.max_ttl_seconds,
        session_id=session_id,
        endpoint=endpoints.qrmi_endpoint(grant.crn),
        iam_endpoint=endpoints.iam,
        api_key=api_key,
        extra_env=grant.env,
    )


def acquire(policy: Policy, grant: ResourceGrant, *, job_id: str) -> AcquiredResource:
    """What the job gets for one resource: an IBM session of the grant's mode, or in job mode none (the
    instance must still see the backend, so a wrong backend fails here, before the job runs)."""
    if grant.session_mode == JOB_MODE:
        return check_job_mode(policy, grant, job_id=job_id)
    return open_session(policy, grant, job_id=job_id)


def check_job_mode(policy: Policy, grant: ResourceGrant, *, job_id: str) -> AcquiredResource:
    client = client_for(policy, grant.api_key_file, grant.instance)
    status = client.backend_status(grant.crn, grant.backend)  # IBMNotFound: the instance cannot use it
    logging.getLogger("qauvern_hpc.prolog").info(
        "job %s: job mode (no session) on %s (%s) for %s",
        job_id,
        grant.backend,
        status.status or "status unknown",
        grant.instance,
    )
    return describe(policy, grant, session_id=None)


def open_session(policy: Policy, grant: ResourceGrant, *, job_id: str) -> AcquiredResource:
    client = client_for(policy, grant.api_key_file, grant.instance)
    session = client.create_session(
        grant.crn, grant.backend, mode=grant.session_mode, max_ttl=grant.max_ttl_seconds
    )
    logging.getLogger("qauvern_hpc.prolog").info(
        "job %s: opened %s session %s on %s for %s",
        job_id,
        grant.session_mode,
        session.id,
        grant.backend,
        grant.instance,
    )
    return describe(policy, grant, session_id=session.id)


def close_all(policy: Policy, record: JobRecord, log: logging.Logger) -> tuple[JobRecord, bool]:
    """Close every session in the record that is still open. Returns the updated record (the caller writes
    it) and True when none is left open.

    Each closed session gets `closed_at`; a failure leaves `close_error` so a later sweep retries.
    """
    all_closed = True
    resources: list[ResourceRecord] = []
    for res in record.resources:
        if res.is_open:
            res = _close_one(policy, record.job_id, res, log)
            all_closed = all_closed and not res.is_open
        resources.append(res)
    return replace(record, resources=tuple(resources)), all_closed


def _close_one(policy: Policy, job_id: str, res: ResourceRecord, log: logging.Logger) -> ResourceRecord:
    session_id = str(res.session_id)
    try:
        client = client_for(policy, res.api_key_file, res.instance)
        client.close_session(res.crn, session_id)
    except Exception as exc:
        from qauvern_hpc.ibm.errors import IBMNotFound

        if isinstance(exc, IBMNotFound):
            # already gone at IBM (expired max_ttl): nothing to release
            return replace(res, closed_at=time.time(), close_note="session not found at IBM")
        log.error("job %s: cannot close session %s: %s", job_id, session_id, exc)
        return replace(res, close_error=str(exc)[:500])
    res = replace(res, closed_at=time.time(), close_error=None)
    log.info("job %s: closed session %s (%s)", job_id, session_id, res.resource)
    resource = policy.resources.get(res.resource)
    if resource is not None and resource.on_job_end == "cancel":
        res = cancel_running(client, job_id, res, log)
    return res


def cancel_running(
    client: IBMClient, job_id: str, res: ResourceRecord, log: logging.Logger
) -> ResourceRecord:
    """`on_job_end: cancel`: after the close (no new jobs; IBM cancelled the queued ones), cancel what
    still runs, so a cancelled or timed-out Slurm job stops spending quantum time. A failure is logged and
    kept as `cancel_error` in the record; the session stays closed either way."""
    session_id = str(res.session_id)
    try:
        live = [j.id for j in client.session_jobs(res.crn, session_id) if j.status in ("Queued", "Running")]
        cancelled = [job for job in live if client.cancel_job(res.crn, job)]
    except Exception as exc:
        log.warning("job %s: cannot cancel the jobs of session %s: %s", job_id, session_id, exc)
        return replace(res, cancel_error=str(exc)[:500])
    if not cancelled:
        return res
    log.info(
        "job %s: cancelled %d IBM job(s) of session %s: %s",
        job_id,
        len(cancelled),
        session_id,
        ", ".join(cancelled),
    )
    return replace(res, cancelled_jobs=tuple(cancelled))
