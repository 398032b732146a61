"""The record qauvern-hpc leaves in a job's AdminComment, so sacct alone can tell what a job used.

Format (one token: no blanks, no `|`, no newline; at most 1000 characters):

    qauvern:v1;rule=physics;inst=physics-2025;res=ibm_torino@sess-1a2b,ibm_fez@sess-3c4d

- `rule`, `inst`: the mapping rule and the IBM Quantum instance (names from the site config);
- `res`: the resources, each `name@session_id` (`name@-` when no session was opened, `name@!job` when the
  resource ran in job mode: no session by design); a job on several QPUs lists them all, in the order the
  job asked for them;
- keys may come in any order; unknown `key=value` items are ignored (room for later fields in v1);
  another version prefix (`qauvern:v2;`) is not read by this code.

Values are percent-encoded (RFC 3986 style, UTF-8) for everything but `A-Z a-z 0-9 - _ . ~ : / +`, so
`;`, `,`, `@`, `=`, `%`, `|`, blanks, newlines and non-ASCII text all round-trip.

Other content: Slurm's AdminComment is free text that admins and other tools use too. Our record is a
single token, so it is found anywhere in the text where it starts a token (at the start, or after a
blank, a newline or `|`), and it ends at the next blank, newline or `|`. `merge_admin_comment` keeps
everything else, drops older records of ours and appends the new one after ` | `. When several records
are present (someone merged by hand), the last well-formed one wins. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

PREFIX = "qauvern:v1;"
MAX_LENGTH = 1000  # our record alone
SEPARATOR = " | "  # between other text and our record, in merge_admin_comment
_SAFE = "-_.~:/+"
_TOKEN_END = (" ", "\t", "\n", "\r", "|")
JOB_MODE_SESSION = "!job"
"""Where a session id would be: the resource ran in job mode, without an IBM session. A session id is
always percent-encoded and `!` is not in `_SAFE`, so no session id reads as this. The ledger stores such a
resource with no session id and `mode = 'job'` (`qauvern_hpc.accounting.ledger.ingest`)."""


def _enc(text: str) -> str:
    return quote(text, safe=_SAFE)


@dataclass(frozen=True)
class AdminRecord:
    rule: str
    instance: str
    resources: tuple[tuple[str, str | None], ...]  # (name, session id, JOB_MODE_SESSION, or None)


def format_admin_comment(record: Mapping[str, Any]) -> str:
    """Render from a prolog job record (keys: rule, instance, resources[{resource, session_id,
    session_mode}]).

    Raises ValueError for a resource without a name, or a record longer than MAX_LENGTH.
    """
    parts = []
    for r in record.get("resources", []):
        name = str(r.get("resource") or "")
        if not name:
            raise ValueError(f"AdminComment record: resource without a name in {r!r}")
        session = r.get("session_id")
        if r.get("session_mode") == "job" and not session:
            parts.append(f"{_enc(name)}@{JOB_MODE_SESSION}")
        else:
            parts.append(f"{_enc(name)}@{_enc(str(session)) if session else '-'}")
    rule = _enc(str(record.get("rule") or ""))
    inst = _enc(str(record.get("instance") or ""))
    text = f"{PREFIX}rule={rule};inst={inst};res={','.join(parts)}"
    if len(text) > MAX_LENGTH:
        raise ValueError(f"AdminComment record is {len(text)} characters, more than {MAX_LENGTH}")
    return text


def _spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every token in `text` that starts with PREFIX at a token boundary."""
    spans: list[tuple[int, int]] = []
    i = text.find(PREFIX)
    while i >= 0:
        if i == 0 or text[i - 1] in _TOKEN_END:
            end = len(text)
            for stop in _TOKEN_END:
                j = text.find(stop, i)
                if 0 <= j < end:
                    end = j
            spans.append((i, end))
            i = text.find(PREFIX, end)
        else:
            i = text.find(PREFIX, i + 1)
    return spans


def _decode(token: str) -> AdminRecord | None:
    """One record token (starting with PREFIX) -> AdminRecord, or None when malformed."""
    fields: dict[str, str] = {}
    for item in token[len(PREFIX) :].split(";"):
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


def parse_admin_comment(text: str | None) -> AdminRecord | None:
    """Find and decode our record in an AdminComment; None when there is none or none is well-formed."""
    if not text or PREFIX not in text:
        return None
    for start, end in reversed(_spans(text)):
        record = _decode(text[start:end])
        if record is not None:
            return record
    return None


def merge_admin_comment(existing: str | None, ours: str) -> str:
    """Keep what was there (minus older records of ours and the separators around them), append ours."""
    if not ours.startswith(PREFIX) or any(c in ours for c in _TOKEN_END):
        raise ValueError(f"not an AdminComment record of ours: {ours[:80]!r}")
    text = existing or ""
    kept: list[str] = []
    pos = 0
    for start, end in _spans(text):
        kept.append(text[pos:start])
        pos = end
    kept.append(text[pos:])
    # Tidy the seams: drop the ` | ` (or bare `|`) that joined a removed record to its neighbours.
    pieces = [p.strip().strip("|").strip() for p in kept]
    rest = SEPARATOR.join(p for p in pieces if p)
    return f"{rest}{SEPARATOR}{ours}" if rest else ours


def admin_comment_from_show_job(text: str) -> str | None:
    """The AdminComment in `scontrol show job N` output (the multi-line form), or None when the job has none.

    scontrol prints it as its own line, `   AdminComment=<value> ` (one trailing blank of its own on 22.05
    and 24.11, none on 26.05: there a value's own last blank is lost), and only when it is set. The value
    is free text: it may hold blanks, `=` and `|`, which is why the one-line form (`-o`) cannot be split
    reliably. A value with newlines continues on the following lines, up to the next line that starts like
    one of scontrol's own `   Key=` lines. User-controlled fields can print such lines too: see
    `show_job_is_ambiguous`.
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(_SHOW_JOB_KEY):
            value = [line[len(_SHOW_JOB_KEY) :]]
            for more in lines[i + 1 :]:
                if _is_show_job_line(more):
                    break
                value.append(more)
            joined = "\n".join(value)
            return joined[:-1] if joined.endswith(" ") else joined
    return None


_SHOW_JOB_KEY = "   AdminComment="


def _is_show_job_line(line: str) -> bool:
    """`   Key=...` with scontrol's three-blank indent and a key made of letters, digits, `/`, `:`, `_`."""
    if not line.startswith("   ") or line.startswith("    "):
        return False
    key, sep, _ = line[3:].partition("=")
    return bool(sep) and bool(key) and key[0].isalpha() and all(c.isalnum() or c in "/:_" for c in key)


def show_job_is_ambiguous(text: str) -> bool:
    """True when `scontrol show job` output has more than one `   AdminComment=` line: a job name, comment,
    work dir or output path holding a newline can print one (every release: scontrol does not escape them),
    so the text form cannot tell the admin's value from the user's. Recorded on 22.05, 24.11 and 26.05 by
    tests/compat/job_path.sh."""
    lines = text.splitlines()
    return sum(1 for line in lines if line.startswith(_SHOW_JOB_KEY)) > 1


def admin_comment_from_show_job_json(text: str, job_id: str) -> str | None:
    """The AdminComment in `scontrol --json show job N` output (recorded on 24.11 and 26.05; 22.05's
    scontrol has no --json), None when the job has none. Unlike the text form, user-controlled fields
    cannot forge it.

    Raises ValueError when the text is not that JSON or does not hold the job."""
    import json

    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    jobs = doc.get("jobs") if isinstance(doc, dict) else None
    for job in jobs if isinstance(jobs, list) else []:
        if isinstance(job, dict) and str(job.get("job_id")) == job_id:
            value = job.get("admin_comment")
            if value is not None and not isinstance(value, str):
                raise ValueError(f"job {job_id}: admin_comment is not a string: {value!r}")
            return value or None
    raise ValueError(f"job {job_id} is not in the JSON")
