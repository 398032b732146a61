"""Benchmark: collect and rebalance with N clusters x 100,000 jobs a day into one PostgreSQL ledger.

A plain script, not a pytest test:

    python tests/bench/bench_multicluster.py [--clusters 1,2,5,10] [--jobs 100000] [--quick] [--dir DIR]

The question: does one collect (one `sacct -M` pull per cluster, each in its own transaction, then IBM for
every pending row) and one rebalance (gather + plan over the ledger the collect filled) grow near-linearly
from 1 to 10 clusters? There is no real Slurm at that scale here, so:

* **sacct**: each cluster gets a synthetic dump of `--jobs` allocation lines in sacct's exact output shape
  (`gen_sacct_dump.py`, ~20 % QPU jobs carrying our AdminComment, 32 accounts mapped to 32 instances; not
  timed). The config's `slurm.sacct` is a two-line shell stand-in that `cat`s the dump named by
  `--clusters=NAME` for the "ended" pull and prints nothing for the "running" one, so the collector runs
  unchanged (argv, streaming, parsing, one transaction per cluster, high-water marks). `cat` is a lower
  bound for real sacct (see bench_ingest.py).
* **IBM for collect**: an in-process stub answers `get_session` / `session_jobs` for every session (closed,
  one completed job of 12.5 s), so the figure is the collector's own work (attribution, one ledger update
  per session) and not HTTP round trips; against IBM each session costs two requests on top.
* **IBM for rebalance**: the emulator (`tests.support.ibm.EmulatedIBM`, 32 instances), reached by the real
  `IBMClient`; its cost does not grow with the clusters. squeue is a stub of `--jobs / 100` pending QPU jobs
  per cluster (licenses `qpu_<instance>`); Fairshare and gating are off (no sacctmgr). The ledger part of
  gather (`recent_ledger_seconds`: one SQL aggregate) is real and timed on its own too.
* **the ledger**: a throwaway PostgreSQL server (`tests.support.postgres`), a fresh database per N.

Prints, per N: collect seconds (sacct pulls and IBM resolution apart), jobs/s, rows stored; gather, its
ledger query and plan seconds; and each figure's growth vs N=1 beside the job growth (N). Near-linear:
growth(N) close to N for collect; roughly flat for rebalance (its inputs are per instance, not per job).
`--quick`: 1,2,5 clusters of 10,000 jobs.

Measured on the 2-CPU development container, 1/2/5/10 clusters x 100,000 jobs, machine otherwise quiet
(2026-12-05): collect 9.9 / 21.7 / 56.2 / 105.4 s (x1 / x2.19 / x5.67 / x10.64; 10,094 -> 9,489 jobs/s),
gather 0.25 -> 0.30 s, plan ~1 ms: near-linear. A first run with other tests beside it had x14.9 at 10
clusters (tests/bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [ROOT, HERE]

from _common import table  # noqa: E402
from gen_sacct_dump import RESOURCES, generate  # noqa: E402

from qauvern_hpc.ibm.models import RuntimeJob, Session  # noqa: E402

ACCOUNT = "benchacct"
INSTANCES = [f"proj{i:02d}-qi" for i in range(32)]  # gen_sacct_dump's accounts proj00..proj31 -> "<a>-qi"
SESSION_SECONDS = 12.5


def crn(instance: str) -> str:
    return f"crn:v1:bluemix:public:quantum-computing:us-east:a/{ACCOUNT}:{instance}::"


FAKE_SACCT = """#!/bin/sh
# stand-in for sacct: the "ended" pull prints the cluster's dump, the "running" one nothing
for a; do
  case "$a" in
    --clusters=*) c="${a#--clusters=}" ;;
    --state=RUNNING) exit 0 ;;
  esac
done
exec cat "DUMPS/sacct-$c.txt"
"""


def config_text(clusters: list[str], url: str, sacct: str, state_dir: str) -> str:
    instances = "\n".join(f'  - {{name: {i}, crn: "{crn(i)}"}}' for i in INSTANCES)
    resources = ", ".join(f"{{name: {r}}}" for r in RESOURCES)
    rules = "\n".join(
        f"  - {{name: {i[:6]}, match: {{accounts: [{i[:6]}]}}, instance: {i}, resources: [{RESOURCES[0]}]}}"
        for i in INSTANCES
    )
    return (
        f"ibm: {{account_id: {ACCOUNT}, plan: premium}}\n"
        f"instances:\n{instances}\n"
        f"resources: [{resources}]\n"
        f"rules:\n{rules}\n"
        f"slurm: {{cluster: [{', '.join(clusters)}], sacct: {sacct}, state_dir: {state_dir}}}\n"
        f'ledger: {{url: "{url}"}}\n'
        "rebalance: {slurm: {fairshare: false, gate: false}}\n"
    )


class StubSessions:
    """The IBM side of collect: every session closed, one completed job of SESSION_SECONDS."""

    calls = 0

    def __call__(self, instance: str) -> tuple[StubSessions, str]:
        return self, crn(instance)

    def get_session(self, crn_: str, session_id: str) -> Session:
        self.calls += 1
        return Session.model_validate(
            {"id": session_id, "mode": "batch", "state": "closed", "elapsed_time": SESSION_SECONDS}
        )

    def session_jobs(self, crn_: str, session_id: str) -> list[RuntimeJob]:
        return [
            RuntimeJob.model_validate(
                {
                    "id": f"j-{session_id}",
                    "status": "Completed",
                    "usage": {"quantum_seconds": SESSION_SECONDS},
                }
            )
        ]

    def jobs_created_between(
        self, crn_: str, backend: str, after: datetime, before: datetime
    ) -> list[RuntimeJob]:
        return []  # job mode: none in the dumps

    def backend_of(self, resource: str) -> str | None:
        return resource

    def analytics(self, instance: str, start: datetime, end: datetime) -> int:
        return 0

    def close(self) -> None:
        return None


@dataclass
class Figures:
    clusters: int
    jobs: int
    qpu: int
    rows: int
    sessions: int
    collect: float
    pull: float
    resolve: float
    gather: float
    ledger_query: float
    plan: float


def pending_jobs(clusters: list[str], per_cluster: int, now: float) -> list[Any]:
    from qauvern_hpc.slurm.squeue import PendingJob

    jobs = []
    for c in clusters:
        for k in range(per_cluster):
            inst = INSTANCES[k % len(INSTANCES)]
            jobs.append(
                PendingJob(
                    f"{c}-{k}", "user001", inst[:6], "qpu", "normal", ((f"qpu_{inst}", 1),), 3600,
                    int(now) - 60 * (k % 600), 1000, "Priority",
                )
            )  # fmt: skip
    return jobs


def run_one(n: int, jobs: int, work: str, server: Any, ibm: Any, now: float) -> Figures:
    from qauvern_hpc.accounting.collect import CollectOptions, collect
    from qauvern_hpc.accounting.ledger import open_ledger
    from qauvern_hpc.config import parse_config
    from qauvern_hpc.planner.optimizer import plan_allocations
    from qauvern_hpc.rebalance.gather import gather, recent_ledger_seconds

    clusters = [f"c{k:02d}" for k in range(1, n + 1)]
    url = server.new_database()
    state_dir = tempfile.mkdtemp(prefix=f"state-{n}-", dir=work)
    text = config_text(clusters, url, os.path.join(work, "sacct"), state_dir)
    cfg = parse_config(text, os.path.join(work, "config.yaml"), check_key_files=False).config
    stub = StubSessions()
    started = time.perf_counter()
    result = collect(cfg, CollectOptions(clusters=tuple(clusters), now=now), stub)  # type: ignore[arg-type]
    collect_s = time.perf_counter() - started
    if result.error is not None or result.report.pull_errors:
        raise SystemExit(f"collect failed: {result.error} {result.report.pull_errors}")
    pull_s = sum(p.seconds for p in result.report.pulls)
    with open_ledger(url) as ledger:
        rows = ledger.count_runs()
    squeue = pending_jobs(clusters, max(1, jobs // 100), now)
    started = time.perf_counter()
    recent_ledger_seconds(cfg, now=now)
    query_s = time.perf_counter() - started
    started = time.perf_counter()
    g = gather(cfg, ibm.client, now=now, squeue=lambda: squeue)
    gather_s = time.perf_counter() - started
    started = time.perf_counter()
    plan_allocations(g.account, g.settings, today=g.today, options=g.options, demand=g.demand)
    plan_s = time.perf_counter() - started
    return Figures(
        n, n * jobs, sum(p.qpu_records for p in result.report.pulls), rows, stub.calls,
        collect_s, pull_s, collect_s - pull_s, gather_s, query_s, plan_s,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--clusters", default=None, help="cluster counts, comma-separated (default 1,2,5,10)")
    ap.add_argument("--jobs", type=int, default=None, help="jobs per cluster and day (default 100000)")
    ap.add_argument("--quick", action="store_true", help="1,2,5 clusters of 10,000 jobs")
    ap.add_argument("--dir", default=None, help="where the dumps go (default: a temp dir, removed)")
    args = ap.parse_args(argv)
    counts = [int(x) for x in (args.clusters or ("1,2,5" if args.quick else "1,2,5,10")).split(",")]
    jobs = args.jobs or (10_000 if args.quick else 100_000)
    if sorted(counts) != counts or counts[0] < 1:
        ap.error("--clusters: increasing counts from 1 up")

    from tests.support import postgres
    from tests.support.ibm import START, EmulatedIBM

    reason = postgres.unavailable()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    now = datetime.fromisoformat(START).timestamp()
    work = args.dir or tempfile.mkdtemp(prefix="qauvern-bench-mc-")
    os.makedirs(work, exist_ok=True)
    sacct = os.path.join(work, "sacct")
    with open(sacct, "w", encoding="utf-8") as fh:
        fh.write(FAKE_SACCT.replace("DUMPS", work))
    os.chmod(sacct, stat.S_IRWXU)
    for k in range(1, counts[-1] + 1):
        path = os.path.join(work, f"sacct-c{k:02d}.txt")
        if not os.path.exists(path):  # the same dumps for every N: c01 is c01 at N=1 and at N=10
            generate(jobs, path, seed=k, cluster=f"c{k:02d}", t0=int(now) - 2 * 86400)
    print(f"{jobs:,} jobs per cluster, dumps in {work}", flush=True)

    figures: list[Figures] = []
    with (
        postgres.running_server() as server,
        EmulatedIBM({crn(i): (100_000, None) for i in INSTANCES}) as ibm,
    ):
        for n in counts:
            f = run_one(n, jobs, work, server, ibm, now)
            figures.append(f)
            print(
                f"N={n}: collect {f.collect:.1f} s ({f.jobs / f.collect:,.0f} jobs/s), "
                f"gather {f.gather:.2f} s, plan {f.plan:.3f} s",
                flush=True,
            )
    base = figures[0]

    def growth(value: float, first: float) -> str:
        return f"x{value / first:.2f}" if first > 0 else "-"

    rows = [
        [
            f.clusters, f"{f.jobs:,}", f"{f.qpu:,}", f"{f.rows:,}", f"{f.sessions:,}",
            f.collect, f.pull, f.resolve,
            f"{f.jobs / f.collect:,.0f}", growth(f.collect, base.collect), f.gather, f.ledger_query, f.plan,
            growth(f.gather + f.plan, base.gather + base.plan),
        ]
        for f in figures
    ]  # fmt: skip
    print()
    print(
        table(
            ["N", "jobs", "QPU jobs", "rows", "sessions", "collect s", "sacct pulls s", "IBM s", "jobs/s",
             "collect growth", "gather s", "ledger query s", "plan s", "rebalance growth"],
            rows,
            digits=2,
        )
    )  # fmt: skip
    print(
        "\ngrowth: the figure at N over the figure at N=1 (jobs grow xN). Near-linear collect: growth "
        "close to N. Rebalance reads IBM per instance and one SQL aggregate of the ledger: close to flat."
    )
    if args.dir is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
