"""The global --api-key flag (key on stdin, never in argv), the key order of `ibm.factory`, and the pure
parts of the admin commands (`admin_report`, configure's `build`/`render`, create's checks)."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from qauvern_hpc.cli import COMMANDS, main
from qauvern_hpc.core.errors import ConfigError, ExitCode, UsageError
from qauvern_hpc.ibm import factory
from qauvern_hpc.ibm.crn import crn_account
from qauvern_hpc.planner import admin_report as ar

SECRET = "s3cr3t-KEY-value-0123"


# ---------------------------------------------------------------------------------------------- argv


@pytest.mark.parametrize(
    "argv",
    [
        ["--api-key=" + SECRET, "show"],
        ["show", "--api-key=" + SECRET],
        ["--api-key", SECRET, "show"],
        ["show", "--api-key", SECRET],
        ["-c", "x.yaml", "instances", "--api-key", SECRET, "--all"],
    ],
)
def test_key_in_argv_is_refused_without_echoing_it(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "--api-key takes no value" in err
    assert "visible to every user" in err and "--api-key-file" in err
    assert SECRET not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--api-key", "show"],
        ["show", "--api-key"],
        ["show", "--api-key", "--json"],
        ["--api-key-file", "f", "show"],
    ],
)
def test_flag_alone_passes_the_argv_check(argv: list[str]) -> None:
    factory.refuse_api_key_in_argv(argv, COMMANDS)


def test_after_double_dash_nothing_is_checked() -> None:
    factory.refuse_api_key_in_argv(["show", "--", "--api-key=x"], COMMANDS)


# ---------------------------------------------------------------------------------------------- stdin


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_key_read_from_piped_stdin() -> None:
    assert factory.read_api_key_from_stdin(io.StringIO(f"  {SECRET}\n")).get() == SECRET


def test_key_prompted_for_on_a_terminal() -> None:
    prompts: list[str] = []

    def prompt(text: str) -> str:
        prompts.append(text)
        return SECRET

    assert factory.read_api_key_from_stdin(_Tty(""), prompt=prompt).get() == SECRET
    assert prompts == ["IBM Cloud API key: "]


@pytest.mark.parametrize("text", ["", "\n\n", "two words", "key\nother"])
def test_bad_stdin_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        factory.read_api_key_from_stdin(io.StringIO(text))


def test_secret_never_shows_in_repr() -> None:
    s = factory.Secret(SECRET)
    assert SECRET not in repr(s) and SECRET not in str(s) and SECRET not in repr([s])


def test_api_key_and_key_file_together_refused() -> None:
    with pytest.raises(UsageError, match="not both"):
        factory.take_api_key(SimpleNamespace(api_key_file="/x"), io.StringIO(SECRET))


# ---------------------------------------------------------------------------------------------- key order


def _key_file(tmp_path: Path, name: str, value: str, mode: int = 0o600) -> Path:
    p = tmp_path / name
    p.write_text(value + "\n")
    p.chmod(mode)
    return p


def test_key_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_file = _key_file(tmp_path, "cfg.key", "from-config")
    arg_file = _key_file(tmp_path, "arg.key", "from-arg-file")
    monkeypatch.delenv(factory.API_KEY_ENV, raising=False)
    args = SimpleNamespace(api_key_file=None)
    assert factory.resolve_api_key(args, cfg_file) == "from-config"
    monkeypatch.setenv(factory.API_KEY_ENV, "from-env")
    assert factory.resolve_api_key(args, cfg_file) == "from-env"
    args.api_key_file = str(arg_file)
    assert factory.resolve_api_key(args, cfg_file) == "from-arg-file"
    setattr(args, factory.SECRET_ATTR, factory.Secret("from-stdin"))
    assert factory.resolve_api_key(args, cfg_file) == "from-stdin"


def test_no_key_anywhere_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(factory.API_KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match="no IBM Cloud API key"):
        factory.resolve_api_key(SimpleNamespace(api_key_file=None), None)


def test_group_readable_key_file_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(factory.API_KEY_ENV, raising=False)
    loose = _key_file(tmp_path, "loose.key", SECRET, 0o640)
    with pytest.raises(ConfigError, match="chmod 600") as exc:
        factory.resolve_api_key(SimpleNamespace(api_key_file=str(loose)), None)
    assert SECRET not in str(exc.value)


def test_cli_reads_stdin_key_before_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--api-key` puts a Secret on args before `run`; the command sees the key, argv never held it."""
    seen: dict[str, Any] = {}

    def fake_run(args: argparse.Namespace) -> int:
        seen["key"] = factory.resolve_api_key(args, None)
        return 0

    import qauvern_hpc.commands.instances as mod

    monkeypatch.setattr(mod, "run", fake_run)
    monkeypatch.setattr(sys, "stdin", io.StringIO(SECRET + "\n"))
    monkeypatch.delenv(factory.API_KEY_ENV, raising=False)
    assert main(["--api-key", "instances"]) == 0
    assert seen["key"] == SECRET


def test_top_level_help_documents_the_flag() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "qauvern_hpc", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "--api-key" in proc.stdout and "stdin" in proc.stdout


# ---------------------------------------------------------------------------------------------- endpoints


def test_endpoints_choice() -> None:
    assert factory.endpoints(emulator="http://127.0.0.1:9").resource_controller == "http://127.0.0.1:9"
    assert "test.cloud.ibm.com" in factory.endpoints(staging=True).iam
    assert factory.endpoints().iam == "https://iam.cloud.ibm.com"
    assert factory.endpoints(quantum="https://proxy.example/api").quantum == "https://proxy.example/api"


# ---------------------------------------------------------------------------------------------- admin_report


def test_fairness_and_standing() -> None:
    assert ar.fairness(50, 100) == 0.5
    assert ar.fairness(0, 0) == 0.0
    assert ar.fairness(5, 0) is None
    assert ar.format_fairness(None) == "inf"
    assert ar.standing(101, 100) == ar.OVER
    assert ar.standing(100, 100) == ar.ON_TARGET
    assert ar.standing(50, 100) == ar.ON_TARGET
    assert ar.standing(49, 100) == ar.UNDER
    assert ar.standing(1, 0) == ar.OVER


def test_trend() -> None:
    today = date(2026, 3, 15)
    daily = {today - timedelta(days=d): 100 for d in range(1, 8)}  # last 7 days: 700
    daily.update({today - timedelta(days=d): 50 for d in range(8, 15)})  # the 7 before: 350
    daily[today] = 10**6  # today is excluded
    t = ar.trend(daily, today)
    assert (t.recent_seconds, t.previous_seconds, t.label) == (700, 350, "up")
    assert t.change == pytest.approx(1.0)
    assert t.text == "up +100%"
    assert ar.trend({}, today).label == "idle"
    assert ar.trend({today - timedelta(days=1): 5}, today).label == "new"
    flat = {today - timedelta(days=d): 100 for d in range(1, 15)}
    assert ar.trend(flat, today).label == "flat"
    down = {today - timedelta(days=d): (10 if d <= 7 else 100) for d in range(1, 15)}
    assert ar.trend(down, today).label == "down"


def test_pace() -> None:
    start, end = date(2026, 1, 1), date(2026, 1, 11)  # 10 days
    today = date(2026, 1, 6)  # half way: expected 500 of 1000
    assert ar.pace(1000, 500, start, end, today).status == "on pace"
    assert ar.pace(1000, 700, start, end, today).status == "ahead"
    assert ar.pace(1000, 300, start, end, today).status == "behind"
    assert ar.pace(1000, 1000, start, end, today).status == "reached"
    assert ar.pace(1000, 0, start, end, date(2025, 12, 1)).status == "not started"
    assert ar.pace(1000, 10, start, end, date(2026, 2, 1)).status == "ended"
    assert ar.pace(1000, 500, start, end, today).expected_seconds == 500


def test_account_summary_matches_planner_pool() -> None:
    """available = unallocated + sum(allocation - floor) - reserve, floors as the planner's."""
    from qauvern_hpc.planner.model import AccountSnapshot, InstanceSettings, InstanceSnapshot, PlanOptions
    from qauvern_hpc.planner.optimizer import plan_allocations

    snaps = (InstanceSnapshot("a", "a", 5000, None, 1000), InstanceSnapshot("b", "b", 3000, None, 10))
    account = AccountSnapshot(20_000, 12_000, 1010, snaps)
    opts = PlanOptions(minimum_allocation_seconds=60, allocation_reserve_percent=10.0)
    plan = plan_allocations(
        account, [InstanceSettings("a"), InstanceSettings("b")], today=date(2026, 1, 1), options=opts
    )
    s = ar.account_summary(
        account_id="x",
        plan="premium",
        budget=20_000,
        unallocated=12_000,
        consumed=1010,
        limit=None,
        configured=[(5000, 1000), (3000, 10)],
        minimum=60,
        reserve_percent=10.0,
    )
    assert s.available_seconds == plan.distributable_seconds
    assert s.reserve_seconds == plan.reserve_seconds == 2000
    assert s.unmanaged_allocation_seconds == 0
    assert not s.over_allocation_budget


def test_config_name_and_crn_account() -> None:
    taken: set[str] = set()
    assert ar.config_name("Quantum Chemistry (2026)!", taken) == "Quantum-Chemistry-2026"
    assert ar.config_name("Quantum Chemistry (2026)!", taken) == "Quantum-Chemistry-2026-2"
    assert ar.config_name("***", taken) == "instance"
    assert crn_account("crn:v1:bluemix:public:quantum-computing:us-east:a/abc:guid::") == "abc"
    assert crn_account("nonsense") is None


def test_sparkline() -> None:
    assert ar.sparkline([0, 0]) == "▁▁"
    assert ar.sparkline([0, 4, 8]) == "▁▅█"


# ---------------------------------------------------------------------------------------------- configure


def _inst(name: str, crn: str, alloc: int = 100, limit: int | None = None) -> Any:
    from qauvern_hpc.ibm.models import Instance

    return Instance.model_validate(
        {
            "id": crn,
            "name": name,
            "extensions": {"usage_allocation_seconds": alloc, "instance_limit_seconds": limit},
        }
    )


CRN = "crn:v1:bluemix:public:quantum-computing:{r}:a/{a}:{g}::"


def test_configure_build_filters_and_validates(tmp_path: Path) -> None:
    from qauvern_hpc.commands.configure import build, render
    from qauvern_hpc.config import parse_config

    listed = [
        _inst("beta team", CRN.format(r="eu-de", a="acc", g="b"), limit=7200),
        _inst("alpha", CRN.format(r="us-east", a="acc", g="a")),
        _inst("old", CRN.format(r="us-east", a="acc", g="o"), alloc=0),
        _inst("foreign", CRN.format(r="us-east", a="other", g="f")),
    ]
    with pytest.raises(UsageError, match="2 accounts"):
        build(
            listed,
            plan="premium",
            account_id=None,
            region=None,
            resources=[],
            emulator=None,
            staging=False,
            key_file="/k",
        )
    doc = build(
        listed,
        plan="premium",
        account_id="acc",
        region=None,
        resources=["ibm_torino"],
        emulator=None,
        staging=True,
        key_file="/etc/k.key",
    )
    assert [i["name"] for i in doc["instances"]] == ["alpha", "beta-team"]
    assert {s["name"]: s["reason"] for s in doc["skipped"]} == {
        "old": "archived (allocation 0)",
        "foreign": "account other, not acc",
    }
    text = render(doc)
    cfg = parse_config(text, tmp_path / "c.yaml", check_key_files=False).config
    assert [(i.name, i.limit_seconds) for i in cfg.instances] == [("alpha", None), ("beta-team", 7200)]
    assert cfg.ibm.staging and cfg.ibm.account_id == "acc" and str(cfg.ibm.api_key_file) == "/etc/k.key"
    assert [r.name for r in cfg.rules] == ["alpha", "beta-team"] and cfg.resources[0].name == "ibm_torino"
    assert SECRET not in text and "apikey" not in text.lower().replace("api_key_file", "")
    only_eu = build(
        listed,
        plan="premium",
        account_id="acc",
        region="eu-de",
        resources=[],
        emulator=None,
        staging=False,
        key_file="/k",
    )
    assert [i["name"] for i in only_eu["instances"]] == ["beta-team"]
    cfg2 = parse_config(render(only_eu), tmp_path / "c.yaml", check_key_files=False).config
    assert cfg2.rules == [] and cfg2.resources == []


def test_write_new_never_overwrites_without_force(tmp_path: Path) -> None:
    from qauvern_hpc.commands.configure import write_new

    target = tmp_path / "sub" / "config.yaml"
    write_new(target, "a: 1\n", force=False)
    assert target.read_text() == "a: 1\n"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    with pytest.raises(UsageError, match="exists"):
        write_new(target, "a: 2\n", force=False)
    assert target.read_text() == "a: 1\n"
    write_new(target, "a: 3\n", force=True)
    assert target.read_text() == "a: 3\n"
    assert sorted(os.listdir(target.parent)) == ["config.yaml"]  # no temp file left


# ---------------------------------------------------------------------------------------------- create


def test_create_checks() -> None:
    from qauvern_hpc.commands.create import check_request

    assert check_request("n", 100, 100, []) == []
    assert "more than the plan's unallocated" in check_request("n", 101, 100, [])[0]
    assert "already has a live instance" in check_request("n", 1, 100, ["n"])[0]
    assert "more than 0" in check_request("n", 0, 100, [])[0]


def test_commands_that_do_not_read_the_key_refuse_the_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--api-key` is never silently ignored: a command that resolves its key elsewhere refuses it."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(SECRET))
    assert main(["--api-key", "usage"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "does not take --api-key" in err and SECRET not in err


@pytest.mark.parametrize(
    "name", ["configure", "show", "instances", "analyze", "create", "collect", "rebalance", "metrics"]
)
def test_admin_commands_read_the_key(name: str) -> None:
    import importlib

    assert importlib.import_module(COMMANDS[name][0]).READS_API_KEY is True
