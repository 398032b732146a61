"""`qauvern-hpc check-config` and `qauvern-hpc map` end to end through the CLI dispatcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qauvern_hpc import cli
from qauvern_hpc.config import example_config_text, parse_config
from tests.support.mapping_cases import MAIN_CONFIG


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(MAIN_CONFIG, encoding="utf-8")
    return path


# -- check-config --------------------------------------------------------------------------------------------


def test_check_config_prints_the_resolved_tables(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert f"{cfg}: valid (account acct0001, plan premium)" in out
    for text in (
        "instances",
        "QPU resources",
        "rules (first match wins)",
        "fake_sim",
        "course[0-9]*",
        "lab[!x]_*",
    ):
        assert text in out, text
    assert "deny: students have no QPU access" in out
    assert "phys: ibm_torino, ibm_fez" in out
    # rules are listed in order, default last
    table = out[out.index("rules (first match wins)") :]
    assert (
        table.index("no-students")
        < table.index("physics")
        < table.index("chemistry")
        < table.index("default")
    )
    assert "warning:" in out and "has no api_key_file" in out


def test_check_config_json(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", "-c", str(cfg), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is True and data["config"] == str(cfg) and len(data["sha256"]) == 64
    assert [r["name"] for r in data["policy"]["rules"]] == [
        "no-students",
        "physics",
        "chemistry",
        "courses",
        "labs",
        "ops",
    ]
    assert len(data["warnings"]) == 3  # three instances without an API key file


def test_check_config_invalid_exits_3_with_positions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MAIN_CONFIG + "balance_period: {}\n")
    assert cli.main(["check-config", "-c", str(bad)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("qauvern-hpc check-config: error: invalid config:")
    assert f"{bad}:41:1: balance_period: `balance_period` was removed" in err
    # cross-references are checked once the shapes are right
    bad.write_text(MAIN_CONFIG.replace("instance: chem", "instance: chemistry"))
    assert cli.main(["check-config", "-c", str(bad)]) == 3
    err = capsys.readouterr().err
    assert f"{bad}:26:15: rules[2].instance: unknown instance 'chemistry' (did you mean 'chem'?)" in err
    assert cli.main(["check-config", "-c", str(bad), "--json"]) == 3
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is False and data["errors"] == [
        f"{bad}:26:15: rules[2].instance: unknown instance 'chemistry' (did you mean 'chem'?) "
        "(known: phys, chem, teach)"
    ]


@pytest.mark.parametrize(
    ("crn", "why"),
    [
        (
            "crn:v1:bluemix:public:cloud-object-storage:global:a/acct0001:e5a1b2c3-0000-4000-8000-000000000001::",
            "service 'cloud-object-storage' is not quantum-computing",
        ),
        ("crn:v1:bluemix:public:quantum-computing:eu-de:acct0001:g-teach::", "no account scope a/ACCOUNT"),
    ],
    ids=["not-quantum", "malformed"],
)
def test_check_config_refuses_a_crn_that_is_not_an_ibm_quantum_instance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], crn: str, why: str
) -> None:
    good = "crn:v1:bluemix:public:quantum-computing:eu-de:a/acct0001:g-teach::"
    assert good in MAIN_CONFIG
    bad = tmp_path / "bad.yaml"
    bad.write_text(MAIN_CONFIG.replace(good, crn), encoding="utf-8")
    assert cli.main(["check-config", "-c", str(bad), "--no-key-check"]) == 3
    err = capsys.readouterr().err
    assert f"{bad}:6:24: instances[2].crn: not an instance CRN for instance 'teach': {why}" in err, err
    assert cli.main(["check-config", "-c", str(bad), "--no-key-check", "--json"]) == 3
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is False and len(data["errors"]) == 1 and "instance 'teach'" in data["errors"][0]
    bad.write_text(MAIN_CONFIG, encoding="utf-8")  # the good CRN: valid
    assert cli.main(["check-config", "-c", str(bad), "--no-key-check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["policy"]["instances"]["teach"]["crn"] == good


def test_check_config_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", "--example"]) == 0
    out = capsys.readouterr().out
    assert out == example_config_text()
    parse_config(out, "/etc/qauvern-hpc/config.yaml", check_key_files=False)


def test_check_config_notes_a_stale_policy(
    cfg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
    assert cli.main(["render-policy", "-c", str(cfg)]) == 0
    assert cli.main(["check-config", "-c", str(cfg), "--json"]) == 0
    capsys.readouterr()
    assert cli.main(["check-config", "-c", str(cfg), "--json"]) == 0
    assert not any("older version" in w for w in json.loads(capsys.readouterr().out)["warnings"])
    cfg.write_text(MAIN_CONFIG + "\n# edited\n")
    assert cli.main(["check-config", "-c", str(cfg), "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any("was rendered from an older version of this config" in w for w in warnings)


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", "-c", str(tmp_path / "none.yaml")]) == 3
    assert "config file not found" in capsys.readouterr().err


# -- map -----------------------------------------------------------------------------------------------------


def test_map_allowed(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["map", "-c", str(cfg), "--user", "alice", "--account", "physics", "--partition", "cpu"]
    assert cli.main([*argv, "--qos", "normal", "--qpu", "ibm_torino,ibm_fez"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ALLOWED (ok): rule 'physics' allows 'ibm_torino', 'ibm_fez'")
    assert "rule #1 'no-students': no match: qos normal matches none of 'student'" in out
    assert "rule #2 'physics': matches" in out
    assert "what the prolog will open" in out and "ibm_fez" in out


def test_map_denied_explains_each_rule(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["map", "-c", str(cfg), "-u", "guest", "-A", "physics", "-p", "cpu", "--qpu", "ibm_torino"]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert out.startswith("DENIED (default_deny): rule 'default' denies user=guest account=physics")
    for n, name in enumerate(["no-students", "physics", "chemistry", "courses", "labs", "ops"], 1):
        assert f"rule #{n} '{name}': no match" in out
    assert "user guest is excluded by '!guest'" in out
    assert "no rule matched: the default rule decides" in out


def test_map_json(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "map",
        "-c",
        str(cfg),
        "-u",
        "bob",
        "-A",
        "chemistry",
        "-p",
        "cpu,quantum",
        "--qpu",
        "ibm_fez",
        "--json",
    ]
    assert cli.main(argv) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["identity"] == {"user": "bob", "account": "chemistry", "partition": "cpu,quantum", "qos": ""}
    assert data["allowed"] is False and data["code"] == "partition_mismatch" and data["rule"] is None
    argv = [
        "map",
        "-c",
        str(cfg),
        "-u",
        "bob",
        "-A",
        "chemistry",
        "-p",
        "quantum",
        "--qpu",
        "ibm_fez",
        "--json",
    ]
    assert cli.main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["instance"] == "chem" and data["resources"][0]["crn"].endswith(":g-chem::")


def test_map_from_a_rendered_policy(cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render-policy", "-c", str(cfg), "-o", str(tmp_path)]) == 0
    policy = tmp_path / "policy.json"
    argv = [
        "map",
        "--policy",
        str(policy),
        "-u",
        "carol",
        "-A",
        "course9",
        "-p",
        "cpu",
        "--qpu",
        "ibm_marrakesh",
    ]
    assert cli.main([*argv, "-c", str(tmp_path / "does-not-matter.yaml")]) == 0
    assert "rule 'courses' allows" in capsys.readouterr().out
    assert cli.main(["map", "--policy", str(tmp_path / "nope.json"), *argv[3:]]) == 3


def test_map_needs_the_identity(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["map", "--user", "alice", "--qpu", "x"])
    assert info.value.code == 2
    assert "--account" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["check-config", "map", "render-policy"])
def test_help_has_description_and_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "exit codes:" in out and f"qauvern-hpc {command}" in out
