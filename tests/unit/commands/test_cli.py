import subprocess
import sys

import pytest

from qauvern_hpc import cli

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out
    assert "Exit codes" in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2


def test_unknown_command_names_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err
    assert "emulator" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from qauvern_hpc import __version__

    assert cli.main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_every_registered_command_module_has_help() -> None:
    """`qauvern-hpc CMD --help` works for every command and exits 0."""
    for name in cli.COMMANDS:
        proc = subprocess.run(
            [sys.executable, "-m", "qauvern_hpc", name, "--help"], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, (name, proc.stderr)
        assert f"qauvern-hpc {name}" in proc.stdout


def test_top_level_import_is_light() -> None:
    """The dispatcher must not pull heavy modules before a command is chosen."""
    code = (
        "import sys, qauvern_hpc.cli; "
        "print(','.join(m for m in ('httpx','pydantic','yaml','rich') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
