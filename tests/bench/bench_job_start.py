"""Benchmark: what `--qpu` adds to a job's start, on a real local Slurm cluster (target: < 100 ms per job).

A plain script, not a pytest test (root and the sandbox's Slurm packages needed; 3-4 minutes at N=20):

    python tests/bench/bench_job_start.py [--jobs N] [--json OUT] [--rounds R] [--warmup W] [--seed S]
                                          [--no-bare] [--keep]

Set-up, exactly like the `qpu` fixture of tests/integration/test_job_path.py: the IBM emulator (real clock),
the site config written by `qauvern_hpc.devtools.qpu_site`, a sandbox cluster in its own /tmp work dir with
the SPANK
plugin, job_submit.lua and the PrologSlurmctld/EpilogSlurmctld wrappers. Unless `--no-bare`, a second
sandbox without any qauvern hook runs beside it, to show what the hooks cost jobs that do not ask for a QPU.
Everything is stopped and removed at the end, also on errors, Ctrl-C and SIGTERM (`--keep` keeps the dir).

Measured (N samples each, after warm-up; the variants interleaved in rotating order to cancel drift):

1. submit -> running: wall clock just before `sbatch` (run as user qalice through runuser, account
   physics, partition debug) to the `date +%s.%N` the job script writes as its first command. Same script
   with `--qpu=ibm_torino` ("qpu"), without ("plain"), and without on the bare cluster ("bare"). One job
   at a time, submitted after a random 0-1 s pause once the previous one ended and its hooks exited.
   Split with slurmctld's log (ms timestamps): the `sbatch` command, the scheduler wait (submit RPC ->
   allocated; the sandbox's backfill pass runs every second), PrologSlurmctld (allocated -> "Configuration
   ... is complete") and the batch launch (-> first line). sacct's Submit/Start (1 s) as a cross-check.
2. srun step start inside an allocation: one batch job per variant and round runs `srun -n1 /bin/date`
   N/R times; from just before `srun` to the task's own timestamp (step creation, slurmstepd, the SPANK
   remote path: task_init_privileged reading the job's env file), and srun's whole wall time.
3. The hooks directly, as slurmctld runs them (fresh process, SLURM_* environment, cwd /): the prolog for a
   `--qpu` job against the emulator (and the matching epilog), the no-QPU fast path (`python -m` and the
   site's sh wrapper), floors (`/bin/true`, `python -c pass`, Python with the standard library's ssl and
   http.client, Python with httpx) and a shell-level SPANK_QPU test as an alternative fast path.
4. Where the prolog's time goes: `python -X importtime` and instrumented runs (interpreter start-up and
   exit, imports, policy load, IBM client creation, each HTTP request).

Prints a table (ms: medians, added = median(with) - median(without) with a bootstrap 95 % interval, p95s,
PASS/FAIL against 100 ms, '?' when the interval straddles it) and conclusions; writes the same with all
samples as JSON (default bench-results/job_start.json). Exit 1 when a targeted row fails outright.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from _common import machine, median_diff_ci, summary, table, write_json  # noqa: E402

from qauvern_hpc.devtools import qpu_site  # noqa: E402
from qauvern_hpc.devtools.emulator import run_emulator  # noqa: E402
from qauvern_hpc.devtools.sandbox import Sandbox, SandboxError, missing_prerequisites  # noqa: E402

TARGET_MS = 100.0
MIN_JOBS = 20
USER, ACCOUNT, PARTITION, QPU = "qalice", "physics", "debug", "ibm_torino"
HOOK_PATH = "/usr/local/bin:/usr/bin:/bin"
JOB_TIMEOUT = 60.0
DITHER_SECONDS = 1.0

# The job script of part 1; the same text with and without --qpu. Its first command is the timestamp.
START_SCRIPT = """#!/bin/bash
date +%s.%N > @DIR@/start-$SLURM_JOB_ID.tmp
echo "${QRMI_JOB_QPU_RESOURCES:-none}" >> @DIR@/start-$SLURM_JOB_ID.tmp
mv @DIR@/start-$SLURM_JOB_ID.tmp @DIR@/start-$SLURM_JOB_ID
"""

# Part 2: K srun steps, each line "before task_start after"; then one unmeasured step checks the QPU env.
STEPS_SCRIPT = """#!/bin/bash
out=@DIR@/steps-$SLURM_JOB_ID
: > "$out.tmp"
for i in $(seq 1 @K@); do
  s=$(date +%s.%N)
  t=$(srun -n1 --quiet /bin/date +%s.%N)
  e=$(date +%s.%N)
  echo "$s $t $e" >> "$out.tmp"
done
echo "env $(srun -n1 --quiet /bin/sh -c 'echo ${QRMI_JOB_QPU_RESOURCES:-none}')" >> "$out.tmp"
mv "$out.tmp" "$out"
"""

# Part 4: the prolog's main() with timers around its phases (run with the prolog's environment).
PROFILE_CHILD = r"""
import json, time
w0 = time.time()
t0 = time.perf_counter()
import qauvern_hpc.hooks.prolog as prolog
t1 = time.perf_counter()
from qauvern_hpc.policy import compiled as policy, mapping
from qauvern_hpc.hooks import common, jobenv
t2 = time.perf_counter()
from qauvern_hpc.hooks import ibm_session
t3 = time.perf_counter()
import httpx
http = []
_send = httpx.Client.send
def send(self, request, **kw):
    s = time.perf_counter()
    try:
        return _send(self, request, **kw)
    finally:
        http.append([request.method, request.url.path, (time.perf_counter() - s) * 1000])
httpx.Client.send = send
phases = {}
def timed(mod, name, key):
    fn = getattr(mod, name)
    def wrapper(*a, **k):
        s = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            phases[key] = phases.get(key, 0.0) + (time.perf_counter() - s) * 1000
    setattr(mod, name, wrapper)
timed(policy, "load_policy", "load_policy")
timed(ibm_session.POOL, "get", "ibm_client_init")
timed(ibm_session, "open_session", "open_session")
t4 = time.perf_counter()
prolog.main()
t5 = time.perf_counter()
ms = lambda a, b: (b - a) * 1000
print(json.dumps({
    "import_prolog_module": ms(t0, t1),
    "import_policy_mapping": ms(t1, t2),
    "import_ibm_session_httpx_pydantic": ms(t2, t3),
    "main": ms(t4, t5),
    "in_script_total": ms(t0, t5),
    "wall_start": w0,
    "wall_end": w0 + (t5 - t0),
    "phases": phases,
    "http": http,
}))
"""


# What a prolog written on the standard library would import before its two HTTPS requests.
STDLIB_HTTPS = "import json, ssl, http.client, urllib.parse; ssl.create_default_context()"


class BenchError(RuntimeError):
    pass


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# ------------------------------------------------------------------------------------------ environment


@dataclass
class Env:
    root: Path
    sb: Sandbox
    emu: Any
    site: qpu_site.Site
    bare: Sandbox | None
    bench_dirs: dict[str, Path] = field(default_factory=dict)
    setup_seconds: dict[str, float] = field(default_factory=dict)


def _bench_dir(sb: Sandbox) -> Path:
    d = sb.jobs_dir / "bench"
    d.mkdir(exist_ok=True)
    d.chmod(0o1777)
    return d


@contextlib.contextmanager
def environment(bare: bool, keep: bool) -> Iterator[Env]:
    """The emulator, the site, the sandbox(es); torn down whatever happens."""
    root = Path(tempfile.mkdtemp(prefix="qauvern-hpc-bench-", dir="/tmp"))
    root.chmod(0o755)
    started: list[Sandbox] = []
    try:
        site_dir = root / "site"
        site_dir.mkdir()
        site_dir.chmod(0o755)
        with run_emulator(qpu_site.emulator_seed(), clock="real") as emu:
            t = time.monotonic()
            site = qpu_site.write_site(site_dir, emu.base_url)
            sb = Sandbox(root / "qpu")
            started.append(sb)
            sb.up(hooks=qpu_site.sandbox_hooks(site))
            sb.add_accounts(qpu_site.ACCOUNTS)
            qpu_site.set_hook_env(site, {"SLURM_CONF": str(sb.slurm_conf)})
            env = Env(root, sb, emu, site, None)
            env.setup_seconds["qpu_sandbox"] = time.monotonic() - t
            env.bench_dirs["qpu"] = env.bench_dirs["plain"] = _bench_dir(sb)
            if bare:
                t = time.monotonic()
                env.bare = Sandbox(root / "bare")
                started.append(env.bare)
                env.bare.up()
                env.bare.add_accounts(qpu_site.ACCOUNTS)
                env.setup_seconds["bare_sandbox"] = time.monotonic() - t
                env.bench_dirs["bare"] = _bench_dir(env.bare)
            yield env
    finally:
        # A second Ctrl-C must not leave daemons behind.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for s in reversed(started):
                try:
                    s.down()
                except (SandboxError, OSError, subprocess.SubprocessError) as exc:
                    print(f"warning: {s.workdir}: down failed: {exc}", file=sys.stderr)
            if keep:
                print(f"kept {root}", file=sys.stderr)
            else:
                shutil.rmtree(root, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, old)


def _cluster(env: Env, variant: str) -> Sandbox:
    if variant == "bare":
        assert env.bare is not None
        return env.bare
    return env.sb


def _hook_processes() -> list[int]:
    """Pids of hook processes still running (a job's epilog runs after the job is COMPLETED)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if b"qauvern_hpc.hooks.hookd" in cmd:
            continue  # the resident daemon stays; it is not a hook run
        if (
            b"qauvern_hpc.hooks." in cmd
            or b"hookc.py" in cmd
            or b"/site/prolog.sh" in cmd
            or b"/site/epilog.sh" in cmd
        ):
            pids.append(int(entry))
    return pids


def _job_state(sb: Sandbox, jobid: int) -> str:
    res = sb.run(["scontrol", "-o", "show", "job", str(jobid)])
    m = re.search(r"\bJobState=(\S+)", res.stdout)
    return m.group(1) if m else "UNKNOWN"


def _wait_idle(env: Env, sb: Sandbox, jobid: int, timeout: float = JOB_TIMEOUT) -> None:
    """Until the job ended, its hooks exited and no emulator session is still open."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = _job_state(sb, jobid)
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
            break
        time.sleep(0.05)
    if state != "COMPLETED":
        raise BenchError(f"job {jobid} is {state}, not COMPLETED\n{sb._job_report(jobid)}")
    while time.monotonic() < deadline:
        open_sessions = [s for s in env.emu.state.snapshot()["sessions"] if s["state"] != "closed"]
        if not _hook_processes() and not open_sessions:
            return
        time.sleep(0.02)
    raise BenchError(f"job {jobid}: hooks or sessions still busy after {timeout:.0f}s\n{sb.logs(lines=20)}")


def _wait_file(path: Path, jobid: int, sb: Sandbox, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return path.read_text()
        except FileNotFoundError:
            time.sleep(0.002)
    raise BenchError(f"job {jobid}: no {path.name} after {timeout:.0f}s\n{sb._job_report(jobid)}")


def _submit(sb: Sandbox, script: str, variant: str) -> tuple[int, float, float]:
    extra = [f"--qpu={QPU}"] if variant == "qpu" else []
    extra += ["--output=/dev/null"]
    t0 = time.time()
    jobid = sb.submit(script, user=USER, account=ACCOUNT, partition=PARTITION, extra_args=extra)
    return jobid, t0, time.time()


def _rotations(variants: list[str], count: int) -> Iterator[tuple[int, str]]:
    """(round, variant) in rotating order: AB BA AB ... / ABC BCA CAB ..."""
    k = len(variants)
    for i in range(count):
        for j in range(k):
            yield i, variants[(i + j) % k]


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ 1. job start


def bench_job_start(env: Env, variants: list[str], n: int, warmup: int, seed: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    total = (n + warmup) * len(variants)
    rng = random.Random(seed)
    for done, (i, variant) in enumerate(_rotations(variants, n + warmup), start=1):
        sb = _cluster(env, variant)
        d = env.bench_dirs[variant]
        # Dither: the backfill scheduler starts jobs on a 1 s tick (bf_interval=1), and a steady submit loop
        # would lock onto its phase differently for each variant.
        time.sleep(rng.uniform(0.0, DITHER_SECONDS))
        jobid, t0, t1 = _submit(sb, START_SCRIPT.replace("@DIR@", str(d)), variant)
        text = _wait_file(d / f"start-{jobid}", jobid, sb, JOB_TIMEOUT)
        lines = text.split()
        first_line, resources = float(lines[0]), lines[1] if len(lines) > 1 else "?"
        expected = QPU if variant == "qpu" else "none"
        if resources != expected:
            raise BenchError(f"job {jobid} ({variant}): QRMI_JOB_QPU_RESOURCES={resources}, not {expected}")
        _wait_idle(env, sb, jobid)
        if i >= warmup:
            samples[variant].append(
                {
                    "job_id": jobid,
                    "t_before_sbatch": t0,
                    "t_after_sbatch": t1,
                    "t_first_line": first_line,
                    "submit_to_running_ms": (first_line - t0) * 1000,
                    "sbatch_ms": (t1 - t0) * 1000,
                    "after_sbatch_ms": (first_line - t1) * 1000,
                }
            )
        if done % 10 == 0 or done == total:
            _progress(f"  job start: {done}/{total} jobs")
    for variant, recs in samples.items():
        _controller_events(_cluster(env, variant), recs)
    _sacct_cross_check(env, samples)
    return samples


# slurmctld.log lines (ms timestamps, local time) that mark a batch job's way to its node.
CTLD_EVENTS = {
    "submit_rpc": re.compile(r"_slurm_rpc_submit_batch_job: JobId=(\d+) "),
    "allocated": re.compile(r"(?:sched: Allocate|sched/backfill: _start_job: Started) JobId=(\d+) "),
    "prolog_done": re.compile(r"prolog_running_decr: Configuration for JobId=(\d+) is complete"),
}


def _controller_events(sb: Sandbox, recs: list[dict[str, Any]]) -> None:
    """Split each sample with slurmctld's log: scheduler wait, PrologSlurmctld, launch (ms precision)."""
    path = sb.log_dir / "slurmctld.log"
    if not path.is_file():
        return
    events: dict[tuple[str, str], float] = {}
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("["):
            continue
        for name, rx in CTLD_EVENTS.items():
            m = rx.search(line)
            if m and (m.group(1), name) not in events:
                with contextlib.suppress(ValueError):
                    events[(m.group(1), name)] = datetime.fromisoformat(line[1 : line.index("]")]).timestamp()
    for r in recs:
        jid = str(r["job_id"])
        rpc, alloc = events.get((jid, "submit_rpc")), events.get((jid, "allocated"))
        done = events.get((jid, "prolog_done"))
        # Sanity: the controller's submit must fall within the sbatch command (log clock = our clock).
        if (
            rpc is None
            or alloc is None
            or not r["t_before_sbatch"] - 0.01 <= rpc <= r["t_after_sbatch"] + 0.01
        ):
            continue
        first = r["t_first_line"]
        r["queue_wait_ms"] = (alloc - rpc) * 1000
        r["allocated_to_first_line_ms"] = (first - alloc) * 1000
        if done is not None:
            r["prolog_slurmctld_ms"] = (done - alloc) * 1000
            r["launch_ms"] = (first - done) * 1000
        else:
            r["launch_ms"] = (first - alloc) * 1000


def _sacct_cross_check(env: Env, samples: dict[str, list[dict[str, Any]]]) -> None:
    """sacct Submit/Start (1 s resolution) for every sample, when slurmdbd has them."""
    for variant, recs in samples.items():
        if not recs:
            continue
        sb = _cluster(env, variant)
        ids = ",".join(str(r["job_id"]) for r in recs)
        res = sb.run(
            ["sacct", "-X", "-P", "-n", "-j", ids, "-S", "now-1days", "-o", "JobID,Submit,Start"], timeout=60
        )
        found: dict[str, tuple[str, str]] = {}
        for line in res.stdout.splitlines():
            parts = line.split("|")
            if len(parts) == 3:
                found[parts[0]] = (parts[1], parts[2])
        for r in recs:
            sub_start = found.get(str(r["job_id"]))
            if not sub_start:
                continue
            try:
                a, b = (datetime.fromisoformat(x) for x in sub_start)
            except ValueError:
                continue
            r["sacct_start_minus_submit_s"] = (b - a).total_seconds()


# ------------------------------------------------------------------------------------------ 2. srun steps


def bench_steps(env: Env, variants: list[str], n: int, rounds: int) -> dict[str, Any]:
    per_job = math.ceil(n / rounds)
    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for _, variant in _rotations(variants, rounds):
        sb = _cluster(env, variant)
        d = env.bench_dirs[variant]
        script = STEPS_SCRIPT.replace("@DIR@", str(d)).replace("@K@", str(per_job))
        jobid, _, _ = _submit(sb, script, variant)
        text = _wait_file(d / f"steps-{jobid}", jobid, sb, JOB_TIMEOUT + per_job * 5)
        lines = text.splitlines()
        expected = QPU if variant == "qpu" else "none"
        if not lines or lines[-1] != f"env {expected}":
            raise BenchError(
                f"steps job {jobid} ({variant}): last line {lines[-1:]}, expected 'env {expected}'"
            )
        for line in lines[:-1]:
            s, t, e = (float(x) for x in line.split())
            samples[variant].append(
                {"job_id": jobid, "step_start_ms": (t - s) * 1000, "srun_wall_ms": (e - s) * 1000}
            )
        _wait_idle(env, sb, jobid)
        _progress(f"  srun steps: job {jobid} ({variant}) ran {per_job} steps")
    for v in samples:
        samples[v] = samples[v][:n]
    return samples


# ------------------------------------------------------------------------------------------ 3. the hooks


def _hook_env(env: Env, job_id: int, qpu: bool) -> dict[str, str]:
    e = {
        "PATH": HOOK_PATH,
        "SLURM_JOB_ID": str(job_id),
        "SLURM_JOB_USER": USER,
        "SLURM_JOB_ACCOUNT": ACCOUNT,
        "SLURM_JOB_PARTITION": PARTITION,
        "SLURM_JOB_QOS": "normal",
        "SLURM_CONF": str(env.sb.slurm_conf),
        "QAUVERN_HPC_POLICY": str(env.site.policy),
        "QAUVERN_HPC_LOG_FILE": str(env.root / "bench-hooks.log"),
        "QAUVERN_HPC_SCONTROL": "/bin/true",  # the AdminComment update is detached anyway; no fake jobs
    }
    if qpu:
        e["SPANK_QPU"] = QPU
    return e


def _timed(argv: list[str], env: Mapping[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t = time.perf_counter()
    res = subprocess.run(
        argv, env=dict(env), cwd="/", stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )
    return (time.perf_counter() - t) * 1000, res


def bench_hooks(env: Env, n: int, warmup: int) -> dict[str, list[float]]:
    py = sys.executable
    site = env.site
    env_file = site.state_dir / "jobs"
    prolog = [py, "-m", "qauvern_hpc.hooks.prolog"]
    epilog = [py, "-m", "qauvern_hpc.hooks.epilog"]
    guard = 'test -n "$SPANK_QPU" || exit 0; exit 1'
    samples: dict[str, list[float]] = {}
    job_id = 900_000

    def check_prolog(jid: int, res: subprocess.CompletedProcess[str]) -> None:
        path = env_file / f"{jid}.env"
        text = path.read_text() if path.is_file() else ""
        if res.returncode != 0 or "QAUVERN_HPC_ERROR" in text or "SESSION_ID" not in text:
            log = env.root / "bench-hooks.log"
            tail = log.read_text()[-2000:] if log.is_file() else ""
            raise BenchError(
                f"prolog for job {jid} failed (rc {res.returncode}): {res.stderr}\n{text}\n{tail}"
            )

    cases: list[tuple[str, Callable[[int], None]]] = []

    def add(name: str, fn: Callable[[int], None]) -> None:
        cases.append((name, fn))
        samples[name] = []

    def simple(name: str, argv: list[str], qpu: bool) -> None:
        def run(i: int) -> None:
            ms, res = _timed(argv, _hook_env(env, 1, qpu))
            if res.returncode != 0:
                raise BenchError(f"{name}: {argv} exited {res.returncode}: {res.stderr}")
            if i >= warmup:
                samples[name].append(ms)

        add(name, run)

    def qpu_pair(name: str, pro: list[str], epi: list[str]) -> None:
        def run(i: int) -> None:
            nonlocal job_id
            job_id += 1
            e = _hook_env(env, job_id, True)
            ms, res = _timed(pro, e)
            check_prolog(job_id, res)
            ms2, res2 = _timed(epi, e)
            if res2.returncode != 0 or (env_file / f"{job_id}.env").exists():
                raise BenchError(f"epilog for job {job_id} failed: {res2.stderr}")
            if i >= warmup:
                samples[f"prolog_qpu{name}"].append(ms)
                samples[f"epilog_qpu{name}"].append(ms2)

        cases.append((f"prolog_qpu{name}", run))
        samples[f"prolog_qpu{name}"] = []
        samples[f"epilog_qpu{name}"] = []

    simple("exec_true", ["/bin/true"], False)
    simple("python_c_pass", [py, "-c", "pass"], False)
    simple("prolog_fast", prolog, False)
    simple("prolog_fast_wrapper", [str(site.directory / "prolog.sh")], False)
    simple("epilog_fast_wrapper", [str(site.directory / "epilog.sh")], False)
    simple("sh_guard_fast", ["/bin/sh", "-c", guard], False)
    simple("py_stdlib_https_floor", [py, "-c", STDLIB_HTTPS], False)
    simple("py_httpx_client_floor", [py, "-c", "import httpx; httpx.Client()"], False)
    qpu_pair("", prolog, epilog)
    qpu_pair("_wrapper", [str(site.directory / "prolog.sh")], [str(site.directory / "epilog.sh")])

    for i in range(n + warmup):
        order = cases[i % len(cases) :] + cases[: i % len(cases)]
        for _, fn in order:
            fn(i)
        if (i + 1) % 5 == 0 or i + 1 == n + warmup:
            _progress(f"  hooks: {i + 1}/{n + warmup} rounds")
    return samples


# ------------------------------------------------------------------------------------------ 4. profile


def _parse_importtime(stderr: str) -> list[dict[str, Any]]:
    """Top-level modules (and a few known heavy ones) of `python -X importtime`, by cumulative time."""
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)", line)
        if m:
            depth = (len(m.group(3)) - 1) // 2
            rows.append(
                {
                    "module": m.group(4),
                    "self_ms": int(m.group(1)) / 1000,
                    "cumulative_ms": int(m.group(2)) / 1000,
                    "depth": depth,
                }
            )
    return rows


def profile_prolog(env: Env, repeat: int) -> dict[str, Any]:
    py = sys.executable
    out: dict[str, Any] = {}
    job_id = 950_000

    def next_env() -> dict[str, str]:
        nonlocal job_id
        job_id += 1
        return _hook_env(env, job_id, True)

    def release(e: Mapping[str, str]) -> None:
        _timed([py, "-m", "qauvern_hpc.hooks.epilog"], e)

    # python -X importtime (the median run of `repeat` by total)
    runs = []
    for _ in range(repeat):
        e = next_env()
        _, res = _timed([py, "-X", "importtime", "-m", "qauvern_hpc.hooks.prolog"], e)
        release(e)
        runs.append(_parse_importtime(res.stderr))
    runs.sort(key=lambda rows: sum(r["cumulative_ms"] for r in rows if r["depth"] == 0))
    rows = runs[len(runs) // 2]
    top = [r for r in rows if r["depth"] == 0]
    out["importtime_total_ms"] = sum(r["cumulative_ms"] for r in top)
    out["importtime_top_level"] = sorted(top, key=lambda r: -r["cumulative_ms"])[:12]
    heavy = (
        "httpx",
        "pydantic",
        "pydantic_core",
        "qauvern_hpc.ibm.models",
        "qauvern_hpc.ibm.client",
        "qauvern_hpc.ibm",
        "qauvern_hpc.policy.compiled",
        "qauvern_hpc.config",
        "qauvern_hpc.policy.mapping",
        "yaml",
        "ssl",
        "certifi",
        "site",
        "json",
        "logging",
        "dataclasses",
        "typing",
    )
    out["importtime_selected"] = [r for r in rows if r["module"] in heavy]

    # instrumented main()
    phases: list[dict[str, Any]] = []
    for _ in range(repeat):
        e = next_env()
        spawned = time.time()
        ms, res = _timed([py, "-c", PROFILE_CHILD], e)
        ended = time.time()
        release(e)
        if res.returncode != 0:
            raise BenchError(f"profile child failed: {res.stderr}")
        rec = json.loads(res.stdout.strip().splitlines()[-1])
        rec["process_wall"] = ms
        rec["interpreter_startup_and_exit"] = ms - rec["in_script_total"]
        rec["interpreter_startup"] = (rec["wall_start"] - spawned) * 1000
        rec["interpreter_exit"] = (ended - rec["wall_end"]) * 1000
        phases.append(rec)
    out["instrumented_runs"] = phases

    def med(get: Callable[[dict[str, Any]], float]) -> float:
        return summary([get(p) for p in phases])["median"]

    http_names = sorted({f"{m} {p}" for r in phases for m, p, _ in r["http"]})

    def phase(key: str) -> Callable[[dict[str, Any]], float]:
        return lambda p: p["phases"].get(key, 0.0)

    client = med(phase("ibm_client_init"))
    opened = med(phase("open_session"))
    http = {
        name: med(lambda p, name=name: sum(ms for m, path, ms in p["http"] if f"{m} {path}" == name))
        for name in http_names
    }
    main_ms = med(lambda p: p["main"])
    breakdown = {
        "process wall (python -c, instrumented)": med(lambda p: p["process_wall"]),
        "interpreter start-up + site (fork/exec included)": med(lambda p: p["interpreter_startup"]),
        "interpreter exit (finalization, module teardown)": med(lambda p: p["interpreter_exit"]),
        "import qauvern_hpc.hooks.prolog": med(lambda p: p["import_prolog_module"]),
        "import policy/mapping/common/jobenv": med(lambda p: p["import_policy_mapping"]),
        "import ibm_session (httpx, pydantic, IBM client)": med(
            lambda p: p["import_ibm_session_httpx_pydantic"]
        ),
        "main() total": main_ms,
        "  load_policy": med(phase("load_policy")),
        "  open_session total": opened,
        "    IBMClient() (httpcore import, SSL context)": client,
        **{f"    HTTP {name}": ms for name, ms in http.items()},
        "    rest of open_session": opened - client - sum(http.values()),
        "  rest of main (files, record, logging)": main_ms - med(phase("load_policy")) - opened,
    }
    out["breakdown_ms"] = breakdown
    out["http_requests_per_prolog"] = http_names
    return out


# ------------------------------------------------------------------------------------------ report


def _row(metric: str, without: list[float], with_: list[float], *, target: bool, note: str) -> dict[str, Any]:
    a, b = summary(without), summary(with_)
    added = b["median"] - a["median"]
    ratio = b["median"] / a["median"] if a["median"] else math.nan
    lo, hi = median_diff_ci(without, with_)
    verdict = "info"
    if target:
        verdict = "PASS" if added < TARGET_MS else "FAIL"
        if lo <= TARGET_MS <= hi:
            verdict += "?"  # the interval straddles the target: this run cannot decide
    return {
        "metric": metric,
        "note": note,
        "without": a,
        "with": b,
        "added_ms": added,
        "added_ci95_ms": [lo, hi],
        "ratio": ratio,
        "target_ms": TARGET_MS if target else None,
        "verdict": verdict,
    }


def build_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    js, st, hk = results["job_start"], results["srun_steps"], results["hooks"]

    def col(samples: dict[str, list[dict[str, Any]]], v: str, key: str) -> list[float]:
        return [s[key] for s in samples.get(v, []) if key in s]

    def js_row(metric: str, key: str, target: bool, note: str) -> dict[str, Any]:
        return _row(metric, col(js, "plain", key), col(js, "qpu", key), target=target, note=note)

    rows = [
        js_row(
            "job start: submit -> first line", "submit_to_running_ms", True, "plain vs --qpu, same cluster"
        ),
        js_row("  sbatch command", "sbatch_ms", False, "runuser + sbatch + submit RPC + job_submit.lua"),
        js_row(
            "  scheduler wait", "queue_wait_ms", False, "slurmctld log: submit RPC -> allocated (1 s tick)"
        ),
        js_row(
            "  allocated -> first line", "allocated_to_first_line_ms", True, "the same cost without the tick"
        ),
        js_row("    PrologSlurmctld", "prolog_slurmctld_ms", False, "slurmctld log: allocated -> configured"),
        js_row("    batch launch", "launch_ms", False, "configured -> first line (slurmd, slurmstepd, bash)"),
    ]
    if js.get("bare"):
        rows += [
            _row(
                "job start, no --qpu: hooks installed",
                col(js, "bare", "submit_to_running_ms"),
                col(js, "plain", "submit_to_running_ms"),
                target=True,
                note="bare cluster vs qauvern cluster, submit -> first line",
            ),
            _row(
                "  allocated -> first line, no --qpu",
                col(js, "bare", "allocated_to_first_line_ms"),
                col(js, "plain", "allocated_to_first_line_ms"),
                target=True,
                note="the same without the scheduler tick",
            ),
        ]
    rows.append(
        _row(
            "srun step start (before srun -> task)",
            col(st, "plain", "step_start_ms"),
            col(st, "qpu", "step_start_ms"),
            target=True,
            note="plain vs --qpu allocation",
        )
    )
    rows.append(
        _row(
            "srun step wall (srun true-like)",
            col(st, "plain", "srun_wall_ms"),
            col(st, "qpu", "srun_wall_ms"),
            target=False,
            note="whole srun",
        )
    )
    if st.get("bare"):
        rows.append(
            _row(
                "srun step start, no --qpu: plugin installed",
                col(st, "bare", "step_start_ms"),
                col(st, "plain", "step_start_ms"),
                target=True,
                note="bare vs qauvern cluster",
            )
        )
    rows += [
        _row(
            "prolog --qpu in-process (no hookd) vs fast",
            hk["prolog_fast"],
            hk["prolog_qpu"],
            target=False,
            note="python -m: the fallback when hookd is down",
        ),
        _row(
            "prolog --qpu via site wrapper vs fast",
            hk["prolog_fast_wrapper"],
            hk["prolog_qpu_wrapper"],
            target=True,
            note="what slurmctld execs",
        ),
        _row(
            "prolog fast path (python -m) vs exec true",
            hk["exec_true"],
            hk["prolog_fast"],
            target=True,
            note="every job pays this",
        ),
        _row(
            "prolog fast path via wrapper vs exec true",
            hk["exec_true"],
            hk["prolog_fast_wrapper"],
            target=True,
            note="every job pays this",
        ),
        _row(
            "epilog fast path via wrapper vs exec true",
            hk["exec_true"],
            hk["epilog_fast_wrapper"],
            target=False,
            note="after the job; every job",
        ),
        _row(
            "python -c pass vs exec true",
            hk["exec_true"],
            hk["python_c_pass"],
            target=False,
            note="interpreter floor",
        ),
        _row(
            "sh guard fast path vs exec true",
            hk["exec_true"],
            hk["sh_guard_fast"],
            target=False,
            note="proposal: test SPANK_QPU in sh",
        ),
        _row(
            "stdlib https floor vs python -c pass",
            hk["python_c_pass"],
            hk["py_stdlib_https_floor"],
            target=False,
            note="python + json/ssl/http.client + SSL context",
        ),
        _row(
            "httpx.Client floor vs python -c pass",
            hk["python_c_pass"],
            hk["py_httpx_client_floor"],
            target=False,
            note="python + import httpx + httpx.Client()",
        ),
        _row(
            "epilog --qpu (python -m) vs exec true",
            hk["exec_true"],
            hk["epilog_qpu"],
            target=False,
            note="after the job; not on the start path",
        ),
    ]
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    headers = [
        "metric",
        "w/o",
        "with",
        "added",
        "added CI95",
        "ratio",
        "p95 w/o",
        "p95 with",
        "target",
        "result",
    ]
    body = []
    for r in rows:
        lo, hi = r["added_ci95_ms"]
        body.append(
            [
                r["metric"],
                r["without"]["median"],
                r["with"]["median"],
                r["added_ms"],
                "-" if math.isnan(lo) else f"{lo:.0f}..{hi:.0f}",
                r["ratio"],
                r["without"]["p95"],
                r["with"]["p95"],
                "< 100" if r["target_ms"] else "-",
                r["verdict"],
            ]
        )
    legend = "\n".join(f"  {r['metric'].strip()}: {r['note']}" for r in rows)
    return (
        "ms; w/o and with are medians, added = median(with) - median(w/o) with a bootstrap 95 % interval\n"
        + table(headers, body)
        + "\nresult: PASS/FAIL by the median; '?' when the 95 % interval straddles the target (undecided)"
        + "\n\nwhat each row compares (w/o -> with):\n"
        + legend
    )


def interpret(results: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Plain-language conclusions from the numbers (printed and stored in the JSON)."""
    by = {r["metric"].strip(): r for r in rows}
    notes: list[str] = []
    js = by["job start: submit -> first line"]
    base, added = js["without"], js["added_ms"]
    lo, hi = js["added_ci95_ms"]
    sb, wait = by["sbatch command"], by["scheduler wait"]
    af, pro, launch = by["allocated -> first line"], by["PrologSlurmctld"], by["batch launch"]
    alo, ahi = af["added_ci95_ms"]
    notes.append(
        f"Job start without --qpu: median {base['median']:.0f} ms (min {base['min']:.0f}, p95 "
        f"{base['p95']:.0f}): sbatch command {sb['without']['median']:.0f}, scheduler wait "
        f"{wait['without']['median']:.0f}, PrologSlurmctld {pro['without']['median']:.0f}, batch launch "
        f"{launch['without']['median']:.0f} (medians of each part, ms). --qpu adds {added:.0f} ms end to end "
        f"(95 % interval {lo:.0f}..{hi:.0f}) and {af['added_ms']:.0f} ms from allocation to the first line "
        f"(95 % interval {alo:.0f}..{ahi:.0f}), of which PrologSlurmctld {pro['added_ms']:.0f} ms; the "
        f"sbatch command (job_submit.lua reading the policy) adds {sb['added_ms']:.0f} ms."
    )
    wspread = wait["without"]["p95"] - wait["without"]["min"]
    notes.append(
        f"Scheduling granularity dominates the baseline: a submitted job waits for the backfill scheduler's "
        f"next pass (bf_interval=1 here: {wait['without']['min']:.0f}..{wait['without']['p95']:.0f} ms, "
        f"min..p95), a spread of {wspread:.0f} ms that is the same with and without --qpu (dithered submit "
        "times). The allocated -> first line row removes it: it is the low-noise measure of what --qpu "
        + (
            "adds, and the added cost stands well clear of the noise there."
            if alo > 0
            else "adds; even there the added cost is within the noise."
        )
    )
    notes.append(f"Scheduler settings of the sandbox: {results.get('scheduler_parameters', '?')}.")
    cross = results.get("sacct_cross_check_s", {})
    if cross:
        notes.append(
            "Cross-check, sacct Start - Submit (1 s resolution), medians: "
            + ", ".join(f"{v} {s:.0f} s" for v, s in cross.items())
            + ": consistent with the sub-second figures, too coarse to show the added cost."
        )
    pq = by["prolog --qpu in-process (no hookd) vs fast"]
    pw = by["prolog --qpu via site wrapper vs fast"]
    pf = by["prolog fast path via wrapper vs exec true"]
    guard = by["sh guard fast path vs exec true"]["with"]["median"]
    share = 100 * pw["added_ms"] / af["added_ms"] if af["added_ms"] > 0 else math.nan
    notes.append(
        f"The --qpu prolog through the site wrapper (sh -> python -I -S hookc.py -> hookd) takes "
        f"{pw['with']['median']:.0f} ms (p95 {pw['with']['p95']:.0f}), {pw['added_ms']:.0f} ms more than "
        f"its fast path: {share:.0f} % of what --qpu adds from allocation to first line. Without hookd "
        f"(the in-process fallback, python -m) it takes {pq['with']['median']:.0f} ms "
        f"(p95 {pq['with']['p95']:.0f}). "
        f"Every job, --qpu or not, pays the fast path: {pf['with']['median']:.0f} ms through the site "
        f"wrapper, a sh-level SPANK_QPU test (alone: {guard:.0f} ms); no Python starts."
    )
    if "job start, no --qpu: hooks installed" in by:
        h = by["job start, no --qpu: hooks installed"]
        hl, hh = h["added_ci95_ms"]
        notes.append(
            f"Jobs without --qpu start {h['added_ms']:.0f} ms later (medians; 95 % interval "
            f"{hl:.0f}..{hh:.0f}) on the qauvern cluster than on a bare one: the prolog's fast path "
            "plus loading the SPANK plugin and job_submit.lua."
        )
    st = by["srun step start (before srun -> task)"]
    sl, sh = st["added_ci95_ms"]
    notes.append(
        f"srun steps inside an allocation start in {st['without']['median']:.0f} ms without, "
        f"{st['with']['median']:.0f} ms with --qpu (added {st['added_ms']:.0f} ms, 95 % interval "
        f"{sl:.0f}..{sh:.0f}): the SPANK remote path (task_init_privileged reading the job's env file) "
        + ("is within the noise." if sl <= 0 <= sh or abs(st["added_ms"]) < 10 else "is measurable.")
    )
    prof = results.get("profile", {}).get("breakdown_ms", {})
    if prof:
        parts = "; ".join(f"{k.strip()} {v:.0f}" for k, v in prof.items() if not k.startswith("process wall"))
        notes.append(f"Where the --qpu prolog's time goes (ms, medians of 5 instrumented runs): {parts}.")
        stdlib = by["stdlib https floor vs python -c pass"]
        httpx_ms = by["httpx.Client floor vs python -c pass"]["with"]["median"]
        notes.append(
            f"Floors measured here: python -c pass {stdlib['without']['median']:.0f} ms; python importing "
            f"json/ssl/http.client and building an SSL context {stdlib['with']['median']:.0f} ms; python "
            f"importing httpx and building an httpx.Client {httpx_ms:.0f} ms."
        )
    notes.append(
        "The emulator answers on loopback in a few ms: against IBM Cloud, the prolog's IAM token request and "
        "session POST (two hosts, two TLS handshakes) add real network round trips on top of these figures."
    )
    return notes


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=MIN_JOBS, help=f"samples per variant (>= {MIN_JOBS})")
    ap.add_argument("--json", default="bench-results/job_start.json", help="where to write the results")
    ap.add_argument("--rounds", type=int, default=2, help="batch jobs per variant for the srun steps")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured runs per variant first")
    ap.add_argument("--seed", type=int, default=1, help="seed of the submit-time dither")
    ap.add_argument("--no-bare", dest="bare", action="store_false", help="skip the cluster without hooks")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs) under /tmp")
    args = ap.parse_args(argv)
    if args.jobs < MIN_JOBS:
        ap.error(f"--jobs must be at least {MIN_JOBS}")
    problems = missing_prerequisites()
    if problems:
        print("cannot run: " + "; ".join(problems), file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)

    started = time.monotonic()
    variants = ["plain", "qpu"] + (["bare"] if args.bare else [])
    results: dict[str, Any] = {"benchmark": "job_start", "jobs": args.jobs, "machine": machine()}
    try:
        with environment(args.bare, args.keep) as env:
            results["setup_seconds"] = env.setup_seconds
            conf = env.sb.slurm_conf.read_text()
            m = re.search(r"^SchedulerParameters=(.*)$", conf, re.M)
            results["scheduler_parameters"] = (
                f"SchedulerType=sched/backfill, SchedulerParameters={m.group(1) if m else '(default)'}"
            )
            _progress(f"clusters up in {sum(env.setup_seconds.values()):.1f} s ({env.root})")
            t = time.monotonic()
            results["job_start"] = bench_job_start(env, variants, args.jobs, args.warmup, args.seed)
            results["phase_seconds"] = {"job_start": time.monotonic() - t}
            t = time.monotonic()
            results["srun_steps"] = bench_steps(env, variants, args.jobs, max(1, args.rounds))
            results["phase_seconds"]["srun_steps"] = time.monotonic() - t
            t = time.monotonic()
            results["hooks"] = bench_hooks(env, args.jobs, args.warmup)
            results["phase_seconds"]["hooks"] = time.monotonic() - t
            t = time.monotonic()
            results["profile"] = profile_prolog(env, 5)
            results["phase_seconds"]["profile"] = time.monotonic() - t
            reqs = [r for r in env.emu.requests if r.status is not None]
            results["emulator_requests"] = {
                "count_by_path": _count(f"{r.method} {_path_kind(r.path)}" for r in reqs),
                "server_ms_median_by_path": {
                    k: summary([r.duration_ms for r in reqs if f"{r.method} {_path_kind(r.path)}" == k])[
                        "median"
                    ]
                    for k in {f"{r.method} {_path_kind(r.path)}" for r in reqs}
                },
            }
            results["prolog_log_ms"] = _prolog_log_ms(env.site.log_file)
    except KeyboardInterrupt:
        print("interrupted: clusters stopped", file=sys.stderr)
        return 130
    except (BenchError, SandboxError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1

    cross = {}
    for v, recs in results["job_start"].items():
        vals = [r["sacct_start_minus_submit_s"] for r in recs if "sacct_start_minus_submit_s" in r]
        if vals:
            cross[v] = summary(vals)["median"]
    results["sacct_cross_check_s"] = cross
    rows = build_rows(results)
    results["rows"] = rows
    results["conclusions"] = interpret(results, rows)
    results["total_seconds"] = time.monotonic() - started

    print(render(rows))
    print()
    for line in results["conclusions"]:
        print("- " + line)
    prof = results["profile"]
    print("\nprolog imports (python -X importtime, top level, cumulative ms):")
    for r in prof["importtime_top_level"][:8]:
        print(f"  {r['cumulative_ms']:7.1f}  {r['module']}")
    print(f"\nHTTP requests seen by the emulator: {results['emulator_requests']['count_by_path']}")
    out = write_json(args.json, results)
    print(
        f"\n{len(variants)} variants x {args.jobs} samples, {results['total_seconds']:.0f} s; results: {out}"
    )
    failed = [r for r in rows if r["verdict"] == "FAIL"]  # decided failures only
    return 1 if failed else 0


def _path_kind(path: str) -> str:
    path = path.split("?")[0]
    return re.sub(r"/sessions/[^/]+", "/sessions/ID", path)


def _count(items: Iterator[str] | Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        out[it] = out.get(it, 0) + 1
    return dict(sorted(out.items()))


def _prolog_log_ms(path: Path) -> dict[str, float]:
    """The prolog's own 'in N ms' log lines (after interpreter start-up and first imports)."""
    if not path.is_file():
        return {}
    vals = [float(m.group(1)) for m in re.finditer(r"acquired .* in (\d+) ms$", path.read_text(), re.M)]
    return summary(vals)


if __name__ == "__main__":
    sys.exit(main())
