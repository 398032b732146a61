"""The report's one pass over the ledger: a single SQL statement whose rows are small totals.

The window's job runs are grouped once, one row per job run, into a materialized CTE (`per_run`), read
from the `runs_report` covering index in the grouping's order (`"end"`, the run's key, then the columns
its rows share): the grouping streams, with no sort and no lookup into the table. Every figure is then an
aggregate over `per_run`, and the 27 days before the window (the instance series' lead-in) a per-day
aggregate of their own. The parts are one `UNION ALL` with a tag and typed columns (PostgreSQL wants one
type per column): tag, five texts, four integers, two reals. Python folds the tagged totals (per key and
day, never one row per run).

A job run's rows (one per QPU) share its job's user, account, instance, times and Slurm state: they come
from one sacct record and one AdminComment (rows of one run that differed there would count as two runs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from qauvern_hpc.accounting.ledger import Ledger
from qauvern_hpc.reports.model import DAY, WAIT_BUCKETS, Window

_TEXTS, _INTS, _REALS = 5, 4, 2
TOP = 10  # rows of the top tables

# The tags of the parts.
LEAD, DAILY, PENDING, BY_USER, WAITS, TOP_JOBS = "l", "d", "p", "u", "w", "t"


def _row(tag: str, texts: Sequence[str] = (), ints: Sequence[str] = (), reals: Sequence[str] = ()) -> str:
    """One part's select list in the common layout, each column cast to its type (NULL when unused)."""
    cols = [f"'{tag}'"]
    for values, size, sql_type in ((texts, _TEXTS, "TEXT"), (ints, _INTS, "BIGINT"),
                                   (reals, _REALS, "DOUBLE PRECISION")):  # fmt: skip
        cols += [f"CAST({v} AS {sql_type})" for v in values]
        cols += [f"CAST(NULL AS {sql_type})"] * (size - len(values))
    return ", ".join(cols)


# Grouped by the columns a run's rows share, in the order of the runs_report index (the grouping streams).
_PER_RUN_KEY = '"end", cluster, job_id_raw, run, instance, account, "user", start, submit, slurm_state'
_PER_RUN = (
    'SELECT "end" AS e, cluster AS c, job_id_raw AS j, run AS r, '
    "COALESCE(instance, '') AS i, account AS a, "
    '"user" AS u, start AS s, start - submit AS w, slurm_state AS st, '
    "SUM(COALESCE(quantum_seconds, 0)) AS qs, SUM(resource_units) AS ru, "
    "SUM(CASE WHEN resource_units IS NULL THEN 1 ELSE 0 END) AS nru, "
    "SUM(CASE WHEN usage_state = 'pending' THEN 1 ELSE 0 END) AS np FROM runs"
)


def _per_run(window: Window) -> tuple[str, list[Any]]:
    if not window.open_end:
        return f'{_PER_RUN} WHERE "end" >= ? AND "end" < ? GROUP BY {_PER_RUN_KEY}', [
            window.since,
            window.until,
        ]
    # Two ranges of the index rather than `"end" >= ? OR "end" IS NULL` (SQLite merges an OR of two
    # ranges through a temporary row set, and the grouping could no longer stream).
    return (
        f'{_PER_RUN} WHERE "end" >= ? GROUP BY {_PER_RUN_KEY} '
        f'UNION ALL {_PER_RUN} WHERE "end" IS NULL GROUP BY {_PER_RUN_KEY}',
        [window.since],
    )


def _bucket(column: str) -> str:
    """The WAIT_BUCKETS index of a wait (-1: never started)."""
    whens = " ".join(
        f"WHEN {column} < {int(bound)} THEN {i}" for i, (_, bound) in enumerate(WAIT_BUCKETS[:-1])
    )
    return f"CASE WHEN {column} IS NULL THEN -1 {whens} ELSE {len(WAIT_BUCKETS) - 1} END"


def statement(window: Window, lead: int, by_column: str) -> tuple[str, list[Any]]:
    """The one statement (placeholders `?`) and its parameters. `by_column`: `a` (account), `u` (user) or
    `i` (instance), the per_run column of the report's grouping."""
    per_run, params = _per_run(window)
    sums = "SUM(qs)", "SUM(ru)"
    dated = f"CASE WHEN e < {int(window.until)} THEN 1 ELSE 0 END"  # a literal: the same in GROUP BY
    day_keys = ["i", "a", "u"] if by_column == "u" else ["i", "a"]
    instance, day = "COALESCE(instance, '')", f'"end" / {DAY}'
    lead_sums = "SUM(COALESCE(quantum_seconds, 0))", "SUM(resource_units)"
    lead_row = _row(
        LEAD, [instance], [day, "SUM(CASE WHEN resource_units IS NULL THEN 1 ELSE 0 END)"], lead_sums
    )
    parts = [
        # The lead-in: per day and instance, the rows that ended in the 27 days before the window.
        f'SELECT {lead_row} FROM runs WHERE "end" >= ? AND "end" < ? GROUP BY {day}, {instance}',
        # The window per day (NULL: still going), whether dated (ended before `until`), instance, account
        # (and user): the series, the shares, the job runs and pending rows per key.
        f"SELECT {_row(DAILY, day_keys, [f'e / {DAY}', 'SUM(nru)', dated, 'COUNT(*)'], sums)} "
        f"FROM per_run GROUP BY e / {DAY}, {dated}, {', '.join(day_keys)}",
        f"SELECT {_row(PENDING, [], ['SUM(np)'])} FROM per_run",
    ]
    if by_column != "u":  # the top users
        parts.append(f"SELECT {_row(BY_USER, ['u'], ['COUNT(*)', 'SUM(nru)'], sums)} FROM per_run GROUP BY u")
    bucket = _bucket("w")
    waits = _row(WAITS, ["st"], [f"s / {DAY}", f"e / {DAY}", bucket, "COUNT(*)"], ["SUM(w)", "MAX(w)"])
    parts += [
        f"SELECT {waits} FROM per_run GROUP BY s / {DAY}, e / {DAY}, st, {bucket}",
        f"SELECT {_row(TOP_JOBS, ['c', 'u', 'a', 'i', 'st'], ['j', 'r', 'nru'], ['qs', 'ru'])} FROM ("
        f"SELECT * FROM per_run ORDER BY qs DESC, c, j, r LIMIT {TOP}) AS top",
    ]
    sql = f"WITH per_run AS MATERIALIZED ({per_run}) " + " UNION ALL ".join(parts)
    # Placeholders in text order: per_run's, then the lead-in's range.
    return sql, [*params, lead, window.since]


@dataclass
class Totals:
    """The statement's rows, by tag."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    def __getitem__(self, tag: str) -> list[tuple[Any, ...]]:
        return self.rows.get(tag, [])


def run(ledger: Ledger, window: Window, lead: int, by_column: str) -> Totals:
    sql, params = statement(window, lead, by_column)
    out = Totals()
    for tag, *rest in ledger.query(sql, params):
        out.rows.setdefault(str(tag), []).append(tuple(rest))
    return out


def columns(row: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    """(texts, ints, reals) of a row in the common layout."""
    yield row[:_TEXTS]
    yield row[_TEXTS : _TEXTS + _INTS]
    yield row[_TEXTS + _INTS :]


__all__ = ["BY_USER", "DAILY", "LEAD", "PENDING", "TOP", "TOP_JOBS", "WAITS", "Totals", "columns", "run"]
