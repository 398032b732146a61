"""The admission controller's loop: every period read IBM and Slurm (`observe`), `decide`, write the caps
(`write`), and record it all in the public state file `{state_dir}/admission/state.json`.

Invariants:
* One controller at a time: `run` and `failsafe` hold an exclusive flock on `{state_dir}/admission/lock`
  (released when the process dies, so a SIGKILLed controller never blocks its successor).
* The state file is replaced atomically (temporary file + rename, mode 0644) and holds no secret: `admit
  status`, `admit why`, metrics and doctor read it without root. Its `heartbeat` is the end of the last
  period; `controller` is the `ControllerState` a restarted controller resumes from, `views` the last good
  IBM reads (held, with their old timestamps, while IBM cannot be read).
* Slurm unreadable (squeue/sacctmgr fail): nothing is decided or written that period, the error is recorded.
* What IBM's job lists teach (`observe.JobTracker`) reaches `decide` exactly once: kept until a period
  decides, never repeated when IBM cannot be read (the held views carry nothing learnt).
* SIGTERM/SIGINT end the loop between periods (a period in progress finishes); the caps stay as written.
* It never cancels, holds or requeues a job and never touches a node: only root association GrpTRES items.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from qauvern_hpc.admission.decide import decide
from qauvern_hpc.admission.model import (
    FAILED_CLOSED,
    FAILED_OPEN,
    AdmissionSettings,
    BackendView,
    ControllerState,
    Decision,
    InstanceView,
    Observation,
)
from qauvern_hpc.admission.observe import (
    IbmJobs,
    IbmReader,
    JobTracker,
    Learnt,
    PairSpec,
    jobs_per_license,
    observation,
    read_ibm,
    views_from_json,
    views_to_json,
)
from qauvern_hpc.admission.split import cluster_caps
from qauvern_hpc.admission.write import CapWriter, everywhere, failsafe_caps
from qauvern_hpc.core.errors import LockHeld, QauvernError
from qauvern_hpc.core.files import atomic_write
from qauvern_hpc.slurm.squeue import LicenseJob

if TYPE_CHECKING:
    from qauvern_hpc.config import Config

STATE_FORMAT = 1
STATE_FILE = "state.json"
LOCK_FILE = "lock"
DecideFn = Callable[[Observation, ControllerState, AdmissionSettings], tuple[Decision, ControllerState]]


def admission_dir(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / "admission"


def state_path(state_dir: str | os.PathLike[str]) -> Path:
    return admission_dir(state_dir) / STATE_FILE


def read_state(state_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The controller's public state, or None when it never ran (or the file is unreadable)."""
    try:
        data = json.loads(state_path(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == STATE_FORMAT else None


def heartbeat_age(state: Mapping[str, Any] | None, now: float) -> float | None:
    hb = (state or {}).get("heartbeat")
    return max(0.0, now - float(hb)) if isinstance(hb, int | float) else None


@contextlib.contextmanager
def controller_lock(state_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Exclusive, non-blocking: another controller (or failsafe) running -> LockHeld (exit 5)."""
    d = admission_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            raise LockHeld(
                f"another admission controller holds {d / LOCK_FILE}"
                + (f" (pid {holder})" if holder else ""),
                hint="one controller per site: stop the other one (systemctl stop qauvern-hpc-admit)",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def lock_held(state_dir: str | os.PathLike[str]) -> bool:
    """Is a controller running (holding the lock) right now?"""
    path = admission_dir(state_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@dataclass
class Sources:
    """Where a period reads and writes (injectable for tests)."""

    ibm: IbmReader
    jobs: Callable[[], list[LicenseJob]]
    writer: CapWriter


@dataclass
class PeriodReport:
    """What one period did (also the `admit once --json` document)."""

    at: float
    ibm_ok: bool
    slurm_ok: bool
    decided: bool
    pairs: list[dict[str, Any]] = field(default_factory=list)
    written: dict[str, dict[str, int | None]] = field(default_factory=dict)
    drift: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Controller:
    """One admission controller. `step()` runs one period; `run()` loops until stopped."""

    def __init__(
        self,
        specs: Sequence[PairSpec],
        settings: AdmissionSettings,
        state_dir: str | os.PathLike[str],
        sources: Sources,
        *,
        decide_fn: DecideFn = decide,
        clock: Callable[[], float] = time.time,
        log: TextIO | None = None,
        dry_run: bool = False,
    ) -> None:
        self.specs = list(specs)
        self.settings = settings
        self.state_dir = Path(state_dir)
        self.sources = sources
        self.decide_fn = decide_fn
        self.clock = clock
        self.log = log if log is not None else sys.stderr
        self.dry_run = dry_run
        self.doc: dict[str, Any] = read_state(self.state_dir) or {}
        self.cstate = ControllerState.from_json(self.doc.get("controller") or {})
        self.backends: dict[str, BackendView]
        self.instances: dict[str, InstanceView]
        self.backends, self.instances = views_from_json(self.doc.get("views") or {})
        self.ibm_jobs: dict[str, IbmJobs] = {}
        # Our IBM jobs of the last read (in memory: a restarted controller learns from its second read on),
        # and what they taught that no decision has used yet.
        self.tracker = JobTracker()
        self.learnt: dict[str, Learnt] = {}
        ibm = self.doc.get("ibm") or {}
        self.ibm_read_at: float | None = ibm.get("read_at")
        self.applied: dict[str, dict[str, int | None]] = self.doc.get("applied") or {}
        self.writes_total = int(self.doc.get("writes_total", 0))
        self.started_at = self.clock()
        self.periods = 0

    def say(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.gmtime(self.clock()))
        print(f"{stamp}Z admit: {text}", file=self.log, flush=True)

    # -- one period -----------------------------------------------------------------------------------------

    def step(self) -> PeriodReport:
        now = self.clock()
        self.periods += 1
        report = PeriodReport(at=now, ibm_ok=False, slurm_ok=False, decided=False)
        try:
            jobs = self.sources.jobs()
            report.slurm_ok = True
        except (QauvernError, OSError) as exc:
            jobs = []
            report.errors.append(f"slurm: {exc}")
        try:
            read = read_ibm(self.sources.ibm, self.specs, now, self.tracker)
            self.backends, self.instances, self.ibm_jobs = read.backends, read.instances, read.jobs
            for lic, item in read.learnt.items():
                self.learnt[lic] = self.learnt.get(lic, Learnt()) + item
            self.ibm_read_at = now
            report.ibm_ok = True
        except (QauvernError, OSError, ValueError) as exc:
            report.errors.append(f"ibm: {str(exc).splitlines()[0]}")
        if report.slurm_ok:
            counts = jobs_per_license(jobs, (s.license for s in self.specs), now)
            obs = observation(
                self.specs,
                counts,
                self.backends,
                self.instances,
                self.ibm_jobs,
                now=now,
                ibm_read_at=self.ibm_read_at,
                learnt=self.learnt,
            )
            decision, self.cstate = self.decide_fn(obs, self.cstate, self.settings)
            self.learnt = {}  # learnt once
            report.decided = True
            report.pairs = _pair_rows(self.specs, decision, counts)
            self._write({f"license/{p['license']}": p["cap"] for p in report.pairs}, jobs, report)
        else:
            report.pairs = (self.doc.get("pairs") or []) if isinstance(self.doc.get("pairs"), list) else []
        self._save(report, now)
        self._log_period(report)
        return report

    def _write(
        self, desired: Mapping[str, int | None], jobs: Sequence[LicenseJob], report: PeriodReport
    ) -> None:
        """Split the decided caps between the live clusters and write each cluster its own."""
        writer = self.sources.writer
        try:
            live = writer.live()
            per_cluster = cluster_caps(desired, jobs, sorted(live))
            result = writer.apply(per_cluster, self.applied, live=live, dry_run=self.dry_run)
        except (QauvernError, OSError) as exc:
            report.errors.append(f"sacctmgr: {exc}")
            return
        if len(per_cluster) > 1:
            _cluster_rows(report.pairs, per_cluster, jobs, report.at)
        report.written, report.drift = result.written, result.drift
        if result.untracked:
            report.errors.append(
                "not tracked TRES (add to Licenses= and AccountingStorageTRES=): "
                + ", ".join(result.untracked)
            )
        if not self.dry_run:
            self.writes_total += result.writes
            for cluster, caps in per_cluster.items():
                self.applied[cluster] = {t: v for t, v in caps.items() if t not in result.untracked}

    def _save(self, report: PeriodReport, now: float) -> None:
        if self.dry_run:
            return
        prev_ibm = self.doc.get("ibm") or {}
        doc: dict[str, Any] = {
            "format": STATE_FORMAT,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "heartbeat": self.clock(),
            "period_seconds": self.settings.period_seconds,
            "hold_for_seconds": self.settings.hold_for_seconds,
            "ibm": {
                "read_at": self.ibm_read_at,
                "error": None if report.ibm_ok else _first(report.errors, "ibm: "),
                "failing_since": None if report.ibm_ok else (prev_ibm.get("failing_since") or now),
            },
            "slurm": {"error": None if report.slurm_ok else _first(report.errors, "slurm: ")},
            "views": views_to_json(self.backends, self.instances),
            "decided_at": now if report.decided else self.doc.get("decided_at"),
            "pairs": report.pairs,
            "controller": self.cstate.to_json(),
            "applied": self.applied,
            "writes_total": self.writes_total,
            "last_write_at": now if report.written else self.doc.get("last_write_at"),
            "drift": report.drift,
            "errors": report.errors,
        }
        write_state(self.state_dir, doc)
        self.doc = doc

    def _log_period(self, report: PeriodReport) -> None:
        for cluster, items in report.written.items():
            text = ", ".join(
                f"{t.removeprefix('license/')}={'-1' if v is None else v}" for t, v in items.items()
            )
            self.say(f"{cluster}: set {text}")
        for d in report.drift:
            self.say(f"drift repaired: {d}")
        for e in report.errors:
            self.say(f"error: {e}")
        if report.written or self.periods == 1:
            for p in report.pairs:
                cap = "no limit" if p["cap"] is None else p["cap"]
                self.say(
                    f"{p['instance']}/{p['backend']}: cap {cap} ({p['reason']}; {p['running']} running, "
                    f"{p['pending']} pending) {p['detail']}"
                )

    # -- the loop -------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, max_periods: int | None = None) -> int:
        """Run periods until `stop` is set (or `max_periods` ran). Returns the number of periods."""
        self.say(
            f"started (pid {os.getpid()}, period {self.settings.period_seconds:g}s, hold_for "
            f"{self.settings.hold_for_seconds:g}s, {len(self.specs)} pairs, "
            f"state {state_path(self.state_dir)})"
        )
        while not stop.is_set():
            begin = time.monotonic()
            self.step()
            if max_periods is not None and self.periods >= max_periods:
                break
            stop.wait(max(0.0, self.settings.period_seconds - (time.monotonic() - begin)))
        self.say(f"stopped after {self.periods} periods; Slurm keeps the last caps")
        return self.periods


def _first(errors: Sequence[str], prefix: str) -> str | None:
    for e in errors:
        if e.startswith(prefix):
            return e.removeprefix(prefix)
    return None


def _pair_rows(
    specs: Sequence[PairSpec], decision: Decision, counts: Mapping[str, Any]
) -> list[dict[str, Any]]:
    by_pair = {(p.instance, p.backend): p for p in decision.pairs}
    rows = []
    for s in specs:
        d = by_pair.get((s.instance, s.backend))
        c = counts.get(s.license)
        rows.append(
            {
                "instance": s.instance,
                "backend": s.backend,
                "license": s.license,
                "fail_mode": s.fail_mode,
                "cap": d.cap if d else None,
                "reason": d.reason if d else "open",
                "detail": d.detail if d else "",
                "since": d.since if d else decision.decided_at,
                "pending": c.pending if c else 0,
                "running": c.running if c else 0,
            }
        )
    return rows


def _cluster_rows(
    rows: Sequence[dict[str, Any]],
    per_cluster: Mapping[str, Mapping[str, int | None]],
    jobs: Sequence[LicenseJob],
    now: float,
) -> None:
    """With several clusters, each pair row gets `clusters`: cluster -> its cap, running and pending (the
    row's `cap`, `running` and `pending` stay the site's totals)."""
    licenses = [str(r["license"]) for r in rows]
    counts = {c: jobs_per_license([j for j in jobs if j.cluster == c], licenses, now) for c in per_cluster}
    for r in rows:
        lic = str(r["license"])
        r["clusters"] = {
            c: {
                "cap": per_cluster[c].get(f"license/{lic}"),
                "running": counts[c][lic].running,
                "pending": counts[c][lic].pending,
            }
            for c in sorted(per_cluster)
        }


def write_state(state_dir: str | os.PathLike[str], doc: Mapping[str, Any]) -> None:
    d = admission_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write(d / STATE_FILE, json.dumps(doc, indent=1, sort_keys=False) + "\n", 0o644)


def failsafe(
    specs: Sequence[PairSpec],
    state_dir: str | os.PathLike[str],
    writer: CapWriter,
    *,
    now: float,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Apply each pair's fail mode (open: no limit, closed: 0) and record it in the state file. For a
    stopped or dead controller (systemd ExecStopPost, a timer): a dead controller must not pin fail-open
    resources at 0. The caller holds the controller lock."""
    modes = {f"license/{s.license}": s.fail_mode for s in specs}
    live = writer.live()
    result = writer.apply(everywhere(failsafe_caps(modes), live), live=live, dry_run=dry_run)
    doc = read_state(state_dir) or {"format": STATE_FORMAT}
    counts = {p.get("license"): p for p in doc.get("pairs") or () if isinstance(p, dict)}
    pairs = []
    for s in specs:
        prev = counts.get(s.license) or {}
        pairs.append(
            {
                "instance": s.instance,
                "backend": s.backend,
                "license": s.license,
                "fail_mode": s.fail_mode,
                "cap": None if s.fail_mode == "open" else 0,
                "reason": FAILED_OPEN if s.fail_mode == "open" else FAILED_CLOSED,
                "detail": f"controller stopped: {s.backend} fails {s.fail_mode} (admit failsafe)",
                "since": now,
                "pending": int(prev.get("pending", 0)),
                "running": int(prev.get("running", 0)),
            }
        )
    if not dry_run:
        doc.update({"pairs": pairs, "failsafe_at": now, "decided_at": now})
        doc["applied"] = everywhere(failsafe_caps(modes), live)
        write_state(state_dir, doc)
    return {"written": result.written, "untracked": result.untracked, "pairs": pairs}


# -- wiring and explaining (for `qauvern-hpc admit`) -------------------------------------------------------


def settings_of(cfg: Config) -> AdmissionSettings:
    a = cfg.admission
    return AdmissionSettings(
        period_seconds=float(a.period),
        hold_for_seconds=float(a.hold_for),
        max_ibm_wait_seconds=float(a.max_ibm_wait),
        burst=a.burst,
        probe=a.probe,
        min_dwell_seconds=float(a.min_dwell),
        default_job_seconds=float(a.default_job_seconds),
        open_below=a.open_below,
        cap_slack=a.cap_slack,
        lost_backoff_max_seconds=float(a.lost_backoff_max),
    )


def specs_of(cfg: Config) -> list[PairSpec]:
    """The pairs the config's rules grant (as with admission enabled, whatever the setting)."""
    from qauvern_hpc.admission.observe import pair_specs

    on = cfg.model_copy(update={"admission": cfg.admission.model_copy(update={"enabled": True})})
    return pair_specs(on.to_policy())


def cap_writer(cfg: Config) -> CapWriter:
    from qauvern_hpc.slurm.sacctmgr import Sacctmgr

    return CapWriter(Sacctmgr(cfg.slurm.sacctmgr, cfg.slurm.cluster, timeout=30.0))


def sources_of(cfg: Config, args: Any) -> Sources:
    """The real sources: the account's IBM client (short timeouts and retries: a period must not hang on
    IBM), squeue and sacctmgr."""
    from qauvern_hpc.config.ibm_access import endpoints_from_config
    from qauvern_hpc.ibm.client import IBMClient
    from qauvern_hpc.ibm.factory import resolve_api_key
    from qauvern_hpc.ibm.retry import RetryPolicy
    from qauvern_hpc.slurm.squeue import license_jobs

    period = float(cfg.admission.period)
    client = IBMClient(
        resolve_api_key(args, cfg.ibm.api_key_file),
        endpoints_from_config(cfg, staging=bool(getattr(args, "staging", False))),
        timeout=min(20.0, max(2.0, period)),
        retry=RetryPolicy(max_attempts=2, base_delay=0.2, max_delay=1.0, deadline=max(5.0, period)),
        ru_per_second=cfg.ibm.resource_units_per_second,
    )
    return Sources(
        ibm=client,
        jobs=lambda: license_jobs(cfg.slurm.squeue, clusters=cfg.slurm.cluster, timeout=30.0),
        writer=cap_writer(cfg),
    )


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def explain_job(job: LicenseJob, state: Mapping[str, Any] | None, now: float) -> dict[str, Any]:
    """Why a QPU job pends (or that it does not), in words, from squeue's view of it and the controller's
    state file. Returns {"job", "state", "reason", "pairs": [...], "lines": [...]}."""
    rows = {p.get("license"): p for p in (state or {}).get("pairs") or () if isinstance(p, dict)}
    mine = [name.lower() for name, _ in job.licenses if name.lower() in rows or "__" in name]
    period = float((state or {}).get("period_seconds") or 30)
    age = heartbeat_age(state, now)
    lines: list[str] = []
    pairs: list[dict[str, Any]] = []
    if not mine:
        lines.append(f"job {job.job_id} holds no QPU pair license: the admission controller does not gate it")
    for lic in mine:
        row = rows.get(lic)
        if row is None:
            lines.append(f"job {job.job_id}: {lic} is not managed by the admission controller (no state)")
            continue
        pairs.append(row)
        raw_cap, running, pending = row.get("cap"), int(row.get("running", 0)), int(row.get("pending", 0))
        where = f"{row['backend']} (instance {row['instance']})"
        mine_here = (row.get("clusters") or {}).get(job.cluster)
        if isinstance(mine_here, dict):  # several clusters: the job's cluster has its own share of the cap
            raw_cap, running = mine_here.get("cap"), int(mine_here.get("running", 0))
            pending = int(mine_here.get("pending", 0))
            where += f" on cluster {job.cluster}"
        cap = None if raw_cap is None else int(raw_cap)
        blocking = cap is not None and cap <= running
        if job.state == "RUNNING":
            lines.append(f"job {job.job_id} runs on {where}: {row.get('detail', '')}".rstrip(": "))
            continue
        if cap is not None and blocking:
            admitted = max(0, cap - running)
            lines.append(
                f"job {job.job_id} waits for {where}: {row.get('detail') or row.get('reason')}; "
                f"admitted {admitted} of {pending} pending ({running} running)"
            )
        else:
            cap_text = "no limit" if cap is None else f"cap {cap}"
            lines.append(f"job {job.job_id} may start on {where} ({cap_text}, {running} running)")
    if job.state == "PENDING" and job.reason != "AssocGrpLicense" and mine:
        lines.append(
            f"Slurm's pending reason is {job.reason}: the job also waits for something besides its QPU"
        )
    if age is None:
        lines.append("the admission controller has never run (no state file)")
    else:
        lines.append(
            f"decided {_ago(age)} ago; the controller decides every {period:g} s: a closed QPU reopens "
            f"within one period after IBM serves it again (plus Slurm's scheduling interval)"
        )
        if age > 3 * period:
            lines.append(f"warning: the controller's heartbeat is {_ago(age)} old: is `admit run` running?")
    return {"job": job.job_id, "state": job.state, "reason": job.reason, "pairs": pairs, "lines": lines}


__all__ = [
    "LOCK_FILE",
    "STATE_FILE",
    "Controller",
    "DecideFn",
    "PeriodReport",
    "Sources",
    "admission_dir",
    "cap_writer",
    "controller_lock",
    "explain_job",
    "failsafe",
    "heartbeat_age",
    "lock_held",
    "read_state",
    "settings_of",
    "sources_of",
    "specs_of",
    "state_path",
    "write_state",
]
