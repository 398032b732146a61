"""Benchmark: how long `plan_allocations` takes for a large account (target: well under 1 s for 10,000).

A plain script, not a pytest test:

    python tests/bench/bench_plan.py [--instances 10000] [--jobs 100000] [--repeat 3] [--seed 1]

Scenarios (each the best of `--repeat` runs, inputs built outside the timing):

* `plain`: qauvern semantics; ~1/3 of instances with a configured limit, 10 % with net grants and 60 days of
  per-day usage, 20 % idle; under budget with spare allocation to share.
* `demand`: the same, plus `--jobs` synthetic pending jobs aggregated to per-instance `DemandSignal`s
  (the aggregation is timed separately), plus hysteresis.
* `skewed`: many limit-capped instances with geometric scores, which makes the water-fill run many rounds.

Prints one line per scenario: instances, seconds, ratio to the 1 s target.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from datetime import date, timedelta

from qauvern_hpc.optimizer import plan_allocations
from qauvern_hpc.planmodel import (
    AccountSnapshot,
    DemandSignal,
    InstanceSettings,
    InstanceSnapshot,
    NetGrant,
    PlanOptions,
)

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


if __name__ == "__main__":
    main()
