"""job_submit.lua's per-instance license (QAUVERN_HPC_QPU_INSTANCE_LICENSE): what the rebalancer reads back
from squeue and gates on. Same interpreter harness as test_job_submit_lua.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.policy.test_job_submit_lua import LUA, run_lua, write_policy


@LUA
def test_with_instance_license_replaces_prefixed_entries(lua: str, tmp_path: Path) -> None:
    rows = run_lua(
        lua,
        tmp_path,
        'out(Q.with_instance_license(nil, "qpu_", "phys"))\n'
        'out(Q.with_instance_license("qpu:1, qpu_chem:5 ,gpu_lic:2", "qpu_", "phys"))\n'
        'out(Q.with_instance_license("qpu_phys:1", "qpu_", "phys"))\n',
    )
    assert rows == [["qpu_phys:1"], ["qpu:1,gpu_lic:2,qpu_phys:1"], ["qpu_phys:1"]]


BODY = """
local job = {user_name = "alice", account = "physics", partition = "cpu", licenses = LIC,
             spank_job_env = QPU and {[0] = "QPU=" .. QPU} or nil}
local rc = slurm_job_submit(job, {}, 1000)
out(rc, job.licenses)
"""


@LUA
@pytest.mark.parametrize(
    ("prefix", "qpu", "lic", "expected"),
    [
        ("qpu_", "ibm_torino", None, ["0", "qpu_phys:1"]),  # allowed: the instance's license added
        ("qpu_", "ibm_torino", "qpu_chem:1,qpu:1", ["0", "qpu:1,qpu_phys:1"]),  # a user's own qpu_* replaced
        (None, "ibm_torino", None, ["0", "<nil>"]),  # feature off: nothing added
        ("qpu_", None, "qpu_chem:1", ["0", "qpu_chem:1"]),  # not a QPU job: untouched
        ("qpu_", "ibm_nowhere", None, ["-1", "<nil>"]),  # refused: nothing added
    ],
)
def test_submit_adds_the_license_of_the_mapped_instance(
    lua: str, tmp_path: Path, prefix: str | None, qpu: str | None, lic: str | None, expected: list[str]
) -> None:
    env = {"QAUVERN_HPC_QPU_POLICY": str(write_policy(tmp_path))}
    if prefix:
        env["QAUVERN_HPC_QPU_INSTANCE_LICENSE"] = prefix
    head = f"QPU = {'nil' if qpu is None else repr(qpu)}\nLIC = {'nil' if lic is None else repr(lic)}\n"
    assert run_lua(lua, tmp_path, head.replace("'", '"') + BODY, env=env) == [expected]
