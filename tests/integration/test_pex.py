"""The single-file install: containers/build-pex.sh builds a PEX that runs the CLI and carries the SPANK
plugin's source, away from the repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_pex_builds_and_runs_outside_the_repository(tmp_path: Path) -> None:
    pytest.importorskip("pex", reason="pex is a test extra (pip install -e .[test])")
    out = tmp_path / "qauvern-hpc.pex"
    done = subprocess.run(
        ["bash", str(ROOT / "containers/build-pex.sh"), str(out)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.is_file() and out.stat().st_mode & 0o111
    run = subprocess.run([str(out), "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0 and "install-hooks" in run.stdout, run.stderr
    src = subprocess.run(
        [str(out), "spank", "sources"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert src.returncode == 0, src.stderr
    assert (Path(src.stdout.strip()) / "qpu.c").is_file()
