"""The run lock of collect and rebalance on a PostgreSQL ledger: a database lock, so two processes that share
the ledger but not a state directory (two hosts) never run together, and a killed holder lets go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qauvern_hpc.accounting.collector import collect_lock
from qauvern_hpc.core.errors import LockHeld
from qauvern_hpc.rebalance.journal import JournalStore
from tests.unit.accounting.test_ledger import PgServer, pg_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.process

HOLDER = textwrap.dedent(
    """\
    import sys
    from qauvern_hpc.accounting.collector import collect_lock
    from qauvern_hpc.rebalance.journal import JournalStore

    kind, url, state = sys.argv[1:]
    lock = collect_lock(state, url) if kind == "collect" else JournalStore(state).lock(ledger_url=url)
    with lock:
        print("held", flush=True)
        sys.stdin.read()  # until the test closes stdin (or kills us)
    """
)


@pytest.fixture
def url(pg_server: PgServer) -> str:  # noqa: F811
    return pg_server.new_database()


def _holder(kind: str, url: str, state: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, kind, url, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def cleanup() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)


def test_a_collect_on_another_host_is_refused_naming_the_holder(
    url: str, tmp_path: Path, cleanup: list[subprocess.Popen[str]]
) -> None:
    holder = _holder("collect", url, tmp_path / "host-a")
    cleanup.append(holder)
    # Another state dir: the local flock alone would let this one run.
    with (
        pytest.raises(LockHeld, match="another collect is running") as err,
        collect_lock(tmp_path / "host-b", url),
    ):
        pass
    assert f"pid {holder.pid}" in err.value.message
    # A rebalance is another lock: it runs beside a collect.
    with JournalStore(tmp_path / "host-b" / "rebalance").lock(ledger_url=url):
        pass
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(10) == 0
    with collect_lock(tmp_path / "host-b", url):  # released on exit
        pass


def test_a_killed_rebalance_lets_go_of_the_database_lock(
    url: str, tmp_path: Path, cleanup: list[subprocess.Popen[str]]
) -> None:
    holder = _holder("rebalance", url, tmp_path / "host-a")
    cleanup.append(holder)
    store = JournalStore(tmp_path / "host-b")
    with pytest.raises(LockHeld, match="another rebalance is running"), store.lock(ledger_url=url):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    deadline = time.monotonic() + 10  # the server notices the broken connection at once, but allow it time
    while True:
        try:
            with store.lock(ledger_url=url):
                break
        except LockHeld:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_with_a_sqlite_ledger_the_lock_is_the_state_dirs_flock(tmp_path: Path) -> None:
    sqlite = f"sqlite:///{tmp_path}/ledger.db"
    with collect_lock(tmp_path / "a", sqlite):
        with pytest.raises(LockHeld, match=r"collect\.lock"), collect_lock(tmp_path / "a", sqlite):
            pass
        with collect_lock(tmp_path / "b", sqlite):  # per host: another state dir is another lock
            pass
