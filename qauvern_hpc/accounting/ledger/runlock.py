"""The run lock of `collect` and `rebalance`: one run of each at a time on every host that shares the ledger.

* Always: an exclusive `flock` on a file in the caller's local state directory (`core.files`), which is all
  a SQLite ledger (one host) needs, and what `JournalStore.lock_holder` probes on this host.
* With a PostgreSQL ledger (one store for several hosts or clusters), first a session-level advisory lock
  (`pg_try_advisory_lock`) on a connection of its own, held for the whole run. PostgreSQL drops it when the
  process dies or its connection breaks, so a killed run never leaves it held. The connection's
  `application_name` names the holder ("qauvern-hpc collect pid 123 on host"), which the refused run reports.

Busy -> `LockBusy(where, holder)`; callers turn it into their `LockHeld` message. The ledger's writer lock
(`pg_advisory_xact_lock` per transaction, `postgres.WRITER_LOCK_KEY`) is another key and stays as it is.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qauvern_hpc.core.errors import ServiceUnavailable
from qauvern_hpc.core.files import LockBusy, lock_fd, release

#: First key of the two-int advisory locks ("qauv"); the second names the run.
NAMESPACE = 0x71617576
RUN_KEYS = {"collect": 1, "rebalance": 2}
_PG_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def postgres_url(url: str) -> str | None:
    """The libpq URL of a PostgreSQL ledger URL, None for any other ledger."""
    if not url.startswith(_PG_SCHEMES):
        return None
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def holder_name(name: str) -> str:
    """What a run writes as its holder: "qauvern-hpc collect pid 123 on host" (PostgreSQL keeps 63 bytes)."""
    return f"qauvern-hpc {name} pid {os.getpid()} on {socket.gethostname()}"[:63]


@contextlib.contextmanager
def run_lock(ledger_url: str | None, name: str, local_path: Path, *, mode: int = 0o600) -> Iterator[int]:
    """Hold the `name` run lock ("collect" or "rebalance") for the block; yields the local lock's descriptor
    (the caller may write its holder line into it). Raises `LockBusy` when another run holds either lock."""
    key = RUN_KEYS[name]
    pg = postgres_url(ledger_url) if ledger_url else None
    with contextlib.ExitStack() as stack:
        if pg is not None:
            stack.enter_context(_advisory_lock(pg, key, name))
        fd = lock_fd(local_path, mode=mode)
        stack.callback(release, fd)
        yield fd


@contextlib.contextmanager
def _advisory_lock(url: str, key: int, name: str) -> Iterator[None]:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ServiceUnavailable("a postgresql:// ledger needs psycopg 3") from exc
    try:
        conn: Any = psycopg.connect(
            url, autocommit=True, connect_timeout=10, application_name=holder_name(name)
        )
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(
            f"cannot connect to the PostgreSQL ledger for the {name} lock: {str(exc).strip()[:300]}"
        ) from exc
    with conn:
        got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (NAMESPACE, key)).fetchone()
        if not got or not got[0]:
            raise LockBusy(f"the PostgreSQL ledger's {name} lock", _pg_holder(conn, key))
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (NAMESPACE, key))


def _pg_holder(conn: Any, key: int) -> str:
    """The holder's application_name and address (it may have let go in between: then "")."""
    row = conn.execute(
        "SELECT a.application_name, a.client_addr::text, a.pid FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s "
        "AND l.objsubid = 2 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (NAMESPACE, key),
    ).fetchone()
    if row is None:
        return ""
    app, addr, pid = row
    where = f" from {addr}" if addr else ""
    return f"{app or 'a client'} (PostgreSQL backend {pid}{where})"


__all__ = ["NAMESPACE", "RUN_KEYS", "LockBusy", "holder_name", "postgres_url", "run_lock"]
