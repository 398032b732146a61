"""An Open-plan instance on a real Slurm cluster: `sbatch --qpu` runs in job mode, with no IBM session, and
`collect` charges the job exactly what the emulator charged for the IBM job it submitted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from qauvern_hpc.accounting.ledger import open_ledger
from qauvern_hpc.devtools import qpu_site
from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.devtools.sandbox import Sandbox

pytestmark = pytest.mark.slurm


def test_an_open_plan_qpu_job_runs_in_job_mode_without_a_session_and_collect_charges_its_ibm_job(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    site_dir = Path(tempfile.mkdtemp(prefix="qauvern-hpc-open-", dir="/tmp"))
    site_dir.chmod(0o755)
    try:
        with run_emulator(qpu_site.emulator_seed(open_plan=True), clock="real") as emu:
            t0 = datetime.now(UTC)
            site = qpu_site.write_site(site_dir, emu.base_url, open_plan=True, operations=True)
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

            # collect: the Slurm job is charged the IBM job it submitted, as the emulator charged it
            deadline = time.monotonic() + 60
            while "qauvern:v1" not in sb.job(job, ("JobID", "AdminComment")).get("AdminComment", ""):
                assert time.monotonic() < deadline, "the AdminComment never reached sacct"
                time.sleep(0.3)
            proc = subprocess.run(
                [sys.executable, "-m", "qauvern_hpc", "-c", str(site.config), "--json", "collect"],
                env={**os.environ, "SLURM_CONF": str(sb.slurm_conf)},
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert proc.returncode == 0, proc.stderr
            doc = json.loads(proc.stdout)
            assert (doc["job_mode"], doc["job_mode_ibm_jobs"], doc["job_mode_overlaps"]) == (1, 1, [])
            with open_ledger(f"sqlite:///{site.directory}/ledger.db") as ledger:
                (row,) = ledger.runs()
            charged = ibm_job["used_seconds"]  # the snapshot was taken after the job completed
            assert charged > 0
            assert (row.job_id_raw, row.instance, row.mode, row.session_id) == (job, "learners", "job", None)
            assert row.usage_state == "final" and row.quantum_seconds == pytest.approx(charged, abs=1e-6)
            assert row.quantum_seconds == pytest.approx(
                emu.state.usage_seconds(qpu_site.CRN_OPEN, t0, datetime.now(UTC)), abs=1e-3
            )
    finally:
        shutil.rmtree(site_dir, ignore_errors=True)
