"""Stop a command that started daemons the same way on SIGINT, SIGTERM and SIGHUP: by unwinding its stack.

`stop_on_signals()` installs, for the duration of a `with` block in the main thread, a handler for the three
signals that raises `Stopped` (a `KeyboardInterrupt`), so the `finally:` blocks and context managers that tear
down the started daemons run whichever signal came: a Ctrl-C, a process manager's or `kill`'s SIGTERM, or the
SIGHUP of a closed terminal. Invariants:

* SIGINT is handled even when the parent set it to SIG_IGN (a shell does for background jobs);
* `Stopped` is raised once: a signal that arrives while the teardown runs is recorded, not raised, so it
  cannot cut the teardown short;
* the previous handlers (SIG_IGN included) are back in place when the block exits.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; `signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by this signal."""
        return 128 + self.signum


class StopGuard:
    """What `stop_on_signals` yields: the first signal received (None while none came)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            return  # already unwinding: let the teardown finish
        self.signum = signum
        raise Stopped(signum)


@contextmanager
def stop_on_signals() -> Iterator[StopGuard]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise `Stopped` (once); see the module docstring."""
    guard = StopGuard()
    previous = {sig: signal.signal(sig, guard._handle) for sig in STOP_SIGNALS}
    try:
        yield guard
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
