"""The HTTP layer: a standard-library HTTP/1.1 server (keep-alive, exact Content-Length, chunked request
bodies) serving every emulated service on one port (`api` and `control` routes), plus fault injection and
the request log.

Invariants: faults and the request log apply to every path but the control surface; the log never holds
secrets (Authorization and API-key headers, token query parameters); a request is logged before its reply
is sent.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from qauvern_hpc.devtools.emulator.api import IBM
from qauvern_hpc.devtools.emulator.clock import iso
from qauvern_hpc.devtools.emulator.control import CONTROL
from qauvern_hpc.devtools.emulator.errors import ApiError, bad_request
from qauvern_hpc.devtools.emulator.faults import FaultSet
from qauvern_hpc.devtools.emulator.routing import CONTROL_PREFIX, Reply, Request, Route, RouteTable
from qauvern_hpc.devtools.emulator.state import EmulatorState

log = logging.getLogger("qauvern_hpc.devtools.emulator")

REDACTED_HEADERS = frozenset({"authorization", "proxy-authorization", "apikey", "x-api-key", "cookie"})
REDACTED_QUERY = frozenset({"apikey", "api_key", "access_token", "refresh_token"})
MAX_BODY = 32 * 1024 * 1024
ROUTES = RouteTable(IBM, CONTROL)


# ---------------------------------------------------------------------------------------------- request log


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the emulator saw it. Secrets (Authorization, API keys) are never recorded."""

    seq: int
    at: str
    method: str
    path: str
    status: int | None
    headers: dict[str, str]
    fault: int | None = None
    dropped: bool = False
    duration_ms: float = 0.0

    def header(self, name: str) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "headers": dict(self.headers),
            "fault": self.fault,
            "dropped": self.dropped,
            "duration_ms": self.duration_ms,
        }


class RequestLog:
    def __init__(self, maxlen: int = 10000) -> None:
        self._entries: collections.deque[LoggedRequest] = collections.deque(maxlen=maxlen)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def next_seq(self) -> int:
        with self._lock:
            return next(self._seq)

    def append(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, since: int = 0) -> list[LoggedRequest]:
        with self._lock:
            return sorted((e for e in self._entries if e.seq > since), key=lambda e: e.seq)

    def clear(self) -> int:
        with self._lock:
            n = len(self._entries)
            self._entries.clear()
            return n


def redact_path(raw: str) -> str:
    parts = urlsplit(raw)
    if not parts.query:
        return parts.path
    pairs = parse_qs(parts.query, keep_blank_values=True)
    if not REDACTED_QUERY & {k.lower() for k in pairs}:
        return raw
    clean = [(k, "<redacted>" if k.lower() in REDACTED_QUERY else v) for k, vs in pairs.items() for v in vs]
    return parts.path + "?" + urlencode(clean)


# ---------------------------------------------------------------------------------------------- application


class EmulatorApp:
    """State + faults + request log, and the request dispatch shared by all connections."""

    def __init__(
        self, state: EmulatorState, faults: FaultSet | None = None, log: RequestLog | None = None
    ) -> None:
        self.state = state
        self.faults = faults or FaultSet()
        self.log = log or RequestLog()

    def resolve(self, method: str, path: str) -> tuple[Route, tuple[str, ...]]:
        return ROUTES.resolve(method, path)

    def handle(self, request: Request) -> Reply:
        try:
            r, groups = self.resolve(request.method, request.path)
            request.groups = groups
            if r.kind in ("auth", "api"):
                request.principal = self.state.authenticate(request.headers.get("Authorization"))
            return r.handler(self, request)
        except ApiError as exc:
            return Reply(exc.status, exc.body(), headers=exc.headers)
        except Exception:
            log.exception("emulator: internal error on %s %s", request.method, request.path)
            err = ApiError(500, "internal_error", "The emulator failed to handle the request (see its log)")
            return Reply(500, err.body())


# ---------------------------------------------------------------------------------------------- HTTP plumbing


class _BodyError(Exception):
    pass


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qauvern-hpc-emulator/1"
    sys_version = ""
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        message = format % args
        path = getattr(self, "path", "")
        if path:
            message = message.replace(path, redact_path(path))
        log.debug("emulator: %s - %s", self.address_string(), message)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("emulator: %s %s -> %s", self.command, redact_path(self.path), code)

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise _BodyError("truncated chunked body")
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError as exc:
                    raise _BodyError(f"bad chunk size {size_text!r}") from exc
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise _BodyError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError as exc:
            raise _BodyError(f"bad Content-Length {length_text!r}") from exc
        if length < 0 or length > MAX_BODY:
            raise _BodyError(f"bad Content-Length {length}")
        data = self.rfile.read(length) if length else b""
        if len(data) != length:
            raise _BodyError("truncated body")
        return data

    def _serve(self) -> None:
        app = self.server.app
        started = time.monotonic()
        split = urlsplit(self.path)
        path = split.path or "/"
        control = path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")
        seq = app.log.next_seq() if not control else 0
        logged_headers = {k: v for k, v in self.headers.items() if k.lower() not in REDACTED_HEADERS}
        fault_id: int | None = None

        def record(status: int | None, dropped: bool = False) -> None:
            if control:
                return
            app.log.append(
                LoggedRequest(
                    seq=seq,
                    at=iso(app.state.clock.now()),
                    method=self.command,
                    path=redact_path(self.path),
                    status=status,
                    headers=logged_headers,
                    fault=fault_id,
                    dropped=dropped,
                    duration_ms=round((time.monotonic() - started) * 1000, 3),
                )
            )

        try:
            body = self._read_body()
        except _BodyError as exc:
            self.close_connection = True
            reply = Reply(400, bad_request(f"malformed request body: {exc}", "invalid_body").body())
            record(reply.status)
            self._send(reply)
            return

        if not control:
            rule = app.faults.take(self.command, path)
            if rule is not None:
                fault_id = rule.id
                if rule.delay:
                    time.sleep(rule.delay)
                if rule.drop:
                    self.close_connection = True
                    record(None, dropped=True)
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if rule.status is not None:
                    err = rule.error()
                    reply = Reply(
                        rule.status, rule.body if rule.body is not None else err.body(), headers=err.headers
                    )
                    record(reply.status)
                    self._send(reply)
                    return

        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        request = Request(self.command, path, query, self.headers, body)
        reply = app.handle(request)
        # Logged before the reply leaves: once a client has its answer, the log already shows the request.
        record(reply.status)
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        payload = b""
        has_body = reply.status not in (204, 304) and not 100 <= reply.status < 200 and reply.body is not None
        if has_body:
            if isinstance(reply.body, bytes | bytearray):
                payload = bytes(reply.body)
            elif isinstance(reply.body, str) and not reply.content_type.startswith("application/json"):
                payload = reply.body.encode("utf-8")
            else:
                payload = json.dumps(reply.body, separators=(",", ":")).encode("utf-8")
        reason = self.responses.get(reply.status, ("",))[0]
        head = [
            f"{self.protocol_version} {reply.status} {reason}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
        ]
        head += [f"{name}: {value}" for name, value in reply.headers.items()]
        if has_body:
            head.append(f"Content-Type: {reply.content_type}")
        if reply.status != 204 and not 100 <= reply.status < 200:
            head.append(f"Content-Length: {len(payload)}")
        if self.close_connection:
            head.append("Connection: close")
        # One write for head and body: no small-segment delays (Nagle / delayed ACK) between them.
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
        self.wfile.flush()
        self.log_request(reply.status)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: EmulatorApp, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.app = app
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, EmulatorRequestHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._conns_lock:
            self._conns.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-reply is normal (and expected with drop faults): no traceback on stderr.
        log.debug("emulator: connection error from %s", client_address, exc_info=True)

    def close_connections(self) -> None:
        """Shut down every open client connection (handler threads blocked on keep-alive reads end)."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
