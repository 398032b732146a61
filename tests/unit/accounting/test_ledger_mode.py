"""The ledger says how a run used its resource (migration 5, `runs.mode`), on SQLite and PostgreSQL: rows of
the `'!job'` stop-gap become job-mode rows with no session id; a re-read that moves a run between a session
and job mode resets its usage; `job_mode_runs` finds the job-mode runs of an instance that overlap a time."""

from __future__ import annotations

from typing import Any

from qauvern_hpc.accounting.ledger import FINAL, PENDING, Ledger, RunKey, open_ledger
from qauvern_hpc.accounting.ledger.schema import MIGRATIONS_TABLE, migrations
from tests.unit.accounting import test_ledger as base
from tests.unit.accounting.test_ledger import T0, _raw_connection, row

pg_server = base.pg_server
backend = base.backend
ledger = base.ledger

K1 = RunKey("alpha", 1, 0, "ibm_torino")


def test_the_job_mode_stop_gap_of_schema_4_becomes_a_mode(backend: tuple[str, str]) -> None:
    kind, url = backend
    dialect: Any = "sqlite" if kind == "sqlite" else "postgres"
    conn = _raw_connection(kind, url)
    ph = "?" if kind == "sqlite" else "%s"
    cols = ["cluster", "job_id", "job_id_raw", "run", '"user"', "account", '"partition"', "qos", "resource"]
    cols += ["instance", "session_id", "submit", "usage_state", "slurm_state", "updated_at"]
    try:
        conn.execute(MIGRATIONS_TABLE)
        for m in migrations(dialect)[:4]:
            for statement in m.statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({ph}, {ph}, {ph})",
                (m.version, m.name, 0.0),
            )
        for job, session in ((1, "!job"), (2, "sess-2"), (3, None)):
            values = ("alpha", str(job), job, 0, "u", "a", "p", "q", "ibm_torino", "open-1", session, job)
            values += ("pending", "COMPLETED", 0.0)  # type: ignore[assignment]
            marks = ", ".join(ph for _ in values)
            conn.execute(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({marks})", values)
    finally:
        conn.close()
    with open_ledger(url) as led:
        got = {r.job_id_raw: (r.session_id, r.mode) for r in led.runs()}
    assert got == {1: (None, "job"), 2: ("sess-2", "session"), 3: (None, "session")}


def test_a_run_that_moves_to_job_mode_loses_its_sessions_usage(ledger: Ledger) -> None:
    # A requeued run first shows the previous run's AdminComment (a session), then its own (job mode).
    ledger.upsert_runs([row(1, session_id="s-old")])
    assert ledger.set_usage(K1, 7.0, True, resource_units=3.0)
    changed = ledger.upsert_runs([row(1, session_id=None, mode="job")])
    assert changed.changed == 1
    stored = ledger.get_run(K1)
    assert stored is not None
    assert (stored.session_id, stored.mode, stored.quantum_seconds, stored.usage_state) == (
        None,
        "job",
        None,
        PENDING,
    )
    assert stored.resource_units is None
    assert ledger.upsert_runs([row(1, session_id=None, mode="job")]).changed == 0  # idempotent
    assert ledger.set_usage(K1, 2.0, True)
    assert ledger.upsert_runs([row(1, session_id=None, mode="job")]).changed == 0  # the charge stays
    assert ledger.get_run(K1).usage_state == FINAL  # type: ignore[union-attr]
    ledger.upsert_runs([row(1, session_id="s-new")])  # and back to a session: asked again
    stored = ledger.get_run(K1)
    assert stored is not None and (stored.mode, stored.session_id, stored.usage_state) == (
        "session",
        "s-new",
        PENDING,
    )


def test_job_mode_runs_are_those_of_the_instance_that_overlap(ledger: Ledger) -> None:
    # row(job): start T0+job+10, end T0+job+110
    ledger.upsert_runs(
        [
            row(1, session_id=None, mode="job"),  # [T0+11, T0+111]
            row(200, session_id=None, mode="job"),  # [T0+210, T0+310]
            row(50, session_id=None, mode="job", end=None, slurm_state="RUNNING"),  # from T0+60, running
            row(60, session_id="s-60"),  # a session run: never job mode
            row(70, session_id=None, mode="job", instance="other"),
        ]
    )
    found = lambda since, until: [r.job_id_raw for r in ledger.job_mode_runs("phys-2026", since, until)]  # noqa: E731
    assert found(T0, T0 + 59) == [1]
    assert found(T0 + 111, T0 + 209) == [1, 50]  # the end second itself overlaps
    assert found(T0 + 112, T0 + 209) == [50]
    assert found(T0 + 300, T0 + 400) == [50, 200]
