"""The config's value types: what admins write (durations with units, dates, names, relative paths, URLs),
checked and normalised before a section model sees it. Each raises ValueError with a hint of the right
form.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationInfo, WithJsonSchema

from qauvern_hpc.core.units import parse_seconds

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_URL_RE = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


def _seconds(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(
            f"not a duration: {value!r} (use seconds or a number with a unit, e.g. 10h, 2.5d, 1qau)"
        )
    return parse_seconds(value)


_SECONDS_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?|\.\d+)\s*([sSmMhHdDwW]|[qQ][aA][uU])?\s*$"},
    ],
    "description": "seconds, or a number with a unit: 90s, 15m, 10h, 2.5d, 1w, 1qau (1 QAU = 96000 s)",
}
Seconds = Annotated[int, BeforeValidator(_seconds), WithJsonSchema(_SECONDS_SCHEMA)]


def _utc_datetime(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"not a date: {value!r} (use YYYY-MM-DD or an ISO 8601 time such as 2025-03-01T00:00:00Z)"
            ) from None
        return _utc_datetime(parsed)
    raise ValueError(f"not a date: {value!r} (use YYYY-MM-DD or an ISO 8601 time)")


UtcDateTime = Annotated[
    dt.datetime,
    BeforeValidator(_utc_datetime),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "a date (YYYY-MM-DD, midnight UTC) or an ISO 8601 time; no offset means UTC",
        }
    ),
]


def name_of(kind: str) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, str) and not _NAME_RE.fullmatch(value):
            raise ValueError(f"invalid {kind} name {value!r}: use 1 to 64 letters, digits, '_', '.' or '-'")
        return value

    return BeforeValidator(check)


def as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def config_path(value: Any, info: ValidationInfo) -> Any:
    """Expand ~ and make a relative path relative to the config file's directory."""
    if isinstance(value, str | os.PathLike):
        p = Path(os.path.expanduser(os.fspath(value)))
        base = (info.context or {}).get("base_dir")
        if not p.is_absolute() and base is not None:
            p = Path(base) / p
        return p
    return value


def _url(value: Any) -> Any:
    if isinstance(value, str):
        if not _URL_RE.fullmatch(value.strip()):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value.strip().rstrip("/")
    return value


Url = Annotated[str, BeforeValidator(_url)]


def int_to_str(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value
