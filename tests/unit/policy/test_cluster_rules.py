"""Rules matching on the Slurm cluster (`match: {clusters: [...]}`), in both implementations.

The prolog knows its cluster (SLURM_CLUSTER_NAME); job_submit.lua is not told it (job_desc has no cluster), so
it takes the cluster its qpu_policy.lua was rendered for (`render-policy --cluster`, default slurm.conf's
ClusterName=). Both must reach the same decision and message for the same cluster.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from qauvern_hpc.commands import render_policy
from qauvern_hpc.config import parse_config
from qauvern_hpc.hooks.common import JobContext
from qauvern_hpc.policy.compiled import Policy, load_policy, render_lua, slurm_cluster_name, to_lua
from qauvern_hpc.policy.mapping import JobIdentity, decide, parse_request
from tests.unit.policy.test_job_submit_lua import INTERPRETERS, run_lua

CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct0001:{guid}::"
CONFIG = f"""
ibm: {{account_id: acct0001, plan: premium}}
instances:
  - {{name: qa-inst, crn: "{CRN.format(guid="g-qa")}"}}
  - {{name: rest, crn: "{CRN.format(guid="g-rest")}"}}
resources: [{{name: ibm_torino}}]
slurm: {{cluster: [qa, qb, qc-test]}}
rules:
  - {{name: test-clusters, match: {{clusters: ["*-test"]}}, deny: true, message: no QPU on test clusters}}
  - {{name: on-qa, match: {{accounts: [phys], clusters: [qa]}}, instance: qa-inst, resources: [ibm_torino]}}
  - {{name: phys, match: {{accounts: [phys], clusters: ["!qa"]}}, instance: rest, resources: [ibm_torino]}}
"""
# (cluster, expected allowed, rule, instance)
CASES = [
    ("qa", True, "on-qa", "qa-inst"),
    ("qb", True, "phys", "rest"),
    ("qc-test", False, "test-clusters", None),
    ("", True, "phys", "rest"),  # unknown cluster: "!qa" lets it through, `qa` does not match it
]


def policy() -> Policy:
    return parse_config(CONFIG, "/etc/qauvern-hpc/c.yaml", check_key_files=False).config.to_policy()


@pytest.mark.parametrize(("cluster", "allowed", "rule", "instance"), CASES)
def test_python_decides_by_cluster(cluster: str, allowed: bool, rule: str, instance: str | None) -> None:
    d = decide(policy(), JobIdentity("alice", "phys", "qpu", "", cluster), parse_request("ibm_torino"))
    assert (d.allowed, d.rule, d.instance) == (allowed, rule, instance)
    if not allowed:
        assert d.message.startswith("rule 'test-clusters' denies user=alice")
        assert "cluster=qc-test" in d.message and "no QPU on test clusters" in d.message


def test_prolog_reads_the_cluster_from_its_environment() -> None:
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_ACCOUNT": "phys", "SLURM_CLUSTER_NAME": "qa"}
    assert JobContext.from_environ(env).cluster == "qa"
    assert JobContext.from_environ({"SLURM_JOB_ID": "7"}).cluster == ""


def test_policy_json_round_trips_the_cluster_lists(tmp_path: Path) -> None:
    from qauvern_hpc.policy.compiled import render_json

    path = tmp_path / "policy.json"
    path.write_text(render_json(policy()))
    loaded = load_policy(path)
    assert [r.match.get("clusters") for r in loaded.rules] == [("*-test",), ("qa",), ("!qa",)]


def test_bad_cluster_glob_is_refused() -> None:
    from qauvern_hpc.core.errors import ConfigError

    with pytest.raises(ConfigError, match="clusters"):
        parse_config(CONFIG.replace('"*-test"', '"q{a}"'), "/c.yaml", check_key_files=False)


def test_cluster_name_from_slurm_conf(tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text("# ClusterName=commented\nSlurmctldHost=h\n  clustername = qb  # ours\n")
    assert slurm_cluster_name(conf) == "qb"
    conf.write_text("SlurmctldHost=h\n")
    assert slurm_cluster_name(conf) is None
    assert slurm_cluster_name(tmp_path / "missing.conf") is None


def _render_args(tmp_path: Path, config: Path, **kw: object) -> argparse.Namespace:
    args = {"config": str(config), "output_dir": str(tmp_path), "print_format": None, "no_key_check": True}
    args.update({"cluster": None, "json": False, **kw})
    return argparse.Namespace(**args)


def test_render_policy_takes_the_cluster_from_slurm_conf_or_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    (tmp_path / "slurm.conf").write_text("ClusterName=qb\n")
    assert render_policy.run(_render_args(tmp_path, config)) == 0
    assert 'cluster = "qb"' in (tmp_path / "qpu_policy.lua").read_text()
    assert render_policy.run(_render_args(tmp_path, config, cluster="qa")) == 0
    assert 'cluster = "qa"' in (tmp_path / "qpu_policy.lua").read_text()
    (tmp_path / "slurm.conf").write_text("SlurmctldHost=h\n")
    capsys.readouterr()
    assert render_policy.run(_render_args(tmp_path, config)) == 0
    assert "cluster = " not in (tmp_path / "qpu_policy.lua").read_text()
    assert "rules match on clusters but the cluster is unknown" in capsys.readouterr().err


@pytest.mark.process
@pytest.mark.skipif(not INTERPRETERS, reason="no Lua interpreter on PATH")
@pytest.mark.parametrize("lua", INTERPRETERS or ["lua"])
def test_job_submit_lua_decides_by_the_rendered_cluster(lua: str, tmp_path: Path) -> None:
    paths = {}
    for cluster, *_ in CASES:
        path = tmp_path / f"policy-{cluster or 'none'}.lua"
        path.write_text(render_lua(policy(), cluster or None), encoding="utf-8")
        paths[cluster] = str(path)
    body = f"""
for _, c in ipairs({to_lua([{"cluster": c, "path": paths[c]} for c, *_ in CASES])}) do
  Q.settings.policy_file = c.path
  reset()
  local job_desc = {{user_name = "alice", account = "phys", partition = "qpu",
                    spank_job_env = {{[0] = "QPU=ibm_torino"}}}}
  local rc = slurm_job_submit(job_desc, {{}}, 4242420)
  local d = Q.decide(assert(Q.load_policy(c.path)), {{user = "alice", account = "phys", partition = "qpu",
                     cluster = c.cluster}}, Q.parse_request("ibm_torino"))
  out(c.cluster, rc, LOG.user[1], tostring(d.allowed), d.rule, d.instance, d.message)
end
"""
    rows = run_lua(lua, tmp_path, body)
    assert len(rows) == len(CASES)
    for (cluster, allowed, rule, instance), row in zip(CASES, rows, strict=True):
        py = decide(policy(), JobIdentity("alice", "phys", "qpu", "", cluster), parse_request("ibm_torino"))
        got_cluster, rc, user_msg, lua_allowed, lua_rule, lua_instance, message = row
        assert got_cluster == cluster
        assert (lua_allowed == "true", lua_rule, None if lua_instance == "<nil>" else lua_instance) == (
            allowed,
            rule,
            instance,
        )
        assert message == py.message
        if allowed:
            assert (rc, user_msg) == ("0", "<nil>")
        else:
            assert (rc, user_msg) == ("-1", "qpu: " + py.message)
