"""Benchmark: parse and store a sacct dump of N jobs (default 1,000,000).

A plain script, not a pytest test:

    python tests/bench/bench_ingest.py [N] [--small 100000] [--repeat 3] [--dir DIR]

1. Writes synthetic dumps of N and `--small` records (tests/bench/gen_sacct_dump.py; not timed).
2. Floors: `cat dump > /dev/null` (reading the bytes) and a bare Python loop over the file's lines.
   The target is "parse+store within 1.5x of the time sacct needs to print the records"; we cannot run
   sacct against slurmdbd on a million jobs here (no cluster), so the `cat` floor is a strict lower
   bound: sacct must also query slurmdbd/MariaDB, unpack and format every record.
   When the real `sacct` binary is installed, a second floor comes from it, with no daemon: the same
   records written as a jobcomp/filetxt log (untimed) and printed by `sacct --completion` with our
   field list (see tests/unit/test_sacct_real.py). Timed twice, with `-o JobID` (reading the log) and
   with all our fields; the difference is sacct's own cost of formatting and printing those fields,
   the part of its work that any data source (slurmdbd included) adds on top of fetching.
3. parse-only, every record typed (SacctParser over the file); parse-only, QPU records only
   (`qpu_only=True`, what the ingest uses: other lines cost a substring test); parse+store (`ingest_sacct`
   into a fresh SQLite ledger, one transaction). Each in its own child process so its peak RSS is its
   own; best of `--repeat`.

Prints records/s, the ratios to both floors, and the peak RSS of parse+store at `--small` and at N
(memory must not grow with N: the parser streams and the ledger writes in chunks of 5,000).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _child(mode: str, path: str, db_dir: str) -> dict[str, float]:
    sys.path.insert(0, ROOT)
    from qauvern_hpc.slurm.sacct import SacctParser

    started = time.perf_counter()
    out: dict[str, float] = {}
    with open(path, encoding="utf-8") as fh:
        if mode == "lines":
            n = 0
            for _ in fh:
                n += 1
            out["records"] = n
        elif mode in ("parse", "parse-qpu"):
            parser = SacctParser(strict=False, qpu_only=mode == "parse-qpu")
            qpu = 0
            for rec in parser.parse(fh):
                if rec.qpu is not None:
                    qpu += 1
            out["records"] = parser.stats.records
            out["qpu"] = qpu
        elif mode == "store":
            from qauvern_hpc.ledger import open_ledger
            from qauvern_hpc.ledger.ingest import ingest_sacct

            db = os.path.join(db_dir, f"ledger-{os.getpid()}.db")
            with open_ledger(f"sqlite:///{db}") as ledger:
                stats = ingest_sacct(ledger, fh)
                out["records"] = stats.parse.records
                out["qpu"] = stats.qpu_records
                out["rows"] = stats.store.changed
                out["stored"] = ledger.count_runs()
            for suffix in ("", "-wal", "-shm", ".lock"):
                if os.path.exists(db + suffix):
                    os.unlink(db + suffix)
        elif mode == "noop":
            out["records"] = 0
        else:
            raise SystemExit(f"unknown mode {mode}")
    out["seconds"] = time.perf_counter() - started
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(mode: str, path: str, db_dir: str, repeat: int) -> dict[str, float]:
    best: dict[str, float] | None = None
    for _ in range(repeat):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", mode, path, "--dir", db_dir],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": ROOT},
        )
        result: dict[str, float] = json.loads(proc.stdout)
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    assert best is not None
    return best


_SACCT_CONF = """ClusterName=bench
SlurmctldHost=localhost
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={log}
"""


def write_jobcomp(dump: str, out: str) -> None:
    """The dump's records as a jobcomp/filetxt log, the format `sacct --completion` reads."""
    with open(dump, encoding="utf-8") as src, open(out, "w", encoding="utf-8") as dst:
        for line in src:
            p = line.rstrip("\n").split("|")
            if len(p) < 16:
                continue  # continuation of a multi-line AdminComment
            cluster, _job_id, raw, user, account, part, qos, state, exit_code = p[:9]
            submit, start, end, _elapsed, limit, nodes = p[9:15]

            def t(v: str) -> str:
                return f"uts{v}" if v.isdigit() else "Unknown"

            dst.write(
                f"JobId={raw} UserId={user}(1000) GroupId=users(100) Name=job{raw} "
                f"JobState={state.split()[0]} Partition={part} TimeLimit={limit} StartTime={t(start)} "
                f"EndTime={t(end)} NodeList={nodes.replace(' ', '_')} NodeCnt=1 ProcCnt=1 "
                f"WorkDir=/home/{user} "
                f"ReservationName= Tres=cpu=1,mem=1G,node=1 Account={account} QOS={qos} WcKey= "
                f"Cluster={cluster} SubmitTime={t(submit)} EligibleTime={t(submit)} DerivedExitCode=0:0 "
                f"ExitCode={exit_code}\n"
            )


def sacct_floor(dump: str, work: str, repeat: int) -> tuple[float, float, int] | None:
    """(seconds to read the log with -o JobID, seconds with our fields, lines printed), or None without
    sacct. Best of `repeat` each."""
    sacct = shutil.which("sacct")
    if sacct is None:
        return None
    sys.path.insert(0, ROOT)
    from qauvern_hpc.slurm.sacct import DEFAULT_FIELDS, build_sacct_argv, sacct_env

    log = dump + ".jobcomp"
    if not os.path.exists(log):
        write_jobcomp(dump, log)
    conf = os.path.join(work, "slurm.conf")
    with open(conf, "w", encoding="utf-8") as fh:
        fh.write(_SACCT_CONF.format(log=log))
    env = {**os.environ, **sacct_env(), "SLURM_CONF": conf, "TZ": "UTC"}
    times: list[float] = []
    lines = 0
    for fields in (("JobID",), DEFAULT_FIELDS):
        argv = [*build_sacct_argv(1_000_000_000, None, fields=fields, sacct=sacct), "--completion"]
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            with open(os.path.join(work, "sacct.out"), "w") as out:
                subprocess.run(argv, env=env, stdout=out, stderr=subprocess.DEVNULL, check=True)
            best = min(best, time.perf_counter() - started)
        times.append(best)
        with open(os.path.join(work, "sacct.out"), encoding="utf-8") as fh:
            lines = sum(1 for _ in fh)
    os.unlink(os.path.join(work, "sacct.out"))
    return times[0], times[1], lines


def cat_floor(path: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(f"cat '{path}' > /dev/null", shell=True, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where dumps and ledgers go (default: a temp dir)")
    ap.add_argument("--no-sacct", action="store_true", help="skip the real-sacct floor")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], args.dir or tempfile.gettempdir())))
        return 0

    work = args.dir or tempfile.mkdtemp(prefix="qauvern-bench-")
    os.makedirs(work, exist_ok=True)
    sizes = sorted({min(args.small, args.n), args.n})
    dumps: dict[int, str] = {}
    for n in sizes:
        path = os.path.join(work, f"sacct-{n}.txt")
        if not os.path.exists(path):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, os.path.join(HERE, "gen_sacct_dump.py"), str(n), path],
                check=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": ROOT},
            )
            print(f"generated {n:,} records in {time.perf_counter() - started:.1f} s -> {path}")
        dumps[n] = path

    base = run_child("noop", dumps[sizes[0]], work, 1)
    print(f"python + imports baseline peak RSS: {base['peak_rss_mb']:.1f} MB")
    rss: dict[int, float] = {}
    for n in sizes:
        path = dumps[n]
        size_mb = os.path.getsize(path) / 1e6
        floor = cat_floor(path, args.repeat)
        real = sacct_floor(path, work, args.repeat) if not args.no_sacct else None
        lines = run_child("lines", path, work, args.repeat)
        parse = run_child("parse", path, work, args.repeat)
        parse_qpu = run_child("parse-qpu", path, work, args.repeat)
        store = run_child("store", path, work, args.repeat)
        rss[n] = store["peak_rss_mb"]
        print(f"\n== {n:,} records, {size_mb:.0f} MB ==")
        print(f"floor  cat > /dev/null          {floor:8.3f} s  {n / floor:12,.0f} rec/s")
        loop = lines["seconds"]
        print(f"floor  python line loop         {loop:8.3f} s  {n / loop:12,.0f} rec/s")
        if real is not None:
            read_s, full_s, printed = real
            print_s = max(full_s - read_s, 1e-9)
            print(
                f"floor  real sacct -c, -o JobID  {read_s:8.3f} s  {n / read_s:12,.0f} rec/s  (reads the log)"
            )
            print(
                f"floor  real sacct -c, our fields {full_s:7.3f} s  {n / full_s:12,.0f} rec/s  "
                f"({printed:,} lines; formatting+printing our fields: {print_s:.3f} s)"
            )
        for label, res in (
            ("parse only, every record", parse),
            ("parse only, QPU records", parse_qpu),
            ("parse+store (SQLite)", store),
        ):
            secs = res["seconds"]
            vs_sacct = ""
            if real is not None:
                vs_sacct = (
                    f"x{secs / real[1]:5.2f} sacct  x{secs / max(real[1] - real[0], 1e-9):5.2f} sacct print  "
                )
            print(
                f"{label:31s} {secs:8.3f} s  {n / secs:12,.0f} rec/s  "
                f"x{secs / floor:6.1f} cat  x{secs / lines['seconds']:5.1f} line loop  {vs_sacct}"
                f"peak RSS {res['peak_rss_mb']:.1f} MB"
            )
        print(
            f"QPU records {int(store['qpu']):,}, ledger rows {int(store['stored']):,} "
            f"(parse saw {int(parse['records']):,} records)"
        )
    if len(sizes) == 2:
        small, big = sizes
        print(
            f"\npeak RSS parse+store: {small:,} -> {rss[small]:.1f} MB, {big:,} -> {rss[big]:.1f} MB "
            f"(x{rss[big] / rss[small]:.2f} for x{big / small:.0f} records)"
        )
    print(
        "\nnote: sacct cannot be run against slurmdbd on 1M jobs here; `cat` only reads the bytes and is a "
        "strict lower bound for the time sacct needs to fetch (slurmdbd + MariaDB) and print the same "
        "records. The real-sacct floor (jobcomp mode, no daemon) reads a text log instead of querying "
        "slurmdbd; its `sacct print` part (our fields minus -o JobID) is what printing alone costs sacct."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
