"""The controller hooks against the IBM emulator over real HTTP: one session per job, released at the end,
usable by qrmi from inside the job; faults follow the configured fail mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.hooks.jobenv import parse_env_file
from tests.support.site import CRN_PHYS, emulator_seed, write_site


@pytest.fixture()
def emu() -> Iterator[object]:
    with run_emulator(emulator_seed(), clock="real") as e:
        yield e


def _hook(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a hook the way slurmctld does: a fresh process with a minimal environment."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run(
        [sys.executable, "-m", f"qauvern_hpc.hooks.{name}"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _job_env(tmp: Path, policy: Path, job_id: str = "7", **kw: str) -> dict[str, str]:
    env = {
        "SLURM_JOB_ID": job_id,
        "SLURM_JOB_USER": "qalice",
        "SLURM_JOB_ACCOUNT": "physics",
        "SLURM_JOB_PARTITION": "debug",
        "SPANK_QPU": "ibm_torino,ibm_fez",
        "QAUVERN_HPC_POLICY": str(policy),
        "QAUVERN_HPC_LOG_FILE": str(tmp / "hooks.log"),
        "QAUVERN_HPC_SCONTROL": "/bin/true",
    }
    env.update(kw)
    return env


def test_prolog_opens_one_session_per_resource_and_epilog_closes_them(emu, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = write_site(tmp_path / "site", emu.base_url)
    env = _job_env(tmp_path, policy)
    assert _hook("prolog", env).returncode == 0
    job_env = parse_env_file((tmp_path / "site" / "state" / "jobs" / "7.env").read_text())
    assert "QAUVERN_HPC_ERROR" not in job_env, job_env.get("QAUVERN_HPC_ERROR")
    sessions = emu.state.snapshot()["sessions"]
    assert len(sessions) == 2
    by_id = {s["id"]: s for s in sessions}
    torino = job_env["ibm_torino_QRMI_IBM_QCS_SESSION_ID"]
    fez = job_env["ibm_fez_QRMI_JOB_ACQUISITION_TOKEN"]
    assert by_id[torino]["backend"] == "ibm_torino" and by_id[torino]["mode"] == "batch"
    assert by_id[fez]["mode"] == "dedicated"
    assert job_env["ibm_torino_QRMI_IBM_QCS_SERVICE_CRN"] == CRN_PHYS
    assert job_env["ibm_torino_QRMI_IBM_QCS_ENDPOINT"] == f"{emu.base_url}/api/v1"
    assert job_env["QRMI_JOB_QPU_RESOURCES"] == "ibm_torino,ibm_fez"

    assert _hook("epilog", env).returncode == 0
    states = {s["id"]: s["state"] for s in emu.state.snapshot()["sessions"]}
    assert states[torino] == "closed" and states[fez] == "closed"
    assert not (tmp_path / "site" / "state" / "jobs" / "7.env").exists()


def test_qrmi_in_the_job_reuses_the_prolog_session(emu, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("qrmi")
    policy = write_site(tmp_path / "site", emu.base_url)
    env = _job_env(tmp_path, policy, SPANK_QPU="ibm_torino")
    assert _hook("prolog", env).returncode == 0
    job_env = parse_env_file((tmp_path / "site" / "state" / "jobs" / "7.env").read_text())
    code = (
        "import os\n"
        "from qrmi import QuantumResource, ResourceType\n"
        "r = QuantumResource('ibm_torino', ResourceType.IBMQuantumComputeService)\n"
        "print(r.is_accessible())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **job_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
    assert len(emu.state.snapshot()["sessions"]) == 1  # qrmi opened nothing of its own


def test_second_resource_fails_fail_closed_releases_the_first(tmp_path: Path) -> None:
    seed = emulator_seed()
    seed["backends"] = [{"name": "ibm_torino", "status": "online"}]  # ibm_fez is gone at IBM
    with run_emulator(seed, clock="real") as emu:
        policy = write_site(tmp_path / "site", emu.base_url, fail_mode="closed")
        env = _job_env(tmp_path, policy)
        assert _hook("prolog", env).returncode == 0
        job_env = parse_env_file((tmp_path / "site" / "state" / "jobs" / "7.env").read_text())
        assert job_env["QAUVERN_HPC_FAIL_MODE"] == "closed"
        assert "could not acquire" in job_env["QAUVERN_HPC_ERROR"]
        sessions = emu.state.snapshot()["sessions"]
        assert len(sessions) == 1  # ibm_torino's session was opened...
        assert sessions[0]["state"] == "closed"  # ...and given back at once


def test_dropped_connections_are_bounded_in_time(emu, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = write_site(tmp_path / "site", emu.base_url, fail_mode="open")
    emu.faults.add(path=r"^/api/v1/sessions$", method="POST", drop=True)
    env = _job_env(tmp_path, policy, SPANK_QPU="ibm_torino")
    proc = _hook("prolog", env)
    assert proc.returncode == 0
    job_env = parse_env_file((tmp_path / "site" / "state" / "jobs" / "7.env").read_text())
    assert job_env["QAUVERN_HPC_FAIL_MODE"] == "open"
    assert job_env["QRMI_JOB_QPU_RESOURCES"] == "ibm_torino"


def test_shipped_job_script_runs_work_in_the_prolog_session(emu, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The stdlib-only job script (what demo/sandbox jobs run) charges its work to the job's session."""
    import qauvern_hpc

    policy = write_site(tmp_path / "site", emu.base_url)
    env = _job_env(tmp_path, policy, SPANK_QPU="ibm_torino")
    assert _hook("prolog", env).returncode == 0
    job_env = parse_env_file((tmp_path / "site" / "state" / "jobs" / "7.env").read_text())
    script = Path(qauvern_hpc.__file__).parent / "data" / "qpu_job.py"
    proc = subprocess.run(
        ["/usr/bin/python3", str(script), "3"], env=job_env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    session = job_env["ibm_torino_QRMI_IBM_QCS_SESSION_ID"]
    assert f"session={session}" in proc.stdout
    assert "status=Completed quantum_seconds=3" in proc.stdout
    jobs = [j for j in emu.state.snapshot()["jobs"] if j.get("session_id") == session]
    assert len(jobs) == 1


def test_release_pending_closes_what_the_epilog_could_not(emu, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from qauvern_hpc.hooks.release import release_pending
    from qauvern_hpc.policy.compiled import load_policy

    policy_path = write_site(tmp_path / "site", emu.base_url)
    state = tmp_path / "site" / "state"
    env = _job_env(tmp_path, policy_path, SPANK_QPU="ibm_torino")
    assert _hook("prolog", env).returncode == 0
    # IBM fails every close while the epilog runs: the session stays open, the record says why.
    emu.faults.add(path=r"^/api/v1/sessions/[^/]+/close$", method="DELETE", status=503, times=50)
    assert _hook("epilog", env).returncode == 0
    record = json.loads((state / "jobs" / "7.json").read_text())
    assert record["ended_at"] and "503" in record["resources"][0]["close_error"]
    session_id = record["resources"][0]["session_id"]
    assert {s["id"]: s for s in emu.state.snapshot()["sessions"]}[session_id]["state"] != "closed"
    # A second job whose epilog never ran, and that Slurm no longer knows.
    env8 = _job_env(tmp_path, policy_path, job_id="8", SPANK_QPU="ibm_torino")
    assert _hook("prolog", env8).returncode == 0
    # A third that is still running must be left alone.
    env9 = _job_env(tmp_path, policy_path, job_id="9", SPANK_QPU="ibm_torino")
    assert _hook("prolog", env9).returncode == 0
    emu.faults.clear()

    policy = load_policy(policy_path)
    dry = release_pending(policy, state, is_alive=lambda j: j == "9", dry_run=True)
    assert [(e["job"], e["why"], e["released"]) for e in dry] == [
        ("7", "epilog could not close", False),
        ("8", "job no longer known to Slurm", False),
    ]
    done = release_pending(policy, state, is_alive=lambda j: j == "9")
    assert [e["released"] for e in done] == [True, True]
    states = {s["id"]: s["state"] for s in emu.state.snapshot()["sessions"]}
    closed = {
        json.loads((state / "jobs" / f"{j}.json").read_text())["resources"][0]["session_id"] for j in (7, 8)
    }
    assert all(states[s] == "closed" for s in closed)
    running = json.loads((state / "jobs" / "9.json").read_text())["resources"][0]["session_id"]
    assert states[running] != "closed"
    assert release_pending(policy, state, is_alive=lambda j: j == "9") == []  # nothing left: idempotent


def _run_ibm_job(job_env: dict[str, str], seconds: float) -> str:
    """What a job's code does: submit an IBM job of `seconds` quantum time into the prolog's session."""
    import httpx

    p = "ibm_torino_QRMI_IBM_QCS_"
    token = httpx.post(
        job_env[p + "IAM_ENDPOINT"].rstrip("/") + "/identity/token",
        data={"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": job_env[p + "IAM_APIKEY"]},
    ).json()["access_token"]
    resp = httpx.post(
        job_env[p + "ENDPOINT"] + "/jobs",
        headers={"Authorization": f"Bearer {token}", "Service-CRN": job_env[p + "SERVICE_CRN"]},
        json={
            "program_id": "sampler",
            "backend": "ibm_torino",
            "session_id": job_env[p + "SESSION_ID"],
            "params": {"emulator": {"quantum_seconds": seconds}},
        },
    )
    resp.raise_for_status()
    return str(resp.json()["id"])


def _set_on_job_end(policy: Path, value: str) -> None:
    doc = json.loads(policy.read_text())
    doc["resources"]["ibm_torino"]["on_job_end"] = value
    policy.write_text(json.dumps(doc))


@pytest.mark.parametrize("on_job_end", ["close", "cancel"])
def test_a_slurm_job_ending_early_cancels_its_running_ibm_job_only_when_told(
    emu, tmp_path: Path, on_job_end: str
) -> None:  # type: ignore[no-untyped-def]
    policy = write_site(tmp_path / "site", emu.base_url)
    _set_on_job_end(policy, on_job_end)
    env = _job_env(tmp_path, policy, SPANK_QPU="ibm_torino")
    assert _hook("prolog", env).returncode == 0
    job_env = parse_env_file((tmp_path / "site" / "state" / "jobs" / "7.env").read_text())
    running = _run_ibm_job(job_env, 600)
    queued = _run_ibm_job(job_env, 600)
    deadline = time.monotonic() + 30
    while emu.state.job(running)["status"] != "Running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert emu.state.job(running)["status"] == "Running"
    # scancel / time limit: the job's tasks are gone, slurmctld runs the epilog
    assert _hook("epilog", env).returncode == 0
    assert emu.state.job(queued)["status"] == "Cancelled"  # closing a session cancels its queued jobs
    record = json.loads((tmp_path / "site" / "state" / "jobs" / "7.json").read_text())
    [res] = record["resources"]
    if on_job_end == "cancel":
        assert emu.state.job(running)["status"] == "Cancelled"
        assert res["cancelled_jobs"] == [running]
        # IBM charges the cancelled job for the time it held the QPU, not its 600 s
        assert emu.state.session(res["session_id"])["elapsed_time"] < 30
        from qauvern_hpc.devtools import qpu_site
        from qauvern_hpc.ibm import Endpoints, IBMClient

        with IBMClient(qpu_site.API_KEY, Endpoints.single(emu.base_url)) as client:
            assert client.cancel_job(res["crn"], running) is False  # already ended: IBM's 409, not an error
    else:
        assert emu.state.job(running)["status"] == "Running"  # IBM lets it finish, and charges it
        assert "cancelled_jobs" not in res
    assert res["closed_at"] and "cancel_error" not in res
