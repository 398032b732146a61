"""The control surface under `/__emulator/`: state, faults, tokens, clock and the request log.

Invariants: control routes need no token, are never faulted and never logged (see `server`); they drive the
same `EmulatorState`, `FaultSet` and `RequestLog` as the Python API of `runner.Emulator`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from qauvern_hpc.devtools.emulator.clock import iso
from qauvern_hpc.devtools.emulator.errors import ApiError, bad_request, not_found
from qauvern_hpc.devtools.emulator.routing import CONTROL_PREFIX, NO_CONTENT, Reply, Request, RouteTable, ok
from qauvern_hpc.devtools.emulator.seed import SeedError

if TYPE_CHECKING:
    from qauvern_hpc.devtools.emulator.server import EmulatorApp

CONTROL = RouteTable()
route = CONTROL.route


def _control_error(exc: Exception) -> ApiError:
    return bad_request(str(exc), "invalid_request")


@route("GET", CONTROL_PREFIX + "/health", "control")
def _c_health(app: EmulatorApp, r: Request) -> Reply:
    return ok({"ok": True, "now": iso(app.state.now())})


@route("GET", CONTROL_PREFIX + "/state", "control")
def _c_state_get(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.snapshot())


def _set_state(app: EmulatorApp, r: Request, what: str, apply: Callable[[dict[str, Any]], None]) -> Reply:
    body = r.json()
    if not isinstance(body, dict):
        raise bad_request(f"the {what} must be a JSON object", "invalid_state")
    try:
        apply(body)
    except SeedError as exc:
        raise bad_request(str(exc), "invalid_state") from exc
    return ok(app.state.snapshot())


@route("PUT", CONTROL_PREFIX + "/state", "control")
def _c_state_put(app: EmulatorApp, r: Request) -> Reply:
    return _set_state(app, r, "state", app.state.replace)


@route("PATCH", CONTROL_PREFIX + "/state", "control")
def _c_state_patch(app: EmulatorApp, r: Request) -> Reply:
    return _set_state(app, r, "patch", app.state.patch)


def _backend_knob(app: EmulatorApp, r: Request, apply: Callable[[str, dict[str, Any]], Any]) -> Reply:
    name = unquote(r.groups[0])
    body = r.json() or {}
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object", "invalid_request")
    try:
        return ok(apply(name, body))
    except KeyError as exc:
        raise not_found(f"no backend {name}", "backend_not_found") from exc
    except (TypeError, ValueError) as exc:
        raise _control_error(exc) from exc


@route("GET", CONTROL_PREFIX + "/backends/([^/]+)", "control")
def _c_backend(app: EmulatorApp, r: Request) -> Reply:
    return _backend_knob(app, r, lambda name, _: app.state.backend_control_view(name))


@route("POST", CONTROL_PREFIX + "/backends/([^/]+)/status", "control")
def _c_backend_status(app: EmulatorApp, r: Request) -> Reply:
    """`{status, message?, for_seconds?}`: now; with `for_seconds` it reverts afterwards."""

    def apply(name: str, body: dict[str, Any]) -> Any:
        unknown = set(body) - {"status", "message", "for_seconds"}
        if unknown or not isinstance(body.get("status"), str):
            raise ValueError('body must be {"status": S, "message"?: M, "for_seconds"?: N}')
        message, for_seconds = body.get("message"), body.get("for_seconds")
        return app.state.set_backend_status(name, body["status"], message, for_seconds)

    return _backend_knob(app, r, apply)


@route("POST", CONTROL_PREFIX + "/backends/([^/]+)/wait-spike", "control")
def _c_wait_spike(app: EmulatorApp, r: Request) -> Reply:
    """`{extra_jobs?, rate_factor?, for_seconds, after_seconds?}`."""
    return _backend_knob(app, r, lambda name, body: app.state.wait_spike(name, **body))


@route("POST", CONTROL_PREFIX + "/backends/([^/]+)/flap", "control")
def _c_flap(app: EmulatorApp, r: Request) -> Reply:
    """`{period_seconds, for_seconds, after_seconds?}`."""
    return _backend_knob(app, r, lambda name, body: app.state.flap(name, **body))


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


@route("GET", CONTROL_PREFIX + "/time-fields", "control")
def _c_time_fields(app: EmulatorApp, r: Request) -> Reply:
    return ok({"removed": app.state.time_fields_removed})


@route("PUT", CONTROL_PREFIX + "/time-fields", "control")
def _c_time_fields_set(app: EmulatorApp, r: Request) -> Reply:
    """``{"removed": true}``: versions that carry RUs stop serving the time fields (`versions`)."""
    body = r.json()
    removed = body.get("removed") if isinstance(body, dict) else None
    if not isinstance(removed, bool):
        raise bad_request('body must be {"removed": true|false}', "invalid_request")
    app.state.remove_time_fields(removed)
    return ok({"removed": app.state.time_fields_removed})


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
