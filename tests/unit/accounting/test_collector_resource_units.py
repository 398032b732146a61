"""`collect` (its IBM step) stores the RUs IBM reports beside the quantum seconds: a batch session's RUs are
its jobs' RUs, charged once like the seconds; a dedicated session's RUs are unknown (IBM gives them per
workload, not per session). The attribution rules are pure and tested without IBM too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qauvern_hpc.accounting.attribution import SessionUsage, attribute, attribute_job
from qauvern_hpc.accounting.ledger import FINAL, Ledger, open_ledger
from tests.support.ibm import EmulatedIBM
from tests.unit.accounting import test_ledger as base
from tests.unit.accounting.test_collector_ledger import CRN, resolve
from tests.unit.accounting.test_ledger import row

pytestmark = pytest.mark.process  # starts the emulator

pg_server = base.pg_server
backend = base.backend


@pytest.fixture
def led(backend: tuple[str, str]) -> Iterator[Ledger]:
    with open_ledger(backend[1]) as ledger:
        yield ledger


@pytest.fixture
def ibm() -> Iterator[EmulatedIBM]:
    with EmulatedIBM({CRN: (100_000, None)}) as fake:
        fake.emu.state.patch({"resource_units_per_second": 2.5})
        yield fake


def test_collect_stores_the_sessions_rus_once(led: Ledger, ibm: EmulatedIBM) -> None:
    ibm.add_session("shared", CRN, ("Completed", 4.0), ("Failed", 1.0))
    led.upsert_runs([row(2, session_id="shared"), row(3, session_id="shared")])
    report = resolve(led, ibm)
    assert (report.sessions, report.finalized, report.errors) == (1, 2, [])
    got = {r.job_id_raw: (r.quantum_seconds, r.resource_units, r.usage_state) for r in led.runs()}
    assert got == {2: (5.0, 12.5, FINAL), 3: (0.0, 0.0, FINAL)}


def _batch(rus: list[float | None], seconds: list[float | None] | None = None) -> SessionUsage:
    secs = seconds if seconds is not None else [1.0] * len(rus)
    return SessionUsage("s", "batch", "closed", None, secs, ["completed"] * len(rus), rus)


def test_attribution_sums_rus_only_when_every_job_has_them() -> None:
    assert attribute(_batch([2.5, 5.0])).resource_units == 7.5
    assert attribute(_batch([2.5, None])).resource_units is None
    assert attribute(_batch([])).resource_units is None
    old = SessionUsage("s", "batch", "closed", None, [1.0], ["completed"])  # before RUs
    assert (attribute(old).quantum_seconds, attribute(old).resource_units) == (1.0, None)
    dedicated = SessionUsage("d", "dedicated", "closed", 30.0, [1.0], ["completed"], [2.5])
    assert (attribute(dedicated).quantum_seconds, attribute(dedicated).resource_units) == (30.0, None)
    assert attribute_job([_batch([1.0]), _batch([2.0])]).resource_units == 3.0
    assert attribute_job([_batch([1.0]), dedicated]).resource_units is None
