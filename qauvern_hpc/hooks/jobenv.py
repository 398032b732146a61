"""The environment a QPU job's tasks get, following QRMI's conventions, and the env-file format.

The prolog writes `{state_dir}/jobs/{jobid}.env`; the SPANK plugin (remote context) reads it and exports every
line into the job's tasks. Format: `KEY=VALUE` lines, `#` comments; values are raw (no quoting, no newlines).
Two keys are for the plugin only and never exported: `QAUVERN_HPC_ERROR` (why the QPU could not be prepared)
and `QAUVERN_HPC_FAIL_MODE` (`open`: run the job anyway; `closed`: fail its tasks).

Variables per resource NAME (qrmi's `ResourceType.IBMQuantumComputeService`):
  NAME_QRMI_IBM_QCS_ENDPOINT, NAME_QRMI_IBM_QCS_IAM_ENDPOINT, NAME_QRMI_IBM_QCS_SERVICE_CRN,
  NAME_QRMI_IBM_QCS_SESSION_MODE, NAME_QRMI_IBM_QCS_SESSION_MAX_TTL, NAME_QRMI_IBM_QCS_SESSION_ID,
  NAME_QRMI_JOB_ACQUISITION_TOKEN, NAME_QRMI_JOB_TIMEOUT_SECONDS, and NAME_QRMI_IBM_QCS_IAM_APIKEY only when
  the resource's config says `expose_api_key: true`.
Job mode (`session_mode: job`, no IBM session): no SESSION_ID, ACQUISITION_TOKEN or SESSION_MAX_TTL, and
SESSION_MODE=job. qrmi 0.26.4 submits a job without a session when it has no session id; its `acquire()`
accepts only batch or dedicated, so code in the job that tries to open a session fails there, before IBM
(where an Open-plan instance would refuse a dedicated one, and any other would open a session no Slurm
job accounts for).
Job-wide: QRMI_JOB_QPU_RESOURCES, QRMI_JOB_QPU_TYPES (and the legacy SLURM_JOB_QPU_RESOURCES/TYPES),
QRMI_LIST_DELIMITER, QAUVERN_HPC_INSTANCE, QAUVERN_HPC_RULE.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from qauvern_hpc.core.files import atomic_write

JOB_MODE = "job"  # a resource's session_mode when the job gets no IBM session
ERROR_KEY = "QAUVERN_HPC_ERROR"
FAIL_MODE_KEY = "QAUVERN_HPC_FAIL_MODE"
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

TYPE_PREFIX = {
    "ibm-quantum-compute-service": "QRMI_IBM_QCS",
    "qiskit-runtime-service": "QRMI_IBM_QRS",
    "ibm-quantum-system": "QRMI_IBM_QS",
}


@dataclass(frozen=True)
class AcquiredResource:
    """One resource acquired for a job: what the job environment is rendered from."""

    name: str
    type: str
    crn: str
    session_mode: str
    max_ttl_seconds: int
    session_id: str | None
    endpoint: str  # the quantum API endpoint qrmi should use (…/api)
    iam_endpoint: str  # the IAM base URL (qrmi appends /identity/token)
    api_key: str | None = None  # only set when the config exposes the key to jobs
    extra_env: Mapping[str, str] | None = None


def render(
    resources: Sequence[AcquiredResource],
    *,
    time_limit_seconds: int | None,
    instance: str,
    rule: str,
) -> dict[str, str]:
    """The variables a job's tasks see. Pure: no I/O."""
    env: dict[str, str] = {}
    names = ",".join(r.name for r in resources)
    types = ",".join(r.type for r in resources)
    env["QRMI_JOB_QPU_RESOURCES"] = names
    env["QRMI_JOB_QPU_TYPES"] = types
    env["SLURM_JOB_QPU_RESOURCES"] = names
    env["SLURM_JOB_QPU_TYPES"] = types
    env["QRMI_LIST_DELIMITER"] = ","
    env["QAUVERN_HPC_INSTANCE"] = instance
    env["QAUVERN_HPC_RULE"] = rule
    for r in resources:
        prefix = TYPE_PREFIX.get(r.type, "QRMI_IBM_QCS")
        p = f"{r.name}_{prefix}"
        env[f"{p}_ENDPOINT"] = r.endpoint
        env[f"{p}_IAM_ENDPOINT"] = r.iam_endpoint
        env[f"{p}_SERVICE_CRN"] = r.crn
        env[f"{p}_SESSION_MODE"] = r.session_mode
        if r.session_mode != JOB_MODE:
            env[f"{p}_SESSION_MAX_TTL"] = str(r.max_ttl_seconds)
        if r.session_id:
            env[f"{p}_SESSION_ID"] = r.session_id
            env[f"{r.name}_QRMI_JOB_ACQUISITION_TOKEN"] = r.session_id
        if time_limit_seconds:
            env[f"{r.name}_QRMI_JOB_TIMEOUT_SECONDS"] = str(time_limit_seconds)
            env[f"{p}_TIMEOUT_SECONDS"] = str(time_limit_seconds)
        if r.api_key is not None:
            env[f"{p}_IAM_APIKEY"] = r.api_key
        for k, v in (r.extra_env or {}).items():
            env[k] = v
    return env


def format_env_file(env: Mapping[str, str]) -> str:
    lines = ["# written by qauvern-hpc prolog; read by the qauvern_qpu SPANK plugin"]
    for key, value in env.items():
        if not _KEY.match(key):
            raise ValueError(f"invalid environment variable name {key!r}")
        if "\n" in value or "\r" in value or "\0" in value:
            raise ValueError(f"value of {key} contains a newline or NUL")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def parse_env_file(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not _KEY.match(key):
            raise ValueError(f"bad env-file line: {line[:60]!r}")
        env[key] = value
    return env


def write_private(path: str, content: str) -> None:
    """Write atomically, mode 0600, owned by the caller (root in the hooks)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    atomic_write(path, content, mode=0o600)
