"""The controller hooks' tiny client: hand the job to the resident `qauvern-hpc hookd`, or do it here.

slurmctld runs PrologSlurmctld for every job before the job may start, so its start-up time is added to every
job's start. This file is what the hook wrappers run, as `python3 -I -S hookc.py prolog|epilog`: it must not
import the package, third-party modules or even `socket`/`json` (their imports cost more than the work). It
uses only `os`, `sys` and the C module `_socket` (about 10 ms in all).

1. Not a QPU job (no SPANK_QPU; for the epilog also no job record): exit 0. (The sh wrapper already checks.)
2. Connect to the daemon's Unix socket ($QAUVERN_HPC_HOOKD_SOCKET), send the job's environment, wait for the
   answer. The daemon has warm IBM clients and tokens, so a `--qpu` job costs the HTTP calls and little else.
3. No daemon (or it refused the request before doing anything): exec the in-process hook
   (`python -m qauvern_hpc.hooks.prolog`), which does the same work the slow way. With
   QAUVERN_HPC_HOOKD=auto the daemon is started in the background first, for the next job.

Wire format (version 1), one request per connection:
    request:  b"QHOOK1 <kind>\\n" then NAME=VALUE pairs, each terminated by b"\\0"; the client then shuts
              down its sending side
    answer:   b"ok\\n" (done: the env file and the record are written), or b"retry <why>\\n" (the daemon
              did nothing: run in-process), or b"error <why>\\n" (the daemon tried and failed; it already
              wrote the failure into the job's env file, so the job learns the reason: do not run it twice).

Standard library C modules only. Exit status is always 0: a failing PrologSlurmctld would requeue the job.
"""

import _socket
import os
import sys

PROTOCOL = b"QHOOK1"
KINDS = ("prolog", "epilog")
# What the daemon needs from the hook's environment; the rest is not sent.
PASSED_PREFIXES = ("SLURM_", "SPANK_", "QAUVERN_HPC_")
PASSED_NAMES = ("PATH", "SLURM_CONF")
# Below slurm.conf's PrologEpilogTimeout (120 s in slurm-conf/): the daemon bounds its own IBM calls to ~20 s.
ANSWER_TIMEOUT = 100.0
CONNECT_TIMEOUT = 2.0
MAX_ANSWER = 4096


def is_qpu_job(kind: str, env: "dict[str, str] | os._Environ[str]") -> bool:
    if env.get("SPANK_QPU"):
        return True
    if kind != "epilog":
        return False
    job_id = env.get("SLURM_JOB_ID", "")
    state_dir = env.get("QAUVERN_HPC_STATE_DIR") or "/var/lib/qauvern-hpc"
    return job_id.isdigit() and os.path.exists(state_dir + "/jobs/" + job_id + ".json")


def encode_request(kind: str, env: "dict[str, str] | os._Environ[str]") -> bytes:
    parts = [PROTOCOL + b" " + kind.encode() + b"\n"]
    for name, value in env.items():
        if name.startswith(PASSED_PREFIXES) or name in PASSED_NAMES:
            if "\0" in name or "\0" in value or "=" in name:
                continue
            parts.append(os.fsencode(name) + b"=" + os.fsencode(value) + b"\0")
    return b"".join(parts)


def ask_daemon(path: str, request: bytes) -> "tuple[str, str]":
    """('ok'|'error'|'retry', detail). 'retry' when nothing was done (no daemon, refused, broken early)."""
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    except OSError as exc:
        return "retry", "socket: " + str(exc)
    sent = False
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(path)
        except OSError as exc:
            return "retry", "connect " + path + ": " + str(exc)
        sock.settimeout(ANSWER_TIMEOUT)
        sock.sendall(request)
        sent = True
        sock.shutdown(_socket.SHUT_WR)
        chunks = []
        size = 0
        while size < MAX_ANSWER:
            data = sock.recv(MAX_ANSWER)
            if not data:
                break
            chunks.append(data)
            size += len(data)
        answer = b"".join(chunks).decode("utf-8", "replace").strip()
    except OSError as exc:
        # Sent but no answer: the daemon may have done (part of) the work. The in-process hook closes what a
        # previous attempt opened for the same job before opening again, so running it is safe.
        return ("retry" if not sent else "lost"), str(exc)
    finally:
        sock.close()
    word, _, detail = answer.partition(" ")
    if word in ("ok", "error", "retry"):
        return word, detail
    return "lost", "unexpected answer " + repr(answer[:80])


def spawn_daemon(env: "dict[str, str] | os._Environ[str]") -> None:
    """Start `hookd` detached (own session, no stdio), for the next jobs. Never raises."""
    try:
        pid = os.fork()
    except OSError:
        return
    if pid:
        try:  # noqa: SIM105 - no contextlib here (import cost)
            os.waitpid(pid, 0)
        except OSError:
            pass
        return
    try:  # the child: detach and exec; the grandchild becomes the daemon
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        argv = [sys.executable, "-m", "qauvern_hpc.hooks.hookd", "--socket", env["QAUVERN_HPC_HOOKD_SOCKET"]]
        idle = env.get("QAUVERN_HPC_HOOKD_IDLE")
        if idle:
            argv += ["--idle-timeout", idle]
        os.chdir("/")
        os.execv(sys.executable, argv)
    finally:
        os._exit(0)


def in_process(kind: str) -> "None":
    """Replace this process with the full hook (site-packages on, package imported)."""
    os.execv(sys.executable, [sys.executable, "-m", "qauvern_hpc.hooks." + kind])


def log(message: str) -> None:
    try:  # noqa: SIM105
        os.write(2, ("qauvern-hpc hookc: " + message + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def main(argv: "list[str]") -> int:
    kind = argv[1] if len(argv) > 1 else ""
    if kind not in KINDS:
        log("usage: hookc.py prolog|epilog")
        return 0
    env = os.environ
    if not is_qpu_job(kind, env):
        return 0
    path = env.get("QAUVERN_HPC_HOOKD_SOCKET", "")
    mode = env.get("QAUVERN_HPC_HOOKD", "auto" if path else "off")
    if path and mode != "off":
        status, detail = ask_daemon(path, encode_request(kind, env))
        if status in ("ok", "error"):
            return 0
        if status == "lost":
            log("job " + env.get("SLURM_JOB_ID", "?") + ": daemon lost mid-request (" + detail + ")")
        elif mode == "auto":
            spawn_daemon(env)
    in_process(kind)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except SystemExit:
        raise
    except BaseException as exc:
        log("unexpected " + type(exc).__name__ + ": " + str(exc))
        in_process(sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in KINDS else "prolog")
