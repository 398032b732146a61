"""qauvern_hpc.policy.compiled and `qauvern-hpc render-policy`: the compiled, secret-free policy files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from qauvern_hpc import cli
from qauvern_hpc.core.errors import ConfigError
from qauvern_hpc.core.files import atomic_write
from qauvern_hpc.policy.compiled import (
    POLICY_FORMAT,
    Policy,
    default_policy_dir,
    default_policy_path,
    load_policy,
    lua_string,
    render_json,
    render_lua,
    to_lua,
)
from qauvern_hpc.policy.mapping import JobIdentity, decide
from tests.support.mapping_cases import MAIN_CONFIG, policy

TOP_KEYS = [
    "format",
    "generated_at",
    "source",
    "source_sha256",
    "state_dir",
    "ibm",
    "slurm",
    "instances",
    "resources",
    "rules",
    "default",
]


def test_policy_json_shape_is_the_documented_contract() -> None:
    d = policy("main").to_dict()
    assert list(d) == TOP_KEYS
    assert d["format"] == POLICY_FORMAT == 1
    assert list(d["ibm"]) == ["account_id", "plan_id", "staging", "endpoints"]
    assert list(d["ibm"]["endpoints"]) == ["emulator", "iam", "resource_controller", "quantum"]
    assert list(d["slurm"]) == ["cluster", "sacct", "squeue", "sacctmgr", "admin_comment"]
    assert list(d["instances"]) == ["phys", "chem", "teach"]
    assert list(d["instances"]["phys"]) == ["name", "crn", "api_key_file", "plan", "session_mode"]
    assert list(d["resources"]) == ["ibm_torino", "ibm_fez", "ibm_marrakesh", "test.sim-1"]
    assert list(d["resources"]["test.sim-1"]) == [
        "name",
        "type",
        "backend",
        "session_mode",
        "max_ttl_seconds",
        "fail_mode",
        "expose_api_key",
        "env",
        "on_job_end",
    ]
    assert d["resources"]["test.sim-1"]["backend"] == "fake_sim"
    rule = d["rules"][1]
    assert list(rule) == ["name", "match", "deny", "message", "instance", "resources"]
    assert rule["match"] == {
        "users": ["!guest", "!tmp?"],
        "accounts": ["physics", "physics-*"],
        "partitions": None,
        "qos": None,
        "clusters": None,
    }
    assert (rule["deny"], rule["message"], rule["instance"], rule["resources"]) == (
        False,
        None,
        "phys",
        ["ibm_torino", "ibm_fez"],
    )
    assert (
        d["rules"][0]["deny"] is True
        and d["rules"][0]["instance"] is None
        and d["rules"][0]["resources"] == []
    )
    assert d["default"]["name"] == "default" and d["default"]["message"] == "no rule grants QPU access"


def test_json_round_trip_gives_the_same_decisions() -> None:
    original = policy("main")
    again = Policy.from_dict(json.loads(render_json(original)))
    assert again.to_dict() == original.to_dict()
    who = JobIdentity("alice", "physics", "cpu", "normal")
    assert decide(again, who, ["ibm_fez"]) == decide(original, who, ["ibm_fez"])


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.update(format=2), "format: expected 1, got 2"),
        (lambda d: d["rules"][1].update(instance="nope"), "rules[1].instance: unknown instance 'nope'"),
        (lambda d: d["rules"][1].update(resources=["zz"]), "rules[1].resources: unknown resource 'zz'"),
        (lambda d: d["rules"][1]["match"].update(users=["a b"]), "rules[1].match.users: character ' '"),
        (lambda d: d["rules"][0].update(message=None), "rules[0].message: a deny rule needs a message"),
        (
            lambda d: d["resources"]["ibm_fez"].update(max_ttl_seconds="8h"),
            "max_ttl_seconds: expected an integer",
        ),
        (lambda d: d.pop("default"), "default: expected an object"),
        (lambda d: d.update(rules={}), "rules: expected a list"),
    ],
)
def test_from_dict_rejects_bad_shapes(mutate: object, fragment: str) -> None:
    d = policy("main").to_dict()
    mutate(d)  # type: ignore[operator]
    with pytest.raises(ValueError) as info:
        Policy.from_dict(d)
    assert fragment in str(info.value)


def test_load_policy_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="policy file not found"):
        load_policy(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read the policy"):
        load_policy(bad)
    bad.write_text('{"format": 7}')
    with pytest.raises(ConfigError, match=r"invalid policy: format: expected 1, got 7"):
        load_policy(bad)


def test_default_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QAUVERN_HPC_POLICY", raising=False)
    monkeypatch.delenv("SLURM_CONF", raising=False)
    assert default_policy_dir() == Path("/etc/slurm")
    assert default_policy_path() == Path("/etc/slurm/policy.json")
    monkeypatch.setenv("SLURM_CONF", "/opt/slurm/etc/slurm.conf")
    assert default_policy_path() == Path("/opt/slurm/etc/policy.json")
    monkeypatch.setenv("QAUVERN_HPC_POLICY", "/x/p.json")
    assert default_policy_path() == Path("/x/p.json")


def test_atomic_write(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    os.chmod(target, 0o600)
    atomic_write(target, "new", 0o644)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["f.json"]


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write(target, 12345)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.json"]


def test_lua_rendering() -> None:
    assert lua_string('a"b\\c\n') == '"a\\"b\\\\c\\010"'
    assert lua_string("é") == '"\\195\\169"'
    assert to_lua({"a": 1, "end": True, "x-y": None, "l": ["p", "q"], "e": {}}) == (
        '{\n  a = 1,\n  ["end"] = true,\n  l = { "p", "q" },\n  e = {},\n}'
    )
    text = render_lua(policy("main"))
    assert text.startswith("-- qauvern-hpc submit-time QPU policy")
    assert 'resources = { "ibm_torino", "ibm_fez", "ibm_marrakesh", "test.sim-1" }' in text
    assert "crn" not in text and "api_key" not in text  # job_submit.lua needs neither


# -- render-policy -------------------------------------------------------------------------------------------


def config_with_key(tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "ibm.key"
    key.write_text("SUPER-SECRET-KEY\n")
    key.chmod(0o600)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        MAIN_CONFIG.replace("plan: premium}", "plan: premium, api_key_file: ibm.key}"), encoding="utf-8"
    )
    return cfg, key


def test_render_policy_writes_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, key = config_with_key(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    assert cli.main(["render-policy", "-c", str(cfg), "--output-dir", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["policy.json", "qpu_policy.lua"]  # no temp file left
    for name in ("policy.json", "qpu_policy.lua"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644
        assert "SUPER-SECRET-KEY" not in (out / name).read_text()
    loaded = load_policy(out / "policy.json")
    assert loaded.instances["phys"].api_key_file == str(key)
    assert loaded.source == str(cfg.resolve()) and loaded.source_sha256 and loaded.generated_at
    assert loaded.generated_at.endswith("Z")
    stdout = capsys.readouterr().out
    assert f"wrote {out / 'policy.json'}" in stdout and "6 rules, 4 resources, 3 instances" in stdout


def test_render_policy_json_and_print(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = config_with_key(tmp_path)
    assert cli.main(["render-policy", "-c", str(cfg), "-o", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == [str(tmp_path / "policy.json"), str(tmp_path / "qpu_policy.lua")]
    assert report["rules"] == 6
    assert cli.main(["render-policy", "-c", str(cfg), "--print", "lua"]) == 0
    assert capsys.readouterr().out.startswith("-- qauvern-hpc submit-time QPU policy")
    assert cli.main(["render-policy", "-c", str(cfg), "--print", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == 1


def test_render_policy_defaults_beside_slurm_conf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _ = config_with_key(tmp_path)
    etc = tmp_path / "etc-slurm"
    etc.mkdir()
    monkeypatch.setenv("SLURM_CONF", str(etc / "slurm.conf"))
    assert cli.main(["render-policy", "-c", str(cfg)]) == 0
    assert (etc / "policy.json").exists() and (etc / "qpu_policy.lua").exists()


def test_render_policy_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, key = config_with_key(tmp_path)
    assert cli.main(["render-policy", "-c", str(cfg), "-o", str(tmp_path / "nope")]) == 1
    assert "output directory" in capsys.readouterr().err
    key.chmod(0o644)
    assert cli.main(["render-policy", "-c", str(cfg), "-o", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert f"{cfg}:2:" in err and f"run: chmod 600 {key}" in err
    assert not (tmp_path / "policy.json").exists()
    assert cli.main(["render-policy", "-c", str(cfg), "-o", str(tmp_path), "--no-key-check"]) == 0


def test_render_policy_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["render-policy", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--output-dir" in out and "0644" in out
