"""Every command's --help teaches: a description, examples, and the exit codes it can return."""

from __future__ import annotations

import importlib
import re

import pytest

from qauvern_hpc.cli import COMMANDS, EPILOG, main
from qauvern_hpc.core.errors import ExitCode

CODES = {name: value for name, value in vars(ExitCode).items() if name.isupper() and isinstance(value, int)}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_help_has_description_examples_and_exit_codes(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    module = importlib.import_module(COMMANDS[name][0])
    assert module.HELP.strip() and len(getattr(module, "DESCRIPTION", "")) > 80, name
    assert "examples:" in text or "example:" in text, name
    assert re.search(rf"^\s*qauvern-hpc .*{re.escape(name)}", text, re.M) or name in text, name
    assert "exit codes:" in text, f"{name}: --help does not list its exit codes"


def test_top_level_help_lists_every_command_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        rc = main(["--help"])
    except SystemExit as done:
        rc = int(done.code or 0)
    assert rc == 0
    text = capsys.readouterr().out
    for name in COMMANDS:
        assert name in text
    for name, code in CODES.items():
        assert f"{code} " in EPILOG, f"exit code {code} ({name}) is not documented"


def test_documented_exit_codes_match_the_enum() -> None:
    documented = {int(m) for m in re.findall(r"(\d) [a-z]", EPILOG.split("Exit codes:")[1].split("\n\n")[0])}
    assert documented == set(CODES.values())
