"""The match-pattern globs of the mapping rules: a safe subset of fnmatch that job_submit.lua implements too.

Standard library only (the prolog's hot path). Accepted: `*`, `?`, `[abc]`, `[a-z0-9]`, `[!abc]` and the
literal characters ``A-Z a-z 0-9 _ . @ + -``; matching is case-sensitive and whole-string. Anything else is a
`GlobError` (`glob_error` says why, for config and policy validation). A leading `!` (an exclusion in a match
list) is the caller's business: only `glob_error` strips it.
"""

from __future__ import annotations

import functools
import re
import string

_LITERAL = frozenset(string.ascii_letters + string.digits + "_.@+-")
_SET_CHAR = frozenset(string.ascii_letters + string.digits + "_.@+")
_RANGE_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)


class GlobError(ValueError):
    pass


def glob_to_regex(glob: str) -> str:
    if not glob:
        raise GlobError("empty pattern")
    out: list[str] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            end = glob.find("]", i + 1)
            if end < 0:
                raise GlobError(f"unclosed '[' in {glob!r}")
            body = glob[i + 1 : end]
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            if not body:
                raise GlobError(f"empty [...] in {glob!r}")
            items: list[str] = []
            j = 0
            while j < len(body):
                ch = body[j]
                if j + 2 < len(body) and body[j + 1] == "-":
                    lo, hi = ch, body[j + 2]
                    if not any(lo in cls and hi in cls and lo <= hi for cls in _RANGE_CLASSES):
                        raise GlobError(f"bad range {lo}-{hi} in {glob!r} (use a-z, A-Z or 0-9 style ranges)")
                    items.append(f"{lo}-{hi}")
                    j += 3
                    continue
                if ch not in _SET_CHAR:
                    raise GlobError(f"character {ch!r} not allowed inside [...] in {glob!r}")
                items.append(re.escape(ch))
                j += 1
            out.append("[" + ("^" if negate else "") + "".join(items) + "]")
            i = end
        elif c in _LITERAL:
            out.append(re.escape(c))
        else:
            raise GlobError(
                f"character {c!r} not allowed in pattern {glob!r} "
                "(use letters, digits, _ . @ + - and the wildcards * ? [...])"
            )
        i += 1
    return "".join(out)


def glob_error(pattern: str) -> str | None:
    """Why `pattern` (maybe `!glob`) is not a valid match pattern, or None if it is."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    try:
        glob_to_regex(body)
    except GlobError as exc:
        return str(exc)
    return None


@functools.lru_cache(maxsize=4096)
def _compiled(glob: str) -> re.Pattern[str]:
    return re.compile(glob_to_regex(glob), re.DOTALL)


def glob_match(glob: str, value: str) -> bool:
    return _compiled(glob).fullmatch(value) is not None
