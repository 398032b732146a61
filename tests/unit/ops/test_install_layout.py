"""slurm-conf/install-layout.sh creates the Debian-style layout with the right owners and modes, idempotently,
and never overwrites a config."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import REPO

SCRIPT = REPO / "slurm-conf" / "install-layout.sh"
pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(os.geteuid() != 0, reason="the layout script needs root"),
]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_layout_modes_and_config(tmp_path: Path) -> None:
    done = _run("--prefix", str(tmp_path), "--slurm-user", "root")
    assert done.returncode == 0, done.stderr
    assert _mode(tmp_path / "etc/qauvern-hpc") == 0o755
    assert _mode(tmp_path / "etc/qauvern-hpc/keys") == 0o700
    assert _mode(tmp_path / "var/lib/qauvern-hpc") == 0o755
    assert _mode(tmp_path / "var/lib/qauvern-hpc/jobs") == 0o700
    assert _mode(tmp_path / "var/lib/qauvern-hpc/rebalance") == 0o700
    config = tmp_path / "etc/qauvern-hpc/config.yaml"
    assert _mode(config) == 0o644 and "instances:" in config.read_text()


def test_an_existing_config_is_kept_and_a_rerun_is_harmless(tmp_path: Path) -> None:
    assert _run("--prefix", str(tmp_path), "--slurm-user", "root").returncode == 0
    config = tmp_path / "etc/qauvern-hpc/config.yaml"
    config.write_text("mine\n")
    done = _run("--prefix", str(tmp_path), "--slurm-user", "root")
    assert done.returncode == 0 and "kept" in done.stdout
    assert config.read_text() == "mine\n"


def test_the_slurm_user_owns_what_the_hooks_write(tmp_path: Path) -> None:
    user = "nobody"
    done = _run("--prefix", str(tmp_path), "--slurm-user", user)
    assert done.returncode == 0, done.stderr
    uid = int(subprocess.run(["id", "-u", user], capture_output=True, text=True).stdout)
    assert (tmp_path / "var/lib/qauvern-hpc/jobs").stat().st_uid == uid
    assert (tmp_path / "etc/qauvern-hpc/keys").stat().st_uid == uid
    assert (tmp_path / "var/lib/qauvern-hpc/rebalance").stat().st_uid == 0


def test_bad_options_are_refused(tmp_path: Path) -> None:
    assert _run("--frobnicate").returncode == 2
    done = _run("--prefix", str(tmp_path), "--slurm-user", "no-such-user-qhpc")
    assert done.returncode == 2 and "no such user" in done.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_script_is_shellcheck_clean() -> None:
    assert subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True).returncode == 0
