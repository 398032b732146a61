"""Open and close the IBM sessions a job holds, through the instance its mapping rule chose.

Imported by the hooks only when a job asked for a QPU (it pulls in httpx through the IBM client).
Time is bounded: the hooks must finish well within Slurm's PrologEpilogTimeout even when IBM is down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

from qauvern_hpc.hooks.jobenv import AcquiredResource
from qauvern_hpc.ibm import Endpoints, IBMClient, RetryPolicy
from qauvern_hpc.ibm.factory import ClientPool, endpoints
from qauvern_hpc.policy.compiled import Policy
from qauvern_hpc.policy.mapping import ResourceGrant

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


def close_all(policy: Policy, record: MutableMapping[str, Any], log: logging.Logger) -> bool:
    """Close every session in the record that is still open. Returns True when none is left open.

    Each closed session gets `closed_at`; a failure leaves `close_error` so a later sweep retries.
    """
    all_closed = True
    for res in record.get("resources", []):
        if not res.get("session_id") or res.get("closed_at"):
            continue
        try:
            client = client_for(policy, res.get("api_key_file"), res["instance"])
            client.close_session(res["crn"], res["session_id"])
        except Exception as exc:
            from qauvern_hpc.ibm.errors import IBMNotFound

            if isinstance(exc, IBMNotFound):
                res["closed_at"] = time.time()  # already gone at IBM (expired max_ttl): nothing to release
                res["close_note"] = "session not found at IBM"
                continue
            all_closed = False
            res["close_error"] = str(exc)[:500]
            log.error("job %s: cannot close session %s: %s", record.get("job_id"), res["session_id"], exc)
            continue
        res["closed_at"] = time.time()
        res.pop("close_error", None)
        log.info("job %s: closed session %s (%s)", record.get("job_id"), res["session_id"], res["resource"])
        resource = policy.resources.get(str(res.get("resource")))
        if resource is not None and resource.on_job_end == "cancel":
            cancel_running(client, record, res, log)
    return all_closed


def cancel_running(
    client: IBMClient, record: Mapping[str, Any], res: MutableMapping[str, Any], log: logging.Logger
) -> None:
    """`on_job_end: cancel`: after the close (no new jobs; IBM cancelled the queued ones), cancel what
    still runs, so a cancelled or timed-out Slurm job stops spending quantum time. A failure is logged and
    kept as `cancel_error` in the record; the session stays closed either way."""
    try:
        live = [
            j.id
            for j in client.session_jobs(res["crn"], res["session_id"])
            if j.status in ("Queued", "Running")
        ]
        cancelled = [job for job in live if client.cancel_job(res["crn"], job)]
    except Exception as exc:
        res["cancel_error"] = str(exc)[:500]
        log.warning(
            "job %s: cannot cancel the jobs of session %s: %s", record.get("job_id"), res["session_id"], exc
        )
        return
    if cancelled:
        res["cancelled_jobs"] = cancelled
        log.info(
            "job %s: cancelled %d IBM job(s) of session %s: %s",
            record.get("job_id"),
            len(cancelled),
            res["session_id"],
            ", ".join(cancelled),
        )
