"""A throwaway PostgreSQL server for the ledger tests and benchmarks.

initdb + pg_ctl from /usr/lib/postgresql/*/bin, run as the `postgres` user when we are root, a private unix
socket directory (no TCP listener), fsync off; removed when the context ends. `unavailable()` says why no
server can be started here (None: one can).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PgServer:
    root: str
    socket_dir: str
    port: int
    as_postgres: bool
    counter: int = 0

    def url(self, db: str) -> str:
        return f"postgresql://postgres@/{db}?host={self.socket_dir}&port={self.port}"

    def new_database(self) -> str:
        import psycopg

        self.counter += 1
        name = f"ledger_{self.counter}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _pg_bin() -> str | None:
    for candidate in [
        "/usr/lib/postgresql/15/bin",
        *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True),
    ]:
        if os.path.exists(os.path.join(candidate, "initdb")) and os.path.exists(
            os.path.join(candidate, "pg_ctl")
        ):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _no_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return True
    return False


def unavailable() -> str | None:
    """Why no server can be started here, or None."""
    if _pg_bin() is None:
        return "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (initdb, pg_ctl)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg 3 is not installed"
    if os.geteuid() == 0 and (shutil.which("runuser") is None or _no_user("postgres")):
        return "running as root but there is no runuser or no `postgres` user to run the server as"
    return None


@contextlib.contextmanager
def running_server() -> Iterator[PgServer]:
    """A fresh server for the length of the context (RuntimeError when it cannot be started)."""
    reason = unavailable()
    bindir = _pg_bin()
    if reason is not None or bindir is None:
        raise RuntimeError(reason or "no PostgreSQL binaries")
    as_postgres = os.geteuid() == 0
    root = tempfile.mkdtemp(prefix="qauvern-pg-")
    data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
    os.mkdir(sock)
    prefix: list[str] = []
    if as_postgres:
        for path in (root, sock):
            shutil.chown(path, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    log = os.path.join(root, "server.log")

    def run(*argv: str) -> None:
        proc = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            extra = Path(log).read_text(errors="replace")[-2000:] if os.path.exists(log) else ""
            raise RuntimeError(f"{argv[0]} failed: {proc.stdout}\n{proc.stderr}\n{extra}")

    try:
        run(
            os.path.join(bindir, "initdb"),
            *("-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"),
        )
        options = f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        run(os.path.join(bindir, "pg_ctl"), "-D", data, "-o", options, "-l", log, "-w", "-t", "60", "start")
        yield PgServer(root, sock, port, as_postgres)
    finally:
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            subprocess.run(
                [*prefix, os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)
