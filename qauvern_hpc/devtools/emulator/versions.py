"""IBM-API-Version: which versions the emulator knows and how each one shapes the usage fields.

What IBM documents (see docs/ibm-platform.md for the pages):

- up to 2026-02-15 a job's ``usage`` is ``{seconds, quantum_seconds}`` and its metrics carry ``bss.seconds``;
- 2026-03-15 drops ``bss``, ``usage.seconds`` and ``usage.quantum_seconds``: the charged time is
  ``usage.qpu_charge_time_seconds`` (with ``usage.status``), and the metrics keep
  ``usage.circuits_execution_time_ns``;
- 2026-04-15 adds the resource units, ``usage.value``, and moves ``circuits_execution_time_ns`` to the root
  of the metrics; only from this version may an instance's usage carry RU fields.

Invariants: a request without the header is answered as the oldest version (IBM wants the header; the
emulator is lenient so that bare HTTP probes keep working); a value that is not a listed version is a 400.
The "time fields removed" switch (IBM's announced next step) only affects versions that carry RUs: older
versions cannot express usage at all without their time fields, so they keep them. The Resource Controller
is not versioned by IBM-API-Version at IBM; the emulator shows its RU extensions only to requests that name a
version with RUs (so clients of older versions see the shape they were written against) and never refuses an
RC request for its header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qauvern_hpc.devtools.emulator.errors import bad_request

# (version, sunset date or None while live), oldest first, as `GET /v1/versions` lists them.
VERSIONS: tuple[tuple[str, str | None], ...] = (
    ("2024-01-01", "2027-01-01"),
    ("2025-01-01", "2027-01-01"),
    ("2025-05-01", "2027-01-01"),
    ("2026-02-01", "2027-02-01"),
    ("2026-02-15", "2027-02-15"),
    ("2026-03-15", "2027-03-15"),
    ("2026-04-15", None),
)
OLDEST = VERSIONS[0][0]
LATEST = VERSIONS[-1][0]
CHARGE_TIME_SINCE = "2026-03-15"
RESOURCE_UNITS_SINCE = "2026-04-15"


@dataclass(frozen=True)
class UsageShape:
    """How one reply shapes usage: `legacy_time` (``seconds``/``quantum_seconds``/``bss``), `charge_time`
    (``qpu_charge_time_seconds``), `resource_units` (``value`` and the ``*_ru`` fields), `time_fields`
    (any seconds at all)."""

    version: str
    legacy_time: bool
    charge_time: bool
    resource_units: bool
    time_fields: bool
    ru_per_second: float = 1.0

    def ru(self, seconds: float) -> float:
        """Seconds of usage -> resource units at the emulator's rate (3 decimals)."""
        return round(seconds * self.ru_per_second, 3)


def usage_shape(
    header: str | None, *, time_fields_removed: bool = False, ru_per_second: float = 1.0
) -> UsageShape:
    """The shape of a reply to a request that sent `header` as its IBM-API-Version."""
    version = (header or "").strip() or OLDEST
    if version not in {v for v, _ in VERSIONS}:
        known = ", ".join(v for v, _ in VERSIONS)
        raise bad_request(
            f"IBM-API-Version {version!r} is not supported; supported versions: {known}",
            "invalid_api_version",
        )
    ru = version >= RESOURCE_UNITS_SINCE
    return UsageShape(
        version=version,
        legacy_time=version < CHARGE_TIME_SINCE,
        charge_time=version >= CHARGE_TIME_SINCE and not (ru and time_fields_removed),
        resource_units=ru,
        time_fields=not (ru and time_fields_removed),
        ru_per_second=ru_per_second,
    )


LEGACY = usage_shape(None)
"""The shape of the oldest version (what the emulator answered before it knew versions)."""


RC_RU_EXTENSIONS = ("usage_allocation_ru", "instance_limit_ru")


def rc_for_version(body: dict[str, Any], header: str | None) -> dict[str, Any]:
    """A Resource Controller reply (one `resource_instance` or a page of `resources`) without the RU
    extensions unless `header` names a version that carries RUs."""
    version = (header or "").strip()
    if version in {v for v, _ in VERSIONS} and version >= RESOURCE_UNITS_SINCE:
        return body
    page = body.get("resources")
    items: list[Any] = page if isinstance(page, list) else [body]
    for item in items:
        ext = item.get("extensions")
        if isinstance(ext, dict):
            for key in RC_RU_EXTENSIONS:
                ext.pop(key, None)
    return body


def versions_view() -> dict[str, Any]:
    """`GET /v1/versions`."""
    out: list[dict[str, Any]] = []
    for version, sunset in VERSIONS:
        entry: dict[str, Any] = {"version": version, "status": "live" if sunset is None else "deprecated"}
        if sunset is not None:
            entry["sunset_date"] = sunset
        out.append(entry)
    return {"versions": out}
