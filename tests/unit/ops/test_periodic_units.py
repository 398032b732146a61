"""The periodic-run files in slurm-conf/: systemd units and timers, the cron.d file and the scrontab.

Units are checked by `systemd-analyze verify` when it exists (on a copy whose ExecStart points at an
executable that exists here) and structurally always. Every cron/scrontab/ExecStart line must name a real
`qauvern-hpc` command whose parser accepts the line's options; a command another part of the project has not
registered yet is skipped with its name (the test passes once it is).
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from qauvern_hpc import cli
from tests.support.paths import REPO

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)

CONF = REPO / "slurm-conf"
SERVICES = {
    "qauvern-hpc-collect.service": ["collect"],
    "qauvern-hpc-rebalance.service": ["rebalance", "--yes"],
}
TIMERS = {
    "qauvern-hpc-collect.timer": "qauvern-hpc-collect.service",
    "qauvern-hpc-rebalance.timer": "qauvern-hpc-rebalance.service",
}
BINARY = "/usr/local/bin/qauvern-hpc"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd unit syntax: [Section], Key=Value (repeatable), # or ; comments, no continuation lines used."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"{path.name}:{n}: continuation lines are not used here"
        if m := re.fullmatch(r"\[([A-Za-z]+)\]", line):
            assert m.group(1) not in sections, f"{path.name}:{n}: section [{m.group(1)}] twice"
            current = sections.setdefault(m.group(1), {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}:{n}: not Key=Value inside a section: {raw!r}"
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key.strip()), f"{path.name}:{n}: bad key {key!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key, [])
    assert len(values) == 1, f"{key}: expected exactly one value, got {values}"
    return values[0]


def check_command(argv: list[str], where: str) -> None:
    """argv = [qauvern-hpc, COMMAND, options...]: COMMAND registered and its parser accepts the options."""
    assert Path(argv[0]).name == "qauvern-hpc", f"{where}: runs {argv[0]!r}, not qauvern-hpc"
    name, rest = argv[1], argv[2:]
    if name not in cli.COMMANDS:
        pytest.skip(f"{where}: `qauvern-hpc {name}` is not registered in cli.COMMANDS yet (built elsewhere)")
    try:
        module = importlib.import_module(cli.COMMANDS[name][0])
    except ImportError as exc:  # pragma: no cover - a command still being written
        pytest.skip(f"{where}: `qauvern-hpc {name}` cannot be imported yet: {exc}")
    parser = cli.build_command_parser(name, module)
    try:
        parser.parse_args(rest)
    except SystemExit as exc:
        pytest.fail(f"{where}: `qauvern-hpc {name}` rejects its options {rest}: exit {exc.code}")


# ---------------------------------------------------------------------------------------------- systemd


@pytest.mark.parametrize("unit", sorted(SERVICES))
def test_service_is_a_root_oneshot_running_the_command(unit: str) -> None:
    u = parse_unit(CONF / unit)
    assert set(u) == {"Unit", "Service"}, "a timer-started service has no [Install]"
    assert one(u["Unit"], "Description")
    svc = u["Service"]
    assert one(svc, "Type") == "oneshot"
    assert one(svc, "User") == "root"
    assert one(svc, "UMask") == "0077"
    argv = shlex.split(one(svc, "ExecStart"))
    assert argv[0] == BINARY
    assert argv[1:] == SERVICES[unit]
    assert not any("key" in a.lower() and "file" not in a.lower() for a in argv), "no key in a unit"


def test_rebalance_service_treats_lock_held_as_success() -> None:
    svc = parse_unit(CONF / "qauvern-hpc-rebalance.service")["Service"]
    from qauvern_hpc.core.errors import ExitCode

    assert str(ExitCode.LOCKED) in one(svc, "SuccessExitStatus").split()


@pytest.mark.parametrize(("timer", "service"), sorted(TIMERS.items()))
def test_timer_triggers_its_service(timer: str, service: str) -> None:
    u = parse_unit(CONF / timer)
    assert one(u["Timer"], "Unit") == service
    assert (CONF / service).is_file()
    assert one(u["Timer"], "Persistent") == "true"
    assert one(u["Install"], "WantedBy") == "timers.target"
    calendar = one(u["Timer"], "OnCalendar")
    tool = shutil.which("systemd-analyze")
    if tool:
        proc = subprocess.run([tool, "calendar", calendar], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("unit", sorted(SERVICES))
def test_service_command_exists(unit: str) -> None:
    argv = shlex.split(one(parse_unit(CONF / unit)["Service"], "ExecStart"))
    check_command(argv, unit)


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (structural checks above still ran)")
    exe = shutil.which("qauvern-hpc") or shutil.which("true")
    assert exe
    names = sorted([*SERVICES, *TIMERS])
    for name in names:
        (tmp_path / name).write_text((CONF / name).read_text().replace(BINARY, exe))
    proc = subprocess.run(
        [tool, "verify", *(f"./{n}" for n in names)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if any(n in line for n in names)]
    assert proc.returncode == 0 and not ours, proc.stdout + proc.stderr


def test_verify_catches_a_typo(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key is reported."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "qauvern-hpc-collect.service"
    unit.write_text(
        "[Unit]\nDescription=x\n[Service]\nType=oneshot\nExecStrat=/bin/true\nExecStart=/bin/true\n"
    )
    proc = subprocess.run([tool, "verify", f"./{unit.name}"], cwd=tmp_path, capture_output=True, text=True)
    assert "ExecStrat" in proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------- cron

_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")
_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def cron_entries(path: Path, *, with_user: bool) -> list[tuple[int, list[str], list[str]]]:
    """(line number, five time fields, command argv) of every entry; #SCRON and comments skipped."""
    out = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        fields, rest = parts[:5], parts[5:]
        if with_user:
            assert rest and rest[0] == "root", f"{path.name}:{n}: cron.d lines name the user (root)"
            rest = rest[1:]
        cmd = shlex.split(" ".join(rest))
        if ">" in " ".join(cmd):
            cmd = cmd[: next(i for i, a in enumerate(cmd) if a.startswith(">"))]
        out.append((n, fields, cmd))
    return out


def check_fields(fields: list[str], where: str) -> None:
    assert len(fields) == 5, f"{where}: five time fields"
    for text, (lo, hi) in zip(fields, _RANGES, strict=True):
        assert _FIELD.match(text), f"{where}: bad cron field {text!r}"
        for num in re.findall(r"\d+", text.split("/")[0]):
            assert lo <= int(num) <= hi, f"{where}: {num} out of range {lo}-{hi}"


def test_cron_fields_check_can_fail() -> None:
    with pytest.raises(AssertionError):
        check_fields(["61", "*", "*", "*", "*"], "x")
    with pytest.raises(AssertionError):
        check_fields(["*/15", "*", "*", "*"], "x")


@pytest.mark.parametrize(
    ("path", "with_user", "expected"),
    [
        ("cron.d-qauvern-hpc", True, {"release-pending", "collect", "rebalance"}),
        ("scrontab-qauvern-hpc", False, {"collect", "rebalance"}),
    ],
)
def test_cron_files_name_real_commands(path: str, with_user: bool, expected: set[str]) -> None:
    entries = cron_entries(CONF / path, with_user=with_user)
    assert {cmd[1] for _, _, cmd in entries} == expected
    for n, fields, cmd in entries:
        check_fields(fields, f"{path}:{n}")
        assert cmd[0] == BINARY, f"{path}:{n}: absolute path to qauvern-hpc (cron's PATH is short)"
        if cmd[1] == "rebalance":
            assert "--yes" in cmd, f"{path}:{n}: an unattended rebalance needs --yes"
    missing = [cmd[1] for _, _, cmd in entries if cmd[1] not in cli.COMMANDS]
    if missing:
        pytest.skip(f"{path}: not registered in cli.COMMANDS yet: {', '.join(sorted(set(missing)))}")
    for n, _fields, cmd in entries:
        check_command(cmd, f"{path}:{n}")


def test_scrontab_entries_carry_job_options() -> None:
    lines = (CONF / "scrontab-qauvern-hpc").read_text().splitlines()
    entries = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]
    for i in entries:
        assert lines[i - 1].startswith("#SCRON "), f"line {i + 1}: an #SCRON line gives its job options"
        assert "--time=" in lines[i - 1] and "--job-name=" in lines[i - 1]


def test_readme_lists_every_file() -> None:
    readme = (CONF / "README.md").read_text()
    for name in ["cron.d-qauvern-hpc", "scrontab-qauvern-hpc", "qauvern-hpc-collect.service"]:
        assert f"`{name}`" in readme or name in readme
    assert "qauvern-hpc-rebalance.service" in readme and ".timer" in readme
