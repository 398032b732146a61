"""qauvern_hpc.config: loading, positioned errors, removed keys, key files, compilation to a policy."""

# ruff: noqa: E501  (tables of YAML snippets and expected messages read best one per line)
from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from qauvern_hpc.config import (
    PLAN_IDS,
    Config,
    example_config_text,
    load_api_key,
    load_config,
    load_config_full,
    parse_config,
)
from qauvern_hpc.core.errors import ConfigError, ExitCode

CRN1 = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:inst-1::"
CRN2 = "crn:v1:bluemix:public:quantum-computing:eu-de:a/acct:inst-2::"

BASE = f"""\
ibm:
  account_id: acct
  plan: premium
instances:
  - name: phys
    crn: "{CRN1}"
  - name: chem
    crn: "{CRN2}"
resources:
  - name: ibm_torino
  - name: ibm_fez
rules:
  - name: physics
    match: {{accounts: [physics]}}
    instance: phys
    resources: [ibm_torino]
  - name: chemistry
    match: {{accounts: [chemistry]}}
    instance: chem
    resources: ["*"]
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, **kw: bool) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, **kw)
    assert info.value.exit_code == ExitCode.CONFIG
    return str(info.value).replace(str(path), "cfg.yaml")


def test_base_config_loads(tmp_path: Path) -> None:
    loaded = load_config_full(write(tmp_path, BASE))
    cfg = loaded.config
    assert [i.name for i in cfg.instances] == ["phys", "chem"]
    assert cfg.instances[1].region == "eu-de"
    assert cfg.minimum_allocation_seconds == 60 and cfg.allocation_reserve_percent == 0
    assert cfg.ibm.plan == "premium" and cfg.ibm.plan_id == PLAN_IDS["premium"]
    assert cfg.default.deny is True
    assert cfg.slurm.state_dir == Path("/var/lib/qauvern-hpc") and cfg.slurm.admin_comment is True
    assert cfg.ledger.url == "sqlite:////var/lib/qauvern-hpc/ledger.db"
    res = cfg.resource("ibm_fez")
    assert (
        res.type,
        res.backend_name,
        res.session_mode,
        res.max_ttl_seconds,
        res.fail_mode,
        res.expose_api_key,
    ) == (
        "ibm-quantum-compute-service",
        "ibm_fez",
        None,  # the plan of the instance a rule maps the job to decides: batch on premium
        8 * 3600,
        "closed",
        False,
    )
    assert len(loaded.sha256) == 64
    # instances without key files get a warning each (they are used by rules)
    assert len(loaded.warnings) == 2 and "no api_key_file" in loaded.warnings[0]


def test_example_config_is_valid_and_complete() -> None:
    loaded = parse_config(example_config_text(), "/etc/qauvern-hpc/config.yaml", check_key_files=False)
    cfg = loaded.config
    assert loaded.warnings == ()
    assert len(cfg.instances) == 3 and [r.name for r in cfg.resources] == [
        "ibm_torino",
        "ibm_fez",
        "ibm_marrakesh",
    ]
    assert [r.name for r in cfg.rules] == ["no-students", "physics", "chemistry", "courses"]
    assert cfg.rules[0].deny and cfg.rules[0].match.qos == ["student"]
    assert cfg.rules[2].match.partitions == ["quantum"]
    assert cfg.default.deny is True
    grant = cfg.instance("chemistry").net_grants[0]
    assert grant.start_date == dt.datetime(2025, 3, 1, tzinfo=dt.UTC) and grant.net_grant_seconds == 36000


# -- durations and dates -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("3600", 3600), ("10h", 36000), ("2.5d", 216000), ("1qau", 96000), ("15m", 900)],
)
def test_durations(tmp_path: Path, text: str, seconds: int) -> None:
    cfg = load_config(
        write(tmp_path, BASE.replace("  - name: chem\n", f"  - name: chem\n    limit_seconds: {text}\n"))
    )
    assert cfg.instance("chem").limit_seconds == seconds


@pytest.mark.parametrize(
    ("start", "end", "expect_start", "expect_end"),
    [
        ("2025-03-01", None, dt.datetime(2025, 3, 1, tzinfo=dt.UTC), dt.datetime(2025, 3, 29, tzinfo=dt.UTC)),
        ('"2025-03-01T00:00:00Z"', '"2025-04-01"', dt.datetime(2025, 3, 1, tzinfo=dt.UTC), dt.datetime(2025, 4, 1, tzinfo=dt.UTC)),
        ("2025-03-01T02:00:00+02:00", None, dt.datetime(2025, 3, 1, tzinfo=dt.UTC), dt.datetime(2025, 3, 29, tzinfo=dt.UTC)),
        ('"2025-03-01T12:00:00"', None, dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC), dt.datetime(2025, 3, 29, 12, tzinfo=dt.UTC)),
    ],
)  # fmt: skip
def test_net_grant_dates(
    tmp_path: Path, start: str, end: str | None, expect_start: dt.datetime, expect_end: dt.datetime
) -> None:
    grant = f"    limit_seconds: 10h\n    net_grants:\n      - start_date: {start}\n        net_grant_seconds: 1h\n"
    if end:
        grant += f"        end_date: {end}\n"
    cfg = load_config(write(tmp_path, BASE.replace(f'    crn: "{CRN2}"\n', f'    crn: "{CRN2}"\n' + grant)))
    g = cfg.instance("chem").net_grants[0]
    assert g.start_date == expect_start and g.end == expect_end


# -- positioned errors ---------------------------------------------------------------------------------------

BAD_CASES = [
    # (id, replacement applied to BASE or full text, expected fragment)
    ("removed-balance-period", BASE + "balance_period:\n  start_date: 2025-01-01\n",
     "cfg.yaml:21:1: balance_period: `balance_period` was removed"),
    ("removed-enforce-usage-floor", BASE + "enforce_usage_floor: true\n",
     "cfg.yaml:21:1: enforce_usage_floor: `enforce_usage_floor` was removed (qauvern 0.14)"),
    ("removed-usage-floor-relax", BASE + "usage_floor_relax_above_percent: 80\n",
     "cfg.yaml:21:1: usage_floor_relax_above_percent: `usage_floor_relax_above_percent` was removed"),
    ("qauvern-top-level-account-id", BASE + "account_id: acct\n",
     "cfg.yaml:21:1: account_id: `account_id` moved under `ibm:`"),
    ("inline-api-key", BASE.replace("  plan: premium\n", "  plan: premium\n  api_key: s3cret\n"),
     "cfg.yaml:4:3: ibm.api_key: API keys are never written in the config"),
    ("instance-period-dates", BASE.replace(f'    crn: "{CRN1}"\n', f'    crn: "{CRN1}"\n    start_date: 2025-01-01\n'),
     "cfg.yaml:7:5: instances[0].start_date: per-instance balance period dates were removed"),
    ("typo-top-level", BASE.replace("instances:", "instancs:"),
     "cfg.yaml:4:1: instancs: unknown key 'instancs' (did you mean 'instances'?)"),
    ("typo-in-instance", BASE.replace(f'    crn: "{CRN1}"\n', f'    crn: "{CRN1}"\n    limit_secnds: 5\n'),
     "cfg.yaml:7:5: instances[0].limit_secnds: unknown key 'limit_secnds' (did you mean 'limit_seconds'?)"),
    ("renamed-limit", BASE.replace(f'    crn: "{CRN1}"\n', f'    crn: "{CRN1}"\n    limit: 5h\n'),
     "cfg.yaml:7:5: instances[0].limit: use `limit_seconds`"),
    ("match-singular", BASE.replace("match: {accounts: [physics]}", "match: {account: [physics]}"),
     "cfg.yaml:14:13: rules[0].match.account: use `accounts`"),
    ("match-at-rule-level", BASE.replace("    match: {accounts: [physics]}\n", "    accounts: [physics]\n"),
     "cfg.yaml:14:5: rules[0].accounts: put `accounts` under `match:`"),
    ("qrmi-environment", BASE.replace("  - name: ibm_fez\n", "  - name: ibm_fez\n    environment: {A: b}\n"),
     "cfg.yaml:12:5: resources[1].environment: `environment` (qrmi_config.json) is `env` here"),
    ("duplicate-crn", BASE.replace(CRN2, CRN1),
     "cfg.yaml:8:10: instances[1].crn: duplicate CRN: instances 'phys' and 'chem' are the same IBM instance (it would be counted twice) [first at line 6]"),
    ("duplicate-instance-name", BASE.replace("name: chem\n", "name: phys\n").replace("instance: chem", "instance: phys"),
     "cfg.yaml:7:11: instances[1].name: duplicate instance name 'phys'"),
    ("duplicate-resource-name", BASE.replace("name: ibm_fez", "name: ibm_torino"),
     "cfg.yaml:11:11: resources[1].name: duplicate resource name 'ibm_torino'"),
    ("duplicate-rule-name", BASE.replace("name: chemistry", "name: physics"),
     "cfg.yaml:17:11: rules[1].name: duplicate rule name 'physics' (first at rules[0]) [first at line 13]"),
    ("rule-unknown-instance", BASE.replace("instance: phys", "instance: physx"),
     "cfg.yaml:15:15: rules[0].instance: unknown instance 'physx' (did you mean 'phys'?) (known: phys, chem)"),
    ("rule-unknown-resource", BASE.replace("resources: [ibm_torino]", "resources: [ibm_turin]"),
     "cfg.yaml:16:17: rules[0].resources[0]: unknown resource 'ibm_turin' (did you mean 'ibm_torino'?)"),
    ("rule-glob-matching-nothing", BASE.replace('resources: ["*"]', 'resources: ["ibm_x*"]'),
     "cfg.yaml:20:17: rules[1].resources[0]: unknown resource 'ibm_x*'"),
    ("default-unknown-instance", BASE + "default: {instance: nope, resources: [ibm_fez]}\n",
     "cfg.yaml:21:21: default.instance: unknown instance 'nope'"),
    ("bad-glob", BASE.replace("accounts: [physics]", "accounts: ['phys ics']"),
     "cfg.yaml:14:23: rules[0].match.accounts: character ' ' not allowed in pattern 'phys ics'"),
    ("empty-glob-list", BASE.replace("accounts: [physics]", "accounts: []"),
     "cfg.yaml:14:23: rules[0].match.accounts: an empty list matches nothing"),
    ("deny-rule-with-instance", BASE.replace("    instance: phys\n", "    instance: phys\n    deny: true\n"),
     "cfg.yaml:13:5: rules[0]: a deny rule takes no instance or resources"),
    ("allow-rule-without-resources", BASE.replace("    resources: [ibm_torino]\n", ""),
     "cfg.yaml:13:5: rules[0]: an allow rule needs `resources`"),
    ("message-on-allow-rule", BASE.replace("    resources: [ibm_torino]\n", "    resources: [ibm_torino]\n    message: hi\n"),
     "cfg.yaml:13:5: rules[0]: `message` is only for deny rules"),
    ("rule-named-default", BASE.replace("name: chemistry", "name: default"),
     "cfg.yaml:17:11: rules[1].name: 'default' is the name of the default rule"),
    ("default-allow-word", BASE + "default: allow\n",
     "cfg.yaml:21:10: default: default must be `deny` or a rule body"),
    ("unknown-plan", BASE.replace("plan: premium", "plan: premum"),
     "cfg.yaml:3:9: ibm.plan: unknown plan 'premum'"),
    ("missing-crn", BASE.replace(f'    crn: "{CRN2}"\n', ""),
     "cfg.yaml:7:5: instances[1].crn: required key 'crn' is missing"),
    ("missing-ibm", BASE.replace("ibm:\n  account_id: acct\n  plan: premium\n", ""),
     "cfg.yaml:1:1: ibm: required key 'ibm' is missing"),
    ("bad-crn", BASE.replace(CRN2, "crn:v1:oops"), "cfg.yaml:8:10: instances[1].crn: not an instance CRN"),
    ("bad-duration", BASE.replace("  - name: ibm_fez\n", "  - name: ibm_fez\n    max_ttl_seconds: 10x\n"),
     "cfg.yaml:12:22: resources[1].max_ttl_seconds: unknown unit 'x' in '10x'"),
    ("bad-session-mode", BASE.replace("  - name: ibm_fez\n", "  - name: ibm_fez\n    session_mode: dedicate\n"),
     "cfg.yaml:12:19: resources[1].session_mode: Input should be 'batch', 'dedicated' or 'job' (got 'dedicate')"),
    ("bad-resource-name", BASE.replace("name: ibm_fez", "name: ibm fez"),
     "cfg.yaml:11:11: resources[1].name: invalid resource name 'ibm fez'"),
    ("long-resource-name", BASE.replace("name: ibm_fez", "name: " + "q" * 65),
     "resources[1].name: invalid resource name"),
    ("reserved-env", BASE.replace("  - name: ibm_fez\n", "  - name: ibm_fez\n    env: {SLURM_JOB_ID: x}\n"),
     "cfg.yaml:12:10: resources[1].env: SLURM_JOB_ID is reserved"),
    ("env-not-string", BASE.replace("  - name: ibm_fez\n", "  - name: ibm_fez\n    env: {PORT: 8080}\n"),
     "resources[1].env: PORT: the value must be a string (quote it"),
    ("reserve-100", BASE + "allocation_reserve_percent: 100\n",
     "cfg.yaml:21:29: allocation_reserve_percent: Input should be less than 100"),
    ("reserve-negative", BASE + "allocation_reserve_percent: -1\n",
     "cfg.yaml:21:29: allocation_reserve_percent: Input should be greater than or equal to 0"),
    ("emulator-and-iam", BASE.replace("  plan: premium\n", "  plan: premium\n  endpoints: {emulator: 'http://127.0.0.1:1', iam: 'https://x'}\n"),
     "cfg.yaml:4:14: ibm.endpoints: `emulator` puts every service at one base URL"),
    ("bad-url", BASE.replace("  plan: premium\n", "  plan: premium\n  endpoints: {iam: 'ftp://x'}\n"),
     "cfg.yaml:4:20: ibm.endpoints.iam: not an http(s) URL: 'ftp://x'"),
    ("grants-need-limit", BASE.replace(f'    crn: "{CRN2}"\n', f'    crn: "{CRN2}"\n    net_grants: [{{start_date: 2025-03-01, net_grant_seconds: 1h}}]\n'),
     "cfg.yaml:7:5: instances[1]: net_grants need limit_seconds"),
    ("grant-end-before-start", BASE.replace(f'    crn: "{CRN2}"\n', f'    crn: "{CRN2}"\n    limit_seconds: 1h\n    net_grants: [{{start_date: 2025-03-01, end_date: 2025-02-01, net_grant_seconds: 1h}}]\n'),
     "cfg.yaml:10:18: instances[1].net_grants[0]: end_date (2025-02-01) must be after start_date (2025-03-01)"),
    ("grant-zero-seconds", BASE.replace(f'    crn: "{CRN2}"\n', f'    crn: "{CRN2}"\n    limit_seconds: 1h\n    net_grants: [{{start_date: 2025-03-01, net_grant_seconds: 0}}]\n'),
     "instances[1].net_grants[0].net_grant_seconds: net_grant_seconds must be greater than 0"),
    ("bad-date", BASE.replace(f'    crn: "{CRN2}"\n', f'    crn: "{CRN2}"\n    limit_seconds: 1h\n    net_grants: [{{start_date: "March 1st", net_grant_seconds: 1h}}]\n'),
     "instances[1].net_grants[0].start_date: not a date: 'March 1st'"),
    ("target-above-limit", BASE.replace(f'    crn: "{CRN2}"\n', f'    crn: "{CRN2}"\n    limit_seconds: 1h\n    target_usage_seconds: 2h\n'),
     "instances[1]: target_usage_seconds (7200) is above limit_seconds (3600)"),
    ("yaml-syntax", BASE.replace("  plan: premium\n", "  plan: [premium\n"), "cfg.yaml:4:10: invalid YAML: expected ',' or ']', but got ':'"),
    ("yaml-duplicate-key", BASE.replace("  plan: premium\n", "  plan: premium\n  plan: paygo\n"),
     "cfg.yaml:4:3: ibm.plan: duplicate key (first at line 3)"),
    ("resource-as-plain-string", BASE.replace("  - name: ibm_fez\n", "  - ibm_fez\n"),
     "cfg.yaml:11:5: resources[1]: expected a mapping with keys name, type, backend, session_mode, max_ttl_seconds, fail_mode, expose_api_key, on_job_end, env (got 'ibm_fez': write `- name: ibm_fez`)"),
    ("match-not-a-mapping", BASE.replace("match: {accounts: [physics]}", "match: physics"),
     "cfg.yaml:14:12: rules[0].match: expected a mapping with keys users, accounts, partitions, qos, clusters (got 'physics')"),
    ("not-a-mapping", "- a\n- b\n", "cfg.yaml:1:1: the config must be a mapping"),
    ("empty-file", "", "cfg.yaml: the config is empty"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "fragment"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_config_names_file_line_column_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    message = error_of(tmp_path, text)
    assert fragment in message, message


def test_all_errors_are_reported_in_line_order(tmp_path: Path) -> None:
    text = BASE.replace("plan: premium", "plan: nope").replace("name: ibm_fez", "name: 'bad name'")
    message = error_of(tmp_path, text + "balance_period: {}\n")
    lines = message.splitlines()
    assert lines[0] == "invalid config:"
    assert [ln.split(":")[1] for ln in lines[1:]] == ["3", "11", "21"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "config file not found" in str(info.value) and "check-config --example" in str(info.value)


def test_direct_model_validation_still_cross_checks() -> None:
    import yaml

    data = yaml.safe_load(BASE.replace("instance: phys", "instance: nope"))
    with pytest.raises(ValidationError) as info:
        Config.model_validate(data)
    assert "rules[0].instance: unknown instance 'nope'" in str(info.value)


CRN_CASES = [
    ("object-storage", "crn:v1:bluemix:public:cloud-object-storage:global:a/acct:e5a1b2c3-0000-4000-8000-000000000001::",
     "service 'cloud-object-storage' is not quantum-computing"),
    ("object-storage-no-instance", "crn:v1:bluemix:public:cloud-object-storage:global:a/abc::",
     "service 'cloud-object-storage' is not quantum-computing"),
    ("no-account-scope", "crn:v1:bluemix:public:quantum-computing:eu-de:acct:inst-2::", "no account scope a/ACCOUNT"),
    ("bad-region", "crn:v1:bluemix:public:quantum-computing:Moon:a/acct:inst-2::", "bad region 'Moon'"),
    ("no-instance", "crn:v1:bluemix:public:quantum-computing:eu-de:a/acct:::", "no service instance"),
    ("spaces", "crn:v1:bluemix:public:quantum-computing:eu-de:a/acct:inst 2::", "spaces or non-ASCII characters"),
]  # fmt: skip


@pytest.mark.parametrize(("crn", "why"), [c[1:] for c in CRN_CASES], ids=[c[0] for c in CRN_CASES])
def test_instance_crn_must_be_an_ibm_quantum_one(tmp_path: Path, crn: str, why: str) -> None:
    """The one CRN parser (qauvern_hpc.ibm.crn) decides; the message names the instance and the reason."""
    message = error_of(tmp_path, BASE.replace(CRN2, crn))
    assert "cfg.yaml:8:10: instances[1].crn: not an instance CRN for instance 'chem': " + why in message, (
        message
    )
    assert "(expected crn:v1:bluemix:public:quantum-computing:REGION:a/ACCOUNT:INSTANCE::)" in message


def test_a_quantum_crn_loads_with_its_parts(tmp_path: Path) -> None:
    staging = "crn:v1:staging:public:quantum-computing:jp-tok:a/acct:inst-2::"
    cfg = load_config(write(tmp_path, BASE.replace(CRN2, staging)))
    assert cfg.instance("chem").crn == staging and cfg.instance("chem").region == "jp-tok"


# -- warnings ------------------------------------------------------------------------------------------------


def test_warnings(tmp_path: Path) -> None:
    text = (
        BASE.replace(
            "  - name: ibm_fez\n", "  - name: ibm_fez\n  - name: old\n    type: qiskit-runtime-service\n"
        )
        .replace("    match: {accounts: [physics]}\n", "")  # physics now matches every job
        .replace("  plan: premium\n", "  plan: premium\n  api_key_file: key\n")
    )
    (tmp_path / "key").write_text("k\n")
    (tmp_path / "key").chmod(0o600)
    warnings = load_config_full(write(tmp_path, text)).warnings
    assert any(
        "resources[2].type: resource type 'qiskit-runtime-service' is deprecated" in w for w in warnings
    )
    assert any(
        "rules[1].name: rule 'chemistry' can never match: rule 'physics' matches every job" in w
        for w in warnings
    )
    assert any("resources[1].name: no reachable rule allows resource 'ibm_fez'" in w for w in warnings)
    assert not any("no api_key_file" in w for w in warnings)


# -- API key files -------------------------------------------------------------------------------------------


def with_key(tmp_path: Path, mode: int, where: str = "ibm") -> tuple[Path, Path]:
    key = tmp_path / "keys" / "ibm.key"
    key.parent.mkdir(exist_ok=True)
    key.write_text("  my-secret-api-key\n", encoding="utf-8")
    key.chmod(mode)
    if where == "ibm":
        text = BASE.replace("  plan: premium\n", "  plan: premium\n  api_key_file: keys/ibm.key\n")
    else:
        text = BASE.replace(f'    crn: "{CRN1}"\n', f'    crn: "{CRN1}"\n    api_key_file: {key}\n')
    return write(tmp_path, text), key


def test_relative_key_file_resolves_beside_the_config(tmp_path: Path) -> None:
    path, key = with_key(tmp_path, 0o600)
    cfg = load_config(path)
    assert cfg.ibm.api_key_file == key and cfg.api_key_file_for("chem") == key
    assert load_api_key(key).get_secret_value() == "my-secret-api-key"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o611])
@pytest.mark.parametrize("where", ["ibm", "instance"])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int, where: str) -> None:
    path, key = with_key(tmp_path, mode, where)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    line = "4" if where == "ibm" else "7"
    assert f"{path}:{line}:" in msg
    assert (
        f"API key file {key} is accessible to group or others (mode {mode:04o}); run: chmod 600 {key}" in msg
    )
    with pytest.raises(ConfigError, match="chmod 600"):
        load_api_key(key)
    # --no-key-check style loading skips it
    assert load_config(path, check_key_files=False).api_key_file_for("phys") == key


def test_missing_key_file_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path, BASE.replace("  plan: premium\n", "  plan: premium\n  api_key_file: /nonexistent/k\n")
    )
    msg = error_of(tmp_path, path.read_text())
    assert "cfg.yaml:4:17: ibm.api_key_file: API key file /nonexistent/k does not exist" in msg


def test_api_key_never_leaks(tmp_path: Path) -> None:
    path, key = with_key(tmp_path, 0o600)
    secret = load_api_key(key)
    assert isinstance(secret, SecretStr)
    assert "my-secret-api-key" not in repr(secret) and "my-secret-api-key" not in str(secret)
    cfg = load_config(path)
    assert "my-secret-api-key" not in cfg.model_dump_json()
    assert "my-secret-api-key" not in json.dumps(cfg.to_policy().to_dict())


def test_empty_key_file(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text("\n")
    key.chmod(0o600)
    with pytest.raises(ConfigError, match="is empty"):
        load_api_key(key)


# -- other sections ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "name"),
    [
        ("PREMIUM", "premium"),
        ("paygo", "paygo"),
        ("91b2c828-2952-4f05-aed8-bedf92c6c480", "internal"),
        ("Flex", "flex"),
        ("open", "open"),
    ],
)
def test_plan_by_name_or_id(tmp_path: Path, plan: str, name: str) -> None:
    cfg = load_config(write(tmp_path, BASE.replace("plan: premium", f"plan: {plan}")))
    assert cfg.ibm.plan == name and cfg.ibm.plan_id == PLAN_IDS[name]


def test_instance_plan_and_flex_contract(tmp_path: Path) -> None:
    text = BASE.replace("  plan: premium\n", "  plan: flex\n  contract_start: 2026-03-01\n").replace(
        f'    crn: "{CRN2}"\n', f'    crn: "{CRN2}"\n    plan: paygo\n'
    )
    cfg = load_config(write(tmp_path, text))
    assert [cfg.plan_of(i.name) for i in cfg.instances] == ["flex", "paygo"]
    assert (
        cfg.ibm.contract_start is not None
        and cfg.ibm.contract_start.isoformat() == "2026-03-01T00:00:00+00:00"
    )
    assert cfg.ibm.contract_end is None
    assert not [w for w in cfg.warnings() if "Flex" in w.message]


@pytest.mark.parametrize(
    ("insert", "message"),
    [
        ("  contract_end: 2026-01-01\n", "ibm: contract_end needs contract_start"),
        (
            "  contract_start: 2026-03-01\n  contract_end: 2026-02-01\n",
            "ibm: contract_end (2026-02-01) must be after contract_start (2026-03-01)",
        ),
    ],
)
def test_bad_flex_contract(tmp_path: Path, insert: str, message: str) -> None:
    assert message in error_of(tmp_path, BASE.replace("  plan: premium\n", "  plan: flex\n" + insert))


def test_unknown_instance_plan(tmp_path: Path) -> None:
    text = BASE.replace(f'    crn: "{CRN2}"\n', f'    crn: "{CRN2}"\n    plan: gold\n')
    assert "instances[1].plan" in error_of(tmp_path, text)


def test_flex_without_contract_warns(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE.replace("plan: premium", "plan: flex")))
    assert any("ibm.contract_start is not set" in w.message for w in cfg.warnings())


def test_endpoints_and_optional_sections(tmp_path: Path) -> None:
    text = BASE.replace(
        "  plan: premium\n",
        "  plan: premium\n  staging: true\n  endpoints: {emulator: 'http://127.0.0.1:8790/'}\n",
    )
    text += "slurm: {cluster: hpc, state_dir: state, sacct: /opt/slurm/bin/sacct, admin_comment: false}\n"
    text += "rebalance: {enabled: true, interval: 30m, demand: {pending_job_weight: 10}}\nmetrics: {enabled: true}\n"
    text += "ledger: {url: 'postgresql://db/qauvern'}\nminimum_allocation_seconds: 2m\n"
    cfg = load_config(write(tmp_path, text))
    assert cfg.ibm.staging and cfg.ibm.endpoints.emulator == "http://127.0.0.1:8790"
    assert cfg.slurm.cluster == ["hpc"] and cfg.slurm.state_dir == tmp_path / "state"
    assert cfg.slurm.sacct == "/opt/slurm/bin/sacct" and cfg.slurm.admin_comment is False
    assert cfg.rebalance.interval == 1800 and cfg.rebalance.demand.pending_job_weight == 10.0
    assert cfg.ledger.url == "postgresql://db/qauvern" and cfg.minimum_allocation_seconds == 120
    policy = cfg.to_policy()
    assert policy.endpoints.staging and policy.endpoints.emulator == "http://127.0.0.1:8790"
    assert policy.state_dir == str(tmp_path / "state")


def test_default_rule_body_and_globbed_resources(tmp_path: Path) -> None:
    text = BASE.replace('resources: ["*"]', 'resources: ["ibm_f*", ibm_torino]')
    text += "default: {deny: true, message: ask hpc-support}\n"
    policy = load_config(write(tmp_path, text)).to_policy()
    assert policy.rules[1].resources == ("ibm_torino", "ibm_fez")  # config order, globs expanded
    assert policy.default.deny and policy.default.message == "ask hpc-support"
    text = BASE + "default: {instance: chem, resources: [ibm_fez]}\n"
    policy = load_config(write(tmp_path, text)).to_policy()
    assert (policy.default.deny, policy.default.instance, policy.default.resources) == (
        False,
        "chem",
        ("ibm_fez",),
    )


def test_single_string_globs_become_lists(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            BASE.replace("match: {accounts: [physics]}", "match: {accounts: physics, users: '!guest'}"),
        )
    )
    assert cfg.rules[0].match.accounts == ["physics"] and cfg.rules[0].match.users == ["!guest"]


def test_json_schema() -> None:
    schema = Config.json_schema()
    assert {
        "ibm",
        "instances",
        "resources",
        "rules",
        "default",
        "slurm",
        "ledger",
        "rebalance",
        "metrics",
    } <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    inst = schema["$defs"]["InstanceConfig"]["properties"]
    assert {"type": "string"} in [{"type": a["type"]} for a in inst["limit_seconds"]["anyOf"][0]["anyOf"]]
    json.dumps(schema)  # serialisable
