"""The rebalancer's journal and lock, in `rebalance.state_dir` (default `slurm.state_dir/rebalance`).

    lock                    flock()ed by the running rebalance (the holder's pid and run id written in it)
    runs/RUN_ID.json        one journal per run that applied (or tried to apply) anything

A journal lists every step of a run in apply order (IBM writes: decreases, limit-only changes, increases;
then sacctmgr: ungates, Fairshare, gates) with its target, its value before and after, why, and its state:

    pending -> started -> done          (or failed; or skipped when found already in place)

It is rewritten atomically (temporary file, fsync, rename, fsync of the directory) before a step starts and
after it ends, so after a crash at any point a step is either not started, started (it may or may not have
reached IBM or Slurm), or done. `apply.resume` finishes such a run by comparing each unfinished step's
target with its live value: equal to `after` -> done without writing again; equal to `before` -> applied;
anything else -> someone else changed it: the run is abandoned and a fresh plan decides.

Run status: `applying` -> `completed` | `failed` | `abandoned`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qauvern_hpc.core.errors import LockHeld, UsageError
from qauvern_hpc.core.files import LockBusy, atomic_write, lock_fd, release

PENDING = "pending"
STARTED = "started"
DONE = "done"
SKIPPED = "skipped"
FAILED = "failed"

APPLYING = "applying"
COMPLETED = "completed"
RUN_FAILED = "failed"
ABANDONED = "abandoned"

JOURNAL_FORMAT = 1


@dataclass
class Step:
    """One write. `target`: {"crn", "name"} for IBM, {"cluster", "account", "tres"?} for Slurm.
    `before`/`after`: {"allocation_seconds", "limit_seconds"} for IBM, an int or None for Slurm."""

    id: str
    kind: str  # "ibm" | "fairshare" | "gate"
    target: dict[str, Any]
    before: Any
    after: Any
    why: str
    state: str = PENDING
    at: float | None = None
    note: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        return cls(
            id=str(d["id"]),
            kind=str(d["kind"]),
            target=dict(d["target"]),
            before=d.get("before"),
            after=d.get("after"),
            why=str(d.get("why", "")),
            state=str(d.get("state", PENDING)),
            at=d.get("at"),
            note=d.get("note"),
        )


@dataclass
class Journal:
    run_id: str
    kind: str  # "rebalance" | "rollback"
    actor: str
    created_at: float
    steps: list[Step]
    status: str = APPLYING
    rollback_of: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    finished_at: float | None = None
    format: int = JOURNAL_FORMAT

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["steps"] = [asdict(s) for s in self.steps]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Journal:
        return cls(
            run_id=str(d["run_id"]),
            kind=str(d.get("kind", "rebalance")),
            actor=str(d.get("actor", "")),
            created_at=float(d.get("created_at", 0.0)),
            steps=[Step.from_dict(s) for s in d.get("steps", [])],
            status=str(d.get("status", APPLYING)),
            rollback_of=d.get("rollback_of"),
            summary=dict(d.get("summary") or {}),
            error=d.get("error"),
            finished_at=d.get("finished_at"),
            format=int(d.get("format", JOURNAL_FORMAT)),
        )

    @property
    def finished(self) -> bool:
        return self.status in (COMPLETED, RUN_FAILED, ABANDONED)


def new_run_id(now: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class JournalStore:
    """Journals of one state directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.runs = self.dir / "runs"

    def ensure(self) -> None:
        self.runs.mkdir(parents=True, exist_ok=True, mode=0o750)

    def path(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise UsageError(f"not a run id: {run_id!r}")
        return self.runs / f"{run_id}.json"

    def save(self, journal: Journal) -> None:
        self.ensure()
        target = self.path(journal.run_id)
        text = json.dumps(journal.to_dict(), indent=1, sort_keys=True) + "\n"
        atomic_write(target, text, mode=0o600)

    def load(self, run_id: str) -> Journal:
        path = self.path(run_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            known = ", ".join(j.run_id for j in self.all()[-5:]) or "none"
            raise UsageError(f"no rebalance run {run_id!r} in {self.runs} (latest: {known})") from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"journal {path} is unreadable: {exc}") from None
        return Journal.from_dict(data)

    def all(self) -> list[Journal]:
        """Every journal, oldest first (run ids sort by time)."""
        if not self.runs.is_dir():
            return []
        out: list[Journal] = []
        for p in sorted(self.runs.glob("*.json")):
            try:
                out.append(Journal.from_dict(json.loads(p.read_text(encoding="utf-8"))))
            except (OSError, ValueError, KeyError):
                continue
        return out

    def unfinished(self) -> list[Journal]:
        return [j for j in self.all() if not j.finished]

    def lock_holder(self) -> str | None:
        """Who holds the lock now ("pid 123 rebalance"), or None when nobody does. Changes nothing: the lock
        file is only opened for reading and probed with a shared lock that is released at once."""
        try:
            release(lock_fd(self.dir / "lock", shared=True, create=False))
        except FileNotFoundError:
            return None
        except LockBusy as busy:
            return busy.holder or "holder unknown"
        return None

    @contextlib.contextmanager
    def lock(self, what: str = "rebalance", *, ledger_url: str | None = None) -> Iterator[None]:
        """Exclusive, non-blocking: another holder -> LockHeld (exit 5). Released when the process dies.
        With a PostgreSQL `ledger_url`, also the database's advisory lock, so rebalancers on several hosts
        sharing the ledger never run together (`accounting.ledger.runlock`)."""
        from qauvern_hpc.accounting.ledger.runlock import run_lock

        self.ensure()
        path = self.dir / "lock"
        held = contextlib.ExitStack()
        try:
            fd = held.enter_context(run_lock(ledger_url, "rebalance", path, mode=0o640))
        except LockBusy as busy:
            raise LockHeld(
                f"another rebalance is running ({busy.holder or 'holder unknown'}; lock {busy.path})",
                hint="wait for it to finish; a crashed run releases the lock by itself",
            ) from None
        with held:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} {what}\n".encode(), 0)
            yield


__all__ = [
    "ABANDONED",
    "APPLYING",
    "COMPLETED",
    "DONE",
    "FAILED",
    "PENDING",
    "RUN_FAILED",
    "SKIPPED",
    "STARTED",
    "Journal",
    "JournalStore",
    "Step",
    "new_run_id",
]
