"""Requests, replies and route tables shared by the IBM routes (`api`) and the control surface (`control`).

Invariants: a route's pattern matches the whole path; an "api" (or "public-api") route is matched against the
path after its `/api/v1` (or `/api`) prefix; a path that matches with another method is 405 with `Allow`,
none is 404. Routes are tried in the order they were declared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from qauvern_hpc.devtools.emulator.errors import ApiError, bad_request, not_found
from qauvern_hpc.devtools.emulator.iam import Principal

if TYPE_CHECKING:
    from qauvern_hpc.devtools.emulator.server import EmulatorApp

CONTROL_PREFIX = "/__emulator"
_API_PREFIX = re.compile(r"^/api(?:/v1)?(/.+)$")


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
    kind: str  # "iam" (no auth), "auth" (bearer token), "api" (bearer token, path under /api[/v1]),
    # "public-api" (no auth, path under /api[/v1]), "control"


class RouteTable:
    """Routes in declaration order: `@table.route(method, pattern, kind)`; `RouteTable(a, b)` joins tables."""

    def __init__(self, *tables: RouteTable) -> None:
        self.routes: list[Route] = [r for t in tables for r in t.routes]

    def route(self, method: str, pattern: str, kind: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.routes.append(Route(method, re.compile(f"^{pattern}$"), fn, kind))
            return fn

        return deco

    def resolve(self, method: str, path: str) -> tuple[Route, tuple[str, ...]]:
        api = _API_PREFIX.match(path)
        allowed: list[str] = []
        for r in self.routes:
            target = path
            if r.kind in ("api", "public-api"):
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


def ok(body: Any, status: int = 200) -> Reply:
    return Reply(status, body)


NO_CONTENT = Reply(204)
