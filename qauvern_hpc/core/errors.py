"""Errors a user may see. Each carries a message meant for humans and an exit code.

The CLI turns any `QauvernError` into one line on stderr and its exit code; it never shows a traceback
for these. Exit codes are part of the interface (documented in README "Exit codes").
"""

from __future__ import annotations


class ExitCode:
    OK = 0
    FAILURE = 1  # the operation ran and failed (a write failed, validation refused, ...)
    USAGE = 2  # bad command line or bad input file
    CONFIG = 3  # the site config is invalid
    UNAVAILABLE = 4  # a service (IBM, slurmdbd, ...) could not be reached or answered with an error
    LOCKED = 5  # another run holds the lock


class QauvernError(Exception):
    """Base class of every error meant for a user."""

    exit_code: int = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class UsageError(QauvernError):
    exit_code = ExitCode.USAGE


class ConfigError(QauvernError):
    exit_code = ExitCode.CONFIG


class ServiceUnavailable(QauvernError):
    exit_code = ExitCode.UNAVAILABLE


class LockHeld(QauvernError):
    exit_code = ExitCode.LOCKED
