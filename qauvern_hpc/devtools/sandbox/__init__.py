"""A throwaway local Slurm cluster (munged, MariaDB, slurmdbd, slurmctld, one slurmd) in one directory; more
clusters can share its slurmdbd (`Sandbox.up(accounting_of=...)`, Slurm's multi-cluster setup).

The shell scripts in `qauvern_hpc/devtools/sandbox/scripts/` are the implementation (up.sh, down.sh, env.sh,
status.sh,
seed-accounts.sh); `Sandbox` wraps them for Python and the tests. See `cluster.py` for the API.
"""

from qauvern_hpc.devtools.sandbox.cluster import (
    DAEMONS,
    DEFAULT_ACCOUNTS,
    SCRIPTS_DIR,
    TEMPLATES_DIR,
    Hooks,
    Sandbox,
    SandboxError,
    SubmitError,
    default_workdir,
    missing_prerequisites,
)

__all__ = [
    "DAEMONS",
    "DEFAULT_ACCOUNTS",
    "SCRIPTS_DIR",
    "TEMPLATES_DIR",
    "Hooks",
    "Sandbox",
    "SandboxError",
    "SubmitError",
    "default_workdir",
    "missing_prerequisites",
]
