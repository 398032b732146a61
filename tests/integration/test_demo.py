"""README's first command ends in `qauvern-hpc demo`: it must work as written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slurm


def test_demo_runs_every_job_on_its_instance_and_cleans_up(sandbox_factory: object) -> None:
    # sandbox_factory only makes the test skip/fail like the other Slurm tests when Slurm is missing.
    proc = subprocess.run(
        [sys.executable, "-m", "qauvern_hpc", "demo", "--json"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert [j["state"] for j in result["jobs"]] == ["COMPLETED"] * 3
    by_job = {j["user"]: j for j in result["jobs"]}
    assert {r["instance"] for r in by_job["qalice"]["resources"]} == {"physics"}
    assert {r["instance"] for r in by_job["qcarol"]["resources"]} == {"chemistry"}
    assert all(r["session_state"] == "closed" for j in result["jobs"] for r in j["resources"])
    assert [r["quantum_seconds"] for r in by_job["qbob"]["resources"]] == [5.0, 5.0]
    assert all(r["message"].startswith("qpu:") for r in result["refused"])
    assert "cluster up" in proc.stderr and "stopping the cluster" in proc.stderr
    # The admin side ran as real commands against the same config and cluster.
    ops = result["operations"]
    assert ops["rebalance"]["exit"] == 0, ops["rebalance"]
    assert ops["rebalance"]["json"]["status"] == "completed"
    moved = {r["instance"]: r["allocation_seconds"] for r in ops["rebalance"]["json"]["instances"]}
    assert moved["physics"]["new"] != moved["physics"]["current"]
    for name in ("collect", "usage"):
        assert ops[name]["exit"] == 0 or ops[name].get("skipped"), ops[name]
    # doctor finds the demo's installation whole: nothing failed, and collect has just run
    assert ops["doctor"]["exit"] == 0, ops["doctor"]
    checks = {c["name"]: c["status"] for c in ops["doctor"]["json"]["checks"]}
    assert "fail" not in checks.values(), ops["doctor"]["json"]
    assert checks["collect"] == "ok" and checks["sbatch --qpu"] == "ok" and checks["IBM physics"] == "ok"
