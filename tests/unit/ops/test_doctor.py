"""The doctor's pure checks, on recorded real `scontrol show config` output (Slurm 22.05, a sandbox without
our hooks) and on the texts our own generators write."""

from __future__ import annotations

from pathlib import Path

import pytest

from qauvern_hpc.hooks.wrapper import render_wrapper
from qauvern_hpc.ops import doctor as d
from qauvern_hpc.slurm.spank_build import plugstack_line
from tests.support.paths import UNIT_FIXTURES

FIXTURES = UNIT_FIXTURES / "scontrol"
CONF = d.parse_show_config((FIXTURES / "show-config-22.05.txt").read_text())
STATE = Path("/var/lib/qauvern-hpc")


def test_show_config_is_parsed_from_real_output() -> None:
    assert CONF["SLURM_VERSION"] == "22.05.8"
    assert CONF["PrologSlurmctld"] == d.NULL
    assert CONF["AccountingStorageEnforce"] == "associations,limits,qos,safe"
    assert d.license_names(CONF["Licenses"]) == {"qpu": "8"}
    assert "license/qpu" in d.listed(CONF["AccountingStorageTRES"])


def test_unset_hooks_unbounded_timeout_and_no_lua_on_a_plain_cluster() -> None:
    hook = d.HookFacts("prolog", "PrologSlurmctld", CONF["PrologSlurmctld"], None, False)
    c = d.check_hook(hook, state_dir=STATE)
    assert c.status == "fail" and "install-hooks" in c.hint
    assert d.check_timeout(CONF).status == "warn"  # 65534: not set
    assert d.check_job_submit(CONF, None, "/etc/slurm/job_submit.lua").status == "warn"


def test_our_wrapper_passes_and_a_wrong_state_dir_fails() -> None:
    text = render_wrapper("prolog", policy="/etc/slurm/policy.json", state_dir=STATE, hookd="on")
    ok = d.check_hook(d.HookFacts("prolog", "PrologSlurmctld", "/p", text, True), state_dir=STATE)
    assert ok.status == "ok" and "hookd: on" in ok.detail
    bad = d.check_hook(d.HookFacts("prolog", "PrologSlurmctld", "/p", text, True), state_dir=Path("/srv/q"))
    assert bad.status == "fail" and "/srv/q" in bad.detail
    noexec = d.check_hook(d.HookFacts("prolog", "PrologSlurmctld", "/p", text, False), state_dir=STATE)
    assert noexec.status == "fail" and "chmod" in noexec.hint
    other = d.check_hook(
        d.HookFacts("prolog", "PrologSlurmctld", "/p", "#!/bin/sh\nexit 0\n", True), state_dir=STATE
    )
    assert other.status == "warn"


def test_plugstack_line_we_generate_is_recognised() -> None:
    text = "# site plugins\noptional /usr/lib/x.so\n" + plugstack_line(
        "/usr/lib/slurm/qpu.so", state_dir=str(STATE)
    )
    entries = d.parse_plugstack(text)
    assert [e.path for e in entries] == ["/usr/lib/x.so", "/usr/lib/slurm/qpu.so"]
    c = d.check_plugstack(
        entries, "plugstack.conf", state_dir=STATE, plugin_exists={"/usr/lib/slurm/qpu.so": True}
    )
    assert c.status == "ok" and "plugstack.conf:3" in c.detail
    missing = d.check_plugstack(entries, "p", state_dir=STATE, plugin_exists={})
    assert missing.status == "fail" and "spank build" in missing.hint
    opt = d.parse_plugstack(text.replace("required /usr/lib/slurm", "optional /usr/lib/slurm"))
    assert (
        d.check_plugstack(opt, "p", state_dir=STATE, plugin_exists={"/usr/lib/slurm/qpu.so": True}).status
        == "warn"
    )
    assert d.check_plugstack([], "p", state_dir=STATE, plugin_exists={}).status == "fail"
    assert d.check_plugstack(None, "p", state_dir=STATE, plugin_exists={}).status == "fail"


@pytest.mark.parametrize(
    ("licenses", "tres", "gate", "status"),
    [
        ("qpu:8", "license/qpu", True, "fail"),
        ("qpu_a:10,qpu_b:10", "license/qpu_a", True, "warn"),
        ("qpu_a:10,qpu_b:10", "license/qpu_a", False, "ok"),
        ("qpu_a:10,qpu_b:10", "cpu,license/qpu_a,license/qpu_b", True, "ok"),
    ],
)
def test_per_instance_licenses(licenses: str, tres: str, gate: bool, status: str) -> None:
    conf = {"Licenses": licenses, "AccountingStorageTRES": tres}
    assert d.check_licenses(conf, "qpu_", ["a", "b"], gate).status == status
    assert d.check_licenses(conf, None, ["a", "b"], gate).status == "skip"


def test_policy_freshness() -> None:
    j, lua = Path("/etc/slurm/policy.json"), Path("/etc/slurm/qpu_policy.lua")
    assert d.check_policy(j, None, "abc", None, lua, None).status == "fail"
    assert d.check_policy(j, "old", "abc", "t1", lua, 'generated_at = "t1"').status == "warn"
    assert d.check_policy(j, "abc", "abc", "t1", lua, None).status == "warn"
    assert d.check_policy(j, "abc", "abc", "t1", lua, 'generated_at = "t0"').status == "warn"
    assert d.check_policy(j, "abc", "abc", "t1", lua, 'generated_at = "t1"').status == "ok"


def test_state_dir_ownership_and_mode() -> None:
    assert d.check_state_dir(STATE, exists=False, uid=None, mode=None).status == "fail"
    assert d.check_state_dir(STATE, exists=True, uid=1000, mode=0o40755).status == "fail"
    assert d.check_state_dir(STATE, exists=True, uid=0, mode=0o40777).status == "fail"
    assert d.check_state_dir(STATE, exists=True, uid=0, mode=0o40755).status == "ok"


def test_periodic_age_and_worst() -> None:
    assert d.check_age("collect", "collect", None, 900, "fix").status == "warn"
    assert d.check_age("collect", "collect", 600, 900, "fix").status == "ok"
    late = d.check_age("collect", "collect", 4 * 3600, 900, "fix")
    assert late.status == "warn" and "4h" in late.detail
    checks = [d.Check("a", "ok", ""), d.Check("b", "skip", ""), d.Check("c", "warn", "")]
    assert d.worst(checks) == "warn"
    assert d.worst([*checks, d.Check("d", "fail", "")]) == "fail"
    assert d.worst([]) == "ok"
