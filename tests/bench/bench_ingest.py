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

Every row shows wall and CPU seconds (CPU: the process's own, or user+sys of a command from getrusage;
less disturbed than wall time when the machine is shared). Prints records/s, the ratios (wall/wall and
cpu/cpu) to the floors, and the peak RSS of parse+store at `--small` and at N (memory must not grow
with N: the parser streams and the ledger writes in chunks of 5,000). `--no-sacct` skips the real-sacct
floor.
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


Timing = dict[str, float]  # "wall" and "cpu" seconds (+ counters)


def _child(mode: str, path: str, db_dir: str) -> dict[str, float]:
    sys.path.insert(0, ROOT)
    from qauvern_hpc.slurm.sacct import SacctParser

    started = time.perf_counter()
    cpu_started = time.process_time()
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
            from qauvern_hpc.accounting.ledger import open_ledger
            from qauvern_hpc.accounting.ledger.ingest import ingest_sacct

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
    out["wall"] = time.perf_counter() - started
    out["cpu"] = time.process_time() - cpu_started
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _best(results: list[Timing]) -> Timing:
    """Best of several runs: the smallest wall time, and the smallest CPU time, each on its own."""
    best = dict(min(results, key=lambda r: r["wall"]))
    best["cpu"] = min(r["cpu"] for r in results)
    return best


def run_child(mode: str, path: str, db_dir: str, repeat: int) -> Timing:
    results: list[Timing] = []
    for _ in range(repeat):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", mode, path, "--dir", db_dir],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": ROOT},
        )
        results.append(json.loads(proc.stdout))
    return _best(results)


def _timed_command(argv: list[str], repeat: int, **kw: object) -> Timing:
    """Wall and CPU (user+sys of the child, from getrusage) seconds of a command, best of `repeat`."""
    results: list[Timing] = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(argv, check=True, **kw)  # type: ignore[call-overload]
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        results.append({"wall": wall, "cpu": cpu})
    return _best(results)


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


def sacct_floor(dump: str, work: str, repeat: int) -> tuple[Timing, Timing] | None:
    """Real sacct (jobcomp mode) on the dump's records: (-o JobID, our fields), or None without sacct."""
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
    out: list[Timing] = []
    for fields in (("JobID",), DEFAULT_FIELDS):
        argv = [*build_sacct_argv(1_000_000_000, None, fields=fields, sacct=sacct), "--completion"]
        runs: list[Timing] = []
        for _ in range(repeat):
            with open(os.path.join(work, "sacct.out"), "w") as sink:  # a fresh file each run
                runs.append(_timed_command(argv, 1, env=env, stdout=sink, stderr=subprocess.DEVNULL))
        timing = _best(runs)
        with open(os.path.join(work, "sacct.out"), encoding="utf-8") as fh:
            timing["lines"] = sum(1 for _ in fh)
        out.append(timing)
    os.unlink(os.path.join(work, "sacct.out"))
    return out[0], out[1]


def cat_floor(path: str, repeat: int) -> Timing:
    with open(os.devnull, "w") as sink:
        return _timed_command(["cat", path], repeat, stdout=sink)


def _row(label: str, t: Timing, n: int, note: str = "") -> None:
    print(f"{label:34s} {t['wall']:8.3f} s {t['cpu']:8.3f} s {n / t['wall']:11,.0f}  {note}")


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
        print(f"\n== {n:,} records, {size_mb:.0f} MB (best of {args.repeat}) ==")
        print(f"{'':34s} {'wall':>10s} {'cpu':>10s} {'rec/s':>11s}")
        _row("floor: cat > /dev/null", floor, n)
        _row("floor: python line loop", lines, n)
        printing: Timing | None = None
        if real is not None:
            read, full = real
            _row("floor: real sacct -c, -o JobID", read, n, "reads the jobcomp log")
            _row("floor: real sacct -c, our fields", full, n, f"{int(full['lines']):,} lines printed")
            if full["wall"] > read["wall"] and full["cpu"] > read["cpu"]:
                printing = {k: full[k] - read[k] for k in ("wall", "cpu")}
                _row("  = sacct formatting+printing", printing, n, "(our fields minus -o JobID)")
            else:
                print("  = sacct formatting+printing: below the noise of the two timings")
        print("ratios below: wall / wall and cpu / cpu")
        for label, res in (
            ("parse only, every record", parse),
            ("parse only, QPU records", parse_qpu),
            ("parse+store (SQLite)", store),
        ):
            ratios = [f"x{res['wall'] / floor['wall']:.0f}/{res['cpu'] / max(floor['cpu'], 1e-3):.0f} cat"]
            if real is not None:
                full = real[1]
                ratios.append(f"x{res['wall'] / full['wall']:.2f}/{res['cpu'] / full['cpu']:.2f} sacct")
            if printing is not None:
                ratios.append(
                    f"x{res['wall'] / printing['wall']:.2f}/{res['cpu'] / printing['cpu']:.2f} sacct printing"
                )
            _row(label, res, n, "  ".join(ratios) + f"  peak RSS {res['peak_rss_mb']:.1f} MB")
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
        "slurmdbd; its `formatting+printing` part (our fields minus -o JobID) is what printing alone costs "
        "sacct (jobcomp mode re-parses times from text, so it is a little dearer than from slurmdbd). On a "
        "shared machine CPU times are less disturbed by other load than wall times."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
