"""Benchmark: how many `admission.decide` calls per second (the simulator makes ~260,000 per 90-day run).

A plain script, not a pytest test:

    python tests/bench/bench_admission.py [--instances 5] [--backends 3] [--calls 20000] [--seed 1]

Builds `--calls` observations outside the timing (a random walk of pending/running counts, IBM queue
lengths, usage and occasional pauses, 30 s apart), then times `decide` over them, each call fed the state
the previous one returned, as the simulator and the service do. Prints calls/s, µs per call, and the time
one 90-day simulation at 30 s would spend deciding.
"""

from __future__ import annotations

import argparse
import random
import time

from qauvern_hpc.admission.decide import decide
from qauvern_hpc.admission.model import (
    AdmissionSettings,
    BackendView,
    ControllerState,
    InstanceView,
    Observation,
    PairView,
)

PERIOD = 30.0
CALLS_90_DAYS = int(90 * 86400 / PERIOD)


def build(n_inst: int, n_back: int, calls: int, rng: random.Random) -> list[Observation]:
    insts = [f"inst{i}" for i in range(n_inst)]
    backs = [f"ibm_b{b}" for b in range(n_back)]
    pending = {(i, b): 0 for i in insts for b in backs}
    running = dict(pending)
    consumed = {i: 0.0 for i in insts}
    out: list[Observation] = []
    for k in range(calls):
        now = 1_000_000.0 + k * PERIOD
        bviews = {}
        for b in backs:
            status = "paused" if rng.random() < 0.02 else "online"
            bviews[b] = BackendView(b, status, "active", rng.randint(0, 20), None, None, now)  # type: ignore[arg-type]
        iviews = {}
        for i in insts:
            consumed[i] += rng.random() * 20
            iviews[i] = InstanceView(i, consumed[i], 100_000, 200_000, False, now)
        pairs = []
        for (i, b), p in pending.items():
            p = max(0, p + rng.randint(-2, 3))
            pending[(i, b)] = p
            r = max(0, running[(i, b)] + rng.randint(-1, 1))
            running[(i, b)] = r
            done = rng.randint(0, 1)
            pairs.append(
                PairView(i, b, "closed", p, r, r // 2, r - r // 2, 60.0 * (r // 2), None, done, 200.0 * done)
            )
        out.append(Observation(now, bviews, iviews, tuple(pairs), now))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=5)
    ap.add_argument("--backends", type=int, default=3)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    observations = build(args.instances, args.backends, args.calls, random.Random(args.seed))
    settings = AdmissionSettings()
    state = ControllerState()
    t0 = time.perf_counter()
    for obs in observations:
        _, state = decide(obs, state, settings)
    elapsed = time.perf_counter() - t0
    rate = len(observations) / elapsed
    print(
        f"decide: {args.instances} instances x {args.backends} backends, {len(observations):,} calls: "
        f"{rate:,.0f} calls/s, {1e6 / rate:.1f} µs/call; a 90-day run at 30 s ({CALLS_90_DAYS:,} calls) "
        f"spends ~{CALLS_90_DAYS / rate:.1f} s deciding"
    )


if __name__ == "__main__":
    main()
