"""Build `IBMClient`s: for an admin command from the global options, and warm ones from a `ClientPool` (the
hooks, hookd across jobs, collect). `qauvern_hpc.config.ibm_access` builds them from a site config.

One place decides where the account-level API key comes from, in this order:

1. `--api-key` (a flag, no value): the key is read from stdin, or prompted for without echo on a terminal;
2. `--api-key-file FILE` (mode 0600, checked);
3. `$IBMCLOUD_API_KEY`;
4. the config's `ibm.api_key_file`.

The key itself is never accepted on the command line: argv is readable by every user of the machine (`ps`,
`/proc/PID/cmdline`) and lands in shell history. `refuse_api_key_in_argv` turns `--api-key=VALUE` (and
`--api-key VALUE`) into a usage error that does not repeat the value.

A `ClientPool` keeps one client (its connection pool and IAM token) per key file and endpoints, with one
timeout and retry policy; a key file that changed (rotated: new inode, mtime or size) gets a new client.

Standard library only at import time: `qauvern_hpc.cli` imports this module for every command.
"""

from __future__ import annotations

import getpass
import os
import sys
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from qauvern_hpc.core.errors import ConfigError, UsageError
from qauvern_hpc.core.secret import Secret

if TYPE_CHECKING:
    from qauvern_hpc.ibm.client import IBMClient
    from qauvern_hpc.ibm.endpoints import Endpoints
    from qauvern_hpc.ibm.retry import RetryPolicy

API_KEY_ENV = "IBMCLOUD_API_KEY"
STAGING_ENV = "IBMCLOUD_STAGING"
API_KEY_FLAG = "--api-key"
SECRET_ATTR = "api_key_secret"  # where cli.main keeps a key read for --api-key on the args namespace
DEFAULT_TIMEOUT = 30.0

_WHY_NOT_ARGV = (
    "a key on the command line is visible to every user of this machine (ps, /proc/PID/cmdline) and "
    "stays in shell history"
)
_INSTEAD = (
    "give the flag alone and the key on stdin (`qauvern-hpc --api-key show < keyfile`, or type it at the "
    "prompt), use --api-key-file FILE (mode 0600) or set $IBMCLOUD_API_KEY; if the key was typed into a "
    "shared shell, consider rotating it"
)


# ----------------------------------------------------------------------------------------------- argv


def refuse_api_key_in_argv(argv: Sequence[str], commands: Collection[str]) -> None:
    """Raise `UsageError` if argv seems to carry an API key after `--api-key`. Never echoes the value.

    `--api-key=VALUE` is always refused. `--api-key WORD` is refused when WORD is neither an option nor a
    command name: argparse would otherwise take WORD as the command (or a stray argument) and print it.
    """
    for n, arg in enumerate(argv):
        if arg == "--":
            return
        if arg.startswith(API_KEY_FLAG + "="):
            raise UsageError(f"--api-key takes no value: {_WHY_NOT_ARGV}", hint=_INSTEAD)
        if arg == API_KEY_FLAG and n + 1 < len(argv):
            nxt = argv[n + 1]
            if nxt and not nxt.startswith("-") and nxt not in commands:
                raise UsageError(
                    f"--api-key takes no value (the word after it is not an option or a command): "
                    f"{_WHY_NOT_ARGV}",
                    hint=_INSTEAD + "; if that word was not a key, put --api-key after it",
                )


# ----------------------------------------------------------------------------------------------- the key


def read_api_key_from_stdin(stdin: TextIO | None = None, *, prompt: Any = getpass.getpass) -> Secret:
    """The key for `--api-key`: prompted for (no echo) on a terminal, else the whole of stdin, stripped."""
    stream = sys.stdin if stdin is None else stdin
    if stream is None or stream.closed:
        raise UsageError("--api-key reads the key from stdin, but stdin is closed", hint=_INSTEAD)
    if stream.isatty():
        try:
            text = prompt("IBM Cloud API key: ")
        except EOFError:
            text = ""
    else:
        text = stream.read()
    key = text.strip()
    if not key:
        raise UsageError("--api-key: no key on stdin (empty input)", hint=_INSTEAD)
    if any(ch.isspace() for ch in key):
        raise UsageError(
            "--api-key: stdin holds more than one word; it must hold only the key",
            hint="pipe the key alone, e.g. from a file of mode 0600 holding just the key",
        )
    return Secret(key)


def take_api_key(
    args: Any, stdin: TextIO | None = None, *, command: str = "this command", accepted: bool = True
) -> None:
    """For `--api-key`: read the key now (before the command runs) and keep it on `args` as a `Secret`.

    A command that does not resolve its key through this module (`READS_API_KEY` unset) refuses the flag
    rather than silently using another key.
    """
    if not accepted:
        raise UsageError(
            f"`qauvern-hpc {command}` does not take --api-key",
            hint="give the key with --api-key-file FILE (mode 0600) or $IBMCLOUD_API_KEY, or in the config",
        )
    if getattr(args, "api_key_file", None):
        raise UsageError("give either --api-key (key on stdin) or --api-key-file, not both")
    setattr(args, SECRET_ATTR, read_api_key_from_stdin(stdin))


def resolve_api_key(args: Any, config_key_file: str | os.PathLike[str] | None = None) -> str:
    """The account-level key: --api-key (stdin), --api-key-file, $IBMCLOUD_API_KEY, the config's key file."""
    from qauvern_hpc.core.keyfile import read_key_file

    secret = getattr(args, SECRET_ATTR, None)
    if isinstance(secret, Secret):
        return secret.get()
    key_file = getattr(args, "api_key_file", None)
    if key_file:
        return read_key_file(key_file)
    env = os.environ.get(API_KEY_ENV, "").strip()
    if env:
        return env
    if config_key_file is not None:
        return read_key_file(config_key_file)
    raise ConfigError(
        "no IBM Cloud API key: pipe it to --api-key, give --api-key-file FILE, set $IBMCLOUD_API_KEY, "
        "or set ibm.api_key_file in the config",
        hint="admin commands need a key of the account that owns the instances",
    )


# ----------------------------------------------------------------------------------------------- endpoints

_FALSE = frozenset({"", "0", "false", "no", "off", "n", "f"})


def staging_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """$IBMCLOUD_STAGING as a flag: unset, empty, 0, false, no, off (any case) mean production.

    Like qauvern's click flag, ``IBMCLOUD_STAGING=True`` (qauvern's README) or ``1`` select staging, and
    ``IBMCLOUD_STAGING=false`` does not (a plain truth test of the string would take "false" for staging).
    """
    value = (os.environ if environ is None else environ).get(STAGING_ENV, "")
    return value.strip().lower() not in _FALSE


def endpoints(
    *,
    emulator: str | None = None,
    staging: bool = False,
    iam: str | None = None,
    resource_controller: str | None = None,
    quantum: str | None = None,
) -> Endpoints:
    from qauvern_hpc.ibm.endpoints import Endpoints

    if emulator:
        return Endpoints.single(emulator)
    base = Endpoints.staging() if staging else Endpoints.production()
    if iam or resource_controller or quantum:
        return base.with_overrides(iam=iam, resource_controller=resource_controller, quantum=quantum)
    return base


# ----------------------------------------------------------------------------------------------- clients


def client(
    args: Any,
    where: Endpoints,
    config_key_file: str | os.PathLike[str] | None = None,
    *,
    ru_per_second: float | None = None,
) -> IBMClient:
    from qauvern_hpc.ibm.client import IBMClient

    key = resolve_api_key(args, config_key_file)
    return IBMClient(key, where, timeout=DEFAULT_TIMEOUT, ru_per_second=ru_per_second)


class ClientPool:
    """Warm clients keyed by key file (and its identity) and endpoints, all with one timeout and retry policy.
    Thread-safe."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        ru_per_second: float | None = None,
    ) -> None:
        self.timeout = timeout
        self.retry = retry
        self.ru_per_second = ru_per_second
        self._clients: dict[tuple[object, ...], IBMClient] = {}
        self._lock = threading.Lock()

    def get(
        self, key_file: str | None, where: Endpoints, api_key: Callable[[], str] | None = None
    ) -> IBMClient:
        """The client for `key_file`'s key at `where`; `api_key` reads the key when a client is made (by
        default from `key_file`; a caller with no key file, e.g. the admin key of `--api-key`, passes one)."""
        from qauvern_hpc.ibm.client import IBMClient

        try:
            st = os.stat(key_file) if key_file else None
        except OSError:
            st = None  # reading the key reports it
        key = (key_file, repr(where), st and (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                key_text = api_key() if api_key is not None else _read_key(key_file)
                found = IBMClient(
                    key_text, where, timeout=self.timeout, retry=self.retry, ru_per_second=self.ru_per_second
                )
                self._clients[key] = found
        return found

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            c.close()


def _read_key(key_file: str | None) -> str:
    from qauvern_hpc.core.keyfile import read_key_file

    if not key_file:
        raise ConfigError("no API key file given")
    return read_key_file(key_file)


__all__ = [
    "API_KEY_ENV",
    "ClientPool",
    "Secret",
    "client",
    "endpoints",
    "read_api_key_from_stdin",
    "refuse_api_key_in_argv",
    "resolve_api_key",
    "staging_from_env",
    "take_api_key",
]
