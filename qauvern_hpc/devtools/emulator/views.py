"""JSON shapes of the emulated APIs (pure functions over the state models).

The shapes follow IBM's public API references and the generated clients that read them (qrmi's
`quantum_compute_client` models, qiskit-ibm-runtime's REST adapters, qauvern's api_client): required fields
are always present with the right JSON types, optional ones are filled where the emulator knows a value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from qauvern_hpc.devtools.emulator.clock import iso
from qauvern_hpc.devtools.emulator.model import (
    FINAL_JOB_STATUSES,
    QUANTUM_RESOURCE_ID,
    Backend,
    Instance,
    Job,
    Session,
)
from qauvern_hpc.devtools.emulator.versions import LEGACY, UsageShape


def _ts(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def rc_resource(inst: Instance, ru_per_second: float = 1.0) -> dict[str, Any]:
    """A Resource Controller `resource_instance`; its `extensions` give the allocation and the limit in
    seconds and in resource units (the RC is not versioned by IBM-API-Version)."""
    params = inst.parameters
    if params is None:
        params = {
            "usage_allocation_seconds": inst.usage_allocation_seconds,
            "instance_limit_seconds": inst.instance_limit_seconds,
        }
    return {
        "id": inst.crn,
        "guid": inst.guid,
        "url": f"/v2/resource_instances/{inst.guid}",
        "crn": inst.crn,
        "name": inst.name,
        "region_id": inst.region,
        "account_id": inst.account,
        "resource_group_id": inst.resource_group_id,
        "resource_id": QUANTUM_RESOURCE_ID,
        "resource_plan_id": inst.plan_id,
        "target_crn": f"crn:v1:bluemix:public:globalcatalog::::deployment:{inst.plan_id}%3A{inst.region}",
        "state": inst.state,
        "type": "service_instance",
        "locked": False,
        "created_at": iso(inst.created_at),
        "updated_at": iso(inst.updated_at),
        "tags": list(inst.tags),
        "parameters": dict(params),
        "extensions": {
            "usage_allocation_seconds": inst.usage_allocation_seconds,
            "instance_limit_seconds": inst.instance_limit_seconds,
            "usage_allocation_ru": round(inst.usage_allocation_seconds * ru_per_second, 3),
            "instance_limit_ru": (
                None
                if inst.instance_limit_seconds is None
                else round(inst.instance_limit_seconds * ru_per_second, 3)
            ),
        },
    }


def backend_device(b: Backend, queue_length: int, wait_time: dict[str, Any] | None = None) -> dict[str, Any]:
    """One entry of `GET /v1/backends` (`devices[]`); `wait_time_seconds` only when asked for."""
    out = {
        "name": b.name,
        "status": {"name": b.status, "reason": b.shown_message},
        "is_simulator": False,
        "qubits": b.qubits,
        "clops": {"type": "hardware", "value": 250000},
        "processor_type": {"family": b.processor_family, "revision": "1"},
        "queue_length": queue_length,
        "performance_metrics": {},
    }
    if wait_time is not None:
        out["wait_time_seconds"] = wait_time
    return out


def backend_status(b: Backend, queue_length: int) -> dict[str, Any]:
    """`GET /v1/backends/{name}/status`: `state` is true while IBM accepts jobs (online and paused)."""
    return {
        "state": b.status in ("online", "paused"),
        "status": b.status,
        "message": b.shown_message,
        "length_queue": queue_length,
        "backend_version": b.version,
    }


def backend_configuration(b: Backend) -> dict[str, Any]:
    """A minimal BackendConfiguration (enough for clients that only read names and sizes)."""
    return {
        "backend_name": b.name,
        "backend_version": b.version,
        "n_qubits": b.qubits,
        "basis_gates": ["cz", "id", "rz", "sx", "x"],
        "gates": [],
        "local": False,
        "simulator": False,
        "conditional": False,
        "open_pulse": False,
        "memory": True,
        "max_shots": 100000,
        "coupling_map": [[i, i + 1] for i in range(max(0, b.qubits - 1))],
        "processor_type": {"family": b.processor_family, "revision": "1"},
        "supported_instructions": ["cz", "id", "rz", "sx", "x", "measure", "delay"],
        "dt": 5e-10,
        "rep_delay_range": [0.0, 0.0005],
        "default_rep_delay": 0.00025,
    }


def backend_properties(b: Backend, now: datetime) -> dict[str, Any]:
    return {
        "backend_name": b.name,
        "backend_version": b.version,
        "last_update_date": iso(now),
        "qubits": [],
        "gates": [],
        "general": [],
    }


def session_view(s: Session, *, now: datetime, elapsed: float) -> dict[str, Any]:
    """`GET /v1/sessions/{id}` (also the `POST /v1/sessions` reply)."""
    if s.state == "closed":
        active_ttl = 0
    elif s.started_at is None:
        active_ttl = s.max_ttl
    else:
        active_ttl = max(0, int(s.max_ttl - (now - s.started_at).total_seconds()))
    return {
        "id": s.id,
        "backend_name": s.backend,
        "mode": s.mode,
        "state": s.state,
        "state_reason": s.state_reason,
        "accepting_jobs": s.accepting_jobs,
        "max_ttl": s.max_ttl,
        "active_ttl": active_ttl,
        "interactive_ttl": s.interactive_ttl,
        "started_at": _ts(s.started_at),
        "activated_at": _ts(s.activated_at),
        "closed_at": _ts(s.closed_at),
        "last_job_started": _ts(s.last_job_started),
        "last_job_completed": _ts(s.last_job_completed),
        "created_at": iso(s.created_at),
        "timestamps": [{"status": t.status, "timestamp": iso(t.timestamp)} for t in s.timestamps],
        "user_id": s.user_id,
        "instance": s.instance,
        "elapsed_time": round(elapsed, 3),
    }


def _state_status(status: str) -> str:
    return "Cancelled" if status.startswith("Cancelled") else status


def _used(j: Job, now: datetime) -> float:
    if j.status == "Running" and j.started_at is not None:
        return (now - j.started_at).total_seconds()
    return j.used_seconds


def job_usage(j: Job, used: float, shape: UsageShape) -> dict[str, Any]:
    """A job's `usage` as the requested version shapes it (see `versions`)."""
    if shape.legacy_time:
        return {"seconds": round(used, 3), "quantum_seconds": round(used, 3)}
    out: dict[str, Any] = {}
    if shape.charge_time:
        out["qpu_charge_time_seconds"] = round(used, 3)
    if shape.resource_units:
        out["value"] = shape.ru(used)
    out["status"] = "complete" if j.status in FINAL_JOB_STATUSES else "pending"
    return out


def job_view(j: Job, *, exclude_params: bool, now: datetime, shape: UsageShape = LEGACY) -> dict[str, Any]:
    """`GET /v1/jobs/{id}` and the entries of `GET /v1/jobs`."""
    out: dict[str, Any] = {
        "id": j.id,
        "backend": j.backend,
        "state": {"status": _state_status(j.status), "reason": j.reason},
        "status": j.status,
        "program": {"id": j.program_id},
        "created": iso(j.created_at),
        "runtime": j.runtime or "",
        "cost": j.cost if j.cost is not None else 28800,
        "tags": list(j.tags),
        "session_id": j.session_id,
        "user_id": j.user_id,
        "usage": job_usage(j, _used(j, now), shape),
        "estimated_running_time_seconds": round(j.quantum_seconds, 3),
    }
    if j.private:
        out["private"] = True
    if not exclude_params and not j.private:
        out["params"] = j.params
    return out


def job_metrics(
    j: Job,
    *,
    now: datetime,
    position: int | None,
    estimated_start: datetime | None,
    shape: UsageShape = LEGACY,
) -> dict[str, Any]:
    """`GET /v1/jobs/{id}/metrics`: the fields qiskit-ibm-runtime's `RuntimeJobV2.metrics()/usage()` read."""
    used = _used(j, now)
    out: dict[str, Any] = {
        "timestamps": {
            "created": iso(j.created_at),
            "running": _ts(j.started_at),
            "finished": _ts(j.finished_at),
        },
    }
    usage = job_usage(j, used, shape)
    execution_ns = round(used * 1e9)
    if shape.legacy_time:
        out["bss"] = {"seconds": round(used, 3)}
    elif shape.resource_units:
        out["circuits_execution_time_ns"] = execution_ns
    else:
        usage["circuits_execution_time_ns"] = execution_ns
    out["usage"] = usage
    out.update(
        {
            "executions": j.executions,
            "num_circuits": j.num_circuits,
            "num_qubits": [],
            "circuit_depths": [],
            "qiskit_version": "qauvern-hpc-emulator",
            "estimated_start_time": _ts(j.started_at or estimated_start),
            "estimated_completion_time": _ts(j.finished_at),
            "position_in_queue": position,
            "position_in_provider": position,
        }
    )
    return out


def job_results(j: Job) -> dict[str, Any]:
    """A placeholder PrimitiveResult-like body (the emulator runs no circuits)."""
    pubs = j.params.get("pubs") if isinstance(j.params.get("pubs"), list) else []
    assert isinstance(pubs, list)
    return {
        "results": [{"data": {}, "metadata": {"emulated": True}} for _ in pubs],
        "metadata": {"version": 2, "emulated": True, "quantum_seconds": round(j.used_seconds, 3)},
    }
