"""Where the package's own files are: shipped data, the SPANK sources, the Slurm config examples.

A checkout's top-level `spank/` and `slurm-conf/` are the source of truth; a wheel ships copies of them as
`qauvern_hpc/spank_src/` and `qauvern_hpc/slurm_conf/`. Standard library only.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = PACKAGE_DIR / "data"
CHECKOUT_DIR = PACKAGE_DIR.parent  # the repository, when running from a checkout


def shipped_dir(checkout_name: str, wheel_name: str) -> Path:
    """`spank`/`slurm-conf` of a checkout when present, else the wheel's copy under the package."""
    in_checkout = CHECKOUT_DIR / checkout_name
    return in_checkout if in_checkout.is_dir() else PACKAGE_DIR / wheel_name


def slurm_conf_dir() -> Path:
    """The directory holding job_submit.lua, plugstack.conf and the other Slurm-side examples."""
    return shipped_dir("slurm-conf", "slurm_conf")
