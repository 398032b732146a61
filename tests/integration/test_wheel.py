"""`pip install qauvern-hpc` from a wheel: the SPANK plugin's C source, the sandbox scripts, job_submit.lua
and the hook client travel in it, and `qauvern-hpc spank build` compiles the plugin from the installed
copy."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        pytest.fail(done.stderr[-2000:])
    found = list(out.glob("qauvern_hpc-*.whl"))
    assert found, done.stderr[-2000:]
    return found[0]


def test_wheel_carries_what_an_install_needs(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (
        "qauvern_hpc/spank_src/qpu.c",
        "qauvern_hpc/spank_src/Makefile",
        "qauvern_hpc/spank_src/qpu.map",
        "qauvern_hpc/slurm_conf/job_submit.lua",
        "qauvern_hpc/slurm_conf/slurm.conf.snippet",
        "qauvern_hpc/devtools/sandbox/scripts/up.sh",
        "qauvern_hpc/hooks/hookc.py",
        "qauvern_hpc/data/config.example.yaml",
        "qauvern_hpc/py.typed",
    ):
        assert path in names, path


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None, reason="no C compiler")
def test_spank_build_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    if not Path("/usr/include/slurm/spank.h").is_file():
        pytest.skip("Slurm headers (libslurm-dev) not installed")
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120
    )
    py = venv / "bin" / "python"
    done = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    so = tmp_path / "qpu.so"
    # cwd is not the repository: the installed copy must be used.
    done = subprocess.run(
        [str(venv / "bin" / "qauvern-hpc"), "spank", "build", "--output", str(so)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert so.is_file() and so.stat().st_size > 0
    where = subprocess.run(
        [str(py), "-c", "import qauvern_hpc, sys; sys.stdout.write(qauvern_hpc.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    ).stdout
    assert str(venv) in where, where
