"""job_submit.lua's pair licenses (admission controller): one `qpu_<instance>__<backend>:1` per requested
resource of the mapped instance, only when the rendered policy carries `pair_licenses`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qauvern_hpc.policy.compiled import render_lua
from tests.support.mapping_cases import policy
from tests.unit.policy.test_job_submit_lua import LUA, run_lua

PAIRS = {"phys": {"ibm_torino": "qpu_phys__ibm_torino", "ibm_fez": "qpu_phys__ibm_fez"}}


def _policy_file(tmp_path: Path, pairs: dict[str, dict[str, str]]) -> Path:
    path = tmp_path / "pairs_policy.lua"
    path.write_text(render_lua(dataclasses.replace(policy("main"), pair_licenses=pairs)), encoding="utf-8")
    return path


@LUA
def test_with_pair_licenses_replaces_pair_entries_only(lua: str, tmp_path: Path) -> None:
    rows = run_lua(
        lua,
        tmp_path,
        'out(Q.with_pair_licenses(nil, {"qpu_a__b"}))\n'
        'out(Q.with_pair_licenses("qpu_a:1,qpu_x__y:1,gpu:2", {"qpu_a__b", "qpu_a__c"}))\n',
    )
    assert rows == [["qpu_a__b:1"], ["qpu_a:1,gpu:2,qpu_a__b:1,qpu_a__c:1"]]


BODY = """
local job = {user_name = "alice", account = "physics", partition = "cpu", licenses = LIC,
             spank_job_env = {[0] = "QPU=" .. QPU}}
local rc = slurm_job_submit(job, {}, 1000)
out(rc, job.licenses)
"""


@LUA
@pytest.mark.parametrize(
    ("pairs", "qpu", "lic", "expected"),
    [
        (PAIRS, "ibm_torino", None, ["0", "qpu_phys:1,qpu_phys__ibm_torino:1"]),
        (PAIRS, "ibm_torino", "qpu_phys__ibm_fez:1", ["0", "qpu_phys:1,qpu_phys__ibm_torino:1"]),
        ({}, "ibm_torino", None, ["0", "qpu_phys:1"]),  # admission off: no pair license
    ],
)
def test_submit_adds_one_pair_license_per_resource(
    lua: str, tmp_path: Path, pairs: dict[str, dict[str, str]], qpu: str, lic: str | None, expected: list[str]
) -> None:
    env = {
        "QAUVERN_HPC_QPU_POLICY": str(_policy_file(tmp_path, pairs)),
        "QAUVERN_HPC_QPU_INSTANCE_LICENSE": "qpu_",
    }
    head = f'QPU = "{qpu}"\nLIC = {"nil" if lic is None else repr(lic)}\n'.replace("'", '"')
    assert run_lua(lua, tmp_path, head + BODY, env=env) == [expected]
