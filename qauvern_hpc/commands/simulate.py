"""`qauvern-hpc simulate`: replay a workload trace against allocation policies, side by side."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

HELP = "replay a QPU workload trace under static, qauvern and qauvern-hpc allocation policies"
DESCRIPTION = """\
A discrete-event simulation of one IBM Quantum account behind Slurm. QPU jobs arrive from a trace (CSV),
pend in Slurm until their partition has a free slot, start, and queue their quantum work on their backend.
IBM's fair share runs the instance with the lowest 28-day usage / allocation first (other customers' work
competes, see the scenario); an instance at its limit cannot run (its jobs fail and are resubmitted an
hour later); a job that outlives its wall limit times out and is resubmitted for the rest. Every
--rebalance-every hours the policy sees IBM's figures and the Slurm queue and writes allocations:

  static       the initial allocations, never changed
  qauvern      the real qauvern 0.14 optimizer (needs the qauvern package: pip install 'qauvern==0.14.0')
  qauvern-hpc  ours: qauvern's rules + Slurm's pending QPU jobs as demand + the admission controller

The same site config (--config) maps every trace row to its instance and backend with its rules, and gives
the limits, net grants, minimum, reserve and rebalance.demand weights. The scenario (--scenario, YAML)
gives what the config does not: start date, account budget, initial allocations, external load per
backend, Slurm slots per partition (see qauvern_hpc/data/sim/scenario.yaml).

Trace columns: submit_time (ISO 8601), user, account, partition, qos, qpu, quantum_seconds,
wall_limit_seconds. --generate writes a synthetic trace (bursty, deadline-driven, idle and one dominant
project, from the config's rules) instead of simulating.

Figures: purchased time used, purchased time wasted while work was queued, median and p95 wait (submit ->
quantum work done), jobs that hit a limit, Jain's fairness of used/entitled per project, allocation
changes. Deterministic: the same inputs and --seed give the same figures."""
EPILOG = """\
examples:
  D=$(python3 -c 'import qauvern_hpc,os;print(os.path.dirname(qauvern_hpc.__file__))')/data/sim
  qauvern-hpc simulate --config $D/site.yaml --scenario $D/scenario.yaml --trace $D/mixed-90d.csv
  qauvern-hpc simulate -c $D/site.yaml --scenario $D/scenario.yaml --trace $D/mixed-90d.csv \\
      --policy qauvern --policy qauvern-hpc --rebalance-every 6 --plot out.png
  qauvern-hpc simulate -c $D/site.yaml --scenario $D/scenario.yaml --trace $D/mixed-90d.csv --json
  qauvern-hpc simulate -c $D/site.yaml --scenario $D/scenario.yaml --generate my.csv --days 60 --seed 7

exit codes: 0 done, 2 bad trace, scenario or options (also: qauvern not installed), 3 invalid config."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", metavar="CSV", help="the workload trace to replay")
    parser.add_argument(
        "--scenario", metavar="YAML", help="budget, initial allocations, external load, Slurm slots"
    )
    parser.add_argument(
        "--policy",
        action="append",
        metavar="NAME",
        help="static, qauvern, qauvern-hpc or all (repeatable; default: all, side by side)",
    )
    parser.add_argument("--days", type=float, help="simulate this many days (default: the trace's span)")
    parser.add_argument(
        "--rebalance-every", type=float, default=1.0, metavar="HOURS", help="rebalance period (default 1)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the external load (default 1)")
    parser.add_argument("--plot", metavar="PNG", help="draw usage vs allocation per instance (matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    gen = parser.add_argument_group("trace generation")
    gen.add_argument(
        "--generate", metavar="CSV", help="write a synthetic trace to CSV ('-' = stdout) and exit"
    )
    gen.add_argument("--load", type=float, default=1.0, help="demand / purchased time (default 1.0)")
    gen.add_argument("--start", help="first day of the generated trace (YYYY-MM-DD; default: scenario's)")


def _generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qauvern_hpc.config import compile_policy, load_config_full
    from qauvern_hpc.core.errors import UsageError
    from qauvern_hpc.devtools.simulator.generate import generate_trace
    from qauvern_hpc.devtools.simulator.scenario import load_scenario
    from qauvern_hpc.devtools.simulator.trace import format_trace

    loaded = load_config_full(args.config, check_key_files=False)
    scenario = load_scenario(args.scenario)
    if args.start:
        try:
            start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
        except ValueError:
            raise UsageError(f"--start: {args.start!r} is not a date (YYYY-MM-DD)") from None
    elif scenario.start_date is not None:
        d = scenario.start_date
        start = datetime(d.year, d.month, d.day, tzinfo=UTC)
    else:
        raise UsageError("--generate needs --start or a scenario with start_date")
    days = int(args.days) if args.days else 90
    jobs = generate_trace(
        compile_policy(loaded),
        start=start,
        days=days,
        budget_seconds=scenario.budget_for(loaded.config),
        seed=args.seed,
        load=args.load,
    )
    text = format_trace(jobs)
    if args.generate == "-":
        sys.stdout.write(text)
    else:
        Path(args.generate).write_text(text, encoding="utf-8")
        if not args.json:
            print(f"wrote {len(jobs)} jobs over {days} days to {args.generate}", file=sys.stderr)
    if args.json and args.generate != "-":
        print(json.dumps({"trace": args.generate, "jobs": len(jobs), "days": days, "seed": args.seed}))
    return 0


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.core.errors import UsageError

    if args.generate:
        return _generate(args)
    if not args.trace:
        raise UsageError("--trace is required (or --generate to write one)")
    from qauvern_hpc.devtools.simulator.runner import comparison_table, expand_policies, run_comparison

    policies = expand_policies(args.policy)
    show_progress = not args.no_progress and not args.json and sys.stderr.isatty()
    last: dict[str, int] = {}

    def progress(name: str, frac: float) -> None:
        pct = int(frac * 100)
        if last.get(name) == pct:
            return
        last[name] = pct
        end = "\n" if frac >= 1.0 else ""
        print(f"\rsimulating {name}: {pct:3d} %", end=end, file=sys.stderr, flush=True)

    cmp = run_comparison(
        args.trace,
        args.config,
        args.scenario,
        policies,
        days=args.days,
        rebalance_every_hours=args.rebalance_every,
        seed=args.seed,
        progress=progress if show_progress else None,
    )
    plot_path = None
    if args.plot:
        from qauvern_hpc.devtools.simulator.plot import plot_runs

        plot_path = str(
            plot_runs(cmp.results, args.plot, title=f"{cmp.trace}: usage vs allocation (QAU) per instance")
        )
    if args.json:
        out: dict[str, Any] = cmp.to_dict()
        out["plot"] = plot_path
        print(json.dumps(out, indent=2))
    else:
        print(comparison_table(cmp))
        if plot_path:
            print(f"plot: {plot_path}")
    return 0
