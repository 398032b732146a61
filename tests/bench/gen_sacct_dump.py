"""Write a realistic synthetic `sacct` dump for the ingest benchmark.

    python tests/bench/gen_sacct_dump.py N OUT [--seed 1] [--cluster alpha]

N job allocation lines in the exact shape of `SLURM_TIME_FORMAT=%s sacct --parsable2 --noheader --noconvert
--allocations --duplicates --format=<DEFAULT_FIELDS>` (see qauvern_hpc.slurm.sacct): a mix of users,
accounts, partitions and QOS; plain jobs, array tasks (a few pending ranges), heterogeneous job pairs,
requeued jobs (a REQUEUED run printed before the later run, as `-D` does); states COMPLETED, FAILED,
`CANCELLED by <uid>`, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, RUNNING; ~20% QPU jobs carrying our
AdminComment record (some with two resources, some after an admin's own note and ` | `), and a few
non-QPU jobs with free-text AdminComments.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass

from qauvern_hpc.record.admin_comment import format_admin_comment, merge_admin_comment

T0 = 1767225600  # 2026-01-01T00:00:00Z
RESOURCES = ("ibm_torino", "ibm_fez", "ibm_kingston", "ibm_marrakesh", "ibm_aachen")
PARTITIONS = (("cpu", 0.5), ("gpu", 0.15), ("qpu", 0.17), ("debug", 0.12), ("long", 0.06))
QOS = (("normal", 0.8), ("high", 0.12), ("low", 0.08))
STATES = (
    ("COMPLETED", 0.72),
    ("FAILED", 0.09),
    ("CANCELLED", 0.08),
    ("TIMEOUT", 0.05),
    ("OUT_OF_MEMORY", 0.02),
    ("NODE_FAIL", 0.01),
    ("PREEMPTED", 0.01),
    ("RUNNING", 0.02),
)


def _cum(table: tuple[tuple[str, float], ...]) -> tuple[list[str], list[float]]:
    names = [n for n, _ in table]
    weights = [w for _, w in table]
    return names, weights


@dataclass(frozen=True)
class _Job:
    cluster: str
    user: str
    uid: int
    account: str
    partition: str
    qos: str
    limit_min: int
    nodes: str
    admin: str


def _line(rng: random.Random, job: _Job, jid: str, raw: int, submit: int, st: str) -> tuple[str, int]:
    """One sacct line for one run of `job`, and the run's end time."""
    limit = job.limit_min * 60
    start = submit + rng.randint(0, 600)
    wall = limit if st == "TIMEOUT" else rng.randint(5, limit)
    if st == "RUNNING":
        end_s, elapsed = "Unknown", rng.randint(1, limit)
    else:
        end_s, elapsed = str(start + wall), wall
    exit_code = "0:0"
    if st == "CANCELLED":
        st = f"CANCELLED by {rng.choice((0, job.uid))}"
        exit_code = "0:15"
    elif st in ("FAILED", "NODE_FAIL"):
        exit_code = f"{rng.randint(1, 127)}:0"
    elif st == "OUT_OF_MEMORY":
        exit_code = "0:125"
    text = (
        f"{job.cluster}|{jid}|{raw}|{job.user}|{job.account}|{job.partition}|{job.qos}|{st}|{exit_code}|"
        f"{submit}|{start}|{end_s}|{elapsed}|{job.limit_min}|{job.nodes}|{job.admin}\n"
    )
    return text, start + wall


def generate(n: int, out: str, *, seed: int = 1, cluster: str = "alpha", t0: int = T0) -> int:
    rng = random.Random(seed)
    users = [f"user{i:03d}" for i in range(240)]
    accounts = [f"proj{i:02d}" for i in range(32)]
    user_account = {u: accounts[rng.randrange(len(accounts))] for u in users}
    instances = {a: f"{a}-qi" for a in accounts}
    parts, part_w = _cum(PARTITIONS)
    qos_names, qos_w = _cum(QOS)
    state_names, state_w = _cum(STATES)
    job_id = 100_000
    t = t0
    written = 0
    buf: list[str] = []
    with open(out, "w", encoding="utf-8") as fh:
        while written < n:
            job_id += 1
            t += rng.randint(0, 3)
            user = users[int(rng.paretovariate(1.2)) % len(users)]
            account = user_account[user]
            partition = rng.choices(parts, part_w)[0]
            qos = rng.choices(qos_names, qos_w)[0]
            qpu = partition == "qpu" or rng.random() < 0.035
            kind = rng.random()
            limit_min = rng.choice((10, 30, 60, 120, 240, 1440))
            nodes = f"node{rng.randint(1, 400):03d}"
            if rng.random() < 0.3:
                a = rng.randint(1, 390)
                nodes = f"node[{a:03d}-{a + rng.randint(1, 8):03d}]"
            admin = ""
            if qpu:
                res = rng.sample(RESOURCES, 2 if rng.random() < 0.1 else 1)
                record = {
                    "rule": account,
                    "instance": instances[account],
                    "resources": [
                        {"resource": r, "session_id": f"sess-{job_id:x}-{i}" if rng.random() < 0.97 else None}
                        for i, r in enumerate(res)
                    ],
                }
                admin = format_admin_comment(record)
                if rng.random() < 0.05:
                    admin = merge_admin_comment(f"ticket {rng.randint(1, 9999)}", admin)
            elif rng.random() < 0.01:
                admin = "maintenance reboot requested | owner notified"

            job = _Job(
                cluster, user, 1000 + users.index(user), account, partition, qos, limit_min, nodes, admin
            )

            def line(
                jid: str, raw: int, submit: int, state: str | None = None, job: _Job = job
            ) -> tuple[str, int]:
                return _line(rng, job, jid, raw, submit, state or rng.choices(state_names, state_w)[0])

            if kind < 0.06:  # array: a few tasks, sometimes with tasks still pending
                # The array's own record (JobIDRaw = array id) is the pending rest while tasks wait, and
                # becomes the last task once all started; the other tasks get their own ids.
                tasks = rng.randint(2, 6)
                base = job_id
                pending = rng.random() < 0.05
                for k in range(tasks):
                    raw = base if k == tasks - 1 and not pending else job_id + 1 + k
                    buf.append(line(f"{base}_{k}", raw, t)[0])
                job_id += tasks
                if pending:
                    buf.append(
                        f"{cluster}|{base}_[{tasks}-{tasks + 9}%4]|{base}|{user}|{account}|{partition}|{qos}|"
                        f"PENDING|0:0|{t}|Unknown|Unknown|0|{limit_min}|None assigned|{admin}\n"
                    )
            elif kind < 0.08:  # heterogeneous pair
                buf.append(line(f"{job_id}+0", job_id, t)[0])
                buf.append(line(f"{job_id}+1", job_id + 1, t)[0])
                job_id += 1
            elif kind < 0.09:  # requeued once: the first run, then the run after the requeue
                first, first_end = line(str(job_id), job_id, t, "REQUEUED")
                buf.append(first)
                buf.append(line(str(job_id), job_id, first_end + 1)[0])  # new submit time, as slurmctld sets
            else:
                buf.append(line(str(job_id), job_id, t)[0])
            if len(buf) >= min(10_000, n - written):
                take = min(len(buf), n - written)
                fh.writelines(buf[:take])
                written += take
                buf.clear()
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cluster", default="alpha")
    args = ap.parse_args(argv)
    count = generate(args.n, args.out, seed=args.seed, cluster=args.cluster)
    print(f"wrote {count} records to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
