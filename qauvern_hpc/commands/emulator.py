"""`qauvern-hpc emulator`: run the local IBM Cloud IAM + IBM Quantum API emulator as a process."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from qauvern_hpc.core import paths
from qauvern_hpc.core.errors import ConfigError, UsageError

HELP = "run the local IBM Cloud IAM + IBM Quantum API emulator"

DESCRIPTION = """\
Serve a faithful local emulator of IBM Cloud IAM, the Resource Controller and the IBM Quantum platform and
compute APIs on one HTTP port, so that qauvern-hpc, qrmi and qauvern can run without reaching IBM.

The base URL is printed as the first line on stdout (useful with --port 0), then the emulator serves until
SIGTERM, SIGHUP or SIGINT (even when started with SIGINT ignored) and exits 0. Point clients at it:
  IAM                  {base}/identity/token
  Resource Controller  {base}/v2/resource_instances
  Quantum API          {base}/api/v1/...        (qrmi: <backend>_QRMI_IBM_QCS_ENDPOINT={base}/api/v1,
                                                 <backend>_QRMI_IBM_QCS_IAM_ENDPOINT={base})
  Control surface      {base}/__emulator/state, /faults, /advance, /expire-tokens, /requests,
                       /backends/{name}[/status|/wait-spike|/flap]

The seed (YAML or JSON) holds accounts and plans, API keys, backends, instances and their daily usage history;
without --seed the packaged example (qauvern_hpc/data/emulator-seed.example.yaml) is served. Time is emulated:
--clock real follows the wall clock (sped up by --time-scale), --clock manual stands still until
POST {base}/__emulator/advance {"seconds": N}."""

EPILOG = """\
examples:
  qauvern-hpc emulator                                  # example seed, random port, real clock
  qauvern-hpc emulator --port 8765 --seed site.yaml     # fixed port, your own seed
  qauvern-hpc emulator --clock manual --seed test.yaml  # time moves only on POST /__emulator/advance
  qauvern-hpc emulator --time-scale 60                  # one emulated minute per real second

  # in the background, from a script:
  qauvern-hpc emulator --port 0 > emu.out & pid=$!
  until [ -s emu.out ]; do sleep 0.1; done; url=$(head -n1 emu.out)
  curl -s -X POST "$url/__emulator/faults" \\
       -d '{"path": "^/api/v1/instances/usage$", "status": 429, "retry_after": 1, "times": 2}'
  kill $pid                                             # SIGTERM: stops and exits 0

With -v every request is logged on stderr (method, path, status; never tokens or API keys).
Refuses to listen on a non-loopback address unless --allow-remote is given: the emulator has no real security
and hands out tokens to anyone holding a seeded API key.

exit codes: 0 stopped by SIGTERM/SIGHUP/SIGINT, 2 bad options (port, a seed file that cannot be read,
non-loopback address), 3 invalid seed (not YAML/JSON, a field out of range such as negative seconds,
inconsistent)."""

EXAMPLE_SEED = paths.DATA_DIR / "emulator-seed.example.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default: 0)")
    parser.add_argument(
        "--seed", metavar="FILE", help="seed state, YAML or JSON (default: the packaged example)"
    )
    parser.add_argument(
        "--empty", action="store_true", help="start with an empty state instead of the example"
    )
    parser.add_argument(
        "--clock",
        choices=("real", "manual"),
        default=None,
        help="real: time follows the wall clock; manual: time moves only when advanced (default: the seed's "
        "clock.mode, else real)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        metavar="X",
        help="with --clock real, emulated seconds per real second (default: 1)",
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow listening on a non-loopback address (unsafe)"
    )


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.devtools.emulator.runner import is_loopback, start_emulator
    from qauvern_hpc.devtools.emulator.seed import SeedError, SeedUnreadable

    if not args.allow_remote and not is_loopback(args.host):
        raise UsageError(
            f"refusing to listen on non-loopback address {args.host!r}",
            hint="the emulator is for local tests; pass --allow-remote if you really mean it",
        )
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, not {args.port}")
    if args.time_scale is not None and not args.time_scale > 0:
        raise UsageError(f"--time-scale must be > 0, not {args.time_scale}")
    if args.seed and args.empty:
        raise UsageError("--seed and --empty are mutually exclusive")
    seed: Path | None = None if args.empty else Path(args.seed) if args.seed else EXAMPLE_SEED

    if getattr(args, "verbose", 0):
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        emulator_log = logging.getLogger("qauvern_hpc.devtools.emulator")
        emulator_log.addHandler(stream)
        emulator_log.setLevel(logging.DEBUG)

    from qauvern_hpc.devtools.signals import Stopped, stop_on_signals

    with stop_on_signals():
        try:
            emu = start_emulator(
                seed,
                host=args.host,
                port=args.port,
                clock=args.clock,
                time_scale=args.time_scale,
                allow_remote=True,
            )
        except SeedUnreadable as exc:
            raise UsageError(f"bad seed: {exc}") from None
        except SeedError as exc:
            where = str(seed) if seed is not None else "the seed"
            message = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
            raise ConfigError(f"bad seed: {message}") from None
        except OSError as exc:
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
        try:
            print(emu.base_url, flush=True)
            snap = emu.state.snapshot()
            print(
                f"qauvern-hpc emulator: serving {len(snap['accounts'])} account(s), {len(snap['instances'])} "
                f"instance(s), {len(snap['backends'])} backend(s) from {seed or 'an empty state'}; "
                f"clock {emu.clock.mode} at {snap['clock']['now']}; SIGTERM/SIGHUP/Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
            while True:
                time.sleep(3600)
        except Stopped:
            pass
        finally:
            emu.stop()
    return 0
