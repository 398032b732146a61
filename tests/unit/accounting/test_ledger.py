"""Usage ledger on SQLite and on a real throwaway PostgreSQL server.

The PostgreSQL server (initdb + pg_ctl from /usr/lib/postgresql/*/bin, run as the `postgres` user when we
are root, private unix socket directory, free port) starts once per test session; every test gets a fresh
database. Without the binaries these tests are skipped, unless QAUVERN_HPC_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.accounting.ledger import (
    FINAL,
    PENDING,
    InstanceUsage,
    Ledger,
    LedgerError,
    RunKey,
    RunRow,
    UsageRow,
    open_ledger,
)
from qauvern_hpc.accounting.ledger.ingest import ingest_sacct, runs_from_record
from qauvern_hpc.accounting.ledger.schema import MIGRATIONS_TABLE, latest_version, migrations
from qauvern_hpc.accounting.ledger.sqlite import SQLiteLedger
from qauvern_hpc.core.errors import ConfigError, LockHeld
from qauvern_hpc.slurm.sacct import parse_sacct
from tests.support import postgres
from tests.support.paths import UNIT_FIXTURES
from tests.support.postgres import PgServer

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)

FIXTURES = UNIT_FIXTURES / "sacct"
T0 = 1767225600  # 2026-01-01T00:00:00Z


def row(job: int, resource: str = "ibm_torino", **kw: Any) -> RunRow:
    base: dict[str, Any] = dict(
        cluster="alpha",
        job_id=str(job),
        job_id_raw=job,
        array_job_id=None,
        array_task_id=None,
        het_job_id=None,
        het_offset=None,
        run=None,
        user="alice",
        account="physics",
        partition="qpu",
        qos="normal",
        resource=resource,
        instance="phys-2026",
        session_id=f"s-{job}",
        rule="physics",
        submit=T0 + job,
        start=T0 + job + 10,
        end=T0 + job + 110,
        wall_seconds=100,
        quantum_seconds=None,
        usage_state=PENDING,
        slurm_state="COMPLETED",
    )
    base.update(kw)
    return RunRow(**base)


# -- PostgreSQL server ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    reason = postgres.unavailable()
    if reason is not None:
        if os.environ.get("QAUVERN_HPC_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"QAUVERN_HPC_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    with postgres.running_server() as server:
        yield server


# -- back-end parametrization -------------------------------------------------------------------------

Factory = Callable[[], Ledger]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(kind, url) of an empty ledger."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path}/ledger.db"
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        yield "postgres", server.new_database()


@pytest.fixture
def ledger(backend: tuple[str, str]) -> Iterator[Ledger]:
    led = open_ledger(backend[1])
    led.chunk_size = 3  # small chunks: every test crosses chunk boundaries
    try:
        yield led
    finally:
        led.close()


# -- open / schema -----------------------------------------------------------------------------------


def test_open_ledger_by_scheme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_ledger(f"sqlite:///{tmp_path}/a.db") as led:
        assert isinstance(led, SQLiteLedger)
        assert led.path == f"{tmp_path}/a.db"
        assert os.path.exists(f"{tmp_path}/a.db")
    monkeypatch.chdir(tmp_path)
    with open_ledger("sqlite:///rel.db") as led:  # SQLAlchemy style: three slashes = relative
        assert isinstance(led, SQLiteLedger) and led.path == str(tmp_path / "rel.db")
    for bad in ("mysql://x/y", "sqlite:///", "sqlite:relative.db", "ledger.db"):
        with pytest.raises(ConfigError):
            open_ledger(bad)


def test_schema_is_versioned_and_migrated_once(backend: tuple[str, str]) -> None:
    led = open_ledger(backend[1])
    try:
        assert latest_version(led.dialect) == 6
        versions = led._fetchall("SELECT version, name FROM schema_migrations ORDER BY version")
        assert versions == [
            (1, "runs, collector_state, audit"),
            (2, "collector_revisit"),
            (3, "runs by session"),
            (4, "runs.resource_units"),
            (5, "runs.mode"),
            (6, "runs report index"),
        ]
    finally:
        led.close()
    again = open_ledger(backend[1])  # reopening applies nothing twice
    try:
        assert again._fetchall("SELECT COUNT(*) FROM schema_migrations") == [(6,)]
        again._execute(again._sql("INSERT INTO schema_migrations VALUES (?, ?, ?)"), (99, "future", 0.0))
    finally:
        again.close()
    with pytest.raises(LedgerError, match="99"):
        open_ledger(backend[1])


def _raw_connection(kind: str, url: str) -> Any:
    if kind == "sqlite":
        return sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
    import psycopg

    return psycopg.connect(url, autocommit=True)


def test_a_version_1_ledger_is_upgraded_in_place(backend: tuple[str, str]) -> None:
    """A ledger of the first release (schema 1 only) gains the later migrations on open; data stays."""
    kind, url = backend
    dialect: Any = "sqlite" if kind == "sqlite" else "postgres"
    first = migrations(dialect)[0]
    conn = _raw_connection(kind, url)
    ph = "?" if kind == "sqlite" else "%s"
    try:
        conn.execute(MIGRATIONS_TABLE)
        for statement in first.statements:
            conn.execute(statement)
        conn.execute(
            f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({ph}, {ph}, {ph})",
            (1, first.name, 0.0),
        )
        conn.execute(
            "INSERT INTO collector_state (cluster, high_water, updated_at) VALUES ('alpha', 1767225600, 0)"
        )
    finally:
        conn.close()
    with open_ledger(url) as led:
        versions = led._fetchall("SELECT version FROM schema_migrations ORDER BY version")
        assert versions == [(1,), (2,), (3,), (4,), (5,), (6,)]
        assert led.get_high_water("alpha") == 1767225600
        assert led.revisits("alpha") == []
        led.add_revisit("alpha", [5], "running")
        assert [e.job_id_raw for e in led.revisits("alpha")] == [5]


# -- upsert semantics -----------------------------------------------------------------------------------


def test_upsert_is_idempotent(ledger: Ledger) -> None:
    rows = [row(1), row(2), row(2, "ibm_fez"), row(3), row(4)]
    first = ledger.upsert_runs(rows)
    assert (first.rows, first.changed) == (5, 5)
    before = ledger.runs()
    again = ledger.upsert_runs(rows)
    assert (again.rows, again.changed) == (5, 0)
    assert ledger.runs() == before  # updated_at included: nothing was touched
    assert ledger.count_runs() == 5
    assert [(r.job_id_raw, r.run, r.resource) for r in before] == [
        (1, 0, "ibm_torino"),
        (2, 0, "ibm_fez"),
        (2, 0, "ibm_torino"),
        (3, 0, "ibm_torino"),
        (4, 0, "ibm_torino"),
    ]


def test_quantum_seconds_fill_a_pending_row_and_are_never_erased(ledger: Ledger) -> None:
    ledger.upsert_runs([row(1)])
    key = RunKey("alpha", 1, 0, "ibm_torino")
    assert ledger.upsert_runs([row(1, quantum_seconds=12.5)]).changed == 1
    got = ledger.get_run(key)
    assert got is not None and (got.quantum_seconds, got.usage_state) == (12.5, PENDING)
    # sacct re-ingest (no seconds) keeps what IBM reported
    assert ledger.upsert_runs([row(1)]).changed == 0
    got = ledger.get_run(key)
    assert got is not None and got.quantum_seconds == 12.5


def test_final_row_is_never_downgraded(ledger: Ledger) -> None:
    ledger.upsert_runs([row(1, quantum_seconds=30.0, usage_state=FINAL)])
    key = RunKey("alpha", 1, 0, "ibm_torino")
    assert ledger.upsert_runs([row(1, quantum_seconds=99.0, usage_state=PENDING)]).changed == 0
    assert ledger.upsert_runs([row(1)]).changed == 0
    got = ledger.get_run(key)
    assert got is not None and (got.quantum_seconds, got.usage_state) == (30.0, FINAL)
    # a later sacct view of the Slurm side still updates Slurm's columns, not the usage
    assert ledger.upsert_runs([row(1, slurm_state="NODE_FAIL")]).changed == 1
    got = ledger.get_run(key)
    assert got is not None and (got.slurm_state, got.quantum_seconds, got.usage_state) == (
        "NODE_FAIL",
        30.0,
        FINAL,
    )
    # a final correction replaces a final value
    assert (
        ledger.upsert_runs([row(1, slurm_state="NODE_FAIL", quantum_seconds=31.0, usage_state=FINAL)]).changed
        == 1
    )
    got = ledger.get_run(key)
    assert got is not None and got.quantum_seconds == 31.0


def test_a_row_naming_another_session_starts_its_usage_over(ledger: Ledger) -> None:
    ledger.upsert_runs([row(1, quantum_seconds=30.0, usage_state=FINAL), row(2, session_id=None)])
    ledger.set_usage(RunKey("alpha", 2, 0, "ibm_torino"), 0.0, final=True)
    # the same session again (or none given): usage kept
    assert ledger.upsert_runs([row(1), row(1, session_id=None)]).changed == 0
    # another session, or a session where there was none: the stored seconds were not this session's
    assert ledger.upsert_runs([row(1, session_id="s-new"), row(2, session_id="s-late")]).changed == 2
    got = {r.job_id_raw: (r.session_id, r.quantum_seconds, r.usage_state) for r in ledger.runs()}
    assert got == {1: ("s-new", None, PENDING), 2: ("s-late", None, PENDING)}
    # another instance too
    ledger.set_usage(RunKey("alpha", 1, 0, "ibm_torino"), 4.0, final=True)
    ledger.upsert_runs([row(1, session_id="s-new", instance="chem-2026")])
    one = ledger.get_run(RunKey("alpha", 1, 0, "ibm_torino"))
    assert one is not None and (one.instance, one.quantum_seconds, one.usage_state) == (
        "chem-2026",
        None,
        PENDING,
    )


def test_runs_with_session(ledger: Ledger) -> None:
    ledger.upsert_runs(
        [row(1, session_id="x"), row(2, session_id="x"), row(3), row(4, session_id="x", instance="o")]
    )
    ledger.set_usage(RunKey("alpha", 2, 0, "ibm_torino"), 1.0, final=True)
    assert [r.job_id_raw for r in ledger.runs_with_session("phys-2026", "x")] == [1, 2]
    assert ledger.runs_with_session("phys-2026", "nope") == []


def test_final_row_needs_seconds(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="needs quantum_seconds"):
        ledger.upsert_runs([row(1), row(2, usage_state=FINAL)])
    assert ledger.count_runs() == 0  # the whole call is one transaction


def test_set_usage_and_pending_usage(ledger: Ledger) -> None:
    ledger.upsert_runs([row(1), row(2), row(2, "ibm_fez"), row(3, quantum_seconds=5.0, usage_state=FINAL)])
    assert [r.key for r in ledger.pending_usage()] == [
        RunKey("alpha", 1, 0, "ibm_torino"),
        RunKey("alpha", 2, 0, "ibm_fez"),
        RunKey("alpha", 2, 0, "ibm_torino"),
    ]
    k1 = RunKey("alpha", 1, 0, "ibm_torino")
    assert ledger.set_usage(k1, 7.0, final=False) is True
    assert ledger.set_usage(k1, 7.0, final=False) is False  # same value: no change
    assert ledger.set_usage(k1, 8.0, final=True) is True
    assert ledger.set_usage(k1, 1.0, final=False) is False  # final is never downgraded
    got = ledger.get_run(k1)
    assert got is not None and (got.quantum_seconds, got.usage_state) == (8.0, FINAL)
    assert [r.key for r in ledger.pending_usage()] == [
        RunKey("alpha", 2, 0, "ibm_fez"),
        RunKey("alpha", 2, 0, "ibm_torino"),
    ]
    assert ledger.pending_usage(cluster="beta") == []
    with pytest.raises(LedgerError, match="no ledger row"):
        ledger.set_usage(RunKey("alpha", 404, 0, "ibm_torino"), 1.0, final=True)
    with pytest.raises(LedgerError, match="negative"):
        ledger.set_usage(k1, -1.0, final=True)


# -- run index of requeued jobs ---------------------------------------------------------------------------


def test_requeued_runs_are_numbered_by_submit_time_across_pulls(ledger: Ledger) -> None:
    # pull 1: the first run ended REQUEUED
    ledger.upsert_runs([row(7, submit=T0, end=T0 + 50, slurm_state="REQUEUED", session_id="r0")])
    # pull 2: the second run (new submit time) completed; the first is not in this window
    ledger.upsert_runs([row(7, submit=T0 + 60, end=T0 + 200, session_id="r1")])
    # pull 3 overlaps both: nothing changes
    both = [
        row(7, submit=T0, end=T0 + 50, slurm_state="REQUEUED", session_id="r0"),
        row(7, submit=T0 + 60, end=T0 + 200, session_id="r1"),
    ]
    assert ledger.upsert_runs(both).changed == 0
    assert [(r.run, r.submit, r.session_id, r.slurm_state) for r in ledger.runs(job_id_raw=7)] == [
        (0, T0, "r0", "REQUEUED"),
        (1, T0 + 60, "r1", "COMPLETED"),
    ]


def test_an_earlier_run_arriving_late_renumbers_the_later_ones(ledger: Ledger) -> None:
    ledger.upsert_runs(
        [row(8, submit=T0 + 100, session_id="b"), row(8, "ibm_fez", submit=T0 + 100, session_id="b")]
    )
    ledger.set_usage(RunKey("alpha", 8, 0, "ibm_fez"), 3.0, final=True)
    ledger.upsert_runs([row(8, submit=T0 + 200, session_id="c")])
    ledger.upsert_runs([row(8, submit=T0, session_id="a")])
    assert [(r.run, r.resource, r.session_id, r.quantum_seconds) for r in ledger.runs(job_id_raw=8)] == [
        (0, "ibm_torino", "a", None),
        (1, "ibm_fez", "b", 3.0),
        (1, "ibm_torino", "b", None),
        (2, "ibm_torino", "c", None),
    ]


def test_runs_within_one_chunk_and_explicit_restarts(ledger: Ledger) -> None:
    ledger.upsert_runs([row(9, submit=T0 + 5), row(9, submit=T0 + 1), row(9, submit=T0 + 3)])
    assert [(r.run, r.submit) for r in ledger.runs(job_id_raw=9)] == [(0, T0 + 1), (1, T0 + 3), (2, T0 + 5)]
    ledger.upsert_runs([row(10, run=4)])  # Slurm 24.11+ prints Restarts: taken as is
    assert [r.run for r in ledger.runs(job_id_raw=10)] == [4]


def test_same_job_id_on_two_clusters_is_two_jobs(ledger: Ledger) -> None:
    ledger.upsert_runs([row(11), row(11, cluster="beta", user="zed")])
    assert [(r.cluster, r.run, r.user) for r in ledger.runs()] == [("alpha", 0, "alice"), ("beta", 0, "zed")]


# -- usage queries ----------------------------------------------------------------------------------------


def _usage_rows() -> list[RunRow]:
    return [
        # alice: job 1 on two QPUs (one run, wall 100), job 2 requeued (two runs)
        row(1, quantum_seconds=10.0, usage_state=FINAL),
        row(1, "ibm_fez", quantum_seconds=5.0),
        row(2, submit=T0, end=T0 + 50, wall_seconds=40, quantum_seconds=2.0, usage_state=FINAL),
        row(2, submit=T0 + 60, end=T0 + 300, wall_seconds=200),
        # bob, other account/instance/partition/qos
        row(
            3,
            user="bob",
            account="chem",
            instance="chem-2026",
            partition="big",
            qos="high",
            quantum_seconds=7.5,
        ),
        # carol: still running (no end)
        row(4, user="carol", end=None, wall_seconds=None),
    ]


def _seconds(rows: list[UsageRow]) -> list[UsageRow]:
    """`rows` with their RU figures left out (tests/unit/accounting/test_ledger_resource_units.py)."""
    return [r._replace(resource_units=None, runs_without_ru=0) for r in rows]


def test_usage_by_dimensions(ledger: Ledger) -> None:
    ledger.upsert_runs(_usage_rows())
    assert _seconds(ledger.usage_by("user")) == [
        UsageRow("alice", 3, 17.0, 340),
        UsageRow("bob", 1, 7.5, 100),
        UsageRow("carol", 1, 0.0, 0),
    ]
    assert _seconds(ledger.usage_by("resource")) == [
        UsageRow("ibm_fez", 1, 5.0, 100),
        UsageRow("ibm_torino", 5, 19.5, 440),
    ]
    assert _seconds(ledger.usage_by("account")) == [
        UsageRow("chem", 1, 7.5, 100),
        UsageRow("physics", 4, 17.0, 340),
    ]
    assert _seconds(ledger.usage_by("instance")) == [
        UsageRow("chem-2026", 1, 7.5, 100),
        UsageRow("phys-2026", 4, 17.0, 340),
    ]
    assert _seconds(ledger.usage_by("partition")) == [
        UsageRow("big", 1, 7.5, 100),
        UsageRow("qpu", 4, 17.0, 340),
    ]
    assert _seconds(ledger.usage_by("qos")) == [
        UsageRow("high", 1, 7.5, 100),
        UsageRow("normal", 4, 17.0, 340),
    ]
    with pytest.raises(LedgerError, match="cannot group"):
        ledger.usage_by("job_id; DROP TABLE runs")


def test_usage_window_uses_the_end_time(ledger: Ledger) -> None:
    ledger.upsert_runs(_usage_rows())
    # ends: job1 T0+111, job2 runs T0+50 and T0+300, job3 T0+113, job4 running
    assert _seconds(ledger.usage_by("user", since=T0 + 100, until=T0 + 200)) == [
        UsageRow("alice", 1, 15.0, 100),
        UsageRow("bob", 1, 7.5, 100),
    ]
    assert _seconds(ledger.usage_by("user", until=T0 + 100)) == [UsageRow("alice", 1, 2.0, 40)]
    assert _seconds(ledger.usage_by("user", since=T0 + 200)) == [
        UsageRow("alice", 1, 0.0, 200),
        UsageRow("carol", 1, 0.0, 0),
    ]


def test_usage_per_instance(ledger: Ledger) -> None:
    ledger.upsert_runs(_usage_rows())
    per = ledger.usage_per_instance()
    assert per == {
        "chem-2026": InstanceUsage("chem-2026", 0.0, 7.5, 1, 1),
        "phys-2026": InstanceUsage("phys-2026", 12.0, 5.0, 3, 5),
    }
    assert per["phys-2026"].quantum_seconds == 17.0
    assert ledger.usage_per_instance(since=T0 + 200, until=T0 + 400) == {
        "phys-2026": InstanceUsage("phys-2026", 0.0, 0.0, 1, 1)
    }


# -- collector state and audit -----------------------------------------------------------------------------


def test_high_water(ledger: Ledger) -> None:
    assert ledger.get_high_water("alpha") is None
    ledger.set_high_water("alpha", T0)
    ledger.set_high_water("beta", T0 + 5)
    ledger.set_high_water("alpha", T0 + 10)
    assert (ledger.get_high_water("alpha"), ledger.get_high_water("beta")) == (T0 + 10, T0 + 5)


def test_revisit_list(ledger: Ledger) -> None:
    assert ledger.revisits("alpha") == []
    assert ledger.add_revisit("alpha", [30, 10, 20, 40], "running at window end") == 4  # > chunk_size 3
    assert ledger.add_revisit("beta", [10], "no AdminComment yet") == 1
    assert ledger.add_revisit("alpha", [], "nothing") == 0
    got = ledger.revisits("alpha")
    assert [(e.job_id_raw, e.reason, e.attempts) for e in got] == [
        (10, "running at window end", 1),
        (20, "running at window end", 1),
        (30, "running at window end", 1),
        (40, "running at window end", 1),
    ]
    first_seen = got[0].first_seen
    time.sleep(0.01)
    ledger.add_revisit("alpha", [10], "still running")
    again = ledger.revisits("alpha")
    ten = next(e for e in again if e.job_id_raw == 10)
    assert (ten.reason, ten.attempts, ten.first_seen) == ("still running", 2, first_seen)
    assert ten.last_seen > ten.first_seen
    assert [e.job_id_raw for e in ledger.revisits("alpha", limit=2)] == [10, 20]
    assert ledger.clear_revisit("alpha", [10, 20, 99, 30, 40]) == 4
    assert ledger.clear_revisit("alpha", []) == 0
    assert ledger.revisits("alpha") == []
    assert [(e.cluster, e.job_id_raw) for e in ledger.revisits("beta")] == [("beta", 10)]


def test_audit(ledger: Ledger) -> None:
    a = ledger.record_audit(
        "rb-1",
        "qauvern-hpc",
        "set-allocation",
        before={"inst": 10},
        after={"inst": 20},
        reason="demand",
        at=5.0,
    )
    b = ledger.record_audit("rb-2", "admin", "note", before=None, after=["x", 1.5])
    c = ledger.record_audit("rb-1", "qauvern-hpc", "apply", before="s", after={"nested": {"k": [1, None]}})
    assert a < b < c
    entries = ledger.audit_entries("rb-1")
    assert [(e.id, e.run_id, e.action, e.before, e.after, e.reason) for e in entries] == [
        (a, "rb-1", "set-allocation", {"inst": 10}, {"inst": 20}, "demand"),
        (c, "rb-1", "apply", "s", {"nested": {"k": [1, None]}}, None),
    ]
    assert entries[0].at == 5.0
    assert [e.id for e in ledger.audit_entries()] == [a, b, c]
    assert ledger.audit_entries()[1].after == ["x", 1.5]


# -- transactions ---------------------------------------------------------------------------------------


def test_batch_is_all_or_nothing(ledger: Ledger) -> None:
    ledger.upsert_runs([row(1)])
    with pytest.raises(RuntimeError, match="boom"), ledger.batch():
        ledger.upsert_runs([row(2), row(3), row(4), row(5)])
        ledger.set_high_water("alpha", T0)
        ledger.record_audit("rb", "me", "x")
        ledger.add_revisit("alpha", [7], "running")
        raise RuntimeError("boom")
    assert [r.job_id_raw for r in ledger.runs()] == [1]
    assert ledger.get_high_water("alpha") is None
    assert ledger.audit_entries() == []
    assert ledger.revisits("alpha") == []
    with ledger.batch():  # and the ledger is usable afterwards
        ledger.upsert_runs([row(2)])
        with ledger.batch():  # nested: same transaction
            ledger.set_high_water("alpha", T0)
    assert ledger.count_runs() == 2 and ledger.get_high_water("alpha") == T0


_CHILD = textwrap.dedent(
    """
    import sys, time
    from qauvern_hpc.accounting.ledger import open_ledger, RunRow
    led = open_ledger(sys.argv[1])
    def rows():
        for i in range(1000, 21000):
            yield RunRow("alpha", str(i), i, None, None, None, None, None, "u", "a", "p", "q", "ibm_torino",
                         "inst", "s", "r", 1767225600 + i, None, None, None, None, "pending", "COMPLETED")
    with led.batch():
        led.set_high_water("alpha", 1767229999)
        led.upsert_runs(rows())
        print("in-batch", flush=True)
        time.sleep(60)
    """
)


def test_sigkill_mid_batch_leaves_nothing_half_written(backend: tuple[str, str]) -> None:
    kind, url = backend
    with open_ledger(url) as led:
        led.upsert_runs([row(1)])
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "in-batch"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with open_ledger(url) as led:
        assert led.count_runs() == 1
        assert led.get_high_water("alpha") is None
        if kind == "sqlite":
            assert led._fetchall("PRAGMA integrity_check") == [("ok",)]
        # the next run completes (lock released with the dead process)
        started = time.monotonic()
        assert led.upsert_runs([row(2), row(3)]).changed == 2
        assert time.monotonic() - started < 10
        assert led.count_runs() == 3


# -- SQLite specifics -------------------------------------------------------------------------------------


def test_sqlite_wal_readers_see_committed_data_only_and_one_writer(tmp_path: Path) -> None:
    path = str(tmp_path / "l.db")
    writer = SQLiteLedger(path)
    other = SQLiteLedger(path, lock_timeout=0.2)
    try:
        assert writer._fetchall("PRAGMA journal_mode") == [("wal",)]
        writer.upsert_runs([row(1)])
        reader = sqlite3.connect(path)
        with writer.batch():
            writer.upsert_runs([row(2), row(3)])
            assert reader.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,)  # not blocked, old snapshot
            assert other.count_runs() == 1
            with pytest.raises(LockHeld, match="another process is writing"):
                other.set_high_water("alpha", T0)
            late = SQLiteLedger(path, lock_timeout=0.2)  # opening to read does not need the lock
            assert late.count_runs() == 1
            late.close()
        assert reader.execute("SELECT COUNT(*) FROM runs").fetchone() == (3,)
        other.set_high_water("alpha", T0)  # free again
        assert writer.get_high_water("alpha") == T0
        reader.close()
        assert os.path.exists(path + ".lock")
    finally:
        writer.close()
        other.close()


def test_sqlite_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="does not exist"):
        SQLiteLedger(str(tmp_path / "nope" / "l.db"))


# -- ingest from sacct ------------------------------------------------------------------------------------


def test_ingest_fixture(ledger: Ledger) -> None:
    with open(FIXTURES / "default_fields.txt", encoding="utf-8") as fh:
        stats = ingest_sacct(ledger, fh)
    assert (stats.parse.lines, stats.parse.filtered, stats.qpu_records) == (14, 5, 8)
    assert (stats.store.rows, stats.store.changed) == (9, 9)
    assert stats.max_end == 1767227100
    got = [(r.job_id, r.job_id_raw, r.run, r.resource, r.session_id, r.slurm_state) for r in ledger.runs()]
    assert got == [
        ("1002", 1002, 0, "ibm_torino", "sess-1a2b", "COMPLETED"),
        ("1003_4", 1007, 0, "ibm_fez", "sess-2", "FAILED"),
        ("1003_4", 1007, 0, "ibm_torino", None, "FAILED"),
        ("1020+0", 1020, 0, "ibm_kyiv", "s@x", "COMPLETED"),
        ("1030", 1030, 0, "ibm_torino", "sess-9", "CANCELLED"),
        ("1040", 1040, 0, "ibm_torino", "sess-r0", "REQUEUED"),
        ("1040", 1040, 1, "ibm_torino", "sess-r1", "COMPLETED"),
        ("1050", 1050, 0, "ibm_fez", "sess-run", "RUNNING"),
        ("1080", 1080, 0, "ibm_kyiv", None, "NODE_FAIL"),
    ]
    first = ledger.runs(job_id_raw=1007)[0]
    assert (first.array_job_id, first.array_task_id, first.instance, first.rule) == (
        1003,
        4,
        "phys-2026",
        "physics",
    )
    assert (first.submit, first.start, first.end, first.wall_seconds) == (
        1767225800,
        1767225900,
        1767225960,
        60,
    )
    with open(FIXTURES / "default_fields.txt", encoding="utf-8") as fh:
        assert ingest_sacct(ledger, fh).store.changed == 0


def test_ingest_skips_a_requeued_run_that_has_not_started(ledger: Ledger) -> None:
    """After a requeue the pending run's record still carries the previous run's AdminComment (and
    session): it must not become a row, or that session would be counted twice."""
    admin0 = "qauvern:v1;rule=chem;inst=chem-2026;res=ibm_torino@sess-r0"
    admin1 = "qauvern:v1;rule=chem;inst=chem-2026;res=ibm_torino@sess-r1"
    run0 = (
        f"alpha|1040|1040|frank|chem|qpu|normal|REQUEUED|0:0|{T0}|{T0 + 10}|{T0 + 100}|90|60|node02|"
        f"{admin0}\n"
    )
    pending = (
        f"alpha|1040|1040|frank|chem|qpu|normal|PENDING|0:0|{T0 + 101}|Unknown|Unknown|0|60|None assigned|"
        f"{admin0}\n"
    )
    stats = ingest_sacct(ledger, [run0, pending])
    assert (stats.qpu_records, stats.not_started, stats.store.rows) == (2, 1, 1)
    assert [(r.run, r.session_id, r.slurm_state) for r in ledger.runs()] == [(0, "sess-r0", "REQUEUED")]
    # the next pull: the run started (new session in AdminComment) and completed
    run1 = (
        f"alpha|1040|1040|frank|chem|qpu|normal|COMPLETED|0:0|{T0 + 101}|{T0 + 130}|{T0 + 230}|100|60|node01|"
        f"{admin1}\n"
    )
    stats = ingest_sacct(ledger, [run0, run1])
    assert (stats.not_started, stats.store.changed) == (0, 1)
    assert [(r.run, r.session_id, r.slurm_state) for r in ledger.runs()] == [
        (0, "sess-r0", "REQUEUED"),
        (1, "sess-r1", "COMPLETED"),
    ]


def test_runs_from_record_without_qpu_is_empty() -> None:
    with open(FIXTURES / "default_fields.txt", encoding="utf-8") as fh:
        recs = list(parse_sacct(fh))
    assert runs_from_record(recs[0]) == []
    het = next(r for r in recs if r.job_id == "1020+0")
    (only,) = runs_from_record(het)
    assert (only.het_job_id, only.het_offset, only.run, only.usage_state, only.quantum_seconds) == (
        1020,
        0,
        None,
        PENDING,
        None,
    )


def test_large_chunks_with_repeated_keys(backend: tuple[str, str]) -> None:
    """Default chunk size: SQLite writes 40 rows per statement; a key repeated within a block is fine."""
    with open_ledger(backend[1]) as led:
        rows = [row(i) for i in range(1, 206)]
        rows[100] = row(50, quantum_seconds=4.0)  # same key as rows[49], later in the same block
        stats = led.upsert_runs(rows)
        assert (stats.rows, stats.changed) == (205, 205)
        assert led.count_runs() == 204
        got = led.get_run(RunKey("alpha", 50, 0, "ibm_torino"))
        assert got is not None and got.quantum_seconds == 4.0
        again = led.upsert_runs(rows)
        assert (again.rows, again.changed) == (205, 0)
        assert [r.job_id_raw for r in led.runs()][:3] == [1, 2, 3]


_WRITER = textwrap.dedent(
    """
    import sys
    from qauvern_hpc.accounting.ledger import open_ledger, RunRow
    url, first = sys.argv[1], int(sys.argv[2])
    with open_ledger(url) as led:
        for round_ in range(20):
            rows = [
                RunRow("alpha", str(i), i, None, None, None, None, None, "u", "a", "p", "q", "ibm_torino",
                       "inst", "s", "r", 1767225600 + i, None, None, None, None, "pending", "COMPLETED")
                for i in range(first + round_ * 50, first + round_ * 50 + 100)
            ]
            with led.batch():
                led.upsert_runs(rows)
                led.set_high_water("alpha", first + round_)
    """
)


def test_concurrent_writers_serialize(backend: tuple[str, str]) -> None:
    """Two processes writing overlapping rows at once: no lock errors, every row once."""
    url = backend[1]
    open_ledger(url).close()  # schema first
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, url, str(first)], env=env, stderr=subprocess.PIPE, text=True
        )
        for first in (10_000, 10_500)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with open_ledger(url) as led:
        ids = [r.job_id_raw for r in led.runs()]
        assert ids == list(range(10_000, 11_550))  # 10000..11049 and 10500..11549, overlap stored once
        assert {r.run for r in led.runs()} == {0}
        assert led.get_high_water("alpha") in (10_019, 10_519)


def test_readers_open_and_read_while_a_write_is_in_progress(backend: tuple[str, str]) -> None:
    with open_ledger(backend[1]) as writer:
        writer.upsert_runs([row(1)])
        with writer.batch():
            writer.upsert_runs([row(2)])
            started = time.monotonic()
            with open_ledger(backend[1]) as reader:
                assert reader.count_runs() == 1  # committed data only
                assert _seconds(reader.usage_by("user")) == [UsageRow("alice", 1, 0.0, 100)]
            assert time.monotonic() - started < 5
        with open_ledger(backend[1]) as reader:
            assert reader.count_runs() == 2
