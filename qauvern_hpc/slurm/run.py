"""Run a Slurm command line tool with an environment and a timeout.

`run_slurm(argv)` returns stdout; `stream_slurm(argv)` yields stdout line by line (for sacct dumps of a
million jobs, which must never sit in memory as one string). Failures become one of two errors:

* `qauvern_hpc.core.errors.ServiceUnavailable` when Slurm could not be reached (slurmctld or slurmdbd down,
  munge down, no configuration source, timeouts); the message names the command and quotes Slurm's line;
* `SlurmCommandError` for anything else (bad option, unknown cluster, permission), carrying stderr.

sacctmgr answers "Nothing new added" / "Nothing modified" with exit status 1 when the change is already in
place: that is a successful no-op here.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from qauvern_hpc.core.errors import QauvernError, ServiceUnavailable

DEFAULT_TIMEOUT = 120.0

# Lower-cased fragments of Slurm's error texts meaning "the service is not there", with the service.
# Sources: src/common/slurm_errno.c and the slurmdbd connection code of Slurm 22.05, verified against the
# real 22.05.8 binaries here (see tests/unit/test_slurm_run.py).
_UNAVAILABLE: tuple[tuple[str, str], ...] = (
    ("unable to contact slurm controller", "slurmctld"),
    ("problem talking to the database", "slurmdbd"),
    ("unable to connect to database", "slurmdbd"),
    ("database connection reference is invalid", "slurmdbd"),
    ("persistent connection", "slurmdbd"),
    ("sending persistinit msg", "slurmdbd"),
    ("getting response to message type", "slurmdbd"),
    ("slurmdbd and/or database", "slurmdbd"),
    ("could not establish a configuration source", "the Slurm configuration"),
    ("munge", "munged"),
    ("failed to connect to authentication agent", "munged"),
    ("socket timed out on send/recv", "Slurm"),
    ("zero bytes were transmitted or received", "Slurm"),
    ("communication connection failure", "Slurm"),
    ("connection refused", "Slurm"),
    ("connection timed out", "Slurm"),
)
_NOOP = ("nothing new added", "nothing modified")


class SlurmCommandError(QauvernError):
    """A Slurm command ran and failed for a reason other than an unreachable service."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str, stdout: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        detail = _first_error_line(stderr) or _first_error_line(stdout) or "no output"
        status = "could not be started" if returncode is None else f"exited with status {returncode}"
        super().__init__(f"`{_show(argv)}` {status}: {detail}")


def _show(argv: Sequence[str]) -> str:
    text = shlex.join(argv)
    return text if len(text) <= 200 else text[:197] + "..."


def _first_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() or "fatal" in line.lower():
            return line[:500]
    return lines[0][:500] if lines else ""


def classify_failure(argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> QauvernError | None:
    """The error for a finished command, or None when its exit status means success (incl. no-ops)."""
    if returncode == 0:
        return None
    both = f"{stderr}\n{stdout}".lower()
    name = os.path.basename(argv[0]) if argv else "slurm"
    if name == "sacctmgr" and returncode == 1 and any(text in both for text in _NOOP):
        return None
    for fragment, service in _UNAVAILABLE:
        if fragment in both:
            line = next(
                (ln.strip() for ln in f"{stderr}\n{stdout}".splitlines() if fragment in ln.lower()),
                fragment,
            )
            return ServiceUnavailable(
                f"`{_show(argv)}` could not reach {service}: {line[:500]}",
                hint="check that slurmctld/slurmdbd and munged run and SLURM_CONF names this cluster",
            )
    return SlurmCommandError(argv, returncode, stderr, stdout)


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ)
    if env:
        merged.update(env)
    return merged


def run_slurm(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    input: str | None = None,
) -> str:
    """Run `argv` (variables in `env` are added to the current environment); return its stdout."""
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            errors="replace",
            env=_environment(env),
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError as exc:
        raise SlurmCommandError(argv, None, f"{argv[0]}: command not found ({exc.strerror})") from exc
    except subprocess.TimeoutExpired as exc:
        raise ServiceUnavailable(
            f"`{_show(argv)}` did not answer within {timeout:g} s",
            hint="slurmctld or slurmdbd may be overloaded or unreachable",
        ) from exc
    error = classify_failure(argv, proc.returncode, proc.stdout, proc.stderr)
    if error is not None:
        raise error
    return proc.stdout


@contextmanager
def stream_slurm(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Iterator[Iterator[str]]:
    """Run `argv` and give its stdout as an iterator of lines (with their newline).

    stderr goes to a temporary file (no pipe deadlock). When the block ends the command is waited for and
    a failure raises like `run_slurm`; leaving the block early (an exception) kills the command. `timeout`
    bounds the whole run: the command is killed and `ServiceUnavailable` raised.
    """
    timed_out = threading.Event()
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as err:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=_environment(env),
            )
        except FileNotFoundError as exc:
            raise SlurmCommandError(argv, None, f"{argv[0]}: command not found ({exc.strerror})") from exc

        def _kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, _kill) if timeout else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        assert proc.stdout is not None
        try:
            try:
                yield iter(proc.stdout)
            except BaseException:
                proc.kill()
                raise
            finally:
                # Drain what the consumer did not read so the command can finish, then reap it.
                if proc.poll() is None and not timed_out.is_set():
                    for _ in proc.stdout:
                        pass
                proc.stdout.close()
                returncode = proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
        if timed_out.is_set():
            raise ServiceUnavailable(
                f"`{_show(argv)}` did not finish within {timeout:g} s",
                hint="slurmctld or slurmdbd may be overloaded or unreachable",
            )
        err.seek(0)
        error = classify_failure(argv, returncode, "", err.read())
        if error is not None:
            raise error
