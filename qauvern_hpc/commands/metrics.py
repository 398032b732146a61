"""`qauvern-hpc metrics`: Prometheus metrics for node_exporter's textfile collector or a scrape endpoint."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from qauvern_hpc.core.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from qauvern_hpc.config import Config

READS_API_KEY = True
HELP = "Prometheus metrics: allocations, limits, usage, queue, rebalance runs (textfile or HTTP)"
DESCRIPTION = """\
Gather per-instance metrics from IBM (allocation, limit, 28-day usage, fairness = usage/allocation),
Slurm (pending QPU jobs and their requested time per instance, jobs held by the limit gate), the usage
ledger (seconds attributed in 28 days, runs awaiting IBM's figure) and the rebalancer's journal (runs by
status, failed runs, last run), plus the IBM calls' time and errors during the scrape.

Units: the *_seconds series stay as they are (dashboards depend on their names); IBM bills in resource
units, so qauvern_hpc_instance_{allocation,limit,usage_28d}_resource_units are added for each instance
whose RU rate is known (its allocation or limit in both units, else ibm.resource_units_per_second), the
usage as IBM's own RU figure where it sends one. There is no --unit: a Prometheus series has one unit,
named in it, and this command has no other output.

Without options the metrics are printed. --textfile writes them for node_exporter's textfile collector
(atomically; run it from cron or a systemd timer). --serve answers GET /metrics over HTTP (gathering at
most every --min-interval seconds). A source that cannot be read sets
qauvern_hpc_scrape_error{source="ibm|slurm|ledger|journal"} 1; the others still report."""
EPILOG = """\
examples:
  qauvern-hpc metrics                                               print once
  qauvern-hpc metrics --textfile /var/lib/node_exporter/qauvern_hpc.prom    (cron: every minute)
  qauvern-hpc metrics --serve 127.0.0.1:9877                        scrape endpoint for Prometheus
  qauvern-hpc metrics --no-ibm                                      Slurm, ledger and journal only

exit codes: 0 written/served, 1 a source failed (the file is still written, with scrape_error set),
2 bad usage, 3 invalid config."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--textfile", help="write here (default: metrics.textfile of the config)")
    parser.add_argument(
        "--serve", nargs="?", const="", metavar="HOST:PORT", help="serve /metrics (default: metrics.listen)"
    )
    parser.add_argument("--min-interval", type=float, default=15.0, help="--serve: seconds between gathers")
    parser.add_argument("--no-ibm", action="store_true", help="do not ask IBM")
    parser.add_argument("--no-slurm", action="store_true", help="do not ask squeue")


def _collect(cfg: Config, args: argparse.Namespace) -> tuple[str, bool]:
    from qauvern_hpc.ops.metrics import gather, render, sources_for

    fams = gather(sources_for(cfg, args, ibm=not args.no_ibm, slurm=not args.no_slurm))
    failed = any(v for fam in fams if fam.name == "scrape_error" for _, v in fam.samples)
    return render(fams), failed


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.config import load_config_full

    cfg = load_config_full(args.config, check_key_files=False).config
    if args.serve is not None:
        return _serve(cfg, args, args.serve or cfg.metrics.listen)
    text, failed = _collect(cfg, args)
    path = args.textfile or cfg.metrics.textfile
    if path:
        from qauvern_hpc.ops.metrics import write_textfile

        write_textfile(path, text)
    else:
        sys.stdout.write(text)
    return ExitCode.FAILURE if failed else ExitCode.OK


def _serve(cfg: Config, args: argparse.Namespace, listen: str) -> int:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--serve wants HOST:PORT, not {listen!r}")
    lock = threading.Lock()
    cache: dict[str, Any] = {"at": 0.0, "text": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            with lock:
                if time.monotonic() - cache["at"] >= args.min_interval or not cache["text"]:
                    cache["text"], _ = _collect(cfg, args)
                    cache["at"] = time.monotonic()
                body = cache["text"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *a: Any) -> None:
            return None

    server = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
    print(f"http://{host}:{server.server_address[1]}/metrics", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return ExitCode.OK
