"""Fault injection: rules that make the emulator misbehave on purpose.

A rule matches a request by method (None or "*" = any) and a regular expression searched in the path
(without the query string). The first matching rule that still has uses left applies:

- ``delay``: wait that many (real) seconds first, then carry on (with the rule's status, if any, or normally);
- ``status``: answer that HTTP status with an IBM-style error body (``retry_after`` adds a ``Retry-After``
  header, ``body`` replaces the body with that JSON value, ``raw`` with that text sent verbatim, e.g.
  truncated or otherwise malformed JSON: ``{"status": 200, "raw": "{\\"usage_consumed_seconds\\": 1"}``; from
  Python, ``body=b"..."`` does the same);
- ``drop``: close the connection without answering.

``times`` limits how many requests the rule affects (None = unlimited); a spent rule stays listed with
``remaining: 0``. Control paths (``/__emulator/...``) are never faulted.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from qauvern_hpc.devtools.emulator.errors import ApiError


@dataclass
class FaultRule:
    path: str
    method: str | None = None
    status: int | None = None
    retry_after: float | None = None
    delay: float | None = None
    drop: bool = False
    times: int | None = None
    body: Any = None
    id: int = 0
    hits: int = 0
    _regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            self._regex = re.compile(self.path)
        except re.error as exc:
            raise ValueError(f"fault path {self.path!r} is not a valid regular expression: {exc}") from exc
        if self.method is not None:
            self.method = self.method.upper()
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"fault status must be an HTTP status code, not {self.status}")
        if self.delay is not None and self.delay < 0:
            raise ValueError("fault delay cannot be negative")
        if self.times is not None and self.times < 0:
            raise ValueError("fault times cannot be negative")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("fault retry_after cannot be negative")
        if self.status is None and self.delay is None and not self.drop:
            raise ValueError("a fault needs status, delay or drop")
        if self.body is not None and self.status is None:
            raise ValueError("a fault body (body or raw) needs a status to answer with")

    @property
    def remaining(self) -> int | None:
        return None if self.times is None else max(0, self.times - self.hits)

    def matches(self, method: str, path: str) -> bool:
        if self.method not in (None, "*") and self.method != method.upper():
            return False
        return self._regex.search(path) is not None

    def error(self) -> ApiError:
        """The reply for a `status` rule."""
        assert self.status is not None
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            ra = self.retry_after
            headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
        code = {429: "rate_limited", 500: "internal_error", 502: "bad_gateway", 503: "service_unavailable"}
        message = {
            429: "Too many requests; retry later",
            500: "Internal server error (injected)",
            502: "Bad gateway (injected)",
            503: "Service temporarily unavailable (injected)",
            504: "Gateway timeout (injected)",
        }
        return ApiError(
            self.status,
            code.get(self.status, f"injected_{self.status}"),
            message.get(self.status, f"Injected fault {self.status}"),
            headers=headers,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "drop": self.drop,
            "times": self.times,
            "body": None if isinstance(self.body, bytes | bytearray) else self.body,
            "raw": (
                bytes(self.body).decode("utf-8", "replace")
                if isinstance(self.body, bytes | bytearray)
                else None
            ),
            "hits": self.hits,
            "remaining": self.remaining,
        }


_FIELDS = {"path", "method", "status", "retry_after", "delay", "drop", "times", "body", "raw"}


class FaultSet:
    """The active rules (thread-safe)."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def add(
        self,
        path: str = ".*",
        *,
        method: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
        drop: bool = False,
        times: int | None = None,
        body: Any = None,
    ) -> FaultRule:
        rule = FaultRule(
            path=path,
            method=method,
            status=status,
            retry_after=retry_after,
            delay=delay,
            drop=drop,
            times=times,
            body=body,
        )
        with self._lock:
            rule.id = next(self._ids)
            self._rules.append(rule)
        return rule

    def add_from_dict(self, spec: Any) -> FaultRule:
        if not isinstance(spec, dict):
            raise ValueError("a fault rule must be a JSON object")
        unknown = set(spec) - _FIELDS
        if unknown:
            raise ValueError(
                f"unknown fault field(s): {', '.join(sorted(unknown))} (known: {', '.join(sorted(_FIELDS))})"
            )
        if not isinstance(spec.get("path", ".*"), str):
            raise ValueError("fault path must be a string (a regular expression)")
        for name in ("status", "times"):
            if spec.get(name) is not None and (
                isinstance(spec[name], bool) or not isinstance(spec[name], int)
            ):
                raise ValueError(f"fault {name} must be an integer")
        for name in ("delay", "retry_after"):
            if spec.get(name) is not None and (
                isinstance(spec[name], bool) or not isinstance(spec[name], int | float)
            ):
                raise ValueError(f"fault {name} must be a number")
        if spec.get("method") is not None and not isinstance(spec["method"], str):
            raise ValueError("fault method must be a string")
        raw = spec.get("raw")
        if raw is not None and not isinstance(raw, str):
            raise ValueError("fault raw must be a string (the reply body, sent verbatim)")
        if raw is not None and spec.get("body") is not None:
            raise ValueError("give a fault body or raw, not both")
        return self.add(
            spec.get("path", ".*"),
            method=spec.get("method"),
            status=spec.get("status"),
            retry_after=spec.get("retry_after"),
            delay=spec.get("delay"),
            drop=bool(spec.get("drop", False)),
            times=spec.get("times"),
            body=raw.encode("utf-8") if raw is not None else spec.get("body"),
        )

    def clear(self) -> int:
        with self._lock:
            n = len(self._rules)
            self._rules.clear()
            return n

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def take(self, method: str, path: str) -> FaultRule | None:
        """The rule that applies to this request (its use is counted), or None."""
        with self._lock:
            for rule in self._rules:
                if rule.remaining != 0 and rule.matches(method, path):
                    rule.hits += 1
                    return rule
        return None
