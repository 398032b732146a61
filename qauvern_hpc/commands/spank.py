"""`qauvern-hpc spank`: build, locate and wire the --qpu SPANK plugin."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HELP = "build or locate the --qpu SPANK plugin"
DESCRIPTION = """\
Build the --qpu SPANK plugin (qpu.so) against this site's Slurm headers and print the plugstack.conf line
that loads it. Slurm refuses a SPANK plugin built for another major.minor release, so build it with the
headers of the Slurm you run (Debian/Ubuntu: libslurm-dev; RHEL: slurm-devel).

  build           compile qpu.so (default output: $QAUVERN_HPC_SPANK_SO or /usr/local/lib/slurm/qpu.so)
  path            print where the plugin is (exit 1 if it is not built there yet)
  plugstack-line  print the line for plugstack.conf
  sources         print the directory holding qpu.c and its Makefile"""
EPILOG = """\
examples:
  qauvern-hpc spank build
  qauvern-hpc spank build --slurm-include /opt/slurm/23.02/include --output /opt/slurm/lib/qpu.so
  qauvern-hpc spank plugstack-line --state-dir /shared/qauvern-hpc >> /etc/slurm/plugstack.conf
  make -C "$(qauvern-hpc spank sources)" test

Use `required` in plugstack.conf (the default here): Slurm ignores the failures of an `optional` plugin,
so a QPU job whose environment could not be prepared would run without it instead of failing.

exit codes: 0 built/printed, 1 the build failed (the compiler's message is shown), 2 bad usage."""


def _line_options(p: argparse.ArgumentParser) -> None:
    from qauvern_hpc.slurm.spank_build import DEFAULT_STATE_DIR, FAIL_MODES

    p.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        help=f"where the controller's prolog writes jobs/{{jobid}}.env; shared with the compute nodes "
        f"(default: {DEFAULT_STATE_DIR})",
    )
    p.add_argument(
        "--fail-mode",
        choices=FAIL_MODES,
        default="closed",
        help="a --qpu job with no prepared environment: fail its tasks (closed, default) or run (open)",
    )
    p.add_argument("--max-names", type=int, default=None, help="most QPU names per --qpu (plugin default: 8)")
    p.add_argument(
        "--optional", action="store_true", help="write `optional` instead of `required` (see below)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="compile qpu.so against the site's Slurm headers")
    b.add_argument(
        "--slurm-include", help="directory holding slurm/spank.h (default: $SLURM_INCLUDE, /usr/include)"
    )
    b.add_argument(
        "--output",
        "-o",
        help="where to write qpu.so (default: $QAUVERN_HPC_SPANK_SO or /usr/local/lib/slurm/qpu.so)",
    )
    b.add_argument("--cc", help="C compiler (default: $CC, gcc, cc)")
    _line_options(b)
    sub.add_parser("path", help="print where the built plugin is")
    pl = sub.add_parser("plugstack-line", help="print the plugstack.conf line")
    pl.add_argument("--path", help="the plugin's path (default: as `spank path`)")
    _line_options(pl)
    sub.add_parser("sources", help="print the directory holding qpu.c and its Makefile")


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.slurm import spank_build as sb

    if args.action == "build":
        res = sb.build_plugin(args.output, slurm_include=args.slurm_include, cc=args.cc)
        line = sb.plugstack_line(
            res.path,
            state_dir=args.state_dir,
            fail_mode=args.fail_mode,
            max_names=args.max_names,
            required=not args.optional,
        )
        running = None if res.running_version is None else "{}.{:02d}.{}".format(*res.running_version)
        warning = (
            f"warning: built for Slurm {res.headers.version_text} but this host runs Slurm {running}: "
            "Slurm will refuse to load it; pass --slurm-include with the running release's headers"
            if res.version_mismatch
            else None
        )
        data = {
            "path": str(res.path),
            "slurm_headers": str(res.headers.include),
            "slurm_version": res.headers.version_text,
            "running_slurm_version": running,
            "plugstack_line": line,
            "warning": warning,
        }
        text = (
            f"built {res.path} for Slurm {res.headers.version_text} (headers: {res.headers.include})\n"
            f"add this line to plugstack.conf on login nodes and compute nodes:\n  {line}"
        )
        _emit(args, data, text)
        if warning:
            print(warning, file=sys.stderr)
        return 0
    if args.action == "path":
        path = sb.default_plugin_path()
        exists = path.is_file()
        _emit(args, {"path": str(path), "exists": exists}, str(path))
        if not exists:
            print(f"qauvern-hpc spank: {path} is not built: run `qauvern-hpc spank build`", file=sys.stderr)
            return 1
        return 0
    if args.action == "plugstack-line":
        line = sb.plugstack_line(
            args.path or sb.default_plugin_path(),
            state_dir=args.state_dir,
            fail_mode=args.fail_mode,
            max_names=args.max_names,
            required=not args.optional,
        )
        _emit(args, {"plugstack_line": line}, line)
        return 0
    if args.action == "sources":
        src = sb.source_dir()
        _emit(args, {"sources": str(src)}, str(src))
        return 0
    raise AssertionError(args.action)  # argparse only lets the actions above through
