"""An Open-plan instance on a real Slurm cluster: `sbatch --qpu` runs in job mode, with no IBM session."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from qauvern_hpc.devtools import qpu_site
from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.devtools.sandbox import Sandbox

pytestmark = pytest.mark.slurm


def test_an_open_plan_qpu_job_runs_in_job_mode_without_a_session(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    site_dir = Path(tempfile.mkdtemp(prefix="qauvern-hpc-open-", dir="/tmp"))
    site_dir.chmod(0o755)
    try:
        with run_emulator(qpu_site.emulator_seed(open_plan=True), clock="real") as emu:
            site = qpu_site.write_site(site_dir, emu.base_url, open_plan=True)
            sb = sandbox_factory("open", hooks=qpu_site.sandbox_hooks(site), accounts=qpu_site.ACCOUNTS)
            qpu_site.set_hook_env(site, {"SLURM_CONF": str(sb.slurm_conf)})
            script = sb.jobs_dir / "qpu_job.py"
            shutil.copy(qpu_site.JOB_SCRIPT, script)
            script.chmod(0o755)

            job = sb.submit(
                f"/usr/bin/python3 {script} 2\n",
                user="qcarol",
                account="chem",
                partition="debug",
                extra_args=["--qpu=ibm_torino"],
            )
            assert sb.wait_job(job, timeout=90) == "COMPLETED", (sb.jobs_dir / f"slurm-{job}.out").read_text()
            out = (sb.jobs_dir / f"slurm-{job}.out").read_text()
            assert "ibm_torino session=- job=" in out and "status=Completed" in out, out

            snapshot = emu.state.snapshot()
            assert snapshot["sessions"] == []  # no session was ever created at IBM
            (ibm_job,) = snapshot["jobs"]
            assert ibm_job["instance"] == qpu_site.CRN_OPEN and ibm_job.get("session_id") is None

            record = json.loads((site.state_dir / "jobs" / f"{job}.json").read_text())
            (res,) = record["resources"]
            assert (res["instance"], res["session_mode"], res["session_id"]) == ("learners", "job", None)
            assert record["error"] is None
    finally:
        shutil.rmtree(site_dir, ignore_errors=True)
