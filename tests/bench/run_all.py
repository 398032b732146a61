"""Run every benchmark, print one table of figures and ratios, write the results as JSON.

    python3 tests/bench/run_all.py [--quick] [--skip NAME ...] [--only NAME ...] [--out DIR]

Benchmarks (each runs as its own process with its own command line, so the scripts stay usable alone):

  job-start  bench_job_start.py   what --qpu adds to a job's start (root + the sandbox's Slurm packages;
                                  3-4 minutes; skipped with a note when not root or Slurm is missing)
  ingest     bench_ingest.py      parsing a sacct dump and storing it in the ledger
  plan       bench_plan.py        the planner and the rebalance pipeline on a large account
  simulate   bench_simulate.py    the shipped traces under static, qauvern and qauvern-hpc
  report     bench_report.py      the HTML usage report over a 1,000,000-row SQLite ledger (target 3 s)

--quick: smaller sizes (ingest 200,000 records, plan 2,000 instances, simulation of the first 30 days,
report over 200,000 ledger rows)
and no job-start. Results go to DIR (default bench-results/, git-ignored): `run-<time>.json` and
`latest.json`. When a previous latest.json exists, the table shows its value beside the new one so runs
can be compared over time. Exit 1 when a benchmark failed to run (a FAIL verdict inside job-start counts).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import ROOT, machine, table, write_json  # noqa: E402

NAMES = ("job-start", "ingest", "plan", "simulate", "report")
Figure = dict[str, Any]  # {"name", "value", "unit", "target", "ratio", "note"}


def _run(cmd: list[str], timeout: float) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    out = proc.stdout + (("\n" + proc.stderr) if proc.returncode else "")
    return proc.returncode, out, time.monotonic() - started


def _fig(name: str, value: float | None, unit: str, target: float | None = None, note: str = "") -> Figure:
    ratio = value / target if value is not None and target else None
    return {"name": name, "value": value, "unit": unit, "target": target, "ratio": ratio, "note": note}


# -- the benchmarks ----------------------------------------------------------------------------------------


def job_start(out_dir: Path, quick: bool) -> dict[str, Any]:
    if os.geteuid() != 0:
        return {"skipped": "needs root (it starts throwaway Slurm clusters)"}
    if not (shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists()):
        return {"skipped": "Slurm (slurmctld) is not installed"}
    path = out_dir / "job_start.json"
    rc, text, wall = _run([str(HERE / "bench_job_start.py"), "--json", str(path)], timeout=1800)
    res: dict[str, Any] = {"exit_code": rc, "wall_seconds": wall, "figures": []}
    if not path.is_file():
        res["error"] = text[-2000:]
        return res
    data = json.loads(path.read_text())
    for row in data.get("rows", []):
        if row.get("added_ms") is None:
            continue
        res["figures"].append(
            _fig(
                f"added: {row['metric'].strip()}",
                row["added_ms"],
                "ms",
                row.get("target_ms"),
                str(row.get("verdict", "")),
            )
        )
    return res


_INGEST_ROW = re.compile(r"^(?P<label>\S.*?)\s{2,}(?P<wall>[\d.]+) s\s+(?P<cpu>[\d.]+) s\s+(?P<rate>[\d,]+)")
_INGEST_HEAD = re.compile(r"^== (?P<n>[\d,]+) records")


def ingest(out_dir: Path, quick: bool) -> dict[str, Any]:
    n, small = (200_000, 20_000) if quick else (1_000_000, 100_000)
    rc, text, wall = _run(
        [str(HERE / "bench_ingest.py"), str(n), "--small", str(small), "--repeat", "1" if quick else "3"],
        timeout=3600,
    )
    res: dict[str, Any] = {"exit_code": rc, "wall_seconds": wall, "figures": [], "records": n}
    if rc != 0:
        res["error"] = text[-2000:]
        return res
    size = None
    rows: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        m = _INGEST_HEAD.match(line)
        if m:
            size = int(m.group("n").replace(",", ""))
            continue
        m = _INGEST_ROW.match(line)
        if m and size == n:
            rows[m.group("label").strip()] = {
                "wall": float(m.group("wall")),
                "rate": float(m.group("rate").replace(",", "")),
            }
    floor = rows.get("floor: cat > /dev/null")
    for label, key in (("parse+store (SQLite)", "parse+store"), ("parse only, QPU records", "parse QPU")):
        r = rows.get(label)
        if r is None:
            continue
        res["figures"].append(_fig(f"{key}: {n:,} records", r["wall"], "s", note=f"{r['rate']:,.0f} rec/s"))
        if floor and floor["wall"] > 0:
            res["figures"].append(_fig(f"{key} / cat floor", r["wall"] / floor["wall"], "x"))
    rss = re.search(r"peak RSS parse\+store: .*\(x([\d.]+) for x([\d.]+) records\)", text)
    if rss:
        res["figures"].append(
            _fig("peak RSS growth parse+store", float(rss.group(1)), "x", note=f"for x{rss.group(2)} records")
        )
    if not res["figures"]:
        res["raw_tail"] = text[-2000:]
    return res


_PLAN_ROW = re.compile(r"^(?P<name>\w+)\s+instances=\s*(?P<n>\d+)\s+seconds=\s*(?P<s>[\d.]+)")


def plan(out_dir: Path, quick: bool) -> dict[str, Any]:
    inst, jobs = (2_000, 20_000) if quick else (10_000, 100_000)
    rc, text, wall = _run(
        [str(HERE / "bench_plan.py"), "--instances", str(inst), "--jobs", str(jobs)], timeout=1800
    )
    res: dict[str, Any] = {"exit_code": rc, "wall_seconds": wall, "figures": []}
    if rc != 0:
        res["error"] = text[-2000:]
        return res
    for line in text.splitlines():
        m = _PLAN_ROW.match(line)
        if m:
            res["figures"].append(
                _fig(f"{m.group('name')}: {int(m.group('n')):,} instances", float(m.group("s")), "s", 1.0)
            )
    if not res["figures"]:
        res["raw_tail"] = text[-2000:]
    return res


def simulate(out_dir: Path, quick: bool) -> dict[str, Any]:
    path = out_dir / "simulate.json"
    cmd = [str(HERE / "bench_simulate.py"), "--json", str(path)]
    if quick:
        cmd += ["--quick"]
    rc, text, wall = _run(cmd, timeout=3600)
    res: dict[str, Any] = {"exit_code": rc, "wall_seconds": wall, "figures": []}
    if rc != 0 or not path.is_file():
        res["error"] = text[-2000:]
        return res
    data = json.loads(path.read_text())
    for tr in data["runs"]:
        t = tr["targets"]
        name = f"{tr['trace']} every {tr['rebalance_every_hours']:g} h"
        rv = t["ratios"]
        res["figures"] += [
            _fig(f"{name}: timeouts vs qauvern", rv["timeouts"], "x"),
            _fig(f"{name}: held slot-h vs qauvern", rv["held"], "x"),
            _fig(f"{name}: p95 wait vs qauvern", rv["p95"], "x"),
            _fig(f"{name}: median wait vs qauvern", rv["median"], "x"),
            _fig(f"{name}: used vs qauvern", rv["used_points"], "points"),
            _fig(
                f"{name}: issue 12 targets",
                1.0 if t["all_met"] else 0.0,
                "met",
                note="met" if t["all_met"] else "not all met",
            ),
        ]
    return res


def report(out_dir: Path, quick: bool) -> dict[str, Any]:
    rows = 200_000 if quick else 1_000_000
    rc, text, wall = _run([str(HERE / "bench_report.py"), "--rows", str(rows)], timeout=1800)
    res: dict[str, Any] = {"exit_code": rc, "wall_seconds": wall, "figures": [], "rows": rows}
    if rc != 0:
        res["error"] = text[-2000:]
        return res
    start, end = text.find("{"), text.find("}")
    figures = json.loads(text[start : end + 1]) if 0 <= start < end else {}
    for key, label, target in (
        ("report_seconds", "report", 3.0 if not quick else None),
        ("gather_seconds", "gather (SQL)", None),
        ("render_seconds", "render (charts, HTML)", None),
    ):
        if key in figures:
            res["figures"].append(_fig(f"{label}: {rows:,} rows", float(figures[key]), "s", target))
    if not res["figures"]:
        res["raw_tail"] = text[-2000:]
    return res


BENCHES = {"job-start": job_start, "ingest": ingest, "plan": plan, "simulate": simulate, "report": report}


def _value(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit in ("x", "met"):
        return f"{v:.3f}"
    return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, no job-start")
    ap.add_argument("--skip", nargs="+", default=[], choices=NAMES, metavar="NAME", help=", ".join(NAMES))
    ap.add_argument("--only", nargs="+", default=None, choices=NAMES, metavar="NAME")
    ap.add_argument("--out", default=str(ROOT / "bench-results"), help="results directory")
    args = ap.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = [n for n in NAMES if (args.only is None or n in args.only) and n not in args.skip]
    if args.quick and args.only is None and "job-start" in chosen:
        chosen.remove("job-start")
    previous: dict[str, Any] = {}
    latest = out_dir / "latest.json"
    if latest.is_file():
        try:
            previous = json.loads(latest.read_text())
        except (OSError, ValueError):
            previous = {}
    prev_values = {
        (b, f["name"]): f["value"]
        for b, r in previous.get("benchmarks", {}).items()
        for f in r.get("figures", [])
    }
    results: dict[str, Any] = {}
    failed = False
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = BENCHES[name](out_dir, args.quick)
        except subprocess.TimeoutExpired as exc:
            results[name] = {"error": f"timed out after {exc.timeout:.0f} s"}
        r = results[name]
        if r.get("error") or (r.get("exit_code") not in (0, None)):
            failed = True
    rows = []
    for name, r in results.items():
        if "skipped" in r:
            rows.append([name, "(skipped)", "", "", "", "", r["skipped"]])
            continue
        if "error" in r:
            rows.append([name, "(failed)", "", "", "", "", r["error"].strip().splitlines()[-1][:80]])
            continue
        for f in r["figures"]:
            prev = prev_values.get((name, f["name"]))
            rows.append(
                [
                    name,
                    f["name"],
                    f"{_value(f['value'], f['unit'])} {f['unit']}",
                    "" if f["target"] is None else f"{f['target']:g} {f['unit']}",
                    "" if f["ratio"] is None else f"{f['ratio']:.3f}",
                    "" if prev is None else _value(prev, f["unit"]),
                    f["note"],
                ]
            )
    print(table(["bench", "figure", "value", "target", "ratio", "previous", "note"], rows))
    record = {
        "machine": machine(),
        "quick": args.quick,
        "benchmarks": results,
        "previous": {
            "time": previous.get("machine", {}).get("time"),
            "commit": previous.get("machine", {}).get("git_commit"),
        }
        if previous
        else None,
    }
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = write_json(out_dir / f"run-{stamp}.json", record)
    write_json(latest, record)
    print(f"\nresults: {path} (and {latest})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
