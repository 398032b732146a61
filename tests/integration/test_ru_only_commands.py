"""IBM with its time fields removed (RUs only): the admin commands decide and report exactly as they do with
the time fields, over real HTTP, against the same emulator account (tests/integration/test_admin_commands's
seed). The seconds come from the RUs at each instance's own rate (its Resource Controller allocation in
both units); the emulator's rate is 2.5 RUs per second here, so a conversion error would show."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.devtools.emulator import run_emulator
from tests.integration.test_admin_commands import Rig, seed

pytestmark = pytest.mark.slow

RATE = 2.5
NO_SLURM = """\
rebalance:
  demand: {enabled: false}
  slurm: {license_prefix: null, gate: false, fairshare: false}
"""


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with run_emulator({**seed(), "resource_units_per_second": RATE}, clock="real") as emu:
        rig = Rig(emu, tmp_path)
        with rig.config.open("a") as f:  # no Slurm here: the rebalancer plans from IBM alone
            f.write(NO_SLURM)
        yield rig


def without_times(doc: Any) -> Any:
    """`doc` without the keys that name when it was made (they differ between two runs)."""
    volatile = {"generated_at", "now", "started_at", "finished_at", "run_id", "elapsed_seconds", "at"}
    volatile |= {"usage_period"}  # the emulator's rolling window ends at its clock's now
    if isinstance(doc, dict):
        return {k: without_times(v) for k, v in doc.items() if k not in volatile}
    if isinstance(doc, list):
        return [without_times(v) for v in doc]
    return doc


def stable_lines(text: str) -> list[str]:
    timing = ("qauvern_hpc_ibm_api_scrape_seconds ", "qauvern_hpc_scrape_timestamp_seconds ")
    return [ln for ln in text.splitlines() if not any(t in ln for t in timing)]


COMMANDS = [
    ("show", "--json"),
    ("instances", "--json"),
    ("analyze", "--json", "--days", "14"),
    ("rebalance", "--dry-run", "--no-slurm", "--json"),
    ("metrics", "--no-slurm"),
]


@pytest.mark.parametrize("argv", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_ru_only_replies_give_the_same_report_and_decisions(rig: Rig, argv: tuple[str, ...]) -> None:
    code, with_times, err = rig.run(*argv)
    # metrics exits 1 here either way: this rig has no ledger or journal (their scrape_error is 1)
    assert code == (1 if argv[0] == "metrics" else 0), err
    rig.emu.remove_time_fields()
    again, ru_only, err = rig.run(*argv)
    assert again == code, err
    assert rig.emu.state.time_fields_removed
    if isinstance(with_times, str):  # metrics text: without the scrape's own timings
        assert 'qauvern_hpc_instance_usage_28d_seconds{instance="physics"} 35000' in with_times
        assert stable_lines(ru_only) == stable_lines(with_times)
    else:
        assert without_times(ru_only) == without_times(with_times)
