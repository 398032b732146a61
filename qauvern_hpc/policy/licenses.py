"""The Slurm licenses a QPU job holds, by name. Standard library only (job_submit.lua's table, the admission
controller, doctor and the sandbox all name them the same way)."""

from __future__ import annotations

LICENSE_PREFIX = "qpu_"
PAIR_SEPARATOR = "__"


def pair_license(instance: str, backend: str) -> str:
    """The Slurm license a job holds while it uses `backend` through `instance` (lower case, as slurmdbd
    stores TRES names): `qpu_<instance>__<backend>`."""
    return f"{LICENSE_PREFIX}{instance}{PAIR_SEPARATOR}{backend}".lower()


__all__ = ["LICENSE_PREFIX", "PAIR_SEPARATOR", "pair_license"]
