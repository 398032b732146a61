"""Running Slurm CLIs: unreachable services, no-ops, failures, timeouts, streaming.

The "unreachable" cases run the REAL Debian Slurm 22.05 binaries against a slurm.conf whose controller
and slurmdbd ports have nothing listening (no daemon is started); the other cases use small scripts.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import time
from pathlib import Path

import pytest

from qauvern_hpc.core.errors import ExitCode, ServiceUnavailable
from qauvern_hpc.slurm.run import SlurmCommandError, classify_failure, run_slurm, stream_slurm

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when we return: nothing listens there


@pytest.fixture
def dead_cluster(tmp_path: Path) -> dict[str, str]:
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        "ClusterName=dead\n"
        "SlurmctldHost=localhost(127.0.0.1)\n"
        f"SlurmctldPort={_closed_port()}\n"
        "AccountingStorageType=accounting_storage/slurmdbd\n"
        "AccountingStorageHost=127.0.0.1\n"
        f"AccountingStoragePort={_closed_port()}\n"
        "MessageTimeout=2\n"
        "NodeName=n1 CPUs=1\n"
        "PartitionName=p Nodes=n1\n"
    )
    return {"SLURM_CONF": str(conf)}


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


needs_slurm = pytest.mark.skipif(shutil.which("sacct") is None, reason="Slurm client binaries not installed")


@needs_slurm
def test_real_sacct_without_slurmdbd_is_unavailable(dead_cluster: dict[str, str]) -> None:
    with pytest.raises(ServiceUnavailable) as err:
        run_slurm(["sacct", "-X", "-P", "-n", "-S", "now"], env=dead_cluster, timeout=60)
    assert err.value.exit_code == ExitCode.UNAVAILABLE
    assert err.value.message.startswith("`sacct -X -P -n -S now` could not reach slurmdbd: ")
    assert "Connection refused" in err.value.message


@needs_slurm
def test_real_sacctmgr_without_slurmdbd_is_unavailable(dead_cluster: dict[str, str]) -> None:
    with pytest.raises(ServiceUnavailable, match=r"`sacctmgr -i show cluster` could not reach slurmdbd"):
        run_slurm(["sacctmgr", "-i", "show", "cluster"], env=dead_cluster, timeout=60)


@needs_slurm
def test_real_squeue_without_slurmctld_is_unavailable(dead_cluster: dict[str, str]) -> None:
    with pytest.raises(ServiceUnavailable) as err:
        run_slurm(["squeue", "-h"], env=dead_cluster, timeout=60)
    assert err.value.message.startswith("`squeue -h` could not reach slurmctld: ")
    assert "Unable to contact slurm controller" in err.value.message


@needs_slurm
def test_real_sacct_bad_option_is_a_command_error(dead_cluster: dict[str, str]) -> None:
    with pytest.raises(SlurmCommandError) as err:
        run_slurm(["sacct", "--no-such-option"], env=dead_cluster, timeout=60)
    assert err.value.returncode not in (0, None)
    assert "no-such-option" in err.value.stderr
    assert not isinstance(err.value, ServiceUnavailable)


def test_sacctmgr_nothing_new_added_is_a_noop(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    sacctmgr = _script(bindir, "sacctmgr", 'echo " Nothing new added."; exit 1\n')
    assert run_slurm([sacctmgr, "-i", "add", "account", "a"]) == " Nothing new added.\n"
    modified = _script(bindir, "sacctmgr2", 'echo " Nothing modified"; exit 1\n')
    # the no-op rule is sacctmgr's: another name with the same output is a failure
    with pytest.raises(SlurmCommandError, match="exited with status 1: Nothing modified"):
        run_slurm([modified])
    os.rename(modified, bindir / "sacctmgr")
    assert run_slurm([str(bindir / "sacctmgr"), "-i", "modify"]) == " Nothing modified\n"


def test_other_failures_carry_stderr(tmp_path: Path) -> None:
    tool = _script(
        tmp_path,
        "sacct",
        'echo "ok line"; echo "sacct: error: Invalid field requested: Restarts" >&2; exit 1\n',
    )
    with pytest.raises(SlurmCommandError) as err:
        run_slurm([tool, "-o", "Restarts"])
    assert err.value.stderr == "sacct: error: Invalid field requested: Restarts\n"
    assert err.value.stdout == "ok line\n"
    assert err.value.returncode == 1
    assert err.value.message.endswith("exited with status 1: sacct: error: Invalid field requested: Restarts")


def test_env_is_added_to_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QAUVERN_KEEP", "kept")
    tool = _script(tmp_path, "show", 'echo "$SLURM_TIME_FORMAT $QAUVERN_KEEP"\n')
    assert run_slurm([tool], env={"SLURM_TIME_FORMAT": "%s"}) == "%s kept\n"


def test_timeout_and_missing_binary(tmp_path: Path) -> None:
    slow = _script(tmp_path, "slow", "sleep 30\n")
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"did not answer within 0.5 s"):
        run_slurm([slow], timeout=0.5)
    assert time.monotonic() - started < 10
    with pytest.raises(SlurmCommandError, match=r"could not be started: .*command not found"):
        run_slurm([str(tmp_path / "no-such-sacct")])


def test_classify_failure_texts() -> None:
    assert classify_failure(["sacct"], 0, "", "sacct: error: anything") is None
    cases = {
        "slurm_load_jobs error: Unable to contact slurm controller (connect failure)": "slurmctld",
        "sacct: error: Problem talking to the database: Connection refused": "slurmdbd",
        "sacctmgr: error: Getting response to message type: DBD_GET_ASSOCS": "slurmdbd",
        "sacct: error: Sending PersistInit msg: Connection refused": "slurmdbd",
        "sacct: fatal: Could not establish a configuration source": "the Slurm configuration",
        "error: Munge encode failed: Failed to access socket": "munged",
        "error: Socket timed out on send/recv operation": "Slurm",
    }
    for text, service in cases.items():
        err = classify_failure(["/usr/bin/sacct", "-X"], 1, "", f"noise\n{text}\n")
        assert isinstance(err, ServiceUnavailable), text
        assert err.message == f"`/usr/bin/sacct -X` could not reach {service}: {text}"
    for text in (
        "sacct: error: Unknown cluster 'x'",
        "sacctmgr: error: slurmdbd: Invalid message version=9000, type:1407",  # not "unreachable"
        " Problem adding accounts: Access/permission denied",
    ):
        other = classify_failure(["sacctmgr"], 1, "", text)
        assert isinstance(other, SlurmCommandError) and not isinstance(other, ServiceUnavailable), text


def test_stream_slurm_yields_lines_and_checks_the_exit(tmp_path: Path) -> None:
    tool = _script(tmp_path, "sacct", 'for i in 1 2 3; do echo "line$i"; done\n')
    with stream_slurm([tool]) as lines:
        assert list(lines) == ["line1\n", "line2\n", "line3\n"]
    failing = _script(
        tmp_path, "sacct2", 'echo one; echo "sacct: error: Problem talking to the database" >&2; exit 1\n'
    )
    with (
        pytest.raises(ServiceUnavailable, match="could not reach slurmdbd"),
        stream_slurm([failing]) as lines,
    ):
        assert next(lines) == "one\n"


def test_stream_slurm_stops_the_command_when_the_consumer_fails(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    tool = _script(tmp_path, "endless", f"echo $$ > {pidfile}; while true; do echo x; done\n")
    with pytest.raises(KeyError), stream_slurm([tool]) as lines:
        next(lines)
        raise KeyError("consumer failed")
    pid = int(pidfile.read_text())
    time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_stream_slurm_timeout(tmp_path: Path) -> None:
    tool = _script(tmp_path, "hang", "echo first; exec sleep 30\n")
    started = time.monotonic()
    with (
        pytest.raises(ServiceUnavailable, match=r"did not finish within 0.5 s"),
        stream_slurm([tool], timeout=0.5) as lines,
    ):
        assert list(lines) == ["first\n"]
    assert time.monotonic() - started < 10
