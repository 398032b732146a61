"""`qauvern-hpc install-hooks` and `hookd` argument checks."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from qauvern_hpc.cli import main
from qauvern_hpc.hooks.wrapper import hookc_path
from tests.support.site import write_site

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)


def test_install_hooks_writes_both_wrappers_with_the_site_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_site(tmp_path / "site", "http://127.0.0.1:9")
    config = tmp_path / "site" / "config.yaml"
    out = tmp_path / "sbin"
    out.mkdir()
    rc = main(
        ["--config", str(config), "--json", "install-hooks", "--dir", str(out), "--policy", str(policy)]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == [str(out / "qauvern-hpc-prolog"), str(out / "qauvern-hpc-epilog")]
    prolog = (out / "qauvern-hpc-prolog").read_text()
    assert f"QAUVERN_HPC_POLICY={policy}" in prolog
    assert f"QAUVERN_HPC_STATE_DIR={tmp_path / 'site' / 'state'}" in prolog
    assert f"QAUVERN_HPC_HOOKD_SOCKET={tmp_path / 'site' / 'state' / 'hookd.sock'}" in prolog
    assert f"-I -S {hookc_path()} prolog" in prolog
    assert os.stat(out / "qauvern-hpc-epilog").st_mode & 0o777 == 0o755
    # A job without --qpu: the wrapper exits 0 at once.
    assert (
        subprocess.run([str(out / "qauvern-hpc-prolog")], env={"SLURM_JOB_ID": "1"}, timeout=10).returncode
        == 0
    )


def test_install_hooks_print_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_site(tmp_path / "site", "http://127.0.0.1:9")
    config = tmp_path / "site" / "config.yaml"
    args = [
        "--config",
        str(config),
        "install-hooks",
        "--dir",
        str(tmp_path),
        "--print",
        "epilog",
        "--hookd",
        "off",
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("#!/bin/sh\n") and "QAUVERN_HPC_HOOKD=off" in text
    assert not (tmp_path / "qauvern-hpc-epilog").exists()


def test_install_hooks_into_a_missing_dir_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_site(tmp_path / "site", "http://127.0.0.1:9")
    config = tmp_path / "site" / "config.yaml"
    assert main(["--config", str(config), "install-hooks", "--dir", str(tmp_path / "nope")]) == 1
    assert "cannot write the hook wrappers" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["hookd", "--socket", "/tmp/x.sock", "--idle-timeout", "-1"], "--idle-timeout"),
        (["hookd", "--socket", "/tmp/" + "s" * 120], "longer than a Unix socket"),
    ],
)
def test_hookd_refuses_bad_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
