"""The record qauvern-hpc leaves in a job's AdminComment, so sacct alone can tell what a job used.

Format (one line, at most 1000 characters; Slurm stores AdminComment as free text):

    qauvern:v1;rule=physics;inst=physics-2025;res=ibm_torino@sess-1a2b,ibm_fez@sess-3c4d

- `rule`, `inst`: the mapping rule and the IBM Quantum instance (names from the site config);
- `res`: the resources, each `name@session_id` (`name@-` when no session was opened).
Values are percent-encoded for `;`, `,`, `@`, `=`, `%`, blanks and non-ASCII, so any text round-trips.
Anything an admin or another tool already put in AdminComment is kept: our record is appended after a
` | ` separator, and `parse_admin_comment` finds it anywhere in the text. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

PREFIX = "qauvern:v1;"
MAX_LENGTH = 1000
_SAFE = "-_.~:/+"


def _enc(text: str) -> str:
    return quote(text, safe=_SAFE)


@dataclass(frozen=True)
class AdminRecord:
    rule: str
    instance: str
    resources: tuple[tuple[str, str | None], ...]  # (resource name, session id or None)


def format_admin_comment(record: Mapping[str, Any]) -> str:
    """Render from a prolog job record (keys: rule, instance, resources[{resource, session_id}])."""
    res = ",".join(
        f"{_enc(str(r['resource']))}@{_enc(str(r['session_id'])) if r.get('session_id') else '-'}"
        for r in record.get("resources", [])
    )
    rule = _enc(str(record.get("rule") or ""))
    inst = _enc(str(record.get("instance") or ""))
    text = f"{PREFIX}rule={rule};inst={inst};res={res}"
    if len(text) > MAX_LENGTH:
        raise ValueError(f"AdminComment record is {len(text)} characters, more than {MAX_LENGTH}")
    return text


def merge_admin_comment(existing: str | None, ours: str) -> str:
    """Keep what was there (minus an older record of ours), append ours."""
    kept = [part for part in (existing or "").split(" | ") if part and not part.startswith(PREFIX)]
    return " | ".join([*kept, ours])


def parse_admin_comment(text: str | None) -> AdminRecord | None:
    """Find and decode our record in an AdminComment; None when there is none or it is malformed."""
    if not text:
        return None
    for part in text.split(" | "):
        part = part.strip()
        if not part.startswith(PREFIX):
            continue
        fields: dict[str, str] = {}
        for item in part[len(PREFIX) :].split(";"):
            key, sep, value = item.partition("=")
            if not sep:
                return None
            fields[key] = value
        if "inst" not in fields or "res" not in fields:
            return None
        resources: list[tuple[str, str | None]] = []
        for entry in filter(None, fields["res"].split(",")):
            name, sep, sess = entry.partition("@")
            if not sep or not name:
                return None
            resources.append((unquote(name), None if sess == "-" else unquote(sess)))
        return AdminRecord(
            rule=unquote(fields.get("rule", "")), instance=unquote(fields["inst"]), resources=tuple(resources)
        )
    return None
