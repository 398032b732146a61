"""Simulate the shipped traces under the three policies; print the figures, the lower bound and the verdict
on issue 12's co-scheduling targets (qauvern-hpc against qauvern 0.14).

    python tests/bench/bench_simulate.py                 # every shipped trace, 5 seeds, hourly and daily
    python tests/bench/bench_simulate.py --quick         # 2 seeds, first 30 days: a smoke run of ~1 min
    python tests/bench/bench_simulate.py --scenario qauvern_hpc/data/sim/scenario-hourly.yaml \\
        --rebalance-every 1 --seeds 5                    # the tables before co-scheduling (model: hourly)

Traces, site config and scenario come from qauvern_hpc/data/sim/ unless given. Every figure is a mean over
seeds 1..N with its standard deviation ("+-"); the lower bound (bound.py) is computed once per trace and
seed and is the same for every policy. Targets (issue 12, against qauvern): timeouts <= 0.1x, slot-hours
held waiting at IBM <= 0.2x, p95 <= 0.8x, median <= 1.0x, used share >= qauvern's - 0.5 point, no
project's p95 above qauvern's (per-project p95, mean over seeds). `--decide MODULE:FUNCTION` runs another
admission decision than the production `qauvern_hpc.admission.decide.decide` (e.g. a candidate).
JSON (default bench-results/simulate.json) holds every figure and every seed; `--markdown FILE` writes the
tables for docs/simulation.md, `--render JSON` prints a stored result that way. Exit 0 whatever the verdict.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, table, write_json

from qauvern_hpc.devtools.simulator.admit import DecideFn
from qauvern_hpc.devtools.simulator.bound import lower_bound
from qauvern_hpc.devtools.simulator.engine import simulate
from qauvern_hpc.devtools.simulator.policies import POLICIES, make_policy
from qauvern_hpc.devtools.simulator.runner import DATA_DIR, load_setup

TRACES = tuple(sorted(p.stem for p in DATA_DIR.glob("*.csv")))
MEANS = (
    "used_share",
    "wasted_share",
    "wait_median_seconds",
    "wait_p95_seconds",
    "worst_project_p95_seconds",
    "timeouts",
    "held_wait_slot_hours",
    "limit_hit_jobs",
    "limit_failures",
    "jain",
    "wall_seconds",
)
BOUND = ("bound_median_seconds", "bound_p95_seconds", "srpt_median_seconds", "srpt_p95_seconds")


def _stats(vals: list[float]) -> tuple[float, float]:
    vals = [v for v in vals if v is not None and not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def ratio(a: float, b: float) -> float:
    if b == 0:
        return 0.0 if a == 0 else math.inf
    return a / b


def targets(ours: dict[str, Any], q: dict[str, Any]) -> dict[str, Any]:
    """Issue 12's targets for qauvern-hpc against qauvern, from the seed means."""
    worse = {
        p: (ours["projects_p95"][p], q["projects_p95"].get(p, math.nan))
        for p in ours["projects_p95"]
        if ours["projects_p95"][p] > q["projects_p95"].get(p, math.inf)
    }
    r = {
        "timeouts": ratio(ours["timeouts"], q["timeouts"]),
        "held": ratio(ours["held_wait_slot_hours"], q["held_wait_slot_hours"]),
        "p95": ratio(ours["wait_p95_seconds"], q["wait_p95_seconds"]),
        "median": ratio(ours["wait_median_seconds"], q["wait_median_seconds"]),
        "used_points": 100 * (ours["used_share"] - q["used_share"]),
    }
    met = {
        "timeouts": r["timeouts"] <= 0.1,
        "held": r["held"] <= 0.2,
        "p95": r["p95"] <= 0.8,
        "median": r["median"] <= 1.0,
        "used": r["used_points"] >= -0.5,
        "projects": not worse,
    }
    return {"ratios": r, "met": met, "projects_worse": worse, "all_met": all(met.values())}


def run_trace(
    name: str,
    every: float,
    seeds: int,
    policies: list[str],
    args: argparse.Namespace,
    decide: DecideFn | None,
) -> dict[str, Any]:
    setup = load_setup(
        DATA_DIR / f"{name}.csv", args.site or DATA_DIR / "site.yaml", args.scenario, days=args.days
    )
    per_seed: dict[str, list[dict[str, Any]]] = {p: [] for p in policies}
    bounds = []
    for seed in range(1, seeds + 1):
        bound = lower_bound(setup, seed).figures()
        bounds.append(bound)
        for policy in policies:
            started = time.perf_counter()
            res = simulate(
                setup,
                make_policy(policy),
                rebalance_every_seconds=round(every * 3600),
                seed=seed,
                decide=decide,
            )
            res.bound = bound
            d = res.to_dict()
            d["wall_seconds"] = time.perf_counter() - started
            per_seed[policy].append(d)
    results: dict[str, dict[str, Any]] = {}
    for policy, ds in per_seed.items():
        out: dict[str, Any] = {}
        for key in MEANS:
            out[key], out[key + "_sd"] = _stats([d[key] for d in ds])
        out["projects_p95"] = {
            p: _stats([d["projects"][p]["wait_p95_seconds"] for d in ds])[0] for p in ds[0]["projects"]
        }
        out["projects_median"] = {
            p: _stats([d["projects"][p]["wait_median_seconds"] for d in ds])[0] for p in ds[0]["projects"]
        }
        results[policy] = out
    bound_mean = {k: _stats([b[k] for b in bounds])[0] for k in BOUND}
    verdict = (
        targets(results["qauvern-hpc"], results["qauvern"])
        if {"qauvern", "qauvern-hpc"} <= set(results)
        else None
    )
    return {
        "trace": name,
        "rebalance_every_hours": every,
        "jobs": len(setup.jobs),
        "days": setup.days,
        "seeds": seeds,
        "bound": bound_mean,
        "results": results,
        "per_seed": per_seed,
        "targets": verdict,
    }


def _load_decide(spec: str | None) -> DecideFn | None:
    if not spec:
        return None
    module, _, func = spec.partition(":")
    fn: DecideFn = getattr(importlib.import_module(module), func or "decide")
    return fn


def _h(v: float) -> float:
    return v / 3600


def report(r: dict[str, Any]) -> None:
    b = r["bound"]
    rows = []
    for policy, f in r["results"].items():
        rows.append(
            [
                policy,
                f"{100 * f['used_share']:.2f} +-{100 * f['used_share_sd']:.2f}",
                f"{_h(f['wait_median_seconds']):.2f} +-{_h(f['wait_median_seconds_sd']):.2f}",
                f"{_h(f['wait_p95_seconds']):.1f} +-{_h(f['wait_p95_seconds_sd']):.1f}",
                f"{_h(f['worst_project_p95_seconds']):.1f}",
                f"{f['timeouts']:.0f} +-{f['timeouts_sd']:.0f}",
                f"{f['held_wait_slot_hours']:.0f} +-{f['held_wait_slot_hours_sd']:.0f}",
                f"{f['limit_failures']:.0f}",
                f"x{ratio(f['wait_median_seconds'], b['bound_median_seconds']):.1f}",
                f"x{ratio(f['wait_p95_seconds'], b['bound_p95_seconds']):.1f}",
                f"{f['wall_seconds']:.1f}",
            ]
        )
    headers = ["policy", "used %", "median h", "p95 h", "worst proj p95 h", "timeouts", "held slot-h"]
    headers += ["limit fails", "med/bound", "p95/bound", "run s"]
    print(
        f"\n{r['trace']}, rebalance every {r['rebalance_every_hours']:g} h, {r['seeds']} seeds, "
        f"{r['jobs']} jobs"
    )
    print(table(headers, rows, digits=2))
    print(
        f"lower bound (any policy): median {_h(b['bound_median_seconds']):.2f} h, "
        f"p95 {_h(b['bound_p95_seconds']):.2f} h;"
        f" clairvoyant SRPT (reference, not a bound): median {_h(b['srpt_median_seconds']):.2f} h,"
        f" p95 {_h(b['srpt_p95_seconds']):.2f} h"
    )
    t = r["targets"]
    if t is None:
        return
    rv, met = t["ratios"], t["met"]

    def mark(key: str) -> str:
        return "ok" if met[key] else "MISSED"

    print(
        f"qauvern-hpc / qauvern: timeouts x{rv['timeouts']:.3f} ({mark('timeouts')}, <= 0.1), "
        f"held x{rv['held']:.3f}"
        f" ({mark('held')}, <= 0.2), p95 x{rv['p95']:.3f} ({mark('p95')}, <= 0.8), median x{rv['median']:.3f}"
        f" ({mark('median')}, <= 1.0), used {rv['used_points']:+.2f} points ({mark('used')}, >= -0.5),"
        f" projects with a worse p95: {', '.join(t['projects_worse']) or 'none'} ({mark('projects')})"
    )


def markdown(out: dict[str, Any]) -> str:
    """The results as Markdown for docs/simulation.md and the README: the verdict table on issue 12's targets
    (qauvern-hpc / qauvern, **bold** = missed), then every policy's figures per trace and period."""
    days = f"first {out['days']:g} days" if out.get("days") else "90 days"
    lines = [
        f"{out['seeds']} seeds, {days}, decide: `{out.get('decide', '')}`, "
        f"{out['machine'].get('cpus', '?')} CPUs, commit {str(out['machine'].get('git_commit', ''))[:7]}",
        "",
        "| trace | rebalance | timeouts (<= 0.1x) | held slot-h (<= 0.2x) | p95 (<= 0.8x) | median (<= 1.0x) "
        "| used (>= -0.5 pt) | no project's p95 worse |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(text: str, ok: bool) -> str:
        return text if ok else f"**{text}**"

    for r in out["runs"]:
        t = r["targets"]
        if t is None:
            continue
        rv, met = t["ratios"], t["met"]
        worse = ", ".join(f"{p} {_h(a):.1f} h vs {_h(b):.1f} h" for p, (a, b) in t["projects_worse"].items())
        cells = [
            cell("x{:.3f}".format(rv["timeouts"]), met["timeouts"]),
            cell("x{:.3f}".format(rv["held"]), met["held"]),
            cell("x{:.2f}".format(rv["p95"]), met["p95"]),
            cell("x{:.2f}".format(rv["median"]), met["median"]),
            cell("{:+.2f} pt".format(rv["used_points"]), met["used"]),
            cell(worse or "yes", met["projects"]),
        ]
        lines.append(f"| {r['trace']} | {r['rebalance_every_hours']:g} h | " + " | ".join(cells) + " |")
    for r in out["runs"]:
        b = r["bound"]
        lines += [
            "",
            f"**{r['trace']}, rebalancing every {r['rebalance_every_hours']:g} h** ({r['seeds']} seeds, "
            f"{r['jobs']} jobs; lower bound: median {_h(b['bound_median_seconds']):.2f} h, "
            f"p95 {_h(b['bound_p95_seconds']):.2f} h; clairvoyant SRPT: "
            f"median {_h(b['srpt_median_seconds']):.2f} h, p95 {_h(b['srpt_p95_seconds']):.2f} h)",
            "",
            "| policy | used | median wait | p95 wait | worst project p95 | timeouts | held slot-h "
            "| limit failures | median / bound | p95 / bound |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for policy, f in r["results"].items():
            lines.append(
                f"| {policy} | {100 * f['used_share']:.2f} ±{100 * f['used_share_sd']:.2f} % "
                f"| {_h(f['wait_median_seconds']):.2f} ±{_h(f['wait_median_seconds_sd']):.2f} h "
                f"| {_h(f['wait_p95_seconds']):.1f} ±{_h(f['wait_p95_seconds_sd']):.1f} h "
                f"| {_h(f['worst_project_p95_seconds']):.1f} h | {f['timeouts']:.0f} ±{f['timeouts_sd']:.0f} "
                f"| {f['held_wait_slot_hours']:.0f} ±{f['held_wait_slot_hours_sd']:.0f} "
                f"| {f['limit_failures']:.0f} "
                f"| x{ratio(f['wait_median_seconds'], b['bound_median_seconds']):.1f} "
                f"| x{ratio(f['wait_p95_seconds'], b['bound_p95_seconds']):.0f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", nargs="+", default=list(TRACES), help="shipped trace names (without .csv)")
    ap.add_argument("--days", type=float, default=None, help="simulate only the first N days")
    ap.add_argument(
        "--rebalance-every",
        type=float,
        nargs="+",
        default=[1.0, 24.0],
        help="hours between rebalances (default 1 24)",
    )
    ap.add_argument("--seeds", type=int, default=5, help="average over seeds 1..N (default 5)")
    ap.add_argument("--quick", action="store_true", help="2 seeds, first 30 days (a smoke run)")
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    ap.add_argument(
        "--scenario", type=Path, default=DATA_DIR / "scenario.yaml", help="default: data/sim/scenario.yaml"
    )
    ap.add_argument(
        "--site", type=Path, default=None, help="another site config (default: data/sim/site.yaml)"
    )
    ap.add_argument("--decide", default=None, metavar="MODULE:FUNCTION", help="another admission decide()")
    ap.add_argument("--json", default="bench-results/simulate.json", help="where to write the results")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the tables as Markdown here")
    ap.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help="print a stored result as Markdown; run nothing",
    )
    args = ap.parse_args(argv)
    if args.render is not None:
        print(markdown(json.loads(args.render.read_text())), end="")
        return 0
    if args.quick:
        args.seeds = min(args.seeds, 2)
        args.days = args.days or 30
    decide = _load_decide(args.decide)
    out: dict[str, Any] = {
        "benchmark": "simulate",
        "machine": machine(),
        "scenario": str(args.scenario),
        "seeds": args.seeds,
        "days": args.days,
        "decide": args.decide or "qauvern_hpc.admission.decide:decide",
        "runs": [],
    }
    started = time.perf_counter()
    for every in args.rebalance_every:
        for name in args.traces:
            r = run_trace(name, every, args.seeds, args.policies, args, decide)
            out["runs"].append(r)
            report(r)
    out["wall_seconds"] = time.perf_counter() - started
    verdicts = [r["targets"]["all_met"] for r in out["runs"] if r["targets"] is not None]
    if verdicts:
        print(f"\nall targets met on {sum(verdicts)}/{len(verdicts)} trace x period combinations")
    if args.markdown is not None:
        args.markdown.write_text(markdown(out))
    path = write_json(args.json, out)
    print(f"results: {path} ({out['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
