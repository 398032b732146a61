"""containers/: no Docker engine runs here, so the images must only call scripts the suite and CI run.
These tests hold the Dockerfile and compose file to that, and run the entry point's modes that need no
root."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.paths import REPO

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)

CONTAINERS = REPO / "containers"
ENTRY = CONTAINERS / "entrypoint.sh"


def _instructions() -> list[tuple[str, str]]:
    text = (CONTAINERS / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_the_tested_setup_script_and_entry_point() -> None:
    ins = _instructions()
    runs = [rest for word, rest in ins if word == "RUN"]
    assert "bash .ci/setup.sh" in runs  # the same script CI runs on a fresh machine
    assert (REPO / ".ci/setup.sh").is_file() and (REPO / ".ci/install-debian-deps.sh").is_file()
    entry = dict(ins)["ENTRYPOINT"]
    assert entry == '["bash", "containers/entrypoint.sh"]'
    assert dict(ins)["FROM"] == "debian:12"  # what the scripts are written and tested for


def test_every_path_the_image_files_name_exists() -> None:
    text = (
        (CONTAINERS / "Dockerfile").read_text()
        + (CONTAINERS / "compose.yaml").read_text()
        + ENTRY.read_text()
    )
    for path in set(
        re.findall(
            r"\b((?:\.ci|containers|qauvern_hpc/devtools/sandbox/scripts)/[\w./*-]+\.(?:sh|yaml))", text
        )
    ):
        matches = list(REPO.glob(path))
        assert matches, f"{path} is named in containers/ but does not exist"


def test_compose_services_use_the_image_and_modes_the_entry_point_knows() -> None:
    doc = yaml.safe_load((CONTAINERS / "compose.yaml").read_text())
    modes = set(re.findall(r"^  (\w+)\)", ENTRY.read_text(), re.M))
    assert {"demo", "sandbox", "emulator"} <= modes
    for name, svc in doc["services"].items():
        assert svc.get("image") == "qauvern-hpc", name
        assert svc["command"][0] in modes, name
    assert doc["services"]["emulator"]["build"]["dockerfile"] == "containers/Dockerfile"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_entry_point_is_shellcheck_clean() -> None:
    done = subprocess.run(["shellcheck", str(ENTRY)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_entry_point_runs_any_other_command() -> None:
    done = subprocess.run(
        ["bash", str(ENTRY), "python3", "-c", "import os; print(os.getcwd())"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(REPO)


def test_entry_point_emulator_mode_serves(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        ["bash", str(ENTRY), "emulator", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert re.match(r"^http://[\d.:\[\]a-z]+:\d+$", first), first
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
