"""A local, faithful emulator of IBM Cloud IAM, the Resource Controller and the IBM Quantum APIs.

IBM's services cannot be reached from the test machines, so every client (ours, qrmi's, qauvern's) is pointed
at this emulator by base URL. It is a real HTTP/1.1 server (standard library only) serving all services on one
loopback port::

    from qauvern_hpc.devtools.emulator import run_emulator
    with run_emulator("seed.yaml", clock="manual") as emu:
        emu.base_url                 # "http://127.0.0.1:PORT"
        emu.state                    # EmulatorState: snapshot(), replace(), patch(), instance(), ...
        emu.faults.add(path=r"^/api/v1/instances/usage$", method="GET", status=429, retry_after=1, times=2)
        emu.faults.add(path=..., delay=2.0)   # slow reply
        emu.faults.add(path=..., drop=True)   # close the connection without answering
        emu.faults.clear()
        emu.expire_tokens()          # every issued token now gets 401
        emu.advance(60)              # move the (manual or real) clock forward
        emu.state.set_backend_status("ibm_fez", "paused", "maintenance", for_seconds=600)
        emu.requests                 # [LoggedRequest(method, path, status, headers minus secrets, ...)]

or as a process: ``qauvern-hpc emulator --port 0 --seed seed.yaml`` (prints its base URL first).

Paths served (request -> reply; IBM-style error bodies ``{"errors": [{"code", "message"}], ...}``):

IAM
  ``POST /identity/token`` form ``grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=K`` ->
  ``{access_token, refresh_token, token_type: Bearer, expires_in, expiration, scope}``; unknown key -> 400
  ``{"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found."}``. Tokens are opaque
  and expire after ``token_ttl_seconds`` of emulated time; every other path needs ``Authorization: Bearer``
  (else 401).
Resource Controller
  ``GET /v2/resource_instances?resource_id=&resource_plan_id=&limit=&start=`` -> ``{rows_count, next_url,
  resources: [{id: CRN, guid, name, region_id, resource_plan_id, ..., extensions: {usage_allocation_seconds,
  instance_limit_seconds}}]}``, paginated (``page_size``, ``next_url`` carries ``start=TOKEN``);
  ``GET|PATCH /v2/resource_instances/{url-encoded CRN or guid}``: PATCH ``{"parameters":
  {"usage_allocation_seconds": "N", "instance_limit_seconds": "M"|null}}`` replaces the parameters whole
  (numbers or decimal strings; a missing/null limit removes it); an allocation that would make Σ allocations
  exceed the plan budget -> 400; ``POST /v2/resource_instances`` creates one (201).
Quantum platform API, under ``/api/v1`` (``/api`` alone is accepted too)
  ``GET /instances/usage`` (Service-CRN) -> ``{instance_id, plan_id, usage_consumed_seconds (plan period),
  usage_allocation_seconds, usage_limit_seconds, usage_limit_reached, usage_period}``; ``GET /instance``;
  ``GET /analytics/usage?instance=CRN|plan=NAME&interval_start&interval_end`` -> ``{usage: MILLISECONDS}``;
  ``GET /analytics/usage_grouped_by_date?group_by=instance&instance=&interval_start&interval_end`` ->
  ``{data: [{key, interval_start, interval_end, usage: ms}]}`` (days with usage, end exclusive);
  ``GET /accounts/{id}?plan_id=`` -> ``{id, plans: [{plan_id, usage_allocation_seconds,
  unallocated_usage_seconds (= budget - Σ allocations, always), usage_limit_seconds, backends, ...}]}``.
Quantum compute API (Qiskit Runtime REST), same prefix, all with Service-CRN
  ``GET /backends[?fields=wait_time_seconds]`` -> ``{devices: [{name, status: {name: online|paused|offline,
  reason: message}, qubits, queue_length, wait_time_seconds?: {average, p50, p95}, ...}]}`` (wait: whole
  seconds created -> running of the jobs, ours and other customers', started in the trailing
  ``wait_window_seconds``; each null when none did);
  ``GET /backends/{name}/status`` -> ``{state (true for online and paused), status, message (active |
  internal | maintenance | free text), length_queue (ours + other customers' queued), backend_version}``;
  ``GET /backends/{name}/configuration|properties``;
  ``POST /sessions {mode: batch|dedicated, backend|backend_name, max_ttl}`` -> the session;
  ``GET /sessions/{id}`` -> ``{id, backend_name, mode, state: open|active|inactive|closed, accepting_jobs,
  max_ttl, active_ttl, interactive_ttl, started_at, closed_at, timestamps, elapsed_time (usage s), ...}``;
  ``PATCH /sessions/{id} {"accepting_jobs": false}`` -> 204 (close once the jobs are done:
  qiskit-ibm-runtime ``Session.close()``, qrmi ``release()`` without pending jobs);
  ``DELETE /sessions/{id}/close`` -> 204 (cancel queued jobs, then close: ``Session.cancel()``, qrmi
  ``release()`` with pending jobs);
  ``POST /jobs {program_id, backend, session_id?, params, cost?}`` -> ``{id, backend}``;
  ``GET /jobs?session_id=&pending=&backend=&program=&limit=&offset=`` -> ``{jobs, count, offset, limit}``;
  ``GET /jobs/{id}`` -> ``{id, backend, status: Queued|Running|Completed|Cancelled|Failed, state: {status,
  reason}, program: {id}, created, cost, session_id, usage: {seconds, quantum_seconds}, ...}``;
  ``GET /jobs/{id}/metrics`` -> ``{timestamps: {created, running, finished}, usage: {quantum_seconds,
  seconds}, bss: {seconds}, executions, position_in_queue, estimated_start_time, ...}`` (a queued job's
  position in the backend's current start order and its start if nothing else arrived; null while the
  backend is not online); ``POST /jobs/{id}/cancel``, ``DELETE /jobs/{id}``, ``GET
  /jobs/{id}/results|logs``. Usage shapes follow the request's IBM-API-Version (`versions`; the shapes above
  are the oldest version's): ``qpu_charge_time_seconds`` from 2026-03-15, RUs (``usage.value``,
  ``usage_*_ru``) from 2026-04-15, RU fields only once the time fields are removed; ``GET /versions`` (no
  token) lists the versions.
Control surface (no auth, never faulted, not in the request log)
  ``GET|PUT|PATCH /__emulator/state``, ``GET|POST|DELETE /__emulator/faults``,
  ``DELETE /__emulator/faults/{id}``, ``POST /__emulator/expire-tokens``,
  ``POST /__emulator/advance {"seconds": N}``, ``GET /__emulator/clock``,
  ``GET|PUT /__emulator/time-fields {"removed": bool}`` (also seed key ``time_fields_removed`` and
  ``emu.remove_time_fields()``),
  ``GET|DELETE /__emulator/requests[?since=SEQ]``, ``GET /__emulator/health``,
  ``GET /__emulator/backends/{name}`` (status, schedule, wait spikes, other customers' queue),
  ``POST /__emulator/backends/{name}/status {status, message?, for_seconds?}`` (reverts after for_seconds),
  ``POST /__emulator/backends/{name}/wait-spike {extra_jobs?, rate_factor?, for_seconds, after_seconds?}``,
  ``POST /__emulator/backends/{name}/flap {period_seconds, for_seconds, after_seconds?}``; from Python the
  same as ``emu.state.set_backend_status(name, status, message, for_seconds)``, ``emu.state.wait_spike(name,
  ...)``, ``emu.state.flap(name, ...)``, ``emu.state.backend_control_view(name)``.

Where the shapes come from (search of public docs and code, and running the clients):

- qrmi 0.26.4 ``IBMQuantumComputeService`` (its Rust ``quantum_compute_client``, OpenAPI "Qiskit Runtime API"
  0.31.10): endpoint variable = ``{base}/api/v1`` (it appends ``/backends/{name}/status``, ``/sessions``,
  ``/jobs``); IAM variable = ``{base}`` (it appends ``/identity/token``). ``acquire()`` POSTs ``{"max_ttl",
  "mode", "backend", "backend_name"}`` and needs ``id``, ``backend_name`` and ``mode`` in the reply;
  ``release()`` lists ``GET /jobs?pending=true&session_id=ID``, then ``DELETE /sessions/ID/close`` if jobs are
  pending, else ``PATCH /sessions/ID {"accepting_jobs": false}`` (both 204). ``is_accessible()`` is true only
  for status ``online``/``active``. Job ``status`` strings and ``cost`` (int) are required by its JobResponse.
- qiskit-ibm-runtime REST adapters: session close = ``PATCH`` accepting_jobs false, cancel =
  ``DELETE /sessions/{id}/close``; job metrics at ``/jobs/{id}/metrics`` with ``usage.quantum_seconds``.
- IBM docs "Workload usage": batch/job usage = Σ job quantum time; dedicated session usage = wall clock from
  the first job start until the session goes inactive or closes; failed/cancelled jobs are charged for the
  time the QPU was locked; quick estimate ``2 + 0.00035 × executions`` seconds.
- qauvern 0.14 (trace in the project's reference notes): RC pagination via ``next_url``'s ``start``,
  ``extensions`` numbers, analytics in milliseconds, ``+00:00`` percent-encoded in queries.

Known simplifications: seeded daily history counts at 00:00 UTC of its day; a dedicated session's usage is
recorded when its locked period ends (not while it runs); backends run one job at a time with no
calibration; other tenants are one synthetic instance per backend (``external``: Poisson arrivals, one fixed
fair-share ratio) plus the seeded display-only ``queue_length``; results are placeholders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qauvern_hpc.devtools.emulator.clock import Clock
    from qauvern_hpc.devtools.emulator.faults import FaultRule, FaultSet
    from qauvern_hpc.devtools.emulator.runner import Emulator, run_emulator, start_emulator
    from qauvern_hpc.devtools.emulator.seed import SeedError
    from qauvern_hpc.devtools.emulator.server import LoggedRequest
    from qauvern_hpc.devtools.emulator.state import EmulatorState

__all__ = [
    "Clock",
    "Emulator",
    "EmulatorState",
    "FaultRule",
    "FaultSet",
    "LoggedRequest",
    "SeedError",
    "run_emulator",
    "start_emulator",
]

_LAZY = {
    "Clock": "qauvern_hpc.devtools.emulator.clock",
    "Emulator": "qauvern_hpc.devtools.emulator.runner",
    "run_emulator": "qauvern_hpc.devtools.emulator.runner",
    "start_emulator": "qauvern_hpc.devtools.emulator.runner",
    "EmulatorState": "qauvern_hpc.devtools.emulator.state",
    "FaultRule": "qauvern_hpc.devtools.emulator.faults",
    "FaultSet": "qauvern_hpc.devtools.emulator.faults",
    "LoggedRequest": "qauvern_hpc.devtools.emulator.server",
    "SeedError": "qauvern_hpc.devtools.emulator.seed",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qauvern_hpc.devtools.emulator' has no attribute {name!r}")
