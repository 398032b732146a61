"""Starting and stopping the emulator: `run_emulator()` (context manager) and `start_emulator()`."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any

from qauvern_hpc.devtools.emulator.clock import CLOCK_MODES, Clock, ClockMode
from qauvern_hpc.devtools.emulator.faults import FaultSet
from qauvern_hpc.devtools.emulator.seed import SeedError, SeedSource, clock_settings, normalize, read_seed
from qauvern_hpc.devtools.emulator.server import EmulatorApp, EmulatorHTTPServer, LoggedRequest, RequestLog
from qauvern_hpc.devtools.emulator.state import EmulatorState


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Emulator:
    """A running emulator. `base_url` serves every API; the attributes below drive it from Python."""

    def __init__(self, server: EmulatorHTTPServer, app: EmulatorApp, host: str) -> None:
        self._server = server
        self._app = app
        self.host = host
        self.port: int = server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown}:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="qauvern-emulator", daemon=True
        )
        self._stopped = False
        self._thread.start()

    @property
    def state(self) -> EmulatorState:
        return self._app.state

    @property
    def faults(self) -> FaultSet:
        return self._app.faults

    @property
    def clock(self) -> Clock:
        return self._app.state.clock

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request so far (oldest first), without Authorization headers or API keys."""
        return self._app.log.entries()

    def clear_requests(self) -> None:
        self._app.log.clear()

    def expire_tokens(self) -> int:
        return self._app.state.expire_tokens()

    def advance(self, seconds: float) -> datetime:
        return self._app.state.advance(seconds)

    def remove_time_fields(self, removed: bool = True) -> None:
        """Serve RU fields only to the API versions that carry RUs (see `versions`)."""
        self._app.state.remove_time_fields(removed)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        stopper = threading.Thread(target=self._server.shutdown, daemon=True)
        stopper.start()
        # Wake the accept loop at once instead of waiting for its poll interval.
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
            pass
        stopper.join(timeout=5)
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def make_clock(
    seed: dict[str, Any], clock: ClockMode | Clock | None, time_scale: float | None, start: datetime | None
) -> Clock:
    if isinstance(clock, Clock):
        return clock
    settings = clock_settings(seed)
    mode = clock or settings.get("mode") or "real"
    if mode not in CLOCK_MODES:
        raise SeedError(f"clock.mode: must be one of {', '.join(CLOCK_MODES)}, not {mode!r}")
    scale = time_scale if time_scale is not None else float(settings.get("time_scale") or 1.0)
    try:
        return Clock(mode, start=start or settings.get("start"), time_scale=scale)
    except ValueError as exc:
        raise SeedError(f"clock: {exc}") from None


def start_emulator(
    seed: SeedSource = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: ClockMode | Clock | None = None,
    time_scale: float | None = None,
    start: datetime | None = None,
    allow_remote: bool = False,
) -> Emulator:
    """Start the emulator in a daemon thread and return it (call `.stop()`, or use `run_emulator`).

    `seed` is a dict, a YAML/JSON path, or None (empty state). `clock` is "real" (default) or "manual", or a
    `Clock`; `start` and `time_scale` override the seed's `clock` section.
    """
    if not allow_remote and not is_loopback(host):
        raise ValueError(f"refusing to listen on non-loopback address {host!r} (pass allow_remote=True)")
    raw = read_seed(seed)
    the_clock = make_clock(raw, clock, time_scale, start)
    state = EmulatorState(normalize(raw, now=the_clock.now()), the_clock)
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    server = EmulatorHTTPServer((bare, port), EmulatorApp(state, FaultSet(), RequestLog()), family)
    return Emulator(server, server.app, bare)


@contextmanager
def run_emulator(
    seed: SeedSource = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: ClockMode | Clock | None = None,
    time_scale: float | None = None,
    start: datetime | None = None,
    allow_remote: bool = False,
) -> Iterator[Emulator]:
    """`with run_emulator(seed) as emu:` — see `start_emulator`."""
    emu = start_emulator(
        seed, host=host, port=port, clock=clock, time_scale=time_scale, start=start, allow_remote=allow_remote
    )
    try:
        yield emu
    finally:
        emu.stop()
