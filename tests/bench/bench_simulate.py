"""Simulate the shipped traces under the three policies; print the figures and qauvern-hpc's ratios.

    python tests/bench/bench_simulate.py [--traces NAME ...] [--days N] [--rebalance-every H] [--seeds N]
                                         [--json OUT] [--plot-dir DIR] [--site FILE]

Traces, site config and scenario come from qauvern_hpc/data/sim/. For every trace: static, qauvern (the
real qauvern 0.14 package) and qauvern-hpc side by side, each run's wall time, and whether qauvern-hpc
meets the goal: at least as much purchased time used as both others, with a lower p95 wait than both.
With --seeds N every run is repeated with external-load seeds 1..N: the table shows means, and how many
seeds qauvern-hpc beat qauvern in is printed (single runs differ by several % from seed to seed).
JSON (default bench-results/simulate.json) holds every figure. Exit 0 whatever the verdict (it is a
measurement; the verdict is printed and in the JSON).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, table, write_json

from qauvern_hpc.devtools.simulator.engine import simulate
from qauvern_hpc.devtools.simulator.policies import POLICIES, make_policy
from qauvern_hpc.devtools.simulator.runner import DATA_DIR, load_setup

TRACES = ("mixed-90d-s1", "mixed-90d-s2", "busy-90d")
MEANS = (
    "used_share",
    "wasted_share",
    "wait_median_seconds",
    "wait_p95_seconds",
    "limit_hit_jobs",
    "limit_failures",
    "jain",
    "allocation_changes",
    "wall_seconds",
)


def goal(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ours = results["qauvern-hpc"]
    others = [results[p] for p in ("static", "qauvern") if p in results]
    used_ok = all(ours["used_share"] >= o["used_share"] for o in others)
    p95_ok = all(ours["wait_p95_seconds"] < o["wait_p95_seconds"] for o in others)
    return {"used_at_least_as_much": used_ok, "lower_p95": p95_ok, "met": used_ok and p95_ok}


def run_trace(
    name: str, days: float | None, every: float, seeds: int, plot_dir: str | None, site: Path | None = None
) -> dict[str, Any]:
    """All policies on one trace; with seeds > 1 the figures are means over seeds 1..N (per-seed kept)."""
    setup = load_setup(
        DATA_DIR / f"{name}.csv", site or DATA_DIR / "site.yaml", DATA_DIR / "scenario.yaml", days=days
    )
    per_seed: dict[str, list[dict[str, Any]]] = {p: [] for p in POLICIES}
    runs = []
    for seed in range(1, seeds + 1):
        for policy in POLICIES:
            started = time.perf_counter()
            res = simulate(setup, make_policy(policy), rebalance_every_seconds=round(every * 3600), seed=seed)
            d = res.to_dict()
            d["wall_seconds"] = time.perf_counter() - started
            per_seed[policy].append(d)
            if seed == 1:
                runs.append(res)
    results: dict[str, dict[str, Any]] = {}
    for policy, ds in per_seed.items():
        mean = dict(ds[0])
        for key in MEANS:
            vals = [d[key] for d in ds if d[key] is not None]
            mean[key] = statistics.fmean(vals) if vals else None
        results[policy] = mean
    wins = {
        "p95_lower_than_qauvern": sum(
            1
            for a, b in zip(per_seed["qauvern-hpc"], per_seed["qauvern"], strict=True)
            if a["wait_p95_seconds"] < b["wait_p95_seconds"]
        ),
        "used_at_least_qauvern": sum(
            1
            for a, b in zip(per_seed["qauvern-hpc"], per_seed["qauvern"], strict=True)
            if a["used_share"] >= b["used_share"]
        ),
        "seeds": seeds,
    }
    if plot_dir:
        from qauvern_hpc.devtools.simulator.plot import plot_runs

        plot_runs(
            runs, Path(plot_dir) / f"sim-{name}.png", title=f"{name}: usage vs allocation (QAU) per instance"
        )
    return {
        "trace": name,
        "jobs": len(setup.jobs),
        "days": setup.days,
        "results": results,
        "per_seed": per_seed,
        "wins": wins,
        "goal": goal(results),
    }


def ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or b == 0:
        return float("nan")
    return a / b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", nargs="+", default=list(TRACES), help="shipped trace names (without .csv)")
    ap.add_argument("--days", type=float, default=None, help="simulate only the first N days")
    ap.add_argument("--rebalance-every", type=float, default=1.0, help="hours between rebalances (default 1)")
    ap.add_argument("--seeds", type=int, default=1, help="average over external-load seeds 1..N (default 1)")
    ap.add_argument("--json", default="bench-results/simulate.json", help="where to write the results")
    ap.add_argument("--plot-dir", default=None, help="also draw one PNG per trace there")
    ap.add_argument(
        "--site",
        type=Path,
        default=None,
        help="another site config (default: the shipped data/sim/site.yaml), e.g. with other demand settings",
    )
    args = ap.parse_args(argv)
    out: dict[str, Any] = {
        "benchmark": "simulate",
        "machine": machine(),
        "rebalance_every_hours": args.rebalance_every,
        "seeds": args.seeds,
        "traces": [],
    }
    rows = []
    for name in args.traces:
        r = run_trace(name, args.days, args.rebalance_every, args.seeds, args.plot_dir, args.site)
        out["traces"].append(r)
        res = r["results"]
        for p in POLICIES:
            f = res[p]
            rows.append(
                [
                    f"{name} {p}",
                    100 * f["used_share"],
                    100 * f["wasted_share"],
                    f["wait_median_seconds"] / 3600,
                    f["wait_p95_seconds"] / 3600,
                    f["limit_hit_jobs"],
                    f["limit_failures"],
                    f["jain"],
                    f["allocation_changes"],
                    f["wall_seconds"],
                ]
            )
        ours, q = res["qauvern-hpc"], res["qauvern"]
        r["ratios_vs_qauvern"] = {
            "used": ratio(ours["used_share"], q["used_share"]),
            "wait_p95": ratio(ours["wait_p95_seconds"], q["wait_p95_seconds"]),
            "wait_median": ratio(ours["wait_median_seconds"], q["wait_median_seconds"]),
            "limit_failures": ratio(ours["limit_failures"], q["limit_failures"]),
        }
    headers = [
        "trace / policy",
        "used %",
        "wasted %",
        "wait med h",
        "wait p95 h",
        "limit jobs",
        "limit fails",
    ]
    headers += ["jain", "changes", "run s"]
    print(table(headers, rows, digits=2))
    print()
    for r in out["traces"]:
        g, rv, w = r["goal"], r["ratios_vs_qauvern"], r["wins"]
        verdict = "met" if g["met"] else "NOT met"
        print(
            f"{r['trace']}: goal {verdict} (used >= others: {g['used_at_least_as_much']}, lower p95: "
            f"{g['lower_p95']}); qauvern-hpc/qauvern: used x{rv['used']:.3f}, p95 x{rv['wait_p95']:.3f}, "
            f"median x{rv['wait_median']:.3f}, limit failures x{rv['limit_failures']:.3f}; seeds where "
            f"p95 is lower: {w['p95_lower_than_qauvern']}/{w['seeds']}, "
            f"used >=: {w['used_at_least_qauvern']}/{w['seeds']}"
        )
    path = write_json(args.json, out)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
