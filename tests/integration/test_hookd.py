"""The fast job path: sh wrapper -> `python -I -S hookc.py` -> resident hookd (or the in-process hook when
there is none), against the IBM emulator over real HTTP. The work is the same code either way; these tests
check the hand-over, the fallbacks, and that nothing is done twice or leaked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.hooks import hookc
from qauvern_hpc.hooks.hookd import HookDaemon, decode_request
from qauvern_hpc.hooks.jobenv import parse_env_file
from qauvern_hpc.hooks.wrapper import hookc_path, render_wrapper, write_wrapper
from tests.support.site import emulator_seed, write_site

HOOK_TIMEOUT = 120


@pytest.fixture()
def short_dir() -> Iterator[Path]:
    """AF_UNIX paths are limited to 107 bytes: pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="qhd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def emu() -> Iterator[Any]:
    with run_emulator(emulator_seed(), clock="real") as e:
        yield e


def _job_env(policy: Path, state: Path, socket: Path, job_id: str = "7", **kw: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "SLURM_JOB_ID": job_id,
        "SLURM_JOB_USER": "qalice",
        "SLURM_JOB_ACCOUNT": "physics",
        "SLURM_JOB_PARTITION": "debug",
        "SPANK_QPU": "ibm_torino",
        "QAUVERN_HPC_POLICY": str(policy),
        "QAUVERN_HPC_STATE_DIR": str(state),
        "QAUVERN_HPC_LOG_FILE": str(state.parent / "hooks.log"),
        "QAUVERN_HPC_SCONTROL": "/bin/true",
        "QAUVERN_HPC_HOOKD_SOCKET": str(socket),
        "QAUVERN_HPC_HOOKD": "on",
    }
    env.update(kw)
    return env


def _hookc(kind: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run hookc.py exactly as the wrapper does."""
    return subprocess.run(
        [sys.executable, "-I", "-S", str(hookc_path()), kind],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=HOOK_TIMEOUT,
        cwd="/",
    )


class StubDaemon:
    """A HookDaemon in a thread whose handlers record what they get."""

    def __init__(
        self, socket: Path, *, fail: bool = False, allowed_uids: tuple[int, ...] | None = None
    ) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []

        def handler(kind: str) -> Any:
            def run(env: Mapping[str, str]) -> None:
                self.calls.append((kind, dict(env)))
                if fail:
                    raise RuntimeError("IBM said no")

            return run

        self.daemon = HookDaemon(
            socket,
            idle_timeout=0,
            handlers={"prolog": handler("prolog"), "epilog": handler("epilog")},
            allowed_uids=allowed_uids,
        )
        self.daemon.bind()
        self.thread = threading.Thread(target=self.daemon.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.daemon.stop("test")
        self.thread.join(10)
        assert not self.thread.is_alive()


# -- wire format ------------------------------------------------------------------------------------------


def test_request_round_trip_passes_only_the_hook_variables() -> None:
    env = {"SLURM_JOB_ID": "9", "SPANK_QPU": "a,b", "QAUVERN_HPC_X": "é", "HOME": "/root", "SECRET": "s"}
    kind, got = decode_request(hookc.encode_request("epilog", env))
    assert kind == "epilog"
    assert got == {"SLURM_JOB_ID": "9", "SPANK_QPU": "a,b", "QAUVERN_HPC_X": "é"}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"QHOOK1 prolog",
        b"QHOOK2 prolog\n",
        b"QHOOK1 rm\n",
        b"QHOOK1 prolog\nNOEQUALS\0",
        b"QHOOK1 prolog\n=x\0",
    ],
)
def test_malformed_requests_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_request(data)


# -- the sh wrapper ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["prolog", "epilog"])
def test_wrapper_starts_no_python_for_a_job_without_qpu(kind: str, tmp_path: Path) -> None:
    # The interpreter path does not exist: reaching `exec` would fail with 127.
    text = render_wrapper(
        kind, policy=tmp_path / "p.json", state_dir=tmp_path / "state", python="/nonexistent/py"
    )
    wrapper = write_wrapper(tmp_path / f"{kind}.sh", text)
    assert os.stat(wrapper).st_mode & 0o777 == 0o755
    env = {"SLURM_JOB_ID": "5"}
    assert subprocess.run([str(wrapper)], env=env, timeout=10).returncode == 0
    assert subprocess.run([str(wrapper)], env={**env, "SPANK_QPU": "x"}, timeout=10).returncode == 127


def test_epilog_wrapper_runs_for_a_job_with_a_record_even_without_spank_qpu(tmp_path: Path) -> None:
    state = tmp_path / "st ate"  # quoted paths
    (state / "jobs").mkdir(parents=True)
    (state / "jobs" / "5.json").write_text("{}")
    text = render_wrapper("epilog", policy=tmp_path / "p.json", state_dir=state, python="/nonexistent/py")
    wrapper = write_wrapper(tmp_path / "epilog.sh", text)
    assert subprocess.run([str(wrapper)], env={"SLURM_JOB_ID": "5"}, timeout=10).returncode == 127
    assert subprocess.run([str(wrapper)], env={"SLURM_JOB_ID": "6"}, timeout=10).returncode == 0


def test_wrapper_refuses_unknown_kinds_and_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind"):
        render_wrapper("task", policy="p", state_dir="s")
    with pytest.raises(ValueError, match="hookd"):
        render_wrapper("prolog", policy="p", state_dir="s", hookd="maybe")


# -- hookc <-> daemon -------------------------------------------------------------------------------------


def test_hookc_hands_the_job_to_the_daemon(short_dir: Path) -> None:
    sock = short_dir / "hookd.sock"
    stub = StubDaemon(sock)
    try:
        env = _job_env(short_dir / "p.json", short_dir / "state", sock, HOME="/root", IBMCLOUD_API_KEY="k")
        done = _hookc("prolog", env)
        assert done.returncode == 0, done.stderr
        assert [k for k, _ in stub.calls] == ["prolog"]
        got = stub.calls[0][1]
        assert got["SLURM_JOB_ID"] == "7" and got["SPANK_QPU"] == "ibm_torino" and got["PATH"]
        assert "HOME" not in got and "IBMCLOUD_API_KEY" not in got
        assert os.stat(sock).st_mode & 0o777 == 0o600
    finally:
        stub.stop()
    assert not sock.exists()


def test_a_job_without_qpu_never_reaches_the_daemon(short_dir: Path) -> None:
    sock = short_dir / "hookd.sock"
    stub = StubDaemon(sock)
    try:
        env = _job_env(short_dir / "p.json", short_dir / "state", sock)
        del env["SPANK_QPU"]
        assert _hookc("prolog", env).returncode == 0
        assert _hookc("epilog", env).returncode == 0
        assert stub.calls == []
    finally:
        stub.stop()


def test_daemon_failure_is_not_retried_in_process(short_dir: Path) -> None:
    sock = short_dir / "hookd.sock"
    stub = StubDaemon(sock, fail=True)
    state = short_dir / "state"
    try:
        # The policy does not exist: an in-process run would write an error env file of its own.
        assert _hookc("prolog", _job_env(short_dir / "missing.json", state, sock)).returncode == 0
        assert len(stub.calls) == 1
    finally:
        stub.stop()
    # The daemon's last resort told the job why.
    env = parse_env_file((state / "jobs" / "7.env").read_text())
    assert "IBM said no" in env["QAUVERN_HPC_ERROR"]


def test_a_peer_with_another_uid_is_refused_and_the_hook_runs_in_process(short_dir: Path) -> None:
    sock = short_dir / "hookd.sock"
    stub = StubDaemon(sock, allowed_uids=(os.getuid() + 4242,))
    state = short_dir / "state"
    try:
        assert _hookc("prolog", _job_env(short_dir / "missing.json", state, sock)).returncode == 0
        assert stub.calls == []
    finally:
        stub.stop()
    # The in-process hook ran: the missing policy reached the job.
    env = parse_env_file((state / "jobs" / "7.env").read_text())
    assert "could not prepare the job" in env["QAUVERN_HPC_ERROR"]


def test_only_one_daemon_per_socket(short_dir: Path) -> None:
    sock = short_dir / "hookd.sock"
    stub = StubDaemon(sock)
    try:
        with pytest.raises(RuntimeError, match="already serves"):
            HookDaemon(sock, handlers={}).bind()
    finally:
        stub.stop()


def test_daemon_stops_when_its_socket_is_removed(short_dir: Path) -> None:
    sock = short_dir / "hookd.sock"
    stub = StubDaemon(sock)
    sock.unlink()
    stub.thread.join(15)
    assert not stub.thread.is_alive()


# -- end to end with the emulator --------------------------------------------------------------------------


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_auto_mode_starts_the_daemon_and_later_jobs_use_it(emu: Any, short_dir: Path) -> None:
    policy = write_site(short_dir / "site", emu.base_url)
    state = short_dir / "site" / "state"
    sock = short_dir / "hookd.sock"
    log = state.parent / "hooks.log"
    try:
        # Job 1: no daemon yet -> it is started in the background, the job is served in-process.
        env1 = _job_env(
            policy, state, sock, job_id="11", QAUVERN_HPC_HOOKD="auto", QAUVERN_HPC_HOOKD_IDLE="60"
        )
        assert _hookc("prolog", env1).returncode == 0
        _wait_for(sock)
        # Job 2 goes through the daemon.
        env2 = _job_env(policy, state, sock, job_id="12", QAUVERN_HPC_HOOKD="auto")
        assert _hookc("prolog", env2).returncode == 0
        text = log.read_text()
        assert "job 12: prolog done in hookd" in text
        assert "job 11: prolog done in hookd" not in text
        sessions = {s["id"]: s for s in emu.state.snapshot()["sessions"]}
        for job in ("11", "12"):
            job_env = parse_env_file((state / "jobs" / f"{job}.env").read_text())
            assert "QAUVERN_HPC_ERROR" not in job_env, job_env
            assert sessions[job_env["ibm_torino_QRMI_IBM_QCS_SESSION_ID"]]["state"] != "closed"
        assert len(sessions) == 2  # nothing opened twice

        # Both epilogs through the daemon close both sessions.
        assert _hookc("epilog", env1).returncode == 0
        assert _hookc("epilog", env2).returncode == 0
        assert {s["state"] for s in emu.state.snapshot()["sessions"]} == {"closed"}
        assert "job 11: epilog done in hookd" in log.read_text()
        # The API key never reaches the daemon's log.
        assert "demo-site-api-key" not in log.read_text()
    finally:
        sock.unlink(missing_ok=True)  # the daemon exits when its socket goes
        _wait_unlocked(Path(f"{sock}.lock"))


def _wait_unlocked(lock: Path, timeout: float = 15.0) -> None:
    import fcntl

    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDWR)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                assert time.monotonic() < deadline, "hookd did not exit"
                time.sleep(0.1)
    finally:
        os.close(fd)


def test_a_rerun_prolog_closes_what_an_interrupted_attempt_opened(emu: Any, short_dir: Path) -> None:
    policy = write_site(short_dir / "site", emu.base_url)
    state = short_dir / "site" / "state"
    env = _job_env(policy, state, short_dir / "none.sock", job_id="21", QAUVERN_HPC_HOOKD="off")
    assert _hookc("prolog", env).returncode == 0
    first = json.loads((state / "jobs" / "21.json").read_text())["resources"][0]["session_id"]
    # A second run for the same job (hookd died after opening; the hook re-ran in-process).
    assert _hookc("prolog", env).returncode == 0
    second = json.loads((state / "jobs" / "21.json").read_text())["resources"][0]["session_id"]
    states = {s["id"]: s["state"] for s in emu.state.snapshot()["sessions"]}
    assert first != second
    assert states[first] == "closed" and states[second] != "closed"
