"""Atomic, durable file writes and `flock` locks: the one implementation every writer and locker uses.

Standard library only (the job hooks import it).

Writes
  `atomic_write` and `replacing` put the new content in a temporary file in the target's directory (named
  ``.tmp-<name>.<random>.tmp``), give it its final mode (and owner, when asked) before anything is written,
  fsync it, rename it over the target (or link it beside, with ``replace=False``, which never overwrites)
  and fsync the directory. A reader sees the old file or the new one, never a mix; after a crash the rename
  is either on disk or not. On any failure the target is untouched and the temporary file is removed.

Locks
  `lock_fd` opens a lock file (never through a symlink) and takes an exclusive or shared `flock` on it:
  at once (``wait=0``), blocking (``wait=None``) or polling up to ``wait`` seconds. A lock it cannot take
  raises `LockBusy`, carrying what the holder wrote in the file. The lock lives as long as the returned
  descriptor: `release` it, or let the process die (the kernel drops it). `locked` is the context manager.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

StrPath = str | os.PathLike[str]

_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
HOLDER_BYTES = 200


# ----------------------------------------------------------------------------------------------- writes


def fsync_dir(directory: StrPath) -> None:
    """Make a rename (or a new file) in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_beside(target: Path, mode: int, owner: tuple[int, int] | None) -> tuple[int, str]:
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        # a rename would put a regular file in place of a device (/dev/null), FIFO or directory
        raise OSError(errno.EINVAL, "not a regular file: an atomic write would replace it", str(target))
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def _commit(tmp: str, target: Path, replace: bool) -> None:
    if replace:
        os.replace(tmp, target)
    else:
        os.link(tmp, target)  # FileExistsError if the target exists: never overwrites
    fsync_dir(target.parent)


def atomic_write(
    path: StrPath,
    data: str | bytes,
    mode: int = 0o644,
    *,
    owner: tuple[int, int] | None = None,
    replace: bool = True,
    encoding: str = "utf-8",
) -> None:
    """Write `data` to `path` atomically and durably, with `mode` (and ``(uid, gid)`` `owner`).

    ``replace=False`` refuses to overwrite: `FileExistsError` when `path` exists (the temp file is gone).
    """
    if not isinstance(data, str | bytes):
        raise TypeError(f"atomic_write takes str or bytes, not {type(data).__name__}")
    target = Path(path)
    fd, tmp = _temp_beside(target, mode, owner)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode(encoding) if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        _commit(tmp, target, replace)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def replacing(
    path: StrPath, *, mode: int = 0o644, owner: tuple[int, int] | None = None, replace: bool = True
) -> Iterator[Path]:
    """Yield a temporary path beside `path` for someone else to fill (e.g. a compiler's ``-o``); when the
    block ends normally it becomes `path` like an `atomic_write`. On an exception it is removed."""
    target = Path(path)
    fd, tmp = _temp_beside(target, mode, owner)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)  # the filler may have recreated the file
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _commit(tmp, target, replace)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# ----------------------------------------------------------------------------------------------- locks


class LockBusy(Exception):
    """Another process holds the lock. `holder`: what it wrote in the lock file ("" when nothing)."""

    def __init__(self, path: StrPath, holder: str) -> None:
        super().__init__(f"{path} is locked" + (f" by {holder}" if holder else ""))
        self.path = str(path)
        self.holder = holder


def lock_fd(
    path: StrPath,
    *,
    shared: bool = False,
    wait: float | None = 0.0,
    create: bool = True,
    mode: int = 0o600,
) -> int:
    """Open `path` and `flock` it; return the descriptor that holds the lock.

    `wait`: 0 tries once, None blocks until the lock is free, a positive number polls (backing off from 5 ms
    to 200 ms) for that many seconds. `create=False`: a missing file raises `FileNotFoundError`; the file is
    then opened read-only for a shared lock. Raises `LockBusy` when the lock stays held.
    """
    flags = (os.O_RDWR | os.O_CREAT) if create else (os.O_RDONLY if shared else os.O_RDWR)
    fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    deadline = None if wait is None else time.monotonic() + wait
    delay = 0.005
    try:
        while True:
            try:
                fcntl.flock(fd, op if deadline is None else op | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in _BUSY:
                    raise
                if deadline is None or time.monotonic() >= deadline:
                    raise LockBusy(path, _holder(fd)) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
    except BaseException:
        os.close(fd)
        raise


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, HOLDER_BYTES, 0).decode("utf-8", "replace").strip()
    return ""


def release(fd: int) -> None:
    """Drop a lock taken by `lock_fd` and close its descriptor."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(
    path: StrPath,
    *,
    shared: bool = False,
    wait: float | None = 0.0,
    create: bool = True,
    mode: int = 0o600,
) -> Iterator[int]:
    """`lock_fd` as a context manager: the lock is held inside the block. Yields the descriptor."""
    fd = lock_fd(path, shared=shared, wait=wait, create=create, mode=mode)
    try:
        yield fd
    finally:
        release(fd)


__all__ = ["LockBusy", "atomic_write", "fsync_dir", "lock_fd", "locked", "release", "replacing"]
