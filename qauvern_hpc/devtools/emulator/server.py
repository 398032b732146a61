"""The HTTP layer: a standard-library HTTP/1.1 server (keep-alive, exact Content-Length, chunked request
bodies) routing every emulated service on one port, plus fault injection and the request log."""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from qauvern_hpc.devtools.emulator.clock import iso
from qauvern_hpc.devtools.emulator.errors import ApiError, bad_request, not_found
from qauvern_hpc.devtools.emulator.faults import FaultSet
from qauvern_hpc.devtools.emulator.iam import Principal
from qauvern_hpc.devtools.emulator.seed import SeedError
from qauvern_hpc.devtools.emulator.state import EmulatorState

log = logging.getLogger("qauvern_hpc.devtools.emulator")

CONTROL_PREFIX = "/__emulator"
REDACTED_HEADERS = frozenset({"authorization", "proxy-authorization", "apikey", "x-api-key", "cookie"})
REDACTED_QUERY = frozenset({"apikey", "api_key", "access_token", "refresh_token"})
MAX_BODY = 32 * 1024 * 1024


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


# ---------------------------------------------------------------------------------------------- routing


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    groups: tuple[str, ...] = ()
    principal: Principal | None = None

    def json(self) -> Any:
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise bad_request(f"the request body is not valid JSON: {exc}", "invalid_json") from exc

    def form(self) -> dict[str, str]:
        try:
            pairs = parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError as exc:
            raise ApiError(400, "BXNIM0107E", "The request body is not valid form data", style="iam") from exc
        return {k: v[-1] for k, v in pairs.items()}

    @property
    def crn(self) -> str | None:
        return self.headers.get("Service-CRN")

    @property
    def p(self) -> Principal:
        assert self.principal is not None
        return self.principal


Handler = Callable[["EmulatorApp", Request], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    kind: str  # "iam" (no auth), "auth" (bearer token), "api" (bearer token, path under /api[/v1]), "control"


_ROUTES: list[Route] = []
_API_PREFIX = re.compile(r"^/api(?:/v1)?(/.+)$")


def route(method: str, pattern: str, kind: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        _ROUTES.append(Route(method, re.compile(f"^{pattern}$"), fn, kind))
        return fn

    return deco


def ok(body: Any, status: int = 200) -> Reply:
    return Reply(status, body)


NO_CONTENT = Reply(204)


# IAM --------------------------------------------------------------------------------------------------------


@route("POST", "/identity/token", "iam")
def _iam_token(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.issue_token(r.form()))


# Resource Controller ----------------------------------------------------------------------------------------


@route("GET", "/v2/resource_instances", "auth")
def _rc_list(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.rc_list(r.p, r.query))


@route("POST", "/v2/resource_instances", "auth")
def _rc_create(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.rc_create(r.p, r.json()), 201)


@route("GET", "/v2/resource_instances/([^/]+)", "auth")
def _rc_get(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.rc_get(r.p, unquote(r.groups[0])))


@route("PATCH", "/v2/resource_instances/([^/]+)", "auth")
def _rc_patch(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.rc_patch(r.p, unquote(r.groups[0]), r.json()))


# Quantum platform API (under /api/v1, also accepted under /api) ---------------------------------------------


@route("GET", "/instances/usage", "api")
def _instance_usage(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.instance_usage(r.p, r.crn))


@route("GET", "/instance", "api")
def _instance_info(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.instance_info(r.p, r.crn))


@route("GET", "/analytics/usage", "api")
def _analytics_usage(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.analytics_usage(r.p, r.headers.get("Account-Id"), r.query))


@route("GET", "/analytics/usage_grouped_by_date", "api")
def _analytics_grouped(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.analytics_grouped_by_date(r.p, r.headers.get("Account-Id"), r.query))


@route("GET", "/accounts/([^/]+)", "api")
def _account(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.account(r.p, unquote(r.groups[0]), r.query.get("plan_id")))


@route("GET", "/backends", "api")
def _backends(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.backends(r.p, r.crn))


@route("GET", "/backends/([^/]+)/status", "api")
def _backend_status(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.backend_status(r.p, r.crn, unquote(r.groups[0])))


@route("GET", "/backends/([^/]+)/configuration", "api")
def _backend_configuration(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.backend_configuration(r.p, r.crn, unquote(r.groups[0])))


@route("GET", "/backends/([^/]+)/properties", "api")
def _backend_properties(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.backend_properties(r.p, r.crn, unquote(r.groups[0])))


@route("POST", "/sessions", "api")
def _session_create(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.create_session(r.p, r.crn, r.json()))


@route("GET", "/sessions/([^/]+)", "api")
def _session_get(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.get_session(r.p, r.crn, unquote(r.groups[0])))


@route("PATCH", "/sessions/([^/]+)", "api")
def _session_update(app: EmulatorApp, r: Request) -> Reply:
    app.state.update_session(r.p, r.crn, unquote(r.groups[0]), r.json())
    return NO_CONTENT


@route("DELETE", "/sessions/([^/]+)/close", "api")
def _session_close(app: EmulatorApp, r: Request) -> Reply:
    app.state.close_session(r.p, r.crn, unquote(r.groups[0]))
    return NO_CONTENT


@route("POST", "/jobs", "api")
def _job_create(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.create_job(r.p, r.crn, r.json()))


@route("GET", "/jobs", "api")
def _job_list(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.list_jobs(r.p, r.crn, r.query))


@route("GET", "/jobs/([^/]+)", "api")
def _job_get(app: EmulatorApp, r: Request) -> Reply:
    exclude = r.query.get("exclude_params", "").lower() in ("true", "1")
    return ok(app.state.get_job(r.p, r.crn, unquote(r.groups[0]), exclude))


@route("DELETE", "/jobs/([^/]+)", "api")
def _job_delete(app: EmulatorApp, r: Request) -> Reply:
    app.state.delete_job(r.p, r.crn, unquote(r.groups[0]))
    return NO_CONTENT


@route("POST", "/jobs/([^/]+)/cancel", "api")
def _job_cancel(app: EmulatorApp, r: Request) -> Reply:
    app.state.cancel_job(r.p, r.crn, unquote(r.groups[0]))
    return NO_CONTENT


@route("GET", "/jobs/([^/]+)/metrics", "api")
def _job_metrics(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.job_metrics(r.p, r.crn, unquote(r.groups[0])))


@route("GET", "/jobs/([^/]+)/results", "api")
def _job_results(app: EmulatorApp, r: Request) -> Reply:
    # The body is JSON, served as text: qrmi's client reads results as a string (JSON content would have
    # to be a JSON string) and qiskit-ibm-runtime decodes `response.text` itself.
    body = json.dumps(app.state.job_results(r.p, r.crn, unquote(r.groups[0])))
    return Reply(200, body, content_type="text/plain; charset=utf-8")


@route("GET", "/jobs/([^/]+)/logs", "api")
def _job_logs(app: EmulatorApp, r: Request) -> Reply:
    return Reply(
        200, app.state.job_logs(r.p, r.crn, unquote(r.groups[0])), content_type="text/plain; charset=utf-8"
    )


# Control surface --------------------------------------------------------------------------------------------


def _control_error(exc: Exception) -> ApiError:
    return bad_request(str(exc), "invalid_request")


@route("GET", CONTROL_PREFIX + "/health", "control")
def _c_health(app: EmulatorApp, r: Request) -> Reply:
    return ok({"ok": True, "now": iso(app.state.now())})


@route("GET", CONTROL_PREFIX + "/state", "control")
def _c_state_get(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.snapshot())


@route("PUT", CONTROL_PREFIX + "/state", "control")
def _c_state_put(app: EmulatorApp, r: Request) -> Reply:
    body = r.json()
    if not isinstance(body, dict):
        raise bad_request("the state must be a JSON object", "invalid_state")
    try:
        app.state.replace(body)
    except SeedError as exc:
        raise bad_request(str(exc), "invalid_state") from exc
    return ok(app.state.snapshot())


@route("PATCH", CONTROL_PREFIX + "/state", "control")
def _c_state_patch(app: EmulatorApp, r: Request) -> Reply:
    body = r.json()
    if not isinstance(body, dict):
        raise bad_request("the patch must be a JSON object", "invalid_state")
    try:
        app.state.patch(body)
    except SeedError as exc:
        raise bad_request(str(exc), "invalid_state") from exc
    return ok(app.state.snapshot())


@route("GET", CONTROL_PREFIX + "/faults", "control")
def _c_faults(app: EmulatorApp, r: Request) -> Reply:
    return ok({"faults": [f.to_dict() for f in app.faults.rules()]})


@route("POST", CONTROL_PREFIX + "/faults", "control")
def _c_faults_add(app: EmulatorApp, r: Request) -> Reply:
    body = r.json()
    specs = body if isinstance(body, list) else [body]
    try:
        rules = [app.faults.add_from_dict(spec) for spec in specs]
    except ValueError as exc:
        raise _control_error(exc) from exc
    return ok({"faults": [f.to_dict() for f in rules]}, 201)


@route("DELETE", CONTROL_PREFIX + "/faults", "control")
def _c_faults_clear(app: EmulatorApp, r: Request) -> Reply:
    return ok({"cleared": app.faults.clear()})


@route("DELETE", CONTROL_PREFIX + "/faults/([0-9]+)", "control")
def _c_fault_remove(app: EmulatorApp, r: Request) -> Reply:
    if not app.faults.remove(int(r.groups[0])):
        raise not_found(f"no fault rule {r.groups[0]}", "fault_not_found")
    return NO_CONTENT


@route("POST", CONTROL_PREFIX + "/expire-tokens", "control")
def _c_expire(app: EmulatorApp, r: Request) -> Reply:
    return ok({"expired": app.state.expire_tokens()})


@route("POST", CONTROL_PREFIX + "/advance", "control")
def _c_advance(app: EmulatorApp, r: Request) -> Reply:
    body = r.json() or {}
    seconds = body.get("seconds") if isinstance(body, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise bad_request('body must be {"seconds": N} with N >= 0', "invalid_request")
    now = app.state.advance(float(seconds))
    return ok({"now": iso(now), **app.state.clock.describe()})


@route("GET", CONTROL_PREFIX + "/clock", "control")
def _c_clock(app: EmulatorApp, r: Request) -> Reply:
    app.state.now()
    return ok(app.state.clock.describe())


@route("GET", CONTROL_PREFIX + "/requests", "control")
def _c_requests(app: EmulatorApp, r: Request) -> Reply:
    since = r.query.get("since", "0")
    if not since.isdigit():
        raise bad_request("since must be a request sequence number", "invalid_request")
    return ok({"requests": [e.to_dict() for e in app.log.entries(int(since))]})


@route("DELETE", CONTROL_PREFIX + "/requests", "control")
def _c_requests_clear(app: EmulatorApp, r: Request) -> Reply:
    return ok({"cleared": app.log.clear()})


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
        api = _API_PREFIX.match(path)
        allowed: list[str] = []
        for r in _ROUTES:
            target = path
            if r.kind == "api":
                if api is None:
                    continue
                target = api.group(1)
            m = r.pattern.match(target)
            if m is None:
                continue
            if r.method == method:
                return r, m.groups()
            allowed.append(r.method)
        if allowed:
            raise ApiError(
                405,
                "method_not_allowed",
                f"{method} is not allowed on {path}",
                headers={"Allow": ", ".join(sorted(set(allowed)))},
            )
        raise not_found(f"No route for {method} {path}", "not_found")

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
