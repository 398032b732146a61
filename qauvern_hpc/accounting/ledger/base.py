"""The usage ledger's logic, shared by the SQLite and PostgreSQL back ends.

SQL is written once with `?` placeholders; a back end translates it (`_sql`) and supplies the
connection primitives, the writer lock and the query that looks up a batch of jobs' existing runs.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

from qauvern_hpc.accounting.ledger.models import (
    DIMENSIONS,
    FINAL,
    PENDING,
    RUN_COLUMNS,
    STORED_COLUMNS,
    AuditEntry,
    InstanceUsage,
    RevisitEntry,
    RunKey,
    RunRow,
    StoredRun,
    UsageRow,
)
from qauvern_hpc.accounting.ledger.schema import MIGRATIONS_TABLE, Dialect, migrations
from qauvern_hpc.accounting.ledger.upsert import build_upsert, q
from qauvern_hpc.core.errors import QauvernError

DEFAULT_CHUNK = 5000
_PARK = 1 << 40  # temporary offset while renumbering runs
_RUN = RUN_COLUMNS.index("run")
_AFTER_RUN = _RUN + 1
_RESOURCE = RUN_COLUMNS.index("resource")


class LedgerError(QauvernError):
    """The ledger refused an operation or found itself in an unexpected state."""


@dataclass(slots=True)
class UpsertStats:
    rows: int = 0  # rows handed in
    changed: int = 0  # rows inserted or actually modified


def _chunks(rows: Iterable[RunRow], size: int) -> Iterator[list[RunRow]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


class Ledger(ABC):
    """Usage ledger: one row per job run per QPU resource, plus collector state and the audit log.

    Every write method runs in its own transaction under the single-writer lock, unless called inside
    `with ledger.batch():`, which makes all of them one transaction.
    """

    dialect: Dialect
    chunk_size: int = DEFAULT_CHUNK
    rows_per_statement: int = 1  # >1: multi-row INSERTs (see _upsert_many)

    def __init__(self) -> None:
        self._depth = 0
        self._upsert_sql = self._sql(self._build_upsert())
        self._upsert_block_sql: str | None = None

    # -- primitives supplied by a back end -------------------------------------------------------

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (already translated); return its row count."""

    @abstractmethod
    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement for many parameter rows; return the total row count."""

    @abstractmethod
    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query (already translated) and return all rows."""

    @abstractmethod
    def _begin_write(self) -> None:
        """Take the writer lock and begin a transaction."""

    @abstractmethod
    def _end_write(self, commit: bool) -> None:
        """Commit (or roll back) and release the writer lock."""

    @abstractmethod
    def _existing_runs(self, jobs: Sequence[tuple[str, int]]) -> list[tuple[str, int, int, int]]:
        """(cluster, job_id_raw, submit, run) of every stored row of these jobs."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    @abstractmethod
    def _applied_versions(self) -> set[int]:
        """The schema versions recorded in `schema_migrations`; empty when the table does not exist yet."""

    @abstractmethod
    def _describe(self) -> str:
        """How error messages name this ledger (a path or a database)."""

    def _sql(self, text: str) -> str:
        return text

    def _migrate(self) -> None:
        """Bring the schema up to date: each missing migration once, in order, in one locked transaction.

        A schema that is already current takes no lock (readers must not wait for a long ingest), and one
        newer than this code knows is refused rather than written to.
        """
        known = migrations(self.dialect)
        if self._applied_versions() == {m.version for m in known}:
            return
        with self.batch():
            self._execute(MIGRATIONS_TABLE)
            done = self._applied_versions()
            newer = done - {m.version for m in known}
            if newer:
                raise LedgerError(
                    f"{self._describe()} has schema version {max(newer)}, newer than this qauvern-hpc knows"
                )
            record = self._sql("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
            for migration in known:
                if migration.version in done:
                    continue
                for statement in migration.statements:
                    self._execute(statement)
                self._execute(record, (migration.version, migration.name, time.time()))

    def schema_version(self) -> int:
        """The newest applied schema version (0 for an empty ledger)."""
        return max(self._applied_versions(), default=0)

    def _upsert_many(self, params: list[tuple[Any, ...]]) -> int:
        """Run the upsert for these parameter rows in order; return how many were inserted or changed.

        Rows go `rows_per_statement` at a time into one multi-row INSERT (much less per-row overhead).
        A key may appear only once per statement (PostgreSQL refuses to update a row twice in one
        statement), so a repeated key closes the block: the rows still apply in their order.
        """
        block = self.rows_per_statement
        if block <= 1:
            return self._executemany(self._upsert_sql, params)
        if self._upsert_block_sql is None:
            self._upsert_block_sql = self._sql(self._build_upsert(block))
        block_sql = self._upsert_block_sql
        changed = 0
        current: list[tuple[Any, ...]] = []
        keys: set[tuple[Any, ...]] = set()
        for p in params:
            key = (p[0], p[2], p[_RUN], p[_RESOURCE])
            if key in keys:
                changed += self._executemany(self._upsert_sql, current)
                current, keys = [], set()
            current.append(p)
            keys.add(key)
            if len(current) == block:
                changed += self._execute(block_sql, list(chain.from_iterable(current)))
                current, keys = [], set()
        return changed + self._executemany(self._upsert_sql, current)

    def _ne(self) -> str:
        """Null-safe "differs" operator."""
        return "IS NOT"

    def _json_param(self) -> str:
        return "?"

    def _json_read(self, column: str) -> str:
        return column

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def batch(self, *, commit: bool = True) -> Iterator[None]:
        """Make every write inside the block one transaction: all of it is stored, or none of it.
        `commit=False` rolls the outermost transaction back at the end (a dry run)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._begin_write()
        self._depth = 1
        ok = False
        try:
            yield
            ok = commit
        finally:
            self._depth = 0
            self._end_write(ok)

    @property
    def in_batch(self) -> bool:
        return self._depth > 0

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ----------------------------------------------------------------------------------

    def _build_upsert(self, rows: int = 1, source: str | None = None) -> str:
        """The upsert statement for `rows` rows (VALUES groups), or for every row of table `source`."""
        return build_upsert(self._ne(), rows, source)

    def upsert_runs(self, rows: Iterable[RunRow]) -> UpsertStats:
        """Insert or update job runs; idempotent.

        Re-ingesting the same rows changes nothing (not even `updated_at`). Slurm's columns take the
        newest values. Usage: a final row is never downgraded by a pending one; a pending row with
        `quantum_seconds` replaces a pending one, and a pending row without it keeps the known seconds.
        Except when the row now names another session or instance (a requeued run's record first shows
        the previous run's AdminComment, then its own): then its usage is the incoming one (normally
        unknown and pending), since the stored seconds belonged to the other session.
        Rows with `run=None` get their run index derived (see `RunRow`). Streams: rows are consumed and
        written `chunk_size` at a time, all in one transaction.
        """
        stats = UpsertStats()
        with self.batch():
            for chunk in _chunks(rows, self.chunk_size):
                now = time.time()
                params: list[tuple[Any, ...]] = []
                append = params.append
                for row, run in zip(chunk, self._run_indexes(chunk), strict=True):
                    state = row.usage_state
                    if state != PENDING and (state != FINAL or row.quantum_seconds is None):
                        if state == FINAL:
                            raise LedgerError(
                                f"{row.cluster}/{row.job_id}: a final row needs quantum_seconds"
                            )
                        raise LedgerError(f"{row.cluster}/{row.job_id}: bad usage_state {state!r}")
                    append((*row[:_RUN], run, *row[_AFTER_RUN:], now))
                stats.rows += len(params)
                stats.changed += self._upsert_many(params)
        return stats

    def _run_indexes(self, chunk: list[RunRow]) -> list[int]:
        """Each row's run index: its own, or for run=None the rank of its submit time among its job's runs
        (stored ones and those in the chunk). Renumbers stored runs when an earlier one arrives late."""
        incoming: dict[tuple[str, int], set[int]] = {}
        for row in chunk:
            if row.run is None:
                key = (row.cluster, row.job_id_raw)
                submits = incoming.get(key)
                if submits is None:
                    incoming[key] = {row.submit}
                else:
                    submits.add(row.submit)
        if not incoming:
            return [row.run for row in chunk if row.run is not None]
        stored: dict[tuple[str, int], dict[int, int]] = {}
        for cluster, job_id_raw, submit, run in self._existing_runs(list(incoming)):
            runs_of = stored.setdefault((cluster, job_id_raw), {})
            runs_of[submit] = min(run, runs_of.get(submit, run))
        # Only jobs with more than one known run need a lookup table; the rest are run 0.
        assign: dict[tuple[str, int], dict[int, int]] = {}
        for job, submits in incoming.items():
            have = stored.get(job)
            if not have:
                if len(submits) > 1:
                    assign[job] = {s: i for i, s in enumerate(sorted(submits))}
                continue
            if submits <= have.keys():
                assign[job] = have
                continue
            ranks = {s: i for i, s in enumerate(sorted(have.keys() | submits))}
            moves = [(s, have[s], ranks[s]) for s in have if have[s] != ranks[s]]
            if moves:
                self._renumber(job, moves)
            assign[job] = ranks
        out: list[int] = []
        for row in chunk:
            index = row.run
            if index is None:
                table = assign.get((row.cluster, row.job_id_raw))
                index = 0 if table is None else table[row.submit]
            out.append(index)
        return out

    def _renumber(self, job: tuple[str, int], moves: list[tuple[int, int, int]]) -> None:
        """An earlier run of a job arrived after later ones: shift the later ones' run index.

        Two steps (park far above any real index, then move down) so no step collides with a key.
        """
        cluster, job_id_raw = job
        park = self._sql("UPDATE runs SET run = ? WHERE cluster = ? AND job_id_raw = ? AND submit = ?")
        for submit, _old, new in moves:
            self._execute(park, (_PARK + new, cluster, job_id_raw, submit))
        self._execute(
            self._sql("UPDATE runs SET run = run - ? WHERE cluster = ? AND job_id_raw = ? AND run >= ?"),
            (_PARK, cluster, job_id_raw, _PARK),
        )

    def get_run(self, key: RunKey) -> StoredRun | None:
        rows = self._fetchall(
            self._sql(
                f"SELECT {', '.join(q(c) for c in STORED_COLUMNS)} FROM runs "
                "WHERE cluster = ? AND job_id_raw = ? AND run = ? AND resource = ?"
            ),
            tuple(key),
        )
        return StoredRun(*rows[0]) if rows else None

    def runs(self, cluster: str | None = None, job_id_raw: int | None = None) -> list[StoredRun]:
        """Stored rows (optionally of one cluster / one job), in key order. For tests and tools."""
        where, params = self._filters(cluster=cluster, job_id_raw=job_id_raw)
        rows = self._fetchall(
            self._sql(
                f"SELECT {', '.join(q(c) for c in STORED_COLUMNS)} FROM runs{where} "
                "ORDER BY cluster, job_id_raw, run, resource"
            ),
            params,
        )
        return [StoredRun(*r) for r in rows]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read-only query written with `?` placeholders (the reports' aggregates); all rows."""
        return self._fetchall(self._sql(sql), params)

    def count_runs(self) -> int:
        return int(self._fetchall("SELECT COUNT(*) FROM runs")[0][0])

    @staticmethod
    def _filters(**values: Any) -> tuple[str, list[Any]]:
        parts = [f"{q(k)} = ?" for k, v in values.items() if v is not None]
        params = [v for v in values.values() if v is not None]
        return (" WHERE " + " AND ".join(parts) if parts else "", params)

    def pending_usage(self, cluster: str | None = None) -> list[StoredRun]:
        """Rows whose quantum seconds IBM has not finalized yet, in key order."""
        where = " AND cluster = ?" if cluster is not None else ""
        rows = self._fetchall(
            self._sql(
                f"SELECT {', '.join(q(c) for c in STORED_COLUMNS)} FROM runs "
                f"WHERE usage_state = 'pending'{where} ORDER BY cluster, job_id_raw, run, resource"
            ),
            (cluster,) if cluster is not None else (),
        )
        return [StoredRun(*r) for r in rows]

    def runs_with_session(self, instance: str, session_id: str) -> list[StoredRun]:
        """Every row (pending or final) that carries this IBM session, in key order."""
        rows = self._fetchall(
            self._sql(
                f"SELECT {', '.join(q(c) for c in STORED_COLUMNS)} FROM runs "
                "WHERE session_id = ? AND instance = ? ORDER BY cluster, job_id_raw, run, resource"
            ),
            (session_id, instance),
        )
        return [StoredRun(*r) for r in rows]

    def job_mode_runs(self, instance: str, since: int, until: int) -> list[StoredRun]:
        """Every row (pending or final) of `instance` in job mode whose run overlaps [since, until]: started
        by `until` and ended at `since` or later (or still running), in key order."""
        rows = self._fetchall(
            self._sql(
                f"SELECT {', '.join(q(c) for c in STORED_COLUMNS)} FROM runs "
                'WHERE mode = \'job\' AND instance = ? AND start <= ? AND ("end" IS NULL OR "end" >= ?) '
                "ORDER BY cluster, job_id_raw, run, resource"
            ),
            (instance, int(until), int(since)),
        )
        return [StoredRun(*r) for r in rows]

    def set_usage(
        self, key: RunKey, seconds: float, final: bool, resource_units: float | None = None
    ) -> bool:
        """Record IBM's quantum seconds for one row, and its RUs when IBM gave them (None keeps the stored
        RUs). Returns whether the row changed.

        A final row only takes another final value (a correction); a pending value for it is ignored.
        Raises `LedgerError` when there is no such row.
        """
        if seconds < 0 or (resource_units or 0.0) < 0:
            raise LedgerError(f"{key}: negative quantum seconds {seconds} or resource units {resource_units}")
        state = FINAL if final else PENDING
        ne = self._ne()
        ru = () if resource_units is None else (float(resource_units),)  # RUs: set and compared when given
        sql = self._sql(
            "UPDATE runs SET quantum_seconds = ?, usage_state = ?, updated_at = ?"
            f"{', resource_units = ?' * len(ru)} "
            "WHERE cluster = ? AND job_id_raw = ? AND run = ? AND resource = ? "
            f"AND (usage_state = 'pending' OR ? = 'final') "
            f"AND (quantum_seconds {ne} ? OR usage_state {ne} ?{f' OR resource_units {ne} ?' * len(ru)})"
        )
        params = (float(seconds), state, time.time(), *ru, *key, state, float(seconds), state, *ru)
        with self.batch():
            changed = self._execute(sql, params)
            if not changed and self.get_run(key) is None:
                raise LedgerError(f"no ledger row {tuple(key)}")
        return changed > 0

    # -- collector state -----------------------------------------------------------------------

    def get_high_water(self, cluster: str) -> int | None:
        rows = self._fetchall(
            self._sql("SELECT high_water FROM collector_state WHERE cluster = ?"), (cluster,)
        )
        return int(rows[0][0]) if rows else None

    def set_high_water(self, cluster: str, epoch: int) -> None:
        """Set the cluster's high-water mark (may move backwards: that is how an admin re-collects)."""
        with self.batch():
            self._execute(
                self._sql(
                    "INSERT INTO collector_state (cluster, high_water, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (cluster) DO UPDATE SET high_water = excluded.high_water, "
                    "updated_at = excluded.updated_at"
                ),
                (cluster, int(epoch), time.time()),
            )

    def add_revisit(self, cluster: str, job_ids: Iterable[int], reason: str) -> int:
        """Put jobs on the cluster's revisit list (or, when already there, count one more attempt and take
        the new reason). Returns how many jobs were handed in."""
        now = time.time()
        params = [(cluster, int(j), reason, now, now) for j in job_ids]
        if not params:
            return 0
        sql = self._sql(
            "INSERT INTO collector_revisit (cluster, job_id_raw, reason, first_seen, last_seen, attempts) "
            "VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (cluster, job_id_raw) DO UPDATE SET "
            "reason = excluded.reason, last_seen = excluded.last_seen, "
            "attempts = collector_revisit.attempts + 1"
        )
        with self.batch():
            for i in range(0, len(params), self.chunk_size):
                self._executemany(sql, params[i : i + self.chunk_size])
        return len(params)

    def revisits(self, cluster: str, *, limit: int | None = None) -> list[RevisitEntry]:
        """The cluster's revisit list, oldest first."""
        sql = (
            "SELECT cluster, job_id_raw, reason, first_seen, last_seen, attempts FROM collector_revisit "
            "WHERE cluster = ? ORDER BY first_seen, job_id_raw"
        )
        params: list[Any] = [cluster]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [
            RevisitEntry(str(c), int(j), str(r), float(f), float(ls), int(a))
            for c, j, r, f, ls, a in self._fetchall(self._sql(sql), params)
        ]

    def clear_revisit(self, cluster: str, job_ids: Iterable[int]) -> int:
        """Take jobs off the cluster's revisit list; returns how many were on it."""
        params = [(cluster, int(j)) for j in job_ids]
        if not params:
            return 0
        sql = self._sql("DELETE FROM collector_revisit WHERE cluster = ? AND job_id_raw = ?")
        removed = 0
        with self.batch():
            for i in range(0, len(params), self.chunk_size):
                removed += self._executemany(sql, params[i : i + self.chunk_size])
        return removed

    # -- usage ---------------------------------------------------------------------------------

    @staticmethod
    def _window(since: int | None, until: int | None) -> tuple[str, list[Any]]:
        """A run belongs to the period its job ended in; runs still going have no end and count only
        in an open-ended period (until=None)."""
        parts: list[str] = []
        params: list[Any] = []
        if since is not None:
            parts.append('("end" >= ? OR "end" IS NULL)' if until is None else '"end" >= ?')
            params.append(int(since))
        if until is not None:
            parts.append('"end" < ?')
            params.append(int(until))
        return (" WHERE " + " AND ".join(parts) if parts else "", params)

    def usage_by(self, dimension: str, since: int | None = None, until: int | None = None) -> list[UsageRow]:
        """Quantum and wall seconds per user/account/partition/instance/resource/qos/cluster, sorted by key.

        `jobs` counts job runs (a job on two QPUs counts once, except per resource); wall seconds count
        once per job run; quantum seconds not reported yet count as 0. RUs: their sum when IBM gave RUs for
        every run of the group, else None, with `runs_without_ru` counting the runs that have none.
        """
        if dimension not in DIMENSIONS:
            raise LedgerError(f"cannot group usage by {dimension!r}; choose one of {', '.join(DIMENSIONS)}")
        where, params = self._window(since, until)
        col = q(dimension)
        sql = (
            "SELECT k, COUNT(*), SUM(qs), SUM(ws), SUM(ru), SUM(CASE WHEN nru > 0 THEN 1 ELSE 0 END) FROM ("
            f"SELECT COALESCE({col}, '') AS k, cluster, job_id_raw, run, SUM(resource_units) AS ru, "
            "COALESCE(SUM(quantum_seconds), 0) AS qs, COALESCE(MAX(wall_seconds), 0) AS ws, "
            "SUM(CASE WHEN resource_units IS NULL THEN 1 ELSE 0 END) AS nru "
            f"FROM runs{where} GROUP BY COALESCE({col}, ''), cluster, job_id_raw, run) AS per_run "
            "GROUP BY k ORDER BY k"
        )
        return [
            UsageRow(
                str(k), int(n), float(qsum or 0), int(wsum or 0), None if no else float(ru or 0), int(no)
            )
            for k, n, qsum, wsum, ru, no in self._fetchall(self._sql(sql), params)
        ]

    def usage_per_instance(
        self, since: int | None = None, until: int | None = None
    ) -> dict[str, InstanceUsage]:
        """Per IBM instance: final seconds, seconds reported so far for pending runs, and run counts."""
        where, params = self._window(since, until)
        sql = (
            "SELECT COALESCE(instance, ''), "
            "COALESCE(SUM(CASE WHEN usage_state = 'final' THEN quantum_seconds END), 0), "
            "COALESCE(SUM(CASE WHEN usage_state = 'pending' THEN quantum_seconds END), 0), "
            "SUM(CASE WHEN usage_state = 'pending' THEN 1 ELSE 0 END), COUNT(*) "
            f"FROM runs{where} GROUP BY COALESCE(instance, '') ORDER BY 1"
        )
        return {
            str(i): InstanceUsage(str(i), float(f), float(p), int(pr), int(n))
            for i, f, p, pr, n in self._fetchall(self._sql(sql), params)
        }

    # -- audit -----------------------------------------------------------------------------------

    def record_audit(
        self,
        run_id: str,
        actor: str,
        action: str,
        *,
        before: Any = None,
        after: Any = None,
        reason: str | None = None,
        at: float | None = None,
    ) -> int:
        """Append an audit entry (before/after are JSON-serializable); returns its id."""
        jp = self._json_param()
        with self.batch():
            rows = self._fetchall(
                self._sql(
                    "INSERT INTO audit (run_id, actor, at, action, before, after, reason) "
                    f"VALUES (?, ?, ?, ?, {jp}, {jp}, ?) RETURNING id"
                ),
                (
                    run_id,
                    actor,
                    time.time() if at is None else float(at),
                    action,
                    json.dumps(before, sort_keys=True),
                    json.dumps(after, sort_keys=True),
                    reason,
                ),
            )
        return int(rows[0][0])

    def audit_entries(self, run_id: str | None = None) -> list[AuditEntry]:
        where = " WHERE run_id = ?" if run_id is not None else ""
        rows = self._fetchall(
            self._sql(
                f"SELECT id, run_id, actor, at, action, {self._json_read('before')}, "
                f"{self._json_read('after')}, reason FROM audit{where} ORDER BY id"
            ),
            (run_id,) if run_id is not None else (),
        )
        return [
            AuditEntry(
                int(i),
                r,
                a,
                float(t),
                act,
                json.loads(b) if b is not None else None,
                json.loads(af) if af is not None else None,
                reason,
            )
            for i, r, a, t, act, b, af, reason in rows
        ]
