"""The shell scripts of the install paths are shellcheck-clean: the container entry point and PEX builder
(containers/), and the Slurm compatibility recorder (tests/compat/), which CI never runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import REPO

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)

SCRIPTS = sorted([*REPO.glob("containers/*.sh"), *REPO.glob("tests/compat/*.sh")])


def test_the_scripts_are_there() -> None:
    names = {p.relative_to(REPO).as_posix() for p in SCRIPTS}
    assert {"containers/entrypoint.sh", "tests/compat/run.sh", "tests/compat/record.sh"} <= names


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_shellcheck_clean(script: Path) -> None:
    done = subprocess.run(
        ["shellcheck", "-x", str(script)], capture_output=True, text=True, cwd=script.parent
    )
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_strict_mode_and_syntax(script: Path) -> None:
    assert "set -euo pipefail" in script.read_text()
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_compat_usage_errors_before_touching_anything() -> None:
    """run.sh without a release, or with a malformed one, stops with usage (exit 2) and does nothing."""
    for argv in ([], ["../etc"], ["Trixie"]):
        done = subprocess.run(
            ["bash", str(REPO / "tests/compat/run.sh"), *argv], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 2, (argv, done.stderr)
        assert "usage:" in done.stderr
