"""Job-mode runs (the Open plan) are charged the IBM jobs of their instance and backend created while they
ran, against the emulator on a real ledger (SQLite and PostgreSQL): a sole run gets exactly its jobs (not a
session's, not another backend's, not those created before or after it); overlapping runs stay pending with
the reason and IBM is not asked; a run whose jobs are not all terminal, or that still runs, stays pending with
what is known, and becomes final once they are."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from qauvern_hpc.accounting.collector import CollectReport, resolve_usage
from qauvern_hpc.accounting.job_mode import overlapping, run_window
from qauvern_hpc.accounting.ledger import FINAL, PENDING, Ledger, RunKey, RunRow, StoredRun, open_ledger
from qauvern_hpc.devtools.emulator.clock import parse_iso
from tests.support.ibm import START, EmulatedIBM
from tests.unit.accounting import test_ledger as base
from tests.unit.accounting.test_collector_ledger import CRN, clients_for
from tests.unit.accounting.test_ledger import row

pytestmark = pytest.mark.process  # starts the emulator

pg_server = base.pg_server
backend = base.backend

T = parse_iso(START) - timedelta(hours=2)  # runs and jobs are in the emulator's past
S = int(T.timestamp())
BACKENDS = {"ibm_torino": "ibm_torino", "torino-b": "ibm_torino", "ibm_fez": "ibm_fez"}


@pytest.fixture
def led(backend: tuple[str, str]) -> Iterator[Ledger]:
    with open_ledger(backend[1]) as ledger:
        yield ledger


@pytest.fixture
def ibm() -> Iterator[EmulatedIBM]:
    with EmulatedIBM({CRN: (100_000, None)}) as fake:
        fake.emu.state.patch({"resource_units_per_second": 2.5, "backends": [{"name": "ibm_fez"}]})
        yield fake


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def job_mode_row(job: int, start: int, end: int | None, resource: str = "ibm_torino") -> RunRow:
    state, stop = ("RUNNING", None) if end is None else ("COMPLETED", S + end)
    kw = {"session_id": None, "mode": "job", "start": S + start, "end": stop, "slurm_state": state}
    return row(job, resource, run=0, **kw)


def resolve(led: Ledger, ibm: EmulatedIBM, now: int = S + 3600) -> CollectReport:
    report = CollectReport()
    resolve_usage(led, clients_for(ibm), report=report, backend_of=BACKENDS.get, now=now)
    return report


def key(job: int, resource: str = "ibm_torino") -> RunKey:
    return RunKey("alpha", job, 0, resource)


def test_a_sole_run_is_charged_exactly_the_jobs_created_while_it_ran(led: Ledger, ibm: EmulatedIBM) -> None:
    ibm.add_jobs(
        CRN,
        ("before", at(-5), "Completed", 50.0),  # created before the run started
        ("first", at(0.2), "Completed", 2.0),  # in the start second
        ("second", at(60), "Failed", 1.5),  # a user error costs what it used
        ("last", at(100.9), "Completed", 0.5),  # in the end second
        ("after", at(102), "Completed", 40.0),
    )
    ibm.add_jobs(CRN, ("elsewhere", at(30), "Completed", 30.0), backend="ibm_fez")
    ibm.add_session("s-9", CRN, ("Completed", 20.0))  # a session's jobs are never job mode's
    led.upsert_runs([job_mode_row(1, 0, 100)])
    report = resolve(led, ibm)
    assert (report.job_mode, report.job_mode_ibm_jobs, report.finalized, report.errors) == (1, 3, 1, [])
    assert report.job_mode_overlaps == [] and report.unresolved == [] and report.still_pending == 0
    stored = led.get_run(key(1))
    assert stored is not None
    assert (stored.quantum_seconds, stored.resource_units, stored.usage_state) == (4.0, 10.0, FINAL)
    [query] = ibm.job_listings()
    assert "backend=ibm_torino" in query and "sort=ASC" in query and "created_after=" in query
    again = resolve(led, ibm)  # final: nothing is asked again
    assert (again.job_mode, len(ibm.job_listings())) == (0, 1)


def test_overlapping_runs_stay_pending_with_the_reason_and_ibm_is_not_asked(
    led: Ledger, ibm: EmulatedIBM
) -> None:
    ibm.add_jobs(CRN, ("a", at(10), "Completed", 2.0), ("b", at(70), "Completed", 3.0))
    led.upsert_runs(
        [
            job_mode_row(1, 0, 60),
            job_mode_row(2, 60, 120, resource="torino-b"),  # another resource on the same backend
            job_mode_row(3, 30, 90, resource="ibm_fez"),  # another backend: no overlap
        ]
    )
    report = resolve(led, ibm)
    assert sorted(report.job_mode_overlaps) == [
        "alpha/1 run 0: job mode: overlaps job 2 on phys-2026/ibm_torino",
        "alpha/2 run 0: job mode: overlaps job 1 on phys-2026/ibm_torino",
    ]
    assert (report.job_mode, report.finalized, report.still_pending) == (3, 1, 2)
    assert [q for q in ibm.job_listings() if "ibm_torino" in q] == []
    assert {r.job_id_raw: (r.quantum_seconds, r.usage_state) for r in led.runs()} == {
        1: (None, PENDING),
        2: (None, PENDING),
        3: (0.0, FINAL),  # nothing ran on ibm_fez while it ran
    }


def test_a_run_whose_jobs_still_run_stays_pending_then_becomes_final(led: Ledger, ibm: EmulatedIBM) -> None:
    ibm.add_jobs(CRN, ("done", at(5), "Completed", 2.0), ("busy", at(50), "Running", None))
    led.upsert_runs([job_mode_row(1, 0, 100)])
    report = resolve(led, ibm)
    assert (report.updated, report.finalized, report.still_pending) == (1, 0, 1)
    stored = led.get_run(key(1))
    assert stored is not None and (stored.quantum_seconds, stored.usage_state) == (2.0, PENDING)
    ibm.add_jobs(CRN, ("busy", at(50), "Completed", 4.0))
    report = resolve(led, ibm)
    assert (report.finalized, report.still_pending) == (1, 0)
    stored = led.get_run(key(1))
    assert stored is not None and (stored.quantum_seconds, stored.usage_state) == (6.0, FINAL)


def test_a_run_still_going_is_charged_up_to_now_and_stays_pending(led: Ledger, ibm: EmulatedIBM) -> None:
    ibm.add_jobs(CRN, ("done", at(5), "Completed", 2.0), ("later", at(500), "Completed", 9.0))
    led.upsert_runs([job_mode_row(1, 0, None)])
    report = resolve(led, ibm, now=S + 100)
    stored = led.get_run(key(1))
    assert stored is not None and (stored.quantum_seconds, stored.usage_state) == (2.0, PENDING)
    assert report.still_pending == 1


def test_a_job_mode_run_of_a_resource_the_config_no_longer_knows_is_unresolved(
    led: Ledger, ibm: EmulatedIBM
) -> None:
    led.upsert_runs([job_mode_row(1, 0, 100, resource="gone")])
    report = resolve(led, ibm)
    assert report.unresolved == [
        "alpha/1 run 0: job mode: resource 'gone' is not in the config (its backend is needed to find its "
        "IBM jobs)"
    ]
    assert report.still_pending == 1


def test_windows_touching_in_one_second_overlap() -> None:
    # Slurm's times are whole seconds: a run ending in second 100 and one starting in it may both have
    # submitted IBM jobs in that second.
    a, b, c = (
        StoredRun(*job_mode_row(n, start, start + 100)[:-1], 0.0, None, "job")
        for n, start in ((1, 0), (2, 100), (3, 101))
    )
    assert run_window(a, 0) == (S, S + 101)
    assert overlapping(a, [b, c], BACKENDS.get, now=S + 1000) == [b]
    assert overlapping(b, [a, c], BACKENDS.get, now=S + 1000) == [a, c]
