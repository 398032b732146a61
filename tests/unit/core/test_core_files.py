"""`qauvern_hpc.core.files`: atomic durable writes and flock locks."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from qauvern_hpc.core import files
from qauvern_hpc.core.files import LockBusy, atomic_write, lock_fd, locked, release, replacing


def test_write_replaces_content_with_mode(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    target.chmod(0o644)
    atomic_write(target, "new", mode=0o600)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["f.txt"]


def test_mode_is_not_masked_by_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "x", b"bytes", mode=0o755)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o755
    assert (tmp_path / "x").read_bytes() == b"bytes"


def test_failure_mid_write_leaves_old_content_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")

    def fail(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_write_fsyncs_file_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[bool] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write(tmp_path / "f", "x")
    assert synced == [False, True]


def test_no_replace_refuses_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    atomic_write(target, "one", replace=False)
    with pytest.raises(FileExistsError):
        atomic_write(target, "two", replace=False)
    assert target.read_text() == "one"
    assert os.listdir(tmp_path) == ["f"]


def test_non_text_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        atomic_write(tmp_path / "f", 123)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_replacing_renames_what_was_written_and_cleans_up_on_error(tmp_path: Path) -> None:
    target = tmp_path / "lib.so"
    with replacing(target, mode=0o755) as tmp:
        assert tmp.parent == tmp_path
        tmp.write_bytes(b"ELF")
    assert target.read_bytes() == b"ELF"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("compiler failed")
    assert target.read_bytes() == b"ELF"
    assert os.listdir(tmp_path) == ["lib.so"]


def test_exclusive_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    with locked(path) as fd:
        os.pwrite(fd, b"pid 1 test\n", 0)
        with pytest.raises(LockBusy) as busy:
            lock_fd(path)
        assert busy.value.holder == "pid 1 test"
        with pytest.raises(LockBusy):
            lock_fd(path, shared=True, create=False)
    release(lock_fd(path))  # free again once released


def test_shared_locks_coexist_and_exclude_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.touch()
    with (
        locked(path, shared=True, create=False),
        locked(path, shared=True, create=False),
        pytest.raises(LockBusy),
    ):
        lock_fd(path)


def test_missing_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        lock_fd(tmp_path / "nope", create=False)


def test_lock_file_mode_and_no_symlink(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    release(lock_fd(path, mode=0o640))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 & ~_umask()
    (tmp_path / "link").symlink_to(path)
    with pytest.raises(OSError):
        lock_fd(tmp_path / "link")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_waiting_lock_times_out_then_gets_a_released_lock(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    fd = lock_fd(path)
    started = time.monotonic()
    with pytest.raises(LockBusy):
        lock_fd(path, wait=0.1)
    assert time.monotonic() - started >= 0.1
    threading.Timer(0.1, release, args=(fd,)).start()
    release(lock_fd(path, wait=5))


def test_blocking_lock_waits_for_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    fd = lock_fd(path)
    threading.Timer(0.1, release, args=(fd,)).start()
    started = time.monotonic()
    release(lock_fd(path, wait=None))
    assert time.monotonic() - started >= 0.05


def test_module_is_standard_library_only() -> None:
    text = Path(files.__file__).read_text()
    imports = [line.split()[1] for line in text.splitlines() if line.startswith(("import ", "from "))]
    assert not [
        m
        for m in imports
        if m.split(".")[0]
        not in {
            "__future__",
            "contextlib",
            "errno",
            "fcntl",
            "os",
            "stat",
            "tempfile",
            "time",
            "collections",
            "pathlib",
        }
    ]


def test_atomic_write_refuses_to_replace_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """A rename over a device, FIFO or directory would replace it with a regular file (a report written to
    /dev/null once turned /dev/null into a file): refused, and the target is left as it was."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        atomic_write(fifo, "x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.listdir(tmp_path) == ["pipe"]
    with pytest.raises(OSError, match="not a regular file"):
        atomic_write(tmp_path, "x")
