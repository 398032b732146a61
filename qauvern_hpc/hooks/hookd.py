"""`qauvern-hpc hookd`: the resident half of the controller hooks.

slurmctld starts a fresh PrologSlurmctld process for every job, and a fresh Python with httpx, pydantic and a
new TLS client costs about half a second before the first byte goes to IBM. The daemon pays that once: it
keeps the IBM clients (connection pools and IAM tokens) warm, and the hook (`hookc.py`, standard library C
modules only) hands it each job over a Unix socket. The work itself is the same code as the in-process hook
(`prolog.prepare`, `epilog.release`), so the two paths cannot drift apart.

Safety:
- The socket is created mode 0600 in a directory only root can write, and every peer's uid is checked
  (SO_PEERCRED) against the daemon's own: only slurmctld's hooks (root, or SlurmUser) may talk to it.
- One instance per socket (flock on `<socket>.lock`); a stale socket file is replaced.
- It exits when idle for `--idle-timeout` seconds (0 = never, for systemd), when its socket file is removed
  or replaced, and on SIGTERM/SIGINT after finishing the requests in flight.
- A request the daemon cannot take (shutting down, malformed) is answered `retry`, and the hook runs the
  work in-process; once the work started, the answer is `ok` or `error` (the failure is already in the job's
  env file).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType

from qauvern_hpc.core.files import LockBusy, lock_fd
from qauvern_hpc.hooks.hookc import KINDS, MAX_ANSWER, PROTOCOL

log = logging.getLogger("qauvern_hpc.hookd")

PING = PROTOCOL + b" ping\n"  # a liveness probe, answered `ok pid=N requests=N`; runs no hook
MAX_REQUEST = 1 << 20  # a job's environment; far more than slurmctld ever passes
DEFAULT_IDLE_TIMEOUT = 3600.0
WATCH_INTERVAL = 2.0

Handler = Callable[[Mapping[str, str]], object]


def decode_request(data: bytes) -> tuple[str, dict[str, str]]:
    """Parse a hookc request; ValueError with the reason when malformed."""
    head, sep, body = data.partition(b"\n")
    if not sep:
        raise ValueError("no header line")
    words = head.split(b" ")
    if len(words) != 2 or words[0] != PROTOCOL:
        raise ValueError(f"unknown protocol {head[:40]!r}")
    kind = words[1].decode("ascii", "replace")
    if kind not in KINDS:
        raise ValueError(f"unknown hook kind {kind!r}")
    env: dict[str, str] = {}
    for item in body.split(b"\0"):
        if not item:
            continue
        name, eq, value = item.partition(b"=")
        if not eq or not name:
            raise ValueError("malformed NAME=VALUE entry")
        env[os.fsdecode(name)] = os.fsdecode(value)
    return kind, env


def default_handlers() -> dict[str, Handler]:
    from qauvern_hpc.hooks import epilog, prolog

    return {"prolog": prolog.prepare, "epilog": epilog.release}


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = False  # finish requests in flight on shutdown
    block_on_close = True

    def __init__(self, path: str, daemon: HookDaemon) -> None:
        self.hookd = daemon
        super().__init__(path, _RequestHandler, bind_and_activate=True)


class _RequestHandler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.hookd.handle_connection(self.request)


class HookDaemon:
    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        handlers: Mapping[str, Handler] | None = None,
        allowed_uids: tuple[int, ...] | None = None,
        watch_files: tuple[str, ...] = (),
    ) -> None:
        self.path = str(socket_path)
        self.idle_timeout = idle_timeout
        self.handlers = dict(handlers) if handlers is not None else default_handlers()
        self.allowed_uids = allowed_uids if allowed_uids is not None else (os.getuid(),)
        self.watch_files = watch_files
        self.last_activity = time.monotonic()
        self.requests = 0
        self._busy = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._lock_fd: int | None = None
        self._inode: tuple[int, int] | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    def bind(self) -> None:
        """Take the single-instance lock and listen. LockHeld-like RuntimeError if another daemon runs."""
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        try:
            self._lock_fd = lock_fd(self.path + ".lock", mode=0o600)
        except LockBusy:
            raise RuntimeError(f"another hookd already serves {self.path}") from None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # stale: we hold the lock, so nobody serves it
        old_umask = os.umask(0o177)
        try:
            self._server = _Server(self.path, self)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)

    def serve_forever(self) -> None:
        assert self._server is not None, "bind() first"
        watcher = threading.Thread(target=self._watch, name="hookd-watch", daemon=True)
        watcher.start()
        log.info("hookd: serving %s (pid %d)", self.path, os.getpid())
        try:
            self._server.serve_forever(poll_interval=0.5)
        finally:
            self._server.server_close()
            with contextlib.suppress(OSError):
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.path)
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            log.info("hookd: stopped after %d requests", self.requests)

    def stop(self, reason: str = "") -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("hookd: stopping%s", f" ({reason})" if reason else "")
        if self._server is not None:
            threading.Thread(target=self._server.shutdown, daemon=True).start()

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL):
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) != self._inode:
                    self.stop("socket replaced")
            except FileNotFoundError:
                self.stop("socket removed")
            for path in self.watch_files:
                if not os.path.exists(path):
                    self.stop(f"{path} removed")
            with self._lock:
                idle = self._busy == 0 and time.monotonic() - self.last_activity
            if self.idle_timeout > 0 and idle and idle > self.idle_timeout:
                self.stop(f"idle for {self.idle_timeout:.0f} s")

    # -- requests --------------------------------------------------------------------------------------

    def handle_connection(self, conn: socket.socket) -> None:
        with self._lock:
            self._busy += 1
            self.last_activity = time.monotonic()
        try:
            answer = self._answer(conn)
            with contextlib.suppress(OSError):
                conn.sendall(answer.encode("utf-8", "replace")[:MAX_ANSWER])
        finally:
            with self._lock:
                self._busy -= 1
                self.last_activity = time.monotonic()

    def _answer(self, conn: socket.socket) -> str:
        try:
            uid = peer_uid(conn)
        except OSError as exc:
            return f"retry cannot check the peer: {exc}\n"
        if uid not in self.allowed_uids:
            log.warning("hookd: refused a request from uid %d", uid)
            return "retry peer not allowed\n"
        if self._stopping.is_set():
            return "retry shutting down\n"
        try:
            data = _read_all(conn, MAX_REQUEST)
            if data == PING:  # `qauvern-hpc doctor`: alive, and whose
                return f"ok pid={os.getpid()} requests={self.requests}\n"
            kind, env = decode_request(data)
        except (OSError, ValueError) as exc:
            log.warning("hookd: bad request: %s", exc)
            return f"retry bad request: {exc}\n"
        self.requests += 1
        started = time.monotonic()
        try:
            self.handlers[kind](env)
        except Exception as exc:  # the handler's own failure paths write the job's env file
            from qauvern_hpc.hooks import common

            log.exception("job %s: %s failed in hookd: %s", env.get("SLURM_JOB_ID"), kind, exc)
            if kind == "prolog":
                common.last_resort(env, exc, log)
            return f"error {common.one_line(exc)}\n"
        log.info(
            "job %s: %s done in hookd in %.1f ms",
            env.get("SLURM_JOB_ID"),
            kind,
            (time.monotonic() - started) * 1000,
        )
        return "ok\n"


def _read_all(conn: socket.socket, limit: int) -> bytes:
    conn.settimeout(10.0)
    chunks: list[bytes] = []
    size = 0
    while True:
        data = conn.recv(65536)
        if not data:
            return b"".join(chunks)
        size += len(data)
        if size > limit:
            raise ValueError(f"request larger than {limit} bytes")
        chunks.append(data)


def prewarm(policy_path: str | None) -> None:
    """Import the IBM client stack and open a client per key file now, not during the first job."""
    try:
        from qauvern_hpc.hooks import ibm_session
        from qauvern_hpc.policy.compiled import load_policy

        policy = load_policy(policy_path)
        for instance in policy.instances.values():
            if instance.api_key_file:
                ibm_session.client_for(policy, instance.api_key_file, instance.name)
    except Exception as exc:  # a broken policy shows up again, per job, in the job's env file
        log.warning("hookd: prewarm failed: %s", exc)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="qauvern-hpc hookd")
    p.add_argument(
        "--socket", required=True, help="Unix socket path (also $QAUVERN_HPC_HOOKD_SOCKET in hooks)"
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        help=f"exit after this many idle seconds; 0 = never (default {DEFAULT_IDLE_TIMEOUT:.0f})",
    )
    p.add_argument(
        "--policy", default=None, help="policy.json to prewarm clients from (default: $QAUVERN_HPC_POLICY)"
    )
    return p


def run_daemon(socket_path: str, idle_timeout: float, policy: str | None) -> int:
    from qauvern_hpc.hooks import common

    common.setup_logging(os.environ)
    policy = policy or os.environ.get("QAUVERN_HPC_POLICY")
    # A daemon started for a policy file stops when that file goes (a removed sandbox or test site).
    watch = (policy,) if policy and os.path.exists(policy) else ()
    daemon = HookDaemon(socket_path, idle_timeout=idle_timeout, watch_files=watch)
    try:
        daemon.bind()
    except RuntimeError as exc:
        log.info("hookd: %s", exc)
        return 0  # another one runs: fine, that's what the caller wanted

    def on_signal(signum: int, frame: FrameType | None) -> None:
        daemon.stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=prewarm, args=(policy,), daemon=True).start()
    daemon.serve_forever()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_daemon(args.socket, args.idle_timeout, args.policy)


def socket_for(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / "hookd.sock"


def ping(path: str | os.PathLike[str], timeout: float = 3.0) -> str:
    """Ask the daemon at `path` whether it serves; its answer (`ok pid=N requests=N`). OSError when nobody
    listens there, ValueError for an answer that is not `ok`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(os.fspath(path))
        conn.sendall(PING)
        conn.shutdown(socket.SHUT_WR)
        answer = _read_all(conn, MAX_ANSWER).decode("utf-8", "replace").strip()
    if not answer.startswith("ok"):
        raise ValueError(answer or "no answer")
    return answer


if __name__ == "__main__":
    sys.exit(main())
