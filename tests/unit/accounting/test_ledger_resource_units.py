"""The ledger stores IBM's resource units beside the quantum seconds (migration 4), on SQLite and PostgreSQL:
rows written before stay valid (no RUs), `set_usage` records RUs, and a row that moves to another session
loses them with its seconds."""

from __future__ import annotations

from typing import Any

import pytest

from qauvern_hpc.accounting.ledger import FINAL, Ledger, LedgerError, RunKey, open_ledger
from qauvern_hpc.accounting.ledger.schema import MIGRATIONS_TABLE, migrations
from tests.unit.accounting import test_ledger as base
from tests.unit.accounting.test_ledger import _raw_connection, row

# The ledger tests' fixtures: both back ends, a PostgreSQL server when one can be started.
pg_server = base.pg_server
backend = base.backend
ledger = base.ledger

K1 = RunKey("alpha", 1, 0, "ibm_torino")


def test_rows_of_before_the_migration_have_no_resource_units(backend: tuple[str, str]) -> None:
    kind, url = backend
    dialect: Any = "sqlite" if kind == "sqlite" else "postgres"
    conn = _raw_connection(kind, url)
    ph = "?" if kind == "sqlite" else "%s"
    cols = ["cluster", "job_id", "job_id_raw", "run", '"user"', "account", '"partition"', "qos", "resource"]
    cols += ["submit", "quantum_seconds", "usage_state", "slurm_state", "updated_at"]
    values = (
        "alpha",
        "1",
        1,
        0,
        "alice",
        "physics",
        "qpu",
        "normal",
        "ibm_torino",
        1,
        12.5,
        "final",
        "DONE",
        0.0,
    )
    try:
        conn.execute(MIGRATIONS_TABLE)
        for m in migrations(dialect)[:3]:
            for statement in m.statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({ph}, {ph}, {ph})",
                (m.version, m.name, 0.0),
            )
        conn.execute(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join(ph for _ in values)})", values)
    finally:
        conn.close()
    with open_ledger(url) as led:
        [stored] = led.runs()
        assert (stored.job_id, stored.quantum_seconds, stored.usage_state) == ("1", 12.5, FINAL)
        assert stored.resource_units is None
        assert led.set_usage(stored.key, 12.5, True, resource_units=31.25) is True
        assert led.get_run(stored.key).resource_units == 31.25  # type: ignore[union-attr]


def test_set_usage_records_resource_units(ledger: Ledger) -> None:
    ledger.upsert_runs([row(1)])
    assert ledger.set_usage(K1, 4.0, False, resource_units=10.0) is True
    assert ledger.set_usage(K1, 4.0, False, resource_units=10.0) is False  # same values: no change
    assert ledger.set_usage(K1, 4.0, False, resource_units=11.0) is True  # RUs alone changed
    assert ledger.set_usage(K1, 5.0, True) is True  # no RUs given: the stored ones stay
    stored = ledger.get_run(K1)
    assert stored is not None and (stored.quantum_seconds, stored.resource_units) == (5.0, 11.0)
    assert ledger.set_usage(K1, 5.0, False, resource_units=99.0) is False  # final is never downgraded
    assert ledger.upsert_runs([row(1)]).changed == 0  # re-ingesting sacct keeps IBM's figures
    assert ledger.get_run(K1).resource_units == 11.0  # type: ignore[union-attr]
    with pytest.raises(LedgerError, match=r"or resource units -1\.0"):
        ledger.set_usage(K1, 5.0, True, resource_units=-1.0)


def test_a_row_naming_another_session_loses_its_resource_units(ledger: Ledger) -> None:
    ledger.upsert_runs([row(1)])
    ledger.set_usage(K1, 30.0, True, resource_units=75.0)
    assert ledger.upsert_runs([row(1, session_id="s-new")]).changed == 1
    stored = ledger.get_run(K1)
    assert stored is not None and (stored.quantum_seconds, stored.resource_units) == (None, None)


def test_usage_by_sums_resource_units_only_when_every_run_has_them(ledger: Ledger) -> None:
    ledger.upsert_runs(
        [
            row(1, user="alice", quantum_seconds=10.0),
            row(2, user="alice", quantum_seconds=20.0),
            row(3, user="bob", quantum_seconds=4.0),
            row(4, user="bob", quantum_seconds=6.0),
        ]
    )
    ledger.set_usage(RunKey("alpha", 1, 0, "ibm_torino"), 10.0, True, resource_units=25.0)
    ledger.set_usage(RunKey("alpha", 2, 0, "ibm_torino"), 20.0, True, resource_units=50.0)
    ledger.set_usage(RunKey("alpha", 3, 0, "ibm_torino"), 4.0, True, resource_units=10.0)
    by_user = {r.key: r for r in ledger.usage_by("user")}
    assert by_user["alice"].resource_units == pytest.approx(75.0)
    assert by_user["alice"].runs_without_ru == 0
    assert by_user["bob"].resource_units is None  # run 4 has no RUs: a partial sum would be wrong
    assert by_user["bob"].runs_without_ru == 1
    assert by_user["bob"].quantum_seconds == pytest.approx(10.0)
