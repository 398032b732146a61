"""How much QPU time a job takes, from its parameters (pure functions).

IBM's documented quick estimate ("Workload usage", estimate section) is

    quantum seconds ≈ 2 + 0.00035 × executions

where executions = Σ over PUBs of shots × parameter bindings. The emulator uses it unless the job carries
emulator-specific overrides in ``params.emulator``:

- ``quantum_seconds``: the QPU time the job needs (exact),
- ``executions``: use this execution count in the formula,
- ``fail_after_seconds``: the job fails after that much QPU time (it is charged for it),
- ``fail_reason``: the failure message.

Sampler PUBs are ``[circuit, parameter_values?, shots?]``; Estimator PUBs are
``[circuit, observables, parameter_values?, precision?]`` (shots ≈ 1/precision²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

OVERHEAD_SECONDS = 2.0
SECONDS_PER_EXECUTION = 0.00035
DEFAULT_SHOTS = 4096
DEFAULT_PRECISION = 0.015625  # EstimatorV2 default: 1/64 -> 4096 shots


@dataclass(frozen=True)
class WorkEstimate:
    quantum_seconds: float
    executions: int
    num_circuits: int
    fail_after_seconds: float | None = None
    fail_reason: str | None = None


def quick_estimate(executions: int) -> float:
    return OVERHEAD_SECONDS + SECONDS_PER_EXECUTION * executions


def _shape(values: Any) -> list[int]:
    dims: list[int] = []
    while isinstance(values, list):
        dims.append(len(values))
        if not values:
            break
        values = values[0]
    return dims


def _bindings(values: Any) -> int:
    """Number of parameter bindings in a PUB's parameter values.

    A nested list has shape (*bindings, n_params): every dimension but the last counts. A mapping
    (parameter name -> values of shape (*bindings,)) counts every dimension of its largest value.
    """
    if isinstance(values, dict):
        return max((math.prod(_shape(v)) or 1 for v in values.values()), default=1)
    dims = _shape(values)
    return max(1, math.prod(dims[:-1])) if len(dims) > 1 else 1


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, float) and value > 0 and value.is_integer():
        return int(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def estimate_work(program_id: str, params: dict[str, Any]) -> WorkEstimate:
    """See the module docstring."""
    emu = params.get("emulator") if isinstance(params.get("emulator"), dict) else {}
    assert isinstance(emu, dict)
    pubs = params.get("pubs") if isinstance(params.get("pubs"), list) else []
    assert isinstance(pubs, list)
    options = params.get("options") if isinstance(params.get("options"), dict) else {}
    assert isinstance(options, dict)
    estimator = program_id.lower().startswith("estimator")
    default_shots = (
        _positive_int(params.get("shots")) or _positive_int(options.get("default_shots")) or DEFAULT_SHOTS
    )
    default_precision = _number(params.get("precision")) or _number(options.get("default_precision"))

    executions = 0
    for pub in pubs:
        items = pub if isinstance(pub, list) else [pub]
        if estimator:
            binding = _bindings(items[2]) if len(items) > 2 else 1
            precision = (_number(items[3]) if len(items) > 3 else None) or default_precision
            shots = math.ceil(1 / precision**2) if precision and precision > 0 else DEFAULT_SHOTS
        else:
            binding = _bindings(items[1]) if len(items) > 1 else 1
            shots = (_positive_int(items[2]) if len(items) > 2 else None) or default_shots
        executions += shots * binding

    override_exec = _positive_int(emu.get("executions"))
    if override_exec is not None:
        executions = override_exec
    quantum = _number(emu.get("quantum_seconds"))
    if quantum is None or quantum < 0:
        quantum = quick_estimate(executions)
    fail_after = _number(emu.get("fail_after_seconds"))
    reason = emu.get("fail_reason")
    return WorkEstimate(
        quantum_seconds=quantum,
        executions=executions,
        num_circuits=len(pubs),
        fail_after_seconds=fail_after if fail_after is not None and fail_after >= 0 else None,
        fail_reason=str(reason) if reason is not None else None,
    )
