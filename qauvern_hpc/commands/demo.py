"""`qauvern-hpc demo`: the whole product on one machine, in about a minute."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from qauvern_hpc.core.errors import QauvernError, UsageError

HELP = "run the end-to-end demo on a throwaway cluster and emulator"
DESCRIPTION = """\
Brings up a private Slurm 22.05 cluster (munge, MariaDB, slurmdbd, slurmctld, slurmd on loopback) with the
--qpu SPANK plugin, job_submit.lua and the controller hooks wired in, and the IBM Quantum emulator; then
submits QPU jobs as researchers of two projects, shows a forbidden and a malformed request being refused
at submit time, and prints what happened: which instance and IBM session each job used, the quantum seconds
IBM charged, and the instances' 28-day usage. Then it runs the admin side as cron would: `collect` (sacct +
IBM sessions -> the usage ledger), `usage --by account`, and `rebalance --yes` (allocations moved at IBM,
the shares mirrored into Slurm), then `doctor`, each as the real command against the same config, and prints
the results. Last it writes the HTML usage report (`report --html`) and prints its path.
Everything else is removed at the end (unless --keep).

Needs root and Debian's Slurm packages (run `bash .ci/setup.sh` once on a fresh machine)."""
EPILOG = """\
examples:
  qauvern-hpc demo
  qauvern-hpc demo --keep        # leave the cluster and emulator running; prints how to use and stop them
  qauvern-hpc demo --json        # the results as JSON on stdout
  qauvern-hpc demo --report ~/qpu-report.html    # keep the HTML usage report there

exit codes: 0 every job completed, 1 a job did not complete, the Slurm packages are missing or a daemon
would not start (the message says which), 2 not root."""


DEFAULT_REPORT = Path(tempfile.gettempdir()) / "qauvern-hpc-demo-report.html"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", help="where to put the cluster and site (default: a new dir in /tmp)")
    parser.add_argument(
        "--keep", action="store_true", help="do not tear down at the end (SIGINT, SIGTERM or SIGHUP stops it)"
    )
    parser.add_argument(
        "--report",
        metavar="FILE",
        help=f"write the HTML usage report here (default: {DEFAULT_REPORT}; kept after the demo)",
    )
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for the jobs (default 180)"
    )
    parser.add_argument(
        "--ru-only",
        action="store_true",
        help="serve IBM's replies without their time fields, in resource units only (the removal IBM has "
        "announced): the figures must come out the same",
    )


def _say(msg: str) -> None:
    print(f"demo: {msg}", file=sys.stderr, flush=True)


JOBS: list[dict[str, Any]] = [
    {"user": "qalice", "account": "physics", "partition": None, "qpu": "ibm_torino", "seconds": 8},
    {"user": "qbob", "account": "physics", "partition": None, "qpu": "ibm_torino,ibm_fez", "seconds": 5},
    {"user": "qcarol", "account": "chem", "partition": "quantum", "qpu": "ibm_fez", "seconds": 12},
]
REFUSED: list[dict[str, Any]] = [
    {
        "why": "chemistry is not mapped on partition debug",
        "user": "qcarol",
        "account": "chem",
        "partition": "debug",
        "qpu": "ibm_fez",
    },
    {
        "why": "chemistry may not use ibm_torino",
        "user": "qcarol",
        "account": "chem",
        "partition": "quantum",
        "qpu": "ibm_torino",
    },
    {"why": "malformed --qpu", "user": "qalice", "account": "physics", "partition": None, "qpu": ";rm -rf /"},
]


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.devtools.sandbox import missing_prerequisites

    if os.geteuid() != 0:
        raise UsageError("the demo starts a private Slurm cluster and must run as root")
    problems = missing_prerequisites()
    if problems:
        raise QauvernError(
            "cannot run the demo: " + "; ".join(problems), hint="run `bash .ci/setup.sh` first"
        )

    from qauvern_hpc.devtools import qpu_site
    from qauvern_hpc.devtools.emulator import run_emulator
    from qauvern_hpc.devtools.sandbox import Sandbox, SubmitError
    from qauvern_hpc.devtools.signals import Stopped, stop_on_signals

    base = (
        Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="qauvern-hpc-demo-", dir="/tmp"))
    )
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    started = time.monotonic()
    result: dict[str, Any] = {"workdir": str(base), "jobs": [], "refused": []}
    sb: Sandbox | None = None
    site: qpu_site.Site | None = None
    with stop_on_signals(), run_emulator(qpu_site.emulator_seed(), clock="real") as emu:
        try:
            _say(f"IBM Quantum emulator at {emu.base_url}")
            if args.ru_only:
                emu.remove_time_fields()
                _say("IBM's time fields removed: usage in RUs only (seconds at each instance's own rate)")
            result["ru_only"] = bool(args.ru_only)
            _say("building the SPANK plugin and rendering the policy")
            site, hooks = qpu_site.wired_site(base / "site", emu.base_url)
            sb = Sandbox(base / "cluster")
            _say("starting Slurm (munge, MariaDB, slurmdbd, slurmctld, slurmd) ...")
            seconds = sb.up(hooks=hooks, settings=qpu_site.SANDBOX_SETTINGS)
            sb.add_accounts(qpu_site.ACCOUNTS)
            qpu_site.set_hook_env(site, {"SLURM_CONF": str(sb.slurm_conf)})
            _say(f"cluster up in {seconds:.0f}s")
            script = sb.jobs_dir / "qpu_job.py"
            shutil.copy(qpu_site.JOB_SCRIPT, script)
            script.chmod(0o755)

            for spec in REFUSED:
                try:
                    sb.submit(
                        "true\n",
                        user=spec["user"],
                        account=spec["account"],
                        partition=spec["partition"],
                        extra_args=[f"--qpu={spec['qpu']}"],
                    )
                    message = "ACCEPTED (unexpected)"
                except SubmitError as exc:
                    message = _first_qpu_line(str(exc))
                result["refused"].append({**spec, "message": message})
                _say(f"refused at submit ({spec['why']}): {message}")

            ids = []
            for spec in JOBS:
                jobid = sb.submit(
                    f"/usr/bin/python3 {script} {spec['seconds']}\n",
                    user=spec["user"],
                    account=spec["account"],
                    partition=spec["partition"],
                    extra_args=[f"--qpu={spec['qpu']}"],
                )
                ids.append(jobid)
                _say(f"submitted job {jobid}: {spec['user']} ({spec['account']}) --qpu={spec['qpu']}")
            for jobid, spec in zip(ids, JOBS, strict=True):
                state = sb.wait_job(
                    jobid, states=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), timeout=args.timeout
                )
                result["jobs"].append(_job_result(sb, emu, jobid, spec, state))
            result["instances"] = _instances(emu)
            _operations(result, site.config, sb.slurm_conf, Path(args.report or DEFAULT_REPORT))
            result["seconds"] = round(time.monotonic() - started, 1)
            _report(result, as_json=bool(args.json))
            if args.keep:
                _say(
                    f'kept: eval "$(qauvern-hpc sandbox env --workdir {sb.workdir})"; '
                    "Ctrl-C, SIGTERM or SIGHUP stops it"
                )
                while True:
                    time.sleep(3600)
        except KeyboardInterrupt as exc:
            _say(f"stopped by {exc}" if isinstance(exc, Stopped) else "interrupted")
        finally:
            # Also with --keep (stopped by a signal, or failed): stop everything that was started.
            if site is not None:
                qpu_site.stop_hookd(site)
            if sb is not None:
                _say("stopping the cluster")
                try:
                    sb.down()
                except QauvernError as exc:
                    _say(f"cleanup: {exc}")
            if not args.workdir and not args.keep:
                shutil.rmtree(base, ignore_errors=True)
    return 0 if all(j["state"] == "COMPLETED" for j in result["jobs"]) and result["jobs"] else 1


def _admin(argv: list[str], config: Path, slurm_conf: Path) -> dict[str, Any]:
    """Run `qauvern-hpc --json ARGV` as an admin (or cron) would; its JSON, or the error."""
    cmd = [sys.executable, "-m", "qauvern_hpc", "-c", str(config), "--json", *argv]
    proc = subprocess.run(
        cmd, env={**os.environ, "SLURM_CONF": str(slurm_conf)}, capture_output=True, text=True, timeout=300
    )
    try:
        doc: Any = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        doc = None
    out: dict[str, Any] = {"command": "qauvern-hpc " + " ".join(argv), "exit": proc.returncode, "json": doc}
    if proc.returncode != 0:
        out["error"] = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
    return out


def _operations(result: dict[str, Any], config: Path, slurm_conf: Path, report: Path) -> None:
    """The admin side: collect, usage, rebalance, doctor, the HTML report (each skipped with a note if not
    installed)."""
    from qauvern_hpc.cli import COMMANDS

    steps = [
        ("collect", ["collect"], "collecting quantum usage from sacct and IBM into the ledger"),
        ("usage", ["usage", "--by", "account"], "usage per Slurm account"),
        ("rebalance", ["rebalance", "--yes"], "rebalancing allocations (IBM) and shares (Slurm)"),
        ("doctor", ["doctor"], "checking the whole installation"),
        ("report", ["report", "--html", str(report)], "writing the HTML usage report"),
    ]
    ops: dict[str, Any] = {}
    for name, argv, what in steps:
        if name not in COMMANDS:
            ops[name] = {"command": f"qauvern-hpc {' '.join(argv)}", "exit": None, "skipped": "not installed"}
            continue
        _say(what)
        ops[name] = _admin(argv, config, slurm_conf)
        if ops[name]["exit"] != 0:
            _say(f"{ops[name]['command']} exited {ops[name]['exit']}: {ops[name].get('error', '')}")
    result["operations"] = ops
    if ops.get("report", {}).get("exit") == 0:
        result["report"] = str(report)
        _say(f"usage report written to {report}")


def _first_qpu_line(text: str) -> str:
    for line in text.splitlines():
        if "qpu:" in line:
            return line[line.index("qpu:") :].strip()
    return text.strip().splitlines()[-1] if text.strip() else ""


def _job_result(sb: Any, emu: Any, jobid: int, spec: dict[str, Any], state: str) -> dict[str, Any]:
    from qauvern_hpc.record.admin_comment import parse_admin_comment

    deadline = time.monotonic() + 15
    record = None
    while record is None and time.monotonic() < deadline:
        record = parse_admin_comment(sb.job(jobid, ("JobID", "AdminComment")).get("AdminComment"))
        if record is None:
            time.sleep(0.3)
    from qauvern_hpc.devtools import qpu_site
    from qauvern_hpc.ibm import Endpoints, IBMClient

    used: list[dict[str, Any]] = []
    with IBMClient(qpu_site.API_KEY, Endpoints.single(emu.base_url)) as client:
        crn_of = {i.name: i.crn for i in client.list_instances()}
        for resource, session_id in record.resources if record else ():
            crn = crn_of.get(record.instance if record else "", "")
            if not crn or not session_id:
                continue
            sess = client.get_session(crn, session_id)
            # The epilog releases the session when the job ends; give it a moment to land.
            until = time.monotonic() + 20
            while sess.state != "closed" and time.monotonic() < until:
                time.sleep(0.5)
                sess = client.get_session(crn, session_id)
            quantum = sum(j.quantum_seconds or 0.0 for j in client.session_jobs(crn, session_id))
            used.append(
                {
                    "resource": resource,
                    "session": session_id,
                    "instance": record.instance if record else "",
                    "mode": sess.mode,
                    "session_state": sess.state,
                    "quantum_seconds": round(quantum, 1),
                }
            )
    return {
        "job": jobid,
        **{k: spec[k] for k in ("user", "account", "qpu")},
        "state": state,
        "rule": record.rule if record else None,
        "resources": used,
    }


def _instances(emu: Any) -> list[dict[str, Any]]:
    from qauvern_hpc.devtools import qpu_site
    from qauvern_hpc.ibm import Endpoints, IBMClient

    out = []
    with IBMClient(qpu_site.API_KEY, Endpoints.single(emu.base_url)) as client:
        for inst in client.list_instances():
            usage = client.instance_usage(inst.crn)
            out.append(
                {
                    "instance": inst.name,
                    "allocation_seconds": inst.allocation_seconds,
                    "consumed_28d_seconds": usage.consumed_seconds,
                    "fairness": round(usage.consumed_seconds / inst.allocation_seconds, 6)
                    if inst.allocation_seconds
                    else None,
                }
            )
    return out


def _report(result: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    t = Table(title="Refused at submit time (no job, no node touched)")
    for col in ("user", "account", "partition", "--qpu", "message"):
        t.add_column(col)
    for r in result["refused"]:
        t.add_row(r["user"], r["account"], r["partition"] or "debug", r["qpu"], r["message"])
    console.print(t)
    t = Table(title="QPU jobs: what each used (from sacct's AdminComment and IBM)")
    for col in (
        "job",
        "user",
        "account",
        "state",
        "rule",
        "resource",
        "instance",
        "session",
        "mode",
        "released",
        "quantum s",
    ):
        t.add_column(col)
    for j in result["jobs"]:
        for r in j["resources"] or [{}]:
            t.add_row(
                str(j["job"]),
                j["user"],
                j["account"],
                j["state"],
                j["rule"] or "-",
                r.get("resource", "-"),
                r.get("instance", "-"),
                str(r.get("session", "-"))[:12],
                str(r.get("mode", "-")),
                "yes" if r.get("session_state") == "closed" else "no",
                str(r.get("quantum_seconds", "-")),
            )
    console.print(t)
    t = Table(title="IBM Quantum instances (28-day rolling usage)")
    for col in ("instance", "allocation s", "consumed s", "fairness"):
        t.add_column(col)
    for i in result["instances"]:
        t.add_row(
            i["instance"], str(i["allocation_seconds"]), str(i["consumed_28d_seconds"]), str(i["fairness"])
        )
    console.print(t)
    _report_operations(console, result.get("operations", {}))
    console.print(f"demo finished in {result['seconds']}s")


def _report_operations(console: Any, ops: dict[str, Any]) -> None:
    from rich.table import Table

    for name, op in ops.items():
        if op.get("exit") != 0:
            why = op.get("skipped") or op.get("error") or f"exit {op.get('exit')}"
            console.print(f"[bold]{op['command']}[/bold]: {why}")
            continue
        doc = op.get("json") or {}
        if name == "rebalance":
            t = Table(title=f"{op['command']}: {doc.get('status', '')} {doc.get('run_id', '')}".strip())
            for col in ("instance", "allocation s", "limit s", "28d used s", "why"):
                t.add_column(col, overflow="fold")
            plan = doc.get("plan", doc)
            for row in plan.get("instances", []):
                alloc, limit = row.get("allocation_seconds", {}), row.get("limit_seconds", {})
                t.add_row(
                    str(row.get("instance")),
                    f"{alloc.get('current')} -> {alloc.get('new')}",
                    f"{limit.get('current')} -> {limit.get('new')}",
                    str(row.get("consumed_28d_seconds")),
                    str(row.get("why", "")),
                )
            console.print(t)
        elif name == "collect":
            records = sum(int(c.get("qpu_records") or 0) for c in doc.get("clusters", []))
            console.print(
                f"[bold]{op['command']}[/bold]: {records} QPU job records from sacct, "
                f"{doc.get('sessions', 0)} IBM sessions read, {doc.get('finalized', 0)} job runs charged, "
                f"{doc.get('still_pending', 0)} still pending, {len(doc.get('errors') or [])} errors"
            )
        elif name == "doctor":
            checks = doc.get("checks", [])
            counts = {
                k: sum(1 for c in checks if c.get("status") == k) for k in ("ok", "warn", "fail", "skip")
            }
            console.print(
                f"[bold]{op['command']}[/bold]: {counts['ok']} ok, {counts['warn']} warnings, "
                f"{counts['fail']} failed, {counts['skip']} skipped"
            )
            for c in checks:
                if c.get("status") in ("warn", "fail"):
                    console.print(f"  {c['status']}: {c['name']}: {c['detail']}")
        elif name == "report":
            console.print(f"[bold]usage report[/bold]: {doc.get('html')} (open it in a browser)")
        elif name == "usage":
            by = str(doc.get("by", ""))
            t = Table(title=f"{op['command']} ({(doc.get('window') or {}).get('label', '')})")
            for col in (by, "jobs", "quantum s", "QAU"):
                t.add_column(col, justify="left" if col == by else "right")
            for row in doc.get("rows", []):
                t.add_row(
                    str(row.get(by)),
                    str(row.get("jobs")),
                    f"{float(row.get('quantum_seconds') or 0):.1f}",
                    f"{float(row.get('qau') or 0):.6f}",
                )
            console.print(t)
        else:
            console.print(f"[bold]{op['command']}[/bold]")
            console.print_json(data=doc)
