"""`qauvern-hpc admit`: the admission controller (run, once, status, why, failsafe). Arguments and rendering
only; the work is in `qauvern_hpc.admission.service`."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from typing import Any

from qauvern_hpc.core.errors import ConfigError, ExitCode, UsageError

HELP = "admission controller: start a QPU job in Slurm only when IBM will serve it (run, status, why)"
READS_API_KEY = True
DESCRIPTION = """\
The admission controller decides, every period, how many QPU jobs of each (instance, backend) pair may hold
Slurm resources now, from what IBM reports: the backend's status (online, paused, maintenance), its queue
and wait estimate, the instance's usage against its limit, and the fair-share order among instances. It
writes that as `GrpTRES=license/qpu_<instance>__<backend>=N` on each cluster's root association (one sacctmgr
call per period, only when something changed). Jobs beyond the cap stay PENDING with reason AssocGrpLicense
and their pair license in `squeue -o %W`; `admit why JOBID` says why in words. It never drains a node,
never refuses a job at submit and never cancels one. With `admission.enabled` job_submit.lua adds the pair
licenses (run `render-policy`; slurm.conf must declare them: `render-policy --print slurm`) and the
rebalancer stops gating instances (one writer).

  run        the service (systemd: slurm-conf/qauvern-hpc-admit.service): one period every
             `admission.period`; SIGTERM/SIGINT stop it between periods; one controller at a time
  once       one period now (--dry-run: decide and show, write nothing)
  status     the last decision of every pair, from the state file (no root, no IBM)
  why JOBID  why a QPU job pends, in words (no root: squeue and the state file)
  failsafe   apply each resource's fail mode now (open: no limit, closed: 0), for a stopped or dead
             controller (ExecStopPost; --if-stale only when the heartbeat is older than hold_for)

If IBM cannot be read, the last decision is held for `admission.hold_for`, then each pair takes its
resource's `fail_mode`. If Slurm cannot be read, nothing is written that period. A killed controller leaves
Slurm's caps as they were: pending jobs stay pending, nothing is lost; systemd restarts it and it resumes from
{state_dir}/admission/state.json."""
EPILOG = """\
examples:
  qauvern-hpc admit run                         the service (as root, on the controller host)
  qauvern-hpc admit once --dry-run --json       what the controller would decide now
  qauvern-hpc admit status                      caps, reasons and the heartbeat's age
  qauvern-hpc admit why 4711                    why job 4711 pends
  qauvern-hpc admit failsafe --if-stale         from a timer: fail modes if the controller is dead

exit codes: 0 ok, 1 a Slurm write failed or the job is unknown, 2 bad usage, 3 invalid config or admission
not enabled, 4 Slurm or IBM unavailable, 5 another controller holds the lock."""


ACTIONS = ("run", "once", "status", "why", "failsafe")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", choices=ACTIONS, metavar="ACTION", help="run, once, status, why or failsafe"
    )
    parser.add_argument("job", nargs="?", metavar="JOBID", help="why: the job to explain")
    parser.add_argument("--max-periods", type=int, metavar="N", help="run: stop after N periods")
    parser.add_argument(
        "--dry-run", action="store_true", help="once, failsafe: decide and show, write nothing"
    )
    parser.add_argument(
        "--if-stale", action="store_true", help="failsafe: only when the heartbeat is older than hold_for"
    )


def _config(args: argparse.Namespace, *, enabled: bool) -> Any:
    from qauvern_hpc.commands.admin_common import load_admin_config

    cfg = load_admin_config(args)
    if enabled and not cfg.admission.enabled:
        raise ConfigError(
            f"admission is not enabled in {args.config}",
            hint="set `admission: {enabled: true}`, run render-policy, add the pair licenses to slurm.conf",
        )
    return cfg


def _print(args: argparse.Namespace, doc: Any, text: str) -> None:
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(text)


def run(args: argparse.Namespace) -> int:
    action = args.action
    if (action == "why") != (args.job is not None):
        raise UsageError("`admit why` takes one JOBID; the other actions take none")
    if action == "why":
        return _why(args)
    if action == "status":
        return _status(args)
    if action == "failsafe":
        return _failsafe(args)
    return _run(args, once=action == "once")


def _run(args: argparse.Namespace, *, once: bool) -> int:
    from qauvern_hpc.admission import service

    cfg = _config(args, enabled=True)
    dry = bool(getattr(args, "dry_run", False))
    controller = service.Controller(
        service.specs_of(cfg), service.settings_of(cfg), cfg.slurm.state_dir, service.sources_of(cfg, args),
        dry_run=dry,
    )  # fmt: skip
    with service.controller_lock(cfg.slurm.state_dir) if not dry else contextlib.nullcontext():
        if once:
            report = controller.step()
            doc = {**report.__dict__, "state_file": str(service.state_path(cfg.slurm.state_dir))}
            _print(args, doc, _pairs_text(report.pairs) + "".join(f"\nerror: {e}" for e in report.errors))
            return ExitCode.OK if report.decided and not report.errors else ExitCode.UNAVAILABLE
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        controller.run(stop, max_periods=args.max_periods)
    return ExitCode.OK


def _pairs_text(pairs: list[dict[str, Any]]) -> str:
    if not pairs:
        return "no pairs (no rule grants a QPU, or the controller has not decided yet)"
    rows = [("INSTANCE", "BACKEND", "CAP", "RUN", "PEND", "REASON", "DETAIL")]
    for p in pairs:
        cap = "-" if p.get("cap") is None else str(p["cap"])
        shares = p.get("clusters") or {}
        if p.get("cap") and shares:  # several clusters: each has its share of the cap
            cap += " (" + ", ".join(f"{c} {v.get('cap')}" for c, v in sorted(shares.items())) + ")"
        rows.append(
            (p["instance"], p["backend"], cap, str(p.get("running", 0)), str(p.get("pending", 0)),
             str(p.get("reason", "")), str(p.get("detail", "")))
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:6], widths, strict=False)) + "  " + r[6] for r in rows
    )


def _status(args: argparse.Namespace) -> int:
    from qauvern_hpc.admission import service

    cfg = _config(args, enabled=False)
    state = service.read_state(cfg.slurm.state_dir)
    now = time.time()
    age = service.heartbeat_age(state, now)
    running = service.lock_held(cfg.slurm.state_dir)
    doc = {
        "enabled": cfg.admission.enabled,
        "running": running,
        "heartbeat_age_seconds": age,
        "state_file": str(service.state_path(cfg.slurm.state_dir)),
        "state": state,
    }
    if state is None:
        text = f"the admission controller has not run yet (no {service.state_path(cfg.slurm.state_dir)})"
    else:
        hb = f"{age:.0f} s ago" if age is not None else "never"
        ibm = state.get("ibm") or {}
        text = (
            f"controller {'running' if running else 'not running'}; last period {hb} (every "
            f"{float(state.get('period_seconds') or 0):g} s); IBM "
            f"{'ok' if not ibm.get('error') else 'unreadable: ' + str(ibm['error'])}; "
            f"{state.get('writes_total', 0)} sacctmgr writes\n" + _pairs_text(state.get("pairs") or [])
        )
    _print(args, doc, text)
    return ExitCode.OK


def _why(args: argparse.Namespace) -> int:
    from qauvern_hpc.admission import service
    from qauvern_hpc.slurm.run import SlurmCommandError
    from qauvern_hpc.slurm.squeue import license_jobs

    if not args.job.replace("_", "").isdigit():
        raise UsageError(f"not a job id: {args.job!r}")
    cfg = _config(args, enabled=False)
    try:
        jobs = license_jobs(cfg.slurm.squeue, clusters=cfg.slurm.cluster, job_ids=[args.job])
    except SlurmCommandError as exc:
        print(f"qauvern-hpc admit why: job {args.job} is not in Slurm's queue ({exc})", file=sys.stderr)
        return ExitCode.FAILURE
    if not jobs:
        print(f"qauvern-hpc admit why: job {args.job} is not in Slurm's queue (finished?)", file=sys.stderr)
        return ExitCode.FAILURE
    doc = service.explain_job(jobs[0], service.read_state(cfg.slurm.state_dir), time.time())
    _print(args, doc, "\n".join(doc["lines"]))
    return ExitCode.OK


def _failsafe(args: argparse.Namespace) -> int:
    from qauvern_hpc.admission import service

    cfg = _config(args, enabled=False)
    state = service.read_state(cfg.slurm.state_dir)
    age = service.heartbeat_age(state, time.time())
    if args.if_stale and age is not None and age <= cfg.admission.hold_for:
        _print(args, {"applied": False, "heartbeat_age_seconds": age}, f"controller alive ({age:.0f} s ago)")
        return ExitCode.OK
    specs = service.specs_of(cfg)
    with service.controller_lock(cfg.slurm.state_dir):
        result = service.failsafe(
            specs, cfg.slurm.state_dir, service.cap_writer(cfg), now=time.time(), dry_run=args.dry_run
        )
    lines = [f"{p['instance']}/{p['backend']}: fails {p['fail_mode']}" for p in result["pairs"]]
    for cluster, items in result["written"].items():
        lines.append(
            f"{cluster}: set " + ", ".join(f"{t}={-1 if v is None else v}" for t, v in items.items())
        )
    _print(args, {"applied": not args.dry_run, **result}, "\n".join(lines))
    return ExitCode.OK
