"""A string that never shows itself: API keys travel as `Secret` so a repr, a str(), a log line or a
traceback's locals display cannot leak them. Standard library only."""

from __future__ import annotations


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__
