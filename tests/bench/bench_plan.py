"""Benchmark: how long `plan_allocations` takes for a large account (target: well under 1 s for 10,000).

A plain script, not a pytest test:

    python tests/bench/bench_plan.py [--instances 10000] [--jobs 100000] [--repeat 3] [--seed 1]

Scenarios (each the best of `--repeat` runs, inputs built outside the timing):

* `plain`: qauvern semantics; ~1/3 of instances with a configured limit, 10 % with net grants and 60 days of
  per-day usage, 20 % idle; under budget with spare allocation to share.
* `demand`: the same, plus `--jobs` synthetic pending jobs aggregated to per-instance `DemandSignal`s
  (the aggregation is timed separately), plus hysteresis.
* `skewed`: many limit-capped instances with geometric scores, which makes the water-fill run many rounds.
* `rebalance`: what `qauvern-hpc rebalance` does between gathering and applying, on `--jobs` pending jobs
  as squeue prints them (`-o '%i|%u|%a|%P|%q|%W|%l|%V|%Q|%r'`, every job carrying the license
  job_submit.lua gives it): parse the squeue text, aggregate per instance (`rebalance.demand`), plan,
  compute the Slurm changes (Fairshare of one account per instance, gates) and the journal steps. The
  config (one instance, one account and one rule per instance) and the associations are built outside
  the timing; each stage's median over `--repeat` runs is printed, and the total is compared with the
  1 s target. Timed as the command runs it (the garbage collector paused around parsing + aggregation and
  around planning + Slurm changes + steps, see `rebalance.gcpause`; the young collection each pause defers
  is run and timed at its end), then again with the collector running (`(gc on)`), to show what pausing
  saves.

Prints one line per scenario: instances, seconds, ratio to the 1 s target.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import random
import statistics
import time
from collections.abc import Callable
from datetime import date, timedelta

from qauvern_hpc.planner.model import (
    AccountSnapshot,
    DemandSignal,
    InstanceSettings,
    InstanceSnapshot,
    NetGrant,
    PlanOptions,
)
from qauvern_hpc.planner.optimizer import plan_allocations

TODAY = date(2026, 3, 10)
TARGET_SECONDS = 1.0


def build_account(n: int, rng: random.Random) -> tuple[AccountSnapshot, list[InstanceSettings]]:
    snaps: list[InstanceSnapshot] = []
    settings: list[InstanceSettings] = []
    for i in range(n):
        crn = f"crn:v1:bluemix:public:quantum-computing:us-east:a/acct:inst-{i}::"
        idle = rng.random() < 0.2
        c28 = 0 if idle else rng.randint(0, 200_000)
        c14 = rng.randint(0, c28)
        c7 = rng.randint(0, c14)
        c3 = rng.randint(0, c7)
        h24 = rng.randint(0, c3)
        daily: dict[date, int] = {}
        limit: int | None = rng.randint(50_000, 400_000) if rng.random() < 0.33 else None
        grants: tuple[NetGrant, ...] = ()
        if limit is not None and rng.random() < 0.3:
            start = TODAY - timedelta(days=rng.randint(0, 50))
            grants = (
                NetGrant(start, start + timedelta(days=rng.randint(10, 60)), rng.randint(1000, 100_000)),
            )
            daily = {TODAY - timedelta(days=d): rng.randint(0, 5000) for d in range(1, 61)}
        snaps.append(
            InstanceSnapshot(
                crn,
                f"inst-{i}",
                rng.randint(60, 150_000),
                rng.choice([None, limit, rng.randint(50_000, 400_000)]),
                c28,
                c14,
                c7,
                c3,
                h24,
                daily,
            )
        )
        settings.append(InstanceSettings(crn, f"inst-{i}", limit, grants))
    held = sum(s.allocation_seconds for s in snaps)
    budget = held * 2
    return AccountSnapshot(budget, budget - held, held // 2, tuple(snaps)), settings


def build_skewed(n: int) -> tuple[AccountSnapshot, list[InstanceSettings]]:
    snaps = []
    settings = []
    for i in range(n):
        crn = f"skew-{i}"
        snaps.append(InstanceSnapshot(crn, crn, 60, None, 0, consumed_24h_seconds=1 + (i * 7919) % 997))
        settings.append(InstanceSettings(crn, crn, 60 + 10 * (i % 300 + 1)))
    budget = 60 * n + 10_000_000
    return AccountSnapshot(budget, budget - 60 * n, 0, tuple(snaps)), settings


def aggregate_jobs(jobs: list[tuple[str, int, int]]) -> dict[str, DemandSignal]:
    """What the rebalancer will do: pending jobs (crn, requested QPU seconds, age) -> per-instance demand."""
    queued: dict[str, int] = {}
    count: dict[str, int] = {}
    oldest: dict[str, int] = {}
    for crn, seconds, age in jobs:
        queued[crn] = queued.get(crn, 0) + seconds
        count[crn] = count.get(crn, 0) + 1
        if age > oldest.get(crn, -1):
            oldest[crn] = age
    return {crn: DemandSignal(queued[crn], count[crn], oldest[crn]) for crn in queued}


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def report(name: str, n: int, seconds: float) -> None:
    print(
        f"{name:<10} instances={n:>7}  seconds={seconds:8.4f}  "
        f"ratio_to_1s_target={seconds / TARGET_SECONDS:6.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    n = args.instances

    account, settings = build_account(n, rng)
    report("plain", n, best_of(args.repeat, lambda: plan_allocations(account, settings, today=TODAY)))

    crns = [s.crn for s in settings]
    jobs = [(rng.choice(crns), rng.randint(1, 3600), rng.randint(0, 5 * 86400)) for _ in range(args.jobs)]
    agg_seconds = best_of(args.repeat, lambda: aggregate_jobs(jobs))
    demand = aggregate_jobs(jobs)
    options = PlanOptions(min_change_seconds=300)
    plan_seconds = best_of(
        args.repeat, lambda: plan_allocations(account, settings, today=TODAY, options=options, demand=demand)
    )
    report("demand", n, plan_seconds)
    print(
        f"{'':<10} + aggregating {args.jobs} pending jobs: {agg_seconds:.4f} s "
        f"(total {agg_seconds + plan_seconds:.4f} s)"
    )

    skew_account, skew_settings = build_skewed(n)
    report(
        "skewed", n, best_of(args.repeat, lambda: plan_allocations(skew_account, skew_settings, today=TODAY))
    )

    bench_rebalance(account, settings, args.jobs, args.repeat, rng)


def squeue_text(names: list[str], n: int, rng: random.Random, now: int) -> list[str]:
    """`n` pending jobs as squeue prints them with our format (some held, some unlimited, some arrays)."""
    lines = []
    for i in range(n):
        name = rng.choice(names)
        limit = rng.choice(["5:00", "1:30:00", "1-00:00:00", "UNLIMITED", "20:00"])
        prio, reason = (0, "JobHeldUser") if rng.random() < 0.05 else (rng.randint(1, 50_000), "Priority")
        jid = f"{i}_{i % 7}" if i % 10 == 0 else str(i)
        lines.append(
            f"{jid}|user{i % 977}|acct-{name}|quantum|normal|qpu:1,qpu_{name}:1|{limit}|"
            f"{now - rng.randint(0, 5 * 86400)}|{prio}|{reason}\n"
        )
    return lines


def bench_rebalance(
    account: AccountSnapshot, settings: list[InstanceSettings], jobs: int, repeat: int, rng: random.Random
) -> None:
    from qauvern_hpc.config import Config
    from qauvern_hpc.rebalance.apply import build_steps
    from qauvern_hpc.rebalance.demand import aggregate_pending, demand_signals
    from qauvern_hpc.rebalance.enforce import plan_slurm
    from qauvern_hpc.rebalance.gcpause import gc_paused
    from qauvern_hpc.rebalance.settings import plan_options
    from qauvern_hpc.slurm.sacctmgr import Association
    from qauvern_hpc.slurm.squeue import parse_squeue

    names = [s.name for s in settings]
    crn_by_name = {s.name: s.crn for s in settings}
    cfg = Config.model_validate(
        {
            "ibm": {"account_id": "acct", "plan": "premium"},
            "instances": [
                {"name": s.name, "crn": f"crn:v1:bluemix:public:quantum-computing:us-east:a/acct:{s.name}::"}
                for s in settings
            ],
            "resources": [{"name": "ibm_torino"}],
            "rules": [
                {"name": f"r-{n}", "match": {"accounts": [f"acct-{n}"]}, "instance": n, "resources": ["*"]}
                for n in names
            ],
        }
    )
    # The bench account's CRNs are not config-shaped: map the config's back to them for the planner.
    cfg = cfg.model_copy(
        update={"instances": [i.model_copy(update={"crn": crn_by_name[i.name]}) for i in cfg.instances]}
    )
    options = plan_options(cfg)
    assocs = [Association("hpc", "root", "", "", 1, {})] + [
        Association("hpc", f"acct-{n}", "", "root", 1, {"license/qpu_" + n: 0} if i % 50 == 0 else {})
        for i, n in enumerate(names)
    ]
    tres = {f"license/qpu_{n}" for n in names}
    now = 1_800_000_000
    text = squeue_text(names, jobs, rng, now)

    def once(paused: bool) -> dict[str, float]:
        # As the command runs it: gather parses and aggregates with the collector paused (then reads the
        # ledger and sacctmgr), and the command pauses it again for plan, Slurm changes and steps
        # (rebalance.gcpause); `paused=False` shows what the collector would cost.
        pause = gc_paused if paused else contextlib.nullcontext

        def settle() -> None:  # the young collection a pause defers runs once it ends: charge it here
            if paused:
                gc.collect(0)

        t0 = time.perf_counter()
        with pause():
            parsed = list(parse_squeue(text))
            t1 = time.perf_counter()
            queue = aggregate_pending(parsed, "qpu_", names, now=now, max_job_seconds=3600)
            demand = demand_signals(queue.by_instance, {}, crn_by_name)
        settle()
        t2 = time.perf_counter()
        with pause():
            plan = plan_allocations(account, settings, today=TODAY, options=options, demand=demand)
            t3 = time.perf_counter()
            slurm = plan_slurm(cfg, plan, assocs, tres)
            steps = build_steps(plan, slurm)
        settle()
        t4 = time.perf_counter()
        assert steps
        del parsed, queue, plan, slurm, steps
        gc.collect()  # start every run from the same heap
        return {
            "parse squeue": t1 - t0,
            "aggregate": t2 - t1,
            "plan": t3 - t2,
            "slurm+steps": t4 - t3,
            "total": t4 - t0,
        }

    for paused, label in ((True, "rebalance"), (False, "(gc on)")):
        runs = [once(paused) for _ in range(repeat)]
        median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        report(label, len(settings), median["total"])
        print(
            f"{'':<10} median of {repeat}, {jobs} pending jobs: "
            + ", ".join(f"{k} {v:.4f} s" for k, v in median.items() if k != "total")
            + f"; without parsing squeue: {median['total'] - median['parse squeue']:.4f} s"
        )


if __name__ == "__main__":
    main()
