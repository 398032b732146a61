"""The SQL of the ledger's run upsert: how a re-read of sacct merges with what the ledger already holds.

Written once with `?` placeholders for both back ends (each translates it); `ne` is the back end's
null-safe "differs" operator.
"""

from __future__ import annotations

from qauvern_hpc.accounting.ledger.models import RUN_COLUMNS

KEY_COLUMNS = ("cluster", "job_id_raw", "run", "resource")
#: Columns sacct owns: a re-ingest replaces them (the newest sacct view wins). `mode` comes from the
#: AdminComment like the session, and the newest record of a run says how it used its resource.
SLURM_COLUMNS = tuple(
    c
    for c in RUN_COLUMNS
    if c not in (*KEY_COLUMNS, "quantum_seconds", "usage_state", "instance", "session_id", "rule")
)


def q(name: str) -> str:
    """Quote a column name (`user`, `end`, `partition` are reserved words somewhere)."""
    return f'"{name}"'


def build_upsert(ne: str, rows: int = 1, source: str | None = None) -> str:
    """The upsert statement for `rows` rows (VALUES groups), or for every row of table `source`."""
    cols = (*RUN_COLUMNS, "updated_at")
    group = "(" + ", ".join("?" for _ in cols) + ")"
    # The row now names another IBM session (or instance, or runs in job mode instead): its usage was the
    # old session's, so it starts over with what this upsert says (the collector asks IBM again).
    moved = (
        f"((excluded.session_id IS NOT NULL AND runs.session_id {ne} excluded.session_id) "
        f"OR (excluded.instance IS NOT NULL AND runs.instance {ne} excluded.instance) "
        "OR runs.mode <> excluded.mode)"
    )
    qs = (
        f"CASE WHEN {moved} THEN excluded.quantum_seconds "
        "WHEN runs.usage_state = 'final' AND excluded.usage_state <> 'final' "
        "THEN runs.quantum_seconds "
        "WHEN excluded.usage_state = 'final' THEN excluded.quantum_seconds "
        "ELSE COALESCE(excluded.quantum_seconds, runs.quantum_seconds) END"
    )
    us = (
        f"CASE WHEN {moved} THEN excluded.usage_state "
        "WHEN runs.usage_state = 'final' OR excluded.usage_state = 'final' "
        "THEN 'final' ELSE 'pending' END"
    )
    keep = {c: f"COALESCE(excluded.{q(c)}, runs.{q(c)})" for c in ("instance", "session_id", "rule")}
    # A run in job mode has no session, whatever an earlier record of it (a requeue's) said.
    keep["session_id"] = f"CASE WHEN excluded.mode = 'job' THEN NULL ELSE {keep['session_id']} END"
    sets = [f"{q(c)} = excluded.{q(c)}" for c in SLURM_COLUMNS]
    sets += [f"{q(c)} = {expr}" for c, expr in keep.items()]
    # RUs come from IBM only (set_usage); they go with the seconds when the row moves to another session.
    ru = f"CASE WHEN {moved} THEN NULL ELSE runs.resource_units END"
    sets += [f"quantum_seconds = {qs}", f"usage_state = {us}", "updated_at = excluded.updated_at"]
    sets += [f"resource_units = {ru}"]
    changed = [f"runs.{q(c)} {ne} excluded.{q(c)}" for c in SLURM_COLUMNS]
    changed += [f"runs.{q(c)} {ne} {expr}" for c, expr in keep.items()]
    changed += [f"runs.quantum_seconds {ne} {qs}", f"runs.usage_state {ne} {us}"]
    changed += [f"runs.resource_units {ne} {ru}"]
    names = ", ".join(q(c) for c in cols)
    values = f"SELECT {names} FROM {source}" if source else "VALUES " + ", ".join([group] * rows)
    return (
        f"INSERT INTO runs ({names}) {values} "
        f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {', '.join(sets)} "
        f"WHERE {' OR '.join(changed)}"
    )
