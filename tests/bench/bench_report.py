"""Benchmark: the HTML usage report over a large ledger (issue 15: 1,000,000 rows render in seconds).

A plain script, not a pytest test:

    python tests/bench/bench_report.py [--rows 1000000] [--days 90] [--by account] [--dir DIR] [--seed 1]

Fills a SQLite ledger (migrated by `open_ledger`, then one bulk INSERT transaction outside the timing) with
synthetic QPU job runs: 8 instances, 40 accounts, 400 users, ended over the last --days days, a tenth on
two resources, some failed or cancelled, waits of seconds to a day, plus 200 rebalancer audit entries.
Then times `gather` (the SQL aggregates) and `render` (charts and HTML) for the last 28 days and prints
the figures and the page's size.

Measured on the 2-CPU development VM with a simulation benchmark running beside it: before the one-pass
query and the runs_report index, 12.7 s (gather 11.4 s, render 1.3 s; 12.4 s when first measured); after,
two runs: 3.6 s and 3.2 s (gather 1.59 and 1.61 s, render 2.01 and 1.62 s). The filled ledger is ~316 MB
with the covering index (~241 MB before).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from qauvern_hpc.accounting.ledger import open_ledger
from qauvern_hpc.core.report_units import Units
from qauvern_hpc.reports.gather import gather
from qauvern_hpc.reports.html import render
from qauvern_hpc.reports.model import Window

DAY = 86400
COLUMNS = (
    "cluster", "job_id", "job_id_raw", "run", '"user"', "account", '"partition"', "qos", "resource",
    "instance", "session_id", "rule", "submit", "start", '"end"', "wall_seconds", "quantum_seconds",
    "usage_state", "slurm_state", "updated_at", "resource_units", "mode",
)  # fmt: skip


def fill(path: Path, rows: int, days: int, rng: random.Random) -> float:
    with open_ledger(f"sqlite:///{path}") as ledger:  # the schema, by its migrations
        for i in range(200):
            name = f"inst{i % 8}"
            ledger.record_audit(
                f"run{i}", "root", "ibm.update_instance",
                before={"target": {"crn": f"c{i % 8}", "name": name},
                        "value": {"allocation_seconds": 36000 + i, "limit_seconds": 72000}},
                after={"step": f"ibm:{name}", "target": {"crn": f"c{i % 8}", "name": name},
                       "value": {"allocation_seconds": 36000 + i + 60, "limit_seconds": 72000}},
                reason="demand", at=time.time() - (200 - i) * days * DAY / 200,
            )  # fmt: skip
    now = int(time.time())
    states = ["COMPLETED"] * 18 + ["FAILED", "CANCELLED by 0"]
    started = time.monotonic()
    con = sqlite3.connect(path)
    sql = f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"

    def gen():  # type: ignore[no-untyped-def]
        job, n = 1, 0
        while n < rows:
            end = now - rng.randrange(days * DAY)
            wait = int(rng.expovariate(1 / 900))
            inst = rng.randrange(8)
            user = rng.randrange(400)
            for resource in ("ibm_torino", "ibm_fez")[: 2 if rng.random() < 0.1 else 1]:
                qs = round(rng.expovariate(1 / 120), 3)
                yield ("hpc", str(job), job, 0, f"user{user}", f"acct{user % 40}", "quantum", "normal",
                       resource, f"inst{inst}", f"s{job}", f"rule{inst}", end - 600 - wait, end - 600, end,
                       600, qs, "final", rng.choice(states), end, qs * 1.5, "session")  # fmt: skip
                n += 1
            job += 1

    with con:
        con.executemany(sql, gen())
    con.close()
    return time.monotonic() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--by", default="account", choices=("account", "user", "instance"))
    p.add_argument("--dir", type=Path)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-report-"))
    db = work / "ledger.db"
    db.unlink(missing_ok=True)
    filled = fill(db, args.rows, args.days, random.Random(args.seed))
    now = int(time.time())
    window = Window(now - 28 * DAY, now, "last 28d", True)
    with open_ledger(f"sqlite:///{db}") as ledger:
        rows = ledger.count_runs()
        t0 = time.monotonic()
        data = gather(ledger, window, by=args.by, limits={f"inst{i}": 72000 for i in range(8)})
        t1 = time.monotonic()
    page = render(data, Units("hours"))
    t2 = time.monotonic()
    (work / "report.html").write_text(page)
    figures = {
        "rows": rows,
        "runs_in_window": data.totals["jobs"],
        "fill_seconds": round(filled, 1),
        "gather_seconds": round(t1 - t0, 2),
        "render_seconds": round(t2 - t1, 2),
        "report_seconds": round(t2 - t0, 2),
        "html_bytes": len(page),
        "db_bytes": db.stat().st_size,
    }
    print(json.dumps(figures, indent=2))
    took = f"{t2 - t0:.1f} s (gather {t1 - t0:.1f} s, render {t2 - t1:.1f} s)"
    print(f"report over {rows:,} ledger rows: {took}")


if __name__ == "__main__":
    main()
