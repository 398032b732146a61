"""The emulated IBM services' routes: IAM, the Resource Controller, and the quantum platform and compute APIs.

Invariants: each handler only translates between HTTP and one `EmulatorState` call (no state of its own);
every route but IAM's needs a bearer token (checked by `EmulatorApp` before the handler runs).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from qauvern_hpc.devtools.emulator.routing import NO_CONTENT, Reply, Request, RouteTable, ok
from qauvern_hpc.devtools.emulator.versions import UsageShape, rc_for_version, versions_view

if TYPE_CHECKING:
    from qauvern_hpc.devtools.emulator.server import EmulatorApp

IBM = RouteTable()
route = IBM.route


# IAM --------------------------------------------------------------------------------------------------------


@route("POST", "/identity/token", "iam")
def _iam_token(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.issue_token(r.form()))


# Resource Controller ----------------------------------------------------------------------------------------


def _rc(r: Request, body: dict[str, Any], status: int = 200) -> Reply:
    """An RC reply, with the RU extensions only for a version that carries RUs (`versions`)."""
    return ok(rc_for_version(body, r.headers.get("IBM-API-Version")), status)


@route("GET", "/v2/resource_instances", "auth")
def _rc_list(app: EmulatorApp, r: Request) -> Reply:
    return _rc(r, app.state.rc_list(r.p, r.query))


@route("POST", "/v2/resource_instances", "auth")
def _rc_create(app: EmulatorApp, r: Request) -> Reply:
    return _rc(r, app.state.rc_create(r.p, r.json()), 201)


@route("GET", "/v2/resource_instances/([^/]+)", "auth")
def _rc_get(app: EmulatorApp, r: Request) -> Reply:
    return _rc(r, app.state.rc_get(r.p, unquote(r.groups[0])))


@route("PATCH", "/v2/resource_instances/([^/]+)", "auth")
def _rc_patch(app: EmulatorApp, r: Request) -> Reply:
    return _rc(r, app.state.rc_patch(r.p, unquote(r.groups[0]), r.json()))


# Quantum platform API (under /api/v1, also accepted under /api) ---------------------------------------------


def _shape(app: EmulatorApp, r: Request) -> UsageShape:
    """The usage shape the request's IBM-API-Version asks for (see `versions`)."""
    return app.state.usage_shape(r.headers.get("IBM-API-Version"))


@route("GET", "/versions", "public-api")
def _versions(app: EmulatorApp, r: Request) -> Reply:
    return ok(versions_view())


@route("GET", "/instances/usage", "api")
def _instance_usage(app: EmulatorApp, r: Request) -> Reply:
    return ok(app.state.instance_usage(r.p, r.crn, _shape(app, r)))


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
    return ok(app.state.backends(r.p, r.crn, r.query.get("fields", "")))


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
    return ok(app.state.list_jobs(r.p, r.crn, r.query, _shape(app, r)))


@route("GET", "/jobs/([^/]+)", "api")
def _job_get(app: EmulatorApp, r: Request) -> Reply:
    exclude = r.query.get("exclude_params", "").lower() in ("true", "1")
    return ok(app.state.get_job(r.p, r.crn, unquote(r.groups[0]), exclude, _shape(app, r)))


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
    return ok(app.state.job_metrics(r.p, r.crn, unquote(r.groups[0]), _shape(app, r)))


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
