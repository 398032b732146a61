"""The researcher's front door on a real Slurm cluster: `sbatch --qpu=...` with the SPANK plugin,
job_submit.lua, the controller hooks and the IBM emulator. No fake Slurm anywhere."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.devtools import qpu_site
from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.devtools.sandbox import Sandbox, SubmitError
from qauvern_hpc.record.admin_comment import parse_admin_comment

pytestmark = pytest.mark.slurm


@dataclass
class QpuCluster:
    sb: Sandbox
    emu: Any
    site: qpu_site.Site
    job_script: Path

    def sessions(self) -> list[dict[str, Any]]:
        return list(self.emu.state.snapshot()["sessions"])

    def output(self, jobid: int) -> str:
        return (self.sb.jobs_dir / f"slurm-{jobid}.out").read_text(errors="replace")


@pytest.fixture(scope="module")
def qpu(sandbox_factory: Callable[..., Sandbox]) -> Iterator[QpuCluster]:
    site_dir = Path(tempfile.mkdtemp(prefix="qauvern-hpc-site-", dir="/tmp"))
    site_dir.chmod(0o755)
    with run_emulator(qpu_site.emulator_seed(), clock="real") as emu:
        site = qpu_site.write_site(site_dir, emu.base_url)
        sb = sandbox_factory("qpu", hooks=qpu_site.sandbox_hooks(site), accounts=qpu_site.ACCOUNTS)
        qpu_site.set_hook_env(site, {"SLURM_CONF": str(sb.slurm_conf)})
        script = sb.jobs_dir / "qpu_job.py"
        shutil.copy(qpu_site.JOB_SCRIPT, script)
        script.chmod(0o755)
        yield QpuCluster(sb, emu, site, script)
    shutil.rmtree(site_dir, ignore_errors=True)


def _wait(pred: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def _no_node_drained(sb: Sandbox) -> None:
    state = sb.run(["sinfo", "-h", "-N", "-o", "%t"], check=True).stdout.split()
    assert not any(s.startswith(("drain", "drng")) for s in state), state


def test_physics_job_runs_on_its_session_and_releases_it(qpu: QpuCluster) -> None:
    job = qpu.sb.submit(
        f"/usr/bin/python3 {qpu.job_script} 4\nenv | grep -E '^(QRMI|SLURM_JOB_QPU)' | sort\n",
        user="qalice",
        account="physics",
        extra_args=["--qpu=ibm_torino"],
    )
    assert qpu.sb.wait_job(job, timeout=90) == "COMPLETED"
    out = qpu.output(job)
    assert "status=Completed quantum_seconds=4" in out
    assert "QRMI_JOB_QPU_RESOURCES=ibm_torino" in out
    assert "SLURM_JOB_QPU_TYPES=ibm-quantum-compute-service" in out
    session_id = out.split("session=")[1].split()[0]
    sess = {s["id"]: s for s in qpu.sessions()}[session_id]
    assert sess["backend"] == "ibm_torino"
    # Released after the job, by the epilog.
    assert _wait(lambda: {s["id"]: s for s in qpu.sessions()}[session_id]["state"] == "closed")
    # sacct alone tells what the job used.
    assert _wait(lambda: "qauvern:v1" in qpu.sb.job(job, ("JobID", "AdminComment")).get("AdminComment", ""))
    rec = parse_admin_comment(qpu.sb.job(job, ("JobID", "AdminComment"))["AdminComment"])
    assert rec is not None and rec.instance == "physics" and rec.resources == (("ibm_torino", session_id),)
    _no_node_drained(qpu.sb)


def test_an_admins_comment_is_kept_beside_our_record(qpu: QpuCluster) -> None:
    job = qpu.sb.submit(
        f"/usr/bin/python3 {qpu.job_script} 1\n",
        user="qalice",
        account="physics",
        extra_args=["--qpu=ibm_torino", "--hold"],
    )
    note = "ticket=4711 | checked by ops = yes"
    qpu.sb.run(["scontrol", "update", f"JobId={job}", f"AdminComment={note}"], check=True)
    qpu.sb.run(["scontrol", "release", str(job)], check=True)
    assert qpu.sb.wait_job(job, timeout=90) == "COMPLETED"

    def comment() -> str:  # AdminComment last, since the admin's text holds `|` (sacct does not escape it)
        argv = ["sacct", "-P", "-n", "-X", "-j", str(job), "-S", "now-1days", "-o", "JobID,AdminComment"]
        out = qpu.sb.run(argv, check=True).stdout.strip()
        return out.partition("|")[2]

    assert _wait(lambda: "qauvern:v1" in comment()), comment()
    text = comment()
    assert text.startswith(note + " | qauvern:v1;"), text
    rec = parse_admin_comment(text)
    assert rec is not None and rec.instance == "physics" and rec.resources[0][0] == "ibm_torino"
    assert rec.resources[0][1] in {s["id"] for s in qpu.sessions()}


def test_chemistry_lands_on_its_own_instance(qpu: QpuCluster) -> None:
    job = qpu.sb.submit(
        f"/usr/bin/python3 {qpu.job_script} 2\n",
        user="qcarol",
        account="chem",
        partition="quantum",
        extra_args=["--qpu=ibm_fez"],
    )
    assert qpu.sb.wait_job(job, timeout=90) == "COMPLETED"
    session_id = qpu.output(job).split("session=")[1].split()[0]
    sess = {s["id"]: s for s in qpu.sessions()}[session_id]
    assert sess["mode"] == "dedicated"
    assert sess["instance"] == qpu_site.CRN_CHEM


@pytest.mark.parametrize(
    ("user", "account", "partition", "qpu_arg", "expected"),
    [
        ("qcarol", "chem", "debug", "ibm_fez", "no rule"),
        ("qcarol", "chem", "quantum", "ibm_torino", "chemistry"),
        ("qalice", "physics", None, "ibm_nowhere", "unknown"),
    ],
)
def test_denied_at_submit_with_the_rule(
    qpu: QpuCluster, user: str, account: str, partition: str | None, qpu_arg: str, expected: str
) -> None:
    before = len(qpu.sessions())
    with pytest.raises(SubmitError) as err:
        qpu.sb.submit(
            "true\n", user=user, account=account, partition=partition, extra_args=[f"--qpu={qpu_arg}"]
        )
    msg = str(err.value)
    assert "qpu:" in msg and expected in msg, msg
    assert len(qpu.sessions()) == before


@pytest.mark.parametrize(
    "bad", ["", ";rm -rf /", "$(id)", "a" * 10_000, "ibm_torino,ibm_torino", "a,,b", "ibm_torino,"]
)
def test_malformed_qpu_never_reaches_a_shell(qpu: QpuCluster, bad: str, tmp_path: Path) -> None:
    with pytest.raises(SubmitError) as err:
        qpu.sb.submit(
            "touch /tmp/qauvern-hpc-should-not-exist\n",
            user="qalice",
            account="physics",
            extra_args=[f"--qpu={bad}"],
        )
    assert "qpu:" in str(err.value)
    assert not Path("/tmp/qauvern-hpc-should-not-exist").exists()


def test_cancelled_job_releases_its_session(qpu: QpuCluster) -> None:
    before = {s["id"] for s in qpu.sessions()}
    job = qpu.sb.submit("sleep 120\n", user="qbob", account="physics", extra_args=["--qpu=ibm_torino"])
    qpu.sb.wait_job(job, states=("RUNNING",), timeout=60)
    new = [s for s in qpu.sessions() if s["id"] not in before]
    assert len(new) == 1 and new[0]["state"] != "closed"
    qpu.sb.run(["scancel", str(job)], check=True)
    assert qpu.sb.wait_job(job, states=("CANCELLED",), timeout=60) == "CANCELLED"
    assert _wait(lambda: {s["id"]: s for s in qpu.sessions()}[new[0]["id"]]["state"] == "closed")
    _no_node_drained(qpu.sb)


def test_qrmi_inside_the_job_acquires_nothing_twice(qpu: QpuCluster) -> None:
    pytest.importorskip("qrmi")
    before = len(qpu.sessions())
    code = qpu.sb.jobs_dir / "qrmi_check.py"
    code.write_text(
        "import os\n"
        "from qrmi import QuantumResource, ResourceType\n"
        "r = QuantumResource('ibm_torino', ResourceType.IBMQuantumComputeService)\n"
        "print('accessible', r.is_accessible())\n"
        "print('token', os.environ['ibm_torino_QRMI_JOB_ACQUISITION_TOKEN'])\n"
    )
    job = qpu.sb.submit(
        f"{sys.executable} {code}\n", user="root", account="physics", extra_args=["--qpu=ibm_torino"]
    )
    assert qpu.sb.wait_job(job, timeout=90) == "COMPLETED", qpu.output(job)
    out = qpu.output(job)
    assert "accessible True" in out
    assert len(qpu.sessions()) == before + 1


def test_ibm_down_fail_closed_fails_the_job_not_the_node(qpu: QpuCluster) -> None:
    rule = qpu.emu.faults.add(path=r"^/api/v1/sessions$", method="POST", drop=True)
    try:
        job = qpu.sb.submit(
            "echo ran-anyway\n", user="qalice", account="physics", extra_args=["--qpu=ibm_torino"]
        )
        state = qpu.sb.wait_job(job, states=("FAILED",), timeout=120)
    finally:
        qpu.emu.faults.clear()
        del rule
    assert state == "FAILED"
    out = qpu.output(job)
    assert "qpu:" in out and "could not acquire ibm_torino" in out
    assert "ran-anyway" not in out
    _no_node_drained(qpu.sb)
    # The cluster still runs ordinary jobs.
    ok = qpu.sb.submit("true\n", user="qalice", account="physics")
    assert qpu.sb.wait_job(ok, timeout=60) == "COMPLETED"


def test_jobs_without_qpu_are_untouched(qpu: QpuCluster) -> None:
    before = len(qpu.sessions())
    job = qpu.sb.submit("env | grep -c QRMI_ || true\n", user="qbob", account="physics")
    assert qpu.sb.wait_job(job, timeout=60) == "COMPLETED"
    assert qpu.output(job).strip() == "0"
    assert len(qpu.sessions()) == before


def test_srun_with_qpu_gets_a_session_too(qpu: QpuCluster) -> None:
    before = {s["id"] for s in qpu.sessions()}
    res = qpu.sb.run(
        ["srun", "--qpu=ibm_torino", "-A", "physics", "/usr/bin/python3", str(qpu.job_script), "1"],
        user="qalice",
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "status=Completed quantum_seconds=1" in res.stdout
    new = [s for s in qpu.sessions() if s["id"] not in before]
    assert len(new) == 1
    assert _wait(lambda: {s["id"]: s for s in qpu.sessions()}[new[0]["id"]]["state"] == "closed")


def test_srun_steps_inside_a_qpu_batch_job_share_its_session(qpu: QpuCluster) -> None:
    before = {s["id"] for s in qpu.sessions()}
    job = qpu.sb.submit(
        f"srun -n1 /usr/bin/python3 {qpu.job_script} 1\nsrun -n1 /usr/bin/python3 {qpu.job_script} 1\n",
        user="qbob",
        account="physics",
        extra_args=["--qpu=ibm_torino"],
    )
    assert qpu.sb.wait_job(job, timeout=120) == "COMPLETED", qpu.output(job)
    sessions = {
        line.split("session=")[1].split()[0] for line in qpu.output(job).splitlines() if "session=" in line
    }
    assert len(sessions) == 1
    assert len([s for s in qpu.sessions() if s["id"] not in before]) == 1
