"""The test site: re-exported from the package so tests and the demo share one definition."""

from __future__ import annotations

from pathlib import Path

from qauvern_hpc.devtools import qpu_site
from qauvern_hpc.devtools.qpu_site import ACCOUNT, API_KEY, CRN_CHEM, CRN_PHYS, emulator_seed

__all__ = ["ACCOUNT", "API_KEY", "CRN_CHEM", "CRN_PHYS", "emulator_seed", "write_site"]


def write_site(
    directory: Path, base_url: str, *, fail_mode: str = "closed", expose_api_key: bool = True
) -> Path:
    """Write the site and return its policy.json path."""
    return qpu_site.write_site(directory, base_url, fail_mode=fail_mode, expose=expose_api_key).policy
