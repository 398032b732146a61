"""Versioned schema of the usage ledger, for SQLite and PostgreSQL.

Each migration is applied once, in order, inside the writer lock and one transaction, and recorded in
`schema_migrations(version, name, applied_at)`. Add new migrations at the end; never edit an applied one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _types(dialect: Dialect) -> dict[str, str]:
    if dialect == "sqlite":
        return {
            "int": "INTEGER",
            "real": "REAL",
            "json": "TEXT",
            "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
            "without_rowid": " WITHOUT ROWID",
        }
    return {
        "int": "BIGINT",
        "real": "DOUBLE PRECISION",
        "json": "JSONB",
        "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "without_rowid": "",
    }


def migrations(dialect: Dialect) -> tuple[Migration, ...]:
    t = _types(dialect)
    runs = f"""
CREATE TABLE runs (
    cluster TEXT NOT NULL,
    job_id TEXT NOT NULL,
    job_id_raw {t["int"]} NOT NULL,
    array_job_id {t["int"]},
    array_task_id {t["int"]},
    het_job_id {t["int"]},
    het_offset {t["int"]},
    run {t["int"]} NOT NULL,
    "user" TEXT NOT NULL,
    account TEXT NOT NULL,
    "partition" TEXT NOT NULL,
    qos TEXT NOT NULL,
    resource TEXT NOT NULL,
    instance TEXT,
    session_id TEXT,
    rule TEXT,
    submit {t["int"]} NOT NULL,
    start {t["int"]},
    "end" {t["int"]},
    wall_seconds {t["int"]},
    quantum_seconds {t["real"]},
    usage_state TEXT NOT NULL,
    slurm_state TEXT NOT NULL,
    updated_at {t["real"]} NOT NULL,
    PRIMARY KEY (cluster, job_id_raw, run, resource),
    CONSTRAINT runs_usage_state CHECK (usage_state IN ('pending', 'final')),
    CONSTRAINT runs_final_has_seconds CHECK (usage_state = 'pending' OR quantum_seconds IS NOT NULL),
    CONSTRAINT runs_run_non_negative CHECK (run >= 0)
){t["without_rowid"]}"""
    return (
        Migration(
            1,
            "runs, collector_state, audit",
            (
                runs.strip(),
                'CREATE INDEX runs_end ON runs ("end")',
                "CREATE INDEX runs_pending ON runs (cluster, job_id_raw) WHERE usage_state = 'pending'",
                f"""CREATE TABLE collector_state (
    cluster TEXT PRIMARY KEY,
    high_water {t["int"]} NOT NULL,
    updated_at {t["real"]} NOT NULL
)""",
                f"""CREATE TABLE audit (
    id {t["serial"]},
    run_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    at {t["real"]} NOT NULL,
    action TEXT NOT NULL,
    before {t["json"]},
    after {t["json"]},
    reason TEXT
)""",
                "CREATE INDEX audit_run_id ON audit (run_id, id)",
            ),
        ),
        Migration(
            2,
            "collector_revisit",
            (
                # Jobs the collector must look at again (still running at the end of a window, QPU job
                # whose AdminComment had not arrived yet, ...): one row per job, whatever its runs.
                f"""CREATE TABLE collector_revisit (
    cluster TEXT NOT NULL,
    job_id_raw {t["int"]} NOT NULL,
    reason TEXT NOT NULL,
    first_seen {t["real"]} NOT NULL,
    last_seen {t["real"]} NOT NULL,
    attempts {t["int"]} NOT NULL,
    PRIMARY KEY (cluster, job_id_raw)
){t["without_rowid"]}""",
            ),
        ),
        Migration(
            3,
            "runs by session",
            # The collector charges each IBM session once, looking up every row that carries it.
            ("CREATE INDEX runs_session ON runs (session_id, instance)",),
        ),
        Migration(
            4,
            "runs.resource_units",
            # IBM bills in resource units (docs/ibm-platform.md): the RUs IBM reported for the run, beside
            # its quantum seconds. NULL: not reported in RUs (every row written before this migration).
            (f"ALTER TABLE runs ADD COLUMN resource_units {t['real']}",),
        ),
        Migration(
            5,
            "runs.mode",
            # How the run used its resource: 'session' (an IBM session, or none opened) or 'job' (job mode,
            # the Open plan: no session; the collector charges the instance's IBM jobs on the backend
            # created while the run ran). Rows written before kept job mode as the session id '!job'.
            (
                "ALTER TABLE runs ADD COLUMN mode TEXT NOT NULL DEFAULT 'session' "
                "CONSTRAINT runs_mode CHECK (mode IN ('session', 'job'))",
                "UPDATE runs SET mode = 'job', session_id = NULL WHERE session_id = '!job'",
                "CREATE INDEX runs_job_mode ON runs (instance, start) WHERE mode = 'job'",
            ),
        ),
        Migration(
            6,
            "runs report index",
            # The usage report (`reports/query.py`) reads a window of runs by their end, grouped per job run:
            # an index on ("end", the run's key and columns) holding every column the report reads lets both
            # databases answer from the index alone, in the grouping's order (no lookup into the table per
            # row, no sort). Its prefix replaces runs_end.
            (_report_index(dialect), "DROP INDEX runs_end"),
        ),
    )


# The report groups a window's rows per job run by the key (the run's columns, which its rows share); SQLite
# keeps the summed columns in the key too (it has no INCLUDE), PostgreSQL in the leaves only.
_REPORT_KEY = '"end", cluster, job_id_raw, run, instance, account, "user", start, submit, slurm_state'
_REPORT_SUMMED = "quantum_seconds, resource_units, usage_state"


def _report_index(dialect: Dialect) -> str:
    if dialect == "sqlite":
        return f"CREATE INDEX runs_report ON runs ({_REPORT_KEY}, {_REPORT_SUMMED})"
    return f"CREATE INDEX runs_report ON runs ({_REPORT_KEY}) INCLUDE ({_REPORT_SUMMED})"


MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)"""


def latest_version(dialect: Dialect) -> int:
    return max(m.version for m in migrations(dialect))
