"""The collector's IBM step (`resolve_usage`) on a real ledger (SQLite and a real PostgreSQL server), with IBM
emulated: each session is charged once over every row that names it, IBM failures leave rows pending,
requeued runs that first show the previous run's session are not charged twice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from qauvern_hpc.accounting.collector import CollectReport, resolve_usage
from qauvern_hpc.accounting.ledger import FINAL, PENDING, Ledger, RunKey, open_ledger
from qauvern_hpc.core.errors import ConfigError
from qauvern_hpc.ibm.errors import IBMError
from tests.support.ibm import EmulatedIBM, session_path
from tests.unit.accounting.test_ledger import T0, backend, pg_server, row  # noqa: F401 (fixtures)

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)

CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct1:phys-0001::"


@pytest.fixture
def led(backend: tuple[str, str]) -> Iterator[Ledger]:  # noqa: F811 (fixture from test_ledger)
    with open_ledger(backend[1]) as ledger:
        yield ledger


@pytest.fixture
def ibm() -> Iterator[EmulatedIBM]:
    with EmulatedIBM({CRN: (100_000, None)}) as fake:
        yield fake


def clients_for(ibm: EmulatedIBM) -> Any:
    def clients(instance: str) -> tuple[Any, str]:
        if instance == "phys-2026":
            return ibm.client, CRN
        if instance == "keyless":
            raise ConfigError("no API key for instance keyless")
        raise KeyError(f"instance {instance!r} is not in the config")

    return clients


def resolve(led: Ledger, ibm: EmulatedIBM) -> CollectReport:
    report = CollectReport()
    resolve_usage(led, clients_for(ibm), report=report)
    return report


def usage(led: Ledger) -> dict[tuple[int, int], tuple[str | None, float | None, str]]:
    return {(r.job_id_raw, r.run): (r.session_id, r.quantum_seconds, r.usage_state) for r in led.runs()}


def test_each_session_is_charged_once_and_a_rerun_changes_nothing(led: Ledger, ibm: EmulatedIBM) -> None:
    ibm.add_session("s-1", CRN, ("Completed", 2.5), ("Failed", 1.0))
    ibm.add_session("shared", CRN, ("Completed", 4.0))
    led.upsert_runs([row(1), row(2, session_id="shared"), row(3, session_id="shared")])
    report = resolve(led, ibm)
    assert (report.sessions, report.finalized, report.still_pending, report.errors) == (2, 3, 0, [])
    assert usage(led) == {
        (1, 0): ("s-1", 3.5, FINAL),
        (2, 0): ("shared", 4.0, FINAL),  # the earliest run that carries it
        (3, 0): ("shared", 0.0, FINAL),
    }
    before = led.runs()
    again = resolve(led, ibm)
    assert (again.sessions, again.finalized, again.updated) == (0, 0, 0)
    assert led.runs() == before


def test_an_open_session_stays_pending_with_what_is_known_then_becomes_final(
    led: Ledger, ibm: EmulatedIBM
) -> None:
    ibm.add_session("s-1", CRN, ("Completed", 2.0), ("Running", None), state="open")
    led.upsert_runs([row(1)])
    report = resolve(led, ibm)
    assert (report.updated, report.finalized, report.still_pending) == (1, 0, 1)
    assert usage(led)[(1, 0)] == ("s-1", 2.0, PENDING)
    ibm.add_session("s-1", CRN, ("Completed", 2.0), ("Completed", 3.0))
    report = resolve(led, ibm)
    assert (report.finalized, report.still_pending) == (1, 0)
    assert usage(led)[(1, 0)] == ("s-1", 5.0, FINAL)


def test_ibm_failures_leave_rows_pending_for_the_next_run(led: Ledger, ibm: EmulatedIBM) -> None:
    ibm.add_session("s-1", CRN, ("Completed", 2.0))
    ibm.add_session("s-2", CRN, ("Completed", 7.0))
    ibm.fail(session_path("s-1"), status=503, message="service unavailable")
    led.upsert_runs([row(1), row(2)])
    report = resolve(led, ibm)
    assert len(report.errors) == 1 and "503" in report.errors[0]
    assert usage(led) == {(1, 0): ("s-1", None, PENDING), (2, 0): ("s-2", 7.0, FINAL)}
    ibm.heal()
    ibm.emu.clear_requests()
    report = resolve(led, ibm)
    assert ibm.session_reads() == ["s-1"]  # only the pending one is asked again
    assert report.errors == [] and usage(led)[(1, 0)] == ("s-1", 2.0, FINAL)


def test_unknown_sessions_no_session_and_unresolvable_rows(led: Ledger, ibm: EmulatedIBM) -> None:
    led.upsert_runs(
        [
            row(1, session_id="gone"),  # IBM answers 404: nothing will ever be reported
            row(2, session_id=None),  # the prolog opened no session (`name@-`), run ended
            row(3, session_id=None, end=None, slurm_state="RUNNING"),  # may still record one
            row(4, instance="retired"),  # instance no longer in the config
            row(5, instance="keyless"),
            row(6, instance=None),
        ]
    )
    report = resolve(led, ibm)
    got = usage(led)
    assert got[(1, 0)] == ("gone", 0.0, FINAL)
    assert got[(2, 0)] == (None, 0.0, FINAL) and report.no_session == 1
    assert got[(3, 0)][2] == PENDING
    assert all(got[(j, 0)] == (f"s-{j}", None, PENDING) for j in (4, 5, 6))
    assert len(report.unresolved) == 3
    assert any("retired" in u for u in report.unresolved)
    assert any("no API key" in u for u in report.unresolved)
    assert report.errors == []


def test_a_requeued_run_showing_the_previous_session_is_not_charged_twice(
    led: Ledger, ibm: EmulatedIBM
) -> None:
    """Run 0 opened s-a and is final. Run 1's record first carries run 0's AdminComment (its prolog's
    update comes later): it must not get s-a's seconds a second time. Once its own session s-b shows,
    its usage starts over and s-b is charged to it."""
    ibm.add_session("s-a", CRN, ("Completed", 5.0))
    ibm.add_session("s-b", CRN, ("Completed", 3.0))
    led.upsert_runs([row(9, session_id="s-a", submit=T0, start=T0 + 10, end=T0 + 50, slurm_state="REQUEUED")])
    resolve(led, ibm)
    run1 = row(9, session_id="s-a", submit=T0 + 60, start=T0 + 70, end=None, slurm_state="RUNNING")
    led.upsert_runs([run1])
    resolve(led, ibm)
    assert usage(led) == {(9, 0): ("s-a", 5.0, FINAL), (9, 1): ("s-a", 0.0, FINAL)}
    led.upsert_runs([run1._replace(session_id="s-b", end=T0 + 90, slurm_state="COMPLETED")])
    assert usage(led)[(9, 1)] == ("s-b", None, PENDING)  # the ledger reset it
    resolve(led, ibm)
    assert usage(led) == {(9, 0): ("s-a", 5.0, FINAL), (9, 1): ("s-b", 3.0, FINAL)}
    total = sum(r.quantum_seconds or 0 for r in led.runs())
    assert total == 8.0


def test_reconcile_shows_the_unattributed_remainder(led: Ledger) -> None:
    from qauvern_hpc.accounting.collector import reconcile

    led.upsert_runs([row(1, quantum_seconds=30.0, usage_state=FINAL), row(2)])
    led.set_usage(RunKey("alpha", 2, 0, "ibm_torino"), 5.0, final=False)

    def ibm_usage(name: str, start: Any, end: Any) -> int:
        if name == "broken":
            raise IBMError("analytics", 500, "boom")
        return {"phys-2026": 100, "idle": 0}[name]

    out = {
        r["instance"]: r
        for r in reconcile(led, ibm_usage, ["phys-2026", "idle", "broken"], since=0, until=T0 * 2)
    }
    assert out["phys-2026"] == {
        "instance": "phys-2026",
        "attributed_seconds": 35.0,
        "ibm_seconds": 100.0,
        "unattributed_seconds": 65.0,
        "pending_runs": 1,
    }
    assert out["idle"]["unattributed_seconds"] == 0.0 and out["idle"]["attributed_seconds"] == 0.0
    assert out["broken"]["ibm_seconds"] is None and "500" in out["broken"]["error"]


def test_reconcile_counts_a_job_that_ended_in_the_very_second_collect_runs(led: Ledger) -> None:
    """Slurm's end times are whole seconds and collect runs right after the last job: a run that ended
    in the second `until` belongs to the window; one that ended a second later does not."""
    from qauvern_hpc.accounting.collector import reconcile

    now = T0 + 1000
    led.upsert_runs(
        [
            row(1, quantum_seconds=3.0, usage_state=FINAL, end=now),
            row(2, quantum_seconds=1.0, usage_state=FINAL, end=now + 1),
        ]
    )
    [out] = reconcile(led, lambda name, start, end: 3, ["phys-2026"], since=now - 10, until=now)
    assert out["attributed_seconds"] == 3.0 and out["unattributed_seconds"] == 0.0


def test_a_dry_run_batch_rolls_everything_back_nested_batches_included(led: Ledger) -> None:
    led.upsert_runs([row(1)])
    with led.batch(commit=False):
        led.upsert_runs([row(2)])
        with led.batch():  # nested: part of the outer transaction
            led.set_usage(led.runs()[0].key, 5.0, True)
        assert len(led.runs()) == 2
    assert [(r.job_id_raw, r.usage_state) for r in led.runs()] == [(1, PENDING)]


def test_the_exit_status_of_a_collect_run_comes_from_its_report() -> None:
    from qauvern_hpc.accounting.collect import outcome_error
    from qauvern_hpc.core.errors import ServiceUnavailable

    assert outcome_error(CollectReport(), None) is None
    unresolved = outcome_error(CollectReport(unresolved=["a/s-1: no key"]), None)
    assert isinstance(unresolved, ConfigError) and unresolved.hint == "a/s-1: no key"
    ibm = outcome_error(CollectReport(errors=["a/s-1: 503"], unresolved=["x"]), None)
    assert isinstance(ibm, ServiceUnavailable) and "1 IBM session(s)" in ibm.message
    pull = ServiceUnavailable("sacct failed")
    assert outcome_error(CollectReport(errors=["e"], unresolved=["x"]), pull) is pull
