"""Usage ledger: every quantum second attributed to the Slurm job run, user, account, partition, QOS,
QPU resource and IBM instance that spent it.

`open_ledger(url)` picks the back end by URL scheme:

* `sqlite:///PATH` -> `SQLiteLedger` on PATH, SQLAlchemy style: `sqlite:////var/lib/x.db` is absolute,
  `sqlite:///x.db` relative to the working directory;
* `postgresql://user@host/db` (also `postgres://`, libpq URLs) -> `PostgresLedger`.

Tables (qauvern_hpc/accounting/ledger/schema.py, versioned migrations recorded in `schema_migrations`):

* `runs`: one row per job run per QPU resource, key (cluster, job_id_raw, run, resource); quantum_seconds
  NULL until IBM reports, usage_state 'pending' | 'final'; mode 'session' | 'job' (job mode: no session);
* `collector_state`: per cluster high-water mark (epoch end time fully ingested);
* `collector_revisit`: per cluster jobs to look at again (reason, first/last seen, attempts);
* `audit`: rebalancer actions (run id, actor, time, action, before/after JSON, reason).

API (`Ledger`): `upsert_runs`, `pending_usage`, `runs_with_session`, `job_mode_runs`, `set_usage`,
`get_run`, `runs`, `count_runs`, `query` (read-only SQL for reports), `get_high_water`/`set_high_water`,
`add_revisit`/`revisits`/
`clear_revisit`, `usage_by`, `usage_per_instance`, `record_audit`/`audit_entries`, `batch()` (one
all-or-nothing transaction), `close`. The run lock of collect and rebalance (a database lock on a
PostgreSQL ledger, so across hosts): `qauvern_hpc.accounting.ledger.runlock`.
Streaming sacct ingest: `qauvern_hpc.accounting.ledger.ingest.ingest_sacct`.
"""

from __future__ import annotations

from qauvern_hpc.accounting.ledger.base import Ledger, LedgerError, UpsertStats
from qauvern_hpc.accounting.ledger.models import (
    DIMENSIONS,
    FINAL,
    PENDING,
    AuditEntry,
    InstanceUsage,
    RevisitEntry,
    RunKey,
    RunRow,
    StoredRun,
    UsageRow,
)
from qauvern_hpc.accounting.ledger.runlock import postgres_url
from qauvern_hpc.core.errors import ConfigError

__all__ = [
    "DIMENSIONS",
    "FINAL",
    "PENDING",
    "AuditEntry",
    "InstanceUsage",
    "Ledger",
    "LedgerError",
    "RevisitEntry",
    "RunKey",
    "RunRow",
    "StoredRun",
    "UpsertStats",
    "UsageRow",
    "open_ledger",
]


def open_ledger(url: str) -> Ledger:
    """Open (creating and migrating as needed) the ledger at `url`."""
    if url.startswith("sqlite:"):
        from qauvern_hpc.accounting.ledger.sqlite import SQLiteLedger

        if not url.startswith("sqlite:///") or not url[len("sqlite:///") :].strip("/"):
            raise ConfigError(
                f"ledger URL {url!r} has no database path",
                hint="sqlite:////var/lib/qauvern-hpc/ledger.db (absolute) or sqlite:///ledger.db (relative)",
            )
        path = url[len("sqlite:///") :]
        return SQLiteLedger(path)
    pg = postgres_url(url)
    if pg is not None:
        from qauvern_hpc.accounting.ledger.postgres import PostgresLedger

        return PostgresLedger(pg)
    raise ConfigError(
        f"unsupported ledger URL {url!r}",
        hint="use sqlite:///path/to/ledger.db or postgresql://user@host/dbname",
    )
