"""The built qpu.so loaded by the real sbatch/salloc/srun, with no Slurm daemon running.

A throwaway slurm.conf points PlugStackConfig at our plugin and SlurmctldPort at a socket this test listens on
(a "fake controller" that only counts connections), which proves that a bad --qpu is refused before any
controller is contacted, and that a good one gets through. With root and munged installed, a private munged
lets sbatch send the real submit request, and the test reads SPANK_QPU's value in it off the wire.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qauvern_hpc.core.errors import QauvernError
from qauvern_hpc.slurm import spank_build

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(shutil.which("sbatch") is None, reason="Slurm client commands are not installed"),
]

HELP_TEXT = "Quantum resources (QPUs) for this job, comma-separated, e.g. --qpu=ibm_torino"


class FakeController:
    """Listens on a loopback port, accepts every connection and records what was sent."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            data = b""
            conn.settimeout(2)
            try:
                while chunk := conn.recv(65536):
                    data += chunk
            except OSError:
                pass
            conn.close()  # never answer: the client gives up
            self.received.append(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return spank_build.build_plugin(tmp_path_factory.mktemp("so") / "qpu.so", check_running=False).path
    except QauvernError as exc:
        pytest.skip(f"cannot build the plugin: {exc}")


@pytest.fixture
def controller() -> Iterator[FakeController]:
    fc = FakeController()
    yield fc
    fc.close()


def cluster_env(tmp: Path, plugin: Path, port: int, args: str = "", extra_conf: str = "") -> dict[str, str]:
    """A slurm.conf + plugstack.conf in `tmp`, and an environment for the Slurm commands to use them."""
    (tmp / "plugstack.conf").write_text(f"required {plugin} state_dir={tmp}/state {args}\n")
    (tmp / "slurm.conf").write_text(
        "ClusterName=qpuprobe\n"
        "SlurmctldHost=localhost\n"
        f"SlurmctldPort={port}\n"
        f"PlugStackConfig={tmp}/plugstack.conf\n"
        "MessageTimeout=5\n"
        "NodeName=localhost CPUs=1 State=UNKNOWN\n"
        "PartitionName=debug Nodes=localhost Default=YES\n" + extra_conf
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_"))}
    env["SLURM_CONF"] = str(tmp / "slurm.conf")
    return env


def slurm(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def settle(fc: FakeController) -> int:
    time.sleep(0.5)  # let the accept loop see a late connection
    return len(fc.received)


@pytest.mark.parametrize("command", ["sbatch", "salloc", "srun"])
def test_help_lists_qpu(plugin: Path, controller: FakeController, tmp_path: Path, command: str) -> None:
    p = slurm([command, "--help"], cluster_env(tmp_path, plugin, controller.port), tmp_path)
    assert p.returncode == 0, p.stderr
    out = " ".join(p.stdout.split())
    assert f"--qpu=name[,name...] {HELP_TEXT}" in out


BAD = {
    "semicolon": (";rm -rf /", 'QPU name "\\x3brm\\x20-rf\\x20/" has the invalid byte \\x3b at offset 0'),
    "subshell": ("$(id)", 'QPU name "\\x24\\x28id\\x29" has the invalid byte \\x24'),
    "empty-item": ("a,,b", 'QPU name 2 of --qpu="a,,b" is empty'),
    "trailing-comma": ("ibm_torino,", "QPU name 2 of"),
    "empty": ("", "--qpu needs at least one QPU name"),
    "ten-kb": ("q" * 10240, "--qpu value is 10240 bytes long, at most 1024 are allowed"),
    "nine-names": ("a,b,c,d,e,f,g,h,i", "--qpu names 9 QPUs, at most 8 are allowed"),
    "65-chars": ("n" * 65, "is 65 bytes long, at most 64 are allowed"),
    "duplicate": ("ibm_fez,ibm_torino,ibm_fez", 'QPU name "ibm_fez" is given more than once'),
    "unicode": ("ibm_törino", "invalid non-ASCII byte \\xc3 at offset 5"),
}


@pytest.mark.parametrize("case", BAD.keys())
def test_sbatch_refuses_bad_qpu_before_contacting_the_controller(
    plugin: Path, controller: FakeController, tmp_path: Path, case: str
) -> None:
    value, message = BAD[case]
    p = slurm(
        ["sbatch", f"--qpu={value}", "--wrap", "true"],
        cluster_env(tmp_path, plugin, controller.port),
        tmp_path,
    )
    assert p.returncode != 0
    ours = [line for line in p.stderr.splitlines() if line.startswith("sbatch: error: qpu: ")]
    assert len(ours) == 1 and message in ours[0], p.stderr[:2000]
    assert len(ours[0]) < 400  # what we echo is capped (Slurm itself then repeats the raw argument)
    assert "Invalid --qpu argument" in p.stderr
    assert settle(controller) == 0


@pytest.mark.parametrize("command", [["salloc", "--qpu=a,,b", "true"], ["srun", "--qpu=a,,b", "true"]])
def test_salloc_and_srun_refuse_too(
    plugin: Path, controller: FakeController, tmp_path: Path, command: list[str]
) -> None:
    p = slurm(command, cluster_env(tmp_path, plugin, controller.port), tmp_path)
    assert p.returncode != 0
    assert f'{command[0]}: error: qpu: QPU name 2 of --qpu="a,,b" is empty' in p.stderr
    assert settle(controller) == 0


def test_sbatch_directive_and_option_variable_are_checked(
    plugin: Path, controller: FakeController, tmp_path: Path
) -> None:
    env = cluster_env(tmp_path, plugin, controller.port)
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#SBATCH --qpu=ibm_torino;reboot\ntrue\n")
    p = slurm(["sbatch", str(script)], env, tmp_path)
    assert p.returncode != 0 and 'qpu: QPU name "ibm_torino\\x3breboot" has the invalid byte' in p.stderr
    # Slurm also takes a SPANK option from SLURM_SPANK__SLURM_SPANK_OPTION_<plugin>_<option>
    env2 = {**env, "SLURM_SPANK__SLURM_SPANK_OPTION_qauvern_qpu_qpu": "x,x"}
    p = slurm(["sbatch", "--wrap", "true"], env2, tmp_path)
    assert p.returncode != 0 and 'qpu: QPU name "x" is given more than once' in p.stderr
    assert settle(controller) == 0


def test_good_qpu_passes_and_reaches_for_the_controller(
    plugin: Path, controller: FakeController, tmp_path: Path
) -> None:
    """The positive control for the tests above: a valid value gets as far as contacting the controller."""
    env = cluster_env(tmp_path, plugin, controller.port)
    p = slurm(["sbatch", "--qpu=ibm_torino,ibm_fez", "--wrap", "true"], env, tmp_path)
    assert p.returncode != 0  # nobody answers
    assert "qpu:" not in p.stderr and "Invalid --qpu" not in p.stderr
    assert settle(controller) >= 1


def test_srun_inside_a_qpu_allocation_needs_no_option(
    plugin: Path, controller: FakeController, tmp_path: Path
) -> None:
    """srun without --qpu inside an `sbatch --qpu` job (SLURM_SPANK_QPU inherited) must not fail here."""
    env = {
        **cluster_env(tmp_path, plugin, controller.port),
        "SLURM_JOB_ID": "4242",
        "SLURM_SPANK_QPU": "ibm_torino",
    }
    p = slurm(["srun", "true"], env, tmp_path)
    assert "qpu:" not in p.stderr
    assert settle(controller) >= 1


def test_bad_plugin_argument_stops_sbatch_loudly(
    plugin: Path, controller: FakeController, tmp_path: Path
) -> None:
    env = cluster_env(tmp_path, plugin, controller.port, args="default_fail_mode=sometimes")
    p = slurm(["sbatch", "--wrap", "true"], env, tmp_path)
    assert p.returncode != 0
    assert 'qpu: plugstack.conf: bad argument "default_fail_mode=sometimes"' in p.stderr
    assert settle(controller) == 0


def test_without_the_plugin_jobs_are_untouched(
    plugin: Path, controller: FakeController, tmp_path: Path
) -> None:
    """Sanity check of the harness itself: without our plugstack line --qpu is unknown to sbatch."""
    env = cluster_env(tmp_path, plugin, controller.port)
    (tmp_path / "plugstack.conf").write_text("")
    p = slurm(["sbatch", "--qpu=ibm_torino", "--wrap", "true"], env, tmp_path)
    assert p.returncode != 0 and "unrecognized option" in p.stderr


# ---------------------------------------------------------------------------------------------- on the wire


@pytest.fixture
def munge() -> Iterator[Path]:
    """A private munged (socket in a fresh directory), stopped by its pid afterwards."""
    if os.geteuid() != 0:
        pytest.skip("a private munged needs root (it runs as the munge user)")
    tools = [shutil.which(t) for t in ("munged", "mungekey", "runuser")]
    if None in tools:
        pytest.skip("munged/mungekey/runuser not installed")
    d = Path(tempfile.mkdtemp(prefix="qpu-munge-", dir="/tmp"))
    d.chmod(0o711)  # munged insists that every component of the socket path is traversable
    key, sock, pidf = d / "munge.key", d / "munge.sock", d / "munged.pid"
    subprocess.run(["mungekey", "-c", "-k", str(key)], check=True, capture_output=True)
    shutil.chown(d, "munge")
    shutil.chown(key, "munge")
    p = subprocess.run(
        ["runuser", "-u", "munge", "--", "munged", f"--socket={sock}", f"--key-file={key}",
         f"--pid-file={pidf}", f"--log-file={d}/munged.log", f"--seed-file={d}/seed"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if p.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip(f"cannot start a private munged: {p.stderr.strip()}")
    try:
        yield sock
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidf.read_text().strip()), 15)
        time.sleep(0.2)
        shutil.rmtree(d, ignore_errors=True)


def test_sbatch_sends_spank_qpu_to_the_controller(
    plugin: Path, controller: FakeController, tmp_path: Path, munge: Path
) -> None:
    env = cluster_env(tmp_path, plugin, controller.port, extra_conf=f"AuthInfo=socket={munge}\n")
    p = slurm(["sbatch", "--qpu=ibm_torino,ibm_fez", "--wrap", "true"], env, tmp_path)
    assert "qpu:" not in p.stderr
    settle(controller)
    wire = b"".join(controller.received)
    # spank_job_env entry -> job_submit.lua's spank_job_env["QPU"], SPANK_QPU in PrologSlurmctld
    assert re.search(rb"(?<!SLURM_SPANK_)QPU=ibm_torino,ibm_fez\0", wire), wire[:200]
    # the job's own environment
    assert b"SLURM_SPANK_QPU=ibm_torino,ibm_fez" in wire
