"""The sandbox cluster against real Slurm: bring-up, jobs and accounting, association enforcement, hook
points, two sandboxes side by side, and a clean `down`."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qauvern_hpc.cli import main as cli_main
from qauvern_hpc.devtools.sandbox import DAEMONS, Hooks, Sandbox, SandboxError, SubmitError

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROGRAMS = {"munged", "mariadbd", "mysqld", "mysqld_safe", "slurmdbd", "slurmctld", "slurmd", "slurmstepd"}


def sandbox_processes(workdir: Path) -> list[tuple[int, str]]:
    """Live (non-zombie) daemon processes that belong to `workdir`: by command line or environment."""
    found: list[tuple[int, str]] = []
    marker_env = (
        f"SLURM_CONF={workdir}/etc/slurm.conf".encode(),
        f"QAUVERN_SANDBOX_WORKDIR={workdir}".encode(),
    )
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe")
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # gone, or a zombie (no exe)
        name = Path(exe.removesuffix(" (deleted)")).name.removesuffix("-wlm")
        if name not in PROGRAMS:
            continue
        if str(workdir).encode() + b"/" in cmdline or any(m in environ for m in marker_env):
            found.append((int(entry.name), name))
    return found


def test_cluster_is_up_idle_and_configured(sandbox: Sandbox) -> None:
    assert sandbox.last_up_seconds is not None and sandbox.last_up_seconds < 60
    assert sandbox.is_up()
    res = sandbox.run(["sinfo", "-h", "-o", "%P %T %N"], check=True)
    lines = sorted(res.stdout.split("\n")[:-1])
    assert lines == ["debug* idle qnode1", "quantum idle qnode1"]
    config = sandbox.run(["scontrol", "show", "config"], check=True).stdout
    for expected in (
        "AccountingStorageType   = accounting_storage/slurmdbd",
        "PriorityType            = priority/multifactor",
        "Licenses                = qpu:8",
        f"PlugStackConfig         = {sandbox.etc_dir}/plugstack.conf",
        "JobAcctGatherType       = jobacct_gather/none",
    ):
        assert expected in config
    assert "associations" in config and "safe" in config
    dbd_conf = sandbox.etc_dir / "slurmdbd.conf"
    assert stat.S_IMODE(dbd_conf.stat().st_mode) == 0o600
    # Every daemon's pid file and log lives in the work dir.
    for daemon in DAEMONS:
        assert (sandbox.workdir / "run" / f"{daemon}.pid").is_file()
    assert {"munged.log", "mariadbd.log", "slurmdbd.log", "slurmctld.log", "slurmd.log"} <= {
        p.name for p in sandbox.log_dir.iterdir()
    }


def test_up_again_is_a_quick_no_op(sandbox: Sandbox) -> None:
    before = sandbox.status()
    start = time.monotonic()
    sandbox.up()
    assert time.monotonic() - start < 15
    assert sandbox.status() == before


def test_job_runs_and_is_accounted(sandbox: Sandbox) -> None:
    job = sandbox.submit(
        "id -un; echo ran-in-$SLURM_JOB_PARTITION",
        user="qalice",
        account="physics",
        extra_args=["--licenses=qpu:1", "--job-name=acct-test"],
    )
    assert sandbox.wait_job(job, {"COMPLETED"}, timeout=60) == "COMPLETED"
    rec = sandbox.job(job)
    assert (rec["User"], rec["Account"], rec["Partition"], rec["State"]) == (
        "qalice",
        "physics",
        "debug",
        "COMPLETED",
    )
    assert "license/qpu=1" in rec["AllocTRES"]
    out = (sandbox.jobs_dir / f"slurm-{job}.out").read_text()
    assert out.split() == ["qalice", "ran-in-debug"]


def test_second_partition(sandbox: Sandbox) -> None:
    job = sandbox.submit("true", user="qcarol", account="chemistry", partition="quantum")
    sandbox.wait_job(job, {"COMPLETED"})
    rec = sandbox.job(job)
    assert (rec["User"], rec["Account"], rec["Partition"]) == ("qcarol", "chemistry", "quantum")


def test_failed_job_is_reported(sandbox: Sandbox) -> None:
    job = sandbox.submit("exit 3", user="qbob", account="physics")
    with pytest.raises(SandboxError, match=rf"job {job} ended FAILED"):
        sandbox.wait_job(job, {"COMPLETED"})
    assert sandbox.job(job)["ExitCode"] == "3:0"


def test_submit_without_association_is_refused(sandbox: Sandbox) -> None:
    sandbox.add_unix_users("qdave")  # a Unix user Slurm has no association for
    with pytest.raises(SubmitError) as err:
        sandbox.submit("true", user="qdave")
    assert "Invalid account" in err.value.stderr
    # qalice exists, but not in chemistry.
    with pytest.raises(SubmitError, match="Invalid account"):
        sandbox.submit("true", user="qalice", account="chemistry")


def test_sub_account_and_default_account(sandbox: Sandbox) -> None:
    sandbox.add_accounts({"theory@physics": ["qbob"]})
    job = sandbox.submit("true", user="qbob", account="theory")
    sandbox.wait_job(job)
    assert sandbox.job(job)["Account"] == "theory"
    parent = sandbox.run(
        ["sacctmgr", "-n", "-P", "show", "account", "theory", "withassoc", "format=account,parentname"],
        check=True,
    )
    assert "theory|physics" in parent.stdout.split()
    job = sandbox.submit("true", user="qbob")  # no -A: the default account (the first one) is used
    sandbox.wait_job(job)
    assert sandbox.job(job)["Account"] == "physics"


def test_cli_env_and_status(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["sandbox", "env", "--workdir", str(sandbox.workdir)]) == 0
    out = capsys.readouterr().out
    assert f"export SLURM_CONF={sandbox.slurm_conf}" in out.splitlines()
    assert cli_main(["--json", "sandbox", "status", "--workdir", str(sandbox.workdir)]) == 0
    assert '"up": true' in capsys.readouterr().out


HOOK = """#!/bin/sh
# test hook: record the environment slurmctld gives it
env | sort > "{out}/$(basename "$0").$SLURM_JOB_ID"
exit 0
"""

JOB_SUBMIT_LUA = """
function slurm_job_submit(job_desc, part_list, submit_uid)
  slurm.log_info("sandbox-test lua marker=%s", tostring(os.getenv("SANDBOX_TEST_MARKER")))
  if job_desc.comment == "refuse-me" then
    slurm.log_user("refused by the sandbox test's job_submit.lua")
    return slurm.ERROR
  end
  return slurm.SUCCESS
end
function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
  return slurm.SUCCESS
end
"""


def test_hooks_side_by_side_then_down(
    sandbox: Sandbox, sandbox_factory: Callable[..., Sandbox], tmp_path: Path
) -> None:
    out = tmp_path / "hook-out"
    out.mkdir()
    hooks: dict[str, Path] = {}
    for name in ("prolog_slurmctld", "epilog_slurmctld"):
        script = tmp_path / f"{name}.sh"
        script.write_text(HOOK.format(out=out))
        script.chmod(0o755)
        hooks[name] = script
    lua = tmp_path / "job_submit.lua"
    lua.write_text(JOB_SUBMIT_LUA)
    extra = tmp_path / "qpu_policy.lua"
    extra.write_text("return {}\n")
    sb = sandbox_factory(
        "hooks",
        hooks=Hooks(
            job_submit_lua=lua,
            etc_files=[extra],
            env={"SANDBOX_TEST_MARKER": "from-hooks-env"},
            prolog_flags="Alloc",
            prolog_slurmctld=hooks["prolog_slurmctld"],
            epilog_slurmctld=hooks["epilog_slurmctld"],
        ),
        extra_conf=["MaxJobCount=5000"],
        accounts={"physics": ["qalice"]},
    )
    # Its own ports: the first sandbox is untouched.
    assert (sb.etc_dir / "ports.env").read_text() != (sandbox.etc_dir / "ports.env").read_text()
    assert sandbox.is_up()
    config = sb.run(["scontrol", "show", "config"], check=True).stdout
    assert "JobSubmitPlugins        = lua" in config
    assert "MaxJobCount             = 5000" in config
    assert "PrologFlags             = Alloc" in config
    assert (sb.etc_dir / "job_submit.lua").is_file() and (sb.etc_dir / "qpu_policy.lua").is_file()
    assert (sb.etc_dir / "plugstack.conf").read_text() == ""

    # job_submit.lua is read from slurm.conf's directory and sees the daemons' environment.
    with pytest.raises(SubmitError, match=r"refused by the sandbox test's job_submit\.lua"):
        sb.submit("true", user="qalice", extra_args=["--comment=refuse-me"])
    job = sb.submit("true", user="qalice")
    sb.wait_job(job)
    assert "sandbox-test lua marker=from-hooks-env" in (sb.log_dir / "slurmctld.log").read_text()
    deadline = time.monotonic() + 20  # EpilogSlurmctld may finish just after the job's end is recorded
    while not (out / f"epilog_slurmctld.sh.{job}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    for name in ("prolog_slurmctld.sh", "epilog_slurmctld.sh"):
        env = (out / f"{name}.{job}").read_text().splitlines()
        assert "SLURM_JOB_USER=qalice" in env and "SLURM_JOB_ACCOUNT=physics" in env

    # down stops every process of this sandbox (a running job's included) and only those.
    long_job = sb.submit("sleep 300", user="qalice")
    sb.wait_job(long_job, {"RUNNING"})
    assert sandbox_processes(sb.workdir)
    sb.down()
    assert sandbox_processes(sb.workdir) == []
    assert all(pid is None for pid in sb.status().values())
    assert (sb.log_dir / "slurmctld.log").is_file()  # logs stay
    assert sandbox.is_up()
    # up brings the same cluster back (accounts survive in its database).
    sb.up()
    sb.wait_job(sb.submit("true", user="qalice"))
    sb.down()
    assert sandbox_processes(sb.workdir) == []


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pids_mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment mentions `text` (hookd: its socket's path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            except OSError:
                continue
            if text.encode() in blob and os.path.exists(entry / "exe"):
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize(
    ("signum", "sigint_ignored"),
    [(signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGINT, True)],
    ids=["term", "hup", "int-ignored-by-parent"],
)
def test_up_wires_qpu_and_a_stop_signal_tears_everything_down(
    sandbox_factory: Callable[..., Sandbox], signum: signal.Signals, sigint_ignored: bool
) -> None:
    """`sandbox up` wires the --qpu plugin, job_submit.lua and the hooks in; in the foreground, SIGTERM,
    SIGHUP and SIGINT (even when its parent ignored SIGINT, as a shell does for `&`) stop every daemon it
    started."""
    from qauvern_hpc.devtools import qpu_site
    from qauvern_hpc.devtools.emulator import run_emulator

    del sandbox_factory  # only for the skip/fail when Slurm is missing
    workdir = Path(tempfile.mkdtemp(prefix="qauvern-hpc-fg-", dir="/tmp"))
    workdir.chmod(0o755)
    with run_emulator(qpu_site.emulator_seed(), clock="real") as emu:
        argv = ["sandbox", "up", "--foreground", "-w", str(workdir), "--emulator", emu.base_url]
        proc = subprocess.Popen(
            [sys.executable, "-m", "qauvern_hpc", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_ignore_sigint if sigint_ignored else None,
        )
        try:
            assert proc.stderr is not None
            lines: list[str] = []
            for line in proc.stderr:
                lines.append(line)
                if "in the foreground" in line:
                    break
            else:
                pytest.fail("sandbox up --foreground did not come up:\n" + "".join(lines[-40:]))
            sb = Sandbox(workdir)
            pids = sb.status()
            assert all(pids.values()), pids
            assert "--qpu" in sb.run(["sbatch", "--help"], check=True).stdout
            assert "JobSubmitPlugins        = lua" in sb.run(["scontrol", "show", "config"]).stdout
            if signum == signal.SIGTERM:  # a QPU job runs through the controller hooks and starts hookd
                job = sb.submit("true", user="qalice", account="physics", extra_args=["--qpu=ibm_torino"])
                assert sb.wait_job(job, {"COMPLETED"}, timeout=90) == "COMPLETED"
                assert _pids_mentioning(str(workdir / "site" / "hookd.sock"))
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, "".join(lines) + err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
                with contextlib.suppress(SandboxError):
                    Sandbox(workdir).down()
    alive = [pid for pid in pids.values() if pid and Path(f"/proc/{pid}/exe").exists()]
    assert alive == [] and sandbox_processes(workdir) == []
    assert _pids_mentioning(str(workdir / "site" / "hookd.sock")) == []
    sockets = [p for p in workdir.rglob("*") if p.is_socket()]
    assert sockets == []
    shutil.rmtree(workdir, ignore_errors=True)
