"""Prometheus metrics: what IBM, Slurm, the ledger and the rebalancer's journal say, in the text format.

Written for node_exporter's textfile collector (atomically: temporary file + rename) or served over HTTP.
Gathering is tolerant: a source that fails (IBM down, slurmctld down, no ledger yet) sets
`qauvern_hpc_scrape_error{source="..."} 1` and the other sources still report.

Rendering (`render`) and the metric families are pure; `gather` does the I/O.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from qauvern_hpc.config import Config

from qauvern_hpc.core.files import atomic_write

PREFIX = "qauvern_hpc_"
SLURM_TIMEOUT = 20.0  # a scrape must not hang on a slurmctld that does not answer


@dataclass
class Family:
    name: str
    help: str
    type: str = "gauge"  # gauge | counter
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((labels, float(value)))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render(families: Iterable[Family]) -> str:
    """The Prometheus text exposition format (0.0.4)."""
    out: list[str] = []
    for fam in families:
        name = PREFIX + fam.name
        out.append(f"# HELP {name} {fam.help}")
        out.append(f"# TYPE {name} {fam.type}")
        for labels, value in fam.samples:
            if labels:
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
                out.append(f"{name}{{{text}}} {_number(value)}")
            else:
                out.append(f"{name} {_number(value)}")
    return "\n".join(out) + "\n"


def write_textfile(path: str | os.PathLike[str], text: str) -> None:
    """Atomic: node_exporter never reads a half-written file."""
    atomic_write(path, text, mode=0o644)


class Families:
    """The metric families, filled by the gatherers."""

    def __init__(self) -> None:
        f = Family
        self.allocation = f("instance_allocation_seconds", "IBM Quantum allocation of the instance (seconds)")
        self.limit = f("instance_limit_seconds", "IBM Quantum 28-day usage limit of the instance (seconds)")
        self.usage = f(
            "instance_usage_28d_seconds", "quantum seconds the instance used in the rolling 28 days"
        )
        # RUs (`core.report_units`): only for an instance whose RU rate is known; the *_seconds series stay
        self.allocation_ru = f(
            "instance_allocation_resource_units", "IBM Quantum allocation of the instance (resource units)"
        )
        self.limit_ru = f("instance_limit_resource_units", "IBM Quantum usage limit of the instance (RUs)")
        self.usage_ru = f(
            "instance_usage_28d_resource_units", "RUs the instance used over its usage period (IBM's figure)"
        )
        self.fairness = f(
            "instance_fairness_ratio", "28-day usage / allocation (IBM runs lower ratios first)"
        )
        self.queued = f("queued_qpu_jobs", "QPU jobs pending in Slurm, per instance (per-instance license)")
        self.queued_seconds = f(
            "queued_qpu_seconds", "requested wall time of the pending QPU jobs, per instance"
        )
        self.gated = f("queued_qpu_jobs_gated", "pending QPU jobs held by the limit gate (AssocGrpLicense)")
        self.attributed = f("ledger_attributed_seconds", "quantum seconds the ledger attributed in 28 days")
        self.pending_runs = f("ledger_pending_runs", "ledger runs awaiting IBM's final usage figure")
        self.runs = f("rebalance_runs", "rebalance runs in the journal, by status", "gauge")
        self.last_run = f("rebalance_last_run_timestamp_seconds", "when the last rebalance run started")
        self.failures = f("rebalance_failed_runs", "rebalance runs that did not complete (journal)")
        self.api_seconds = f("ibm_api_scrape_seconds", "time the IBM API calls of this scrape took")
        self.api_errors = f("ibm_api_errors", "IBM API calls of this scrape that failed")
        self.adm_cap = f(
            "admission_cap", "QPU jobs the admission controller lets hold the pair license (-1: no limit)"
        )
        self.adm_admitted = f("admission_admitted", "jobs admitted beyond those running (cap - running)")
        self.adm_running = f("admission_running", "running Slurm jobs holding the pair license")
        self.adm_pending = f("admission_pending", "pending Slurm jobs asking for the pair license")
        self.adm_reason = f("admission_reason_info", "the reason of the pair's cap (value 1)")
        self.adm_last = f(
            "admission_last_decision_timestamp_seconds", "when the admission controller last decided"
        )
        self.adm_heartbeat = f(
            "admission_heartbeat_age_seconds", "seconds since the controller's last period"
        )
        self.adm_ibm_age = f("admission_ibm_age_seconds", "seconds since IBM was last read by the controller")
        self.adm_writes = f("admission_writes", "sacctmgr writes by the admission controller so far")
        self.scrape_error = f("scrape_error", "1 when a source could not be read in this scrape")
        self.scrape_time = f("scrape_timestamp_seconds", "when these metrics were gathered")

    def all(self) -> list[Family]:
        return [v for v in vars(self).values() if isinstance(v, Family)]


Source = Callable[[Families], None]


def gather(sources: dict[str, Source], *, now: float | None = None) -> list[Family]:
    fams = Families()
    for name, source in sources.items():
        try:
            source(fams)
            fams.scrape_error.add(0, source=name)
        except Exception:  # one broken source must not hide the others
            fams.scrape_error.add(1, source=name)
    fams.scrape_time.add(now if now is not None else time.time())
    return fams.all()


# -- the sources (I/O) ---------------------------------------------------------------------------------


def ibm_source(cfg: Config, args: argparse.Namespace) -> Source:
    def run(f: Families) -> None:
        from qauvern_hpc.config.ibm_access import client_from_config
        from qauvern_hpc.core.report_units import Units
        from qauvern_hpc.ibm.units import rate_of, valid_rate

        started = time.monotonic()
        errors = 0
        wanted = {i.crn: i.name for i in cfg.instances}
        fallback = valid_rate(cfg.ibm.resource_units_per_second)
        try:
            with client_from_config(cfg, args) as client:
                for inst in client.list_instances():
                    name = wanted.get(inst.crn)
                    if name is None:
                        continue
                    f.allocation.add(inst.allocation_seconds or 0, instance=name)
                    if inst.limit_seconds is not None:
                        f.limit.add(inst.limit_seconds, instance=name)
                    units = Units("ru", {inst.crn: rate_of(inst) or fallback})
                    _add(f.allocation_ru, units.value(inst.allocation_seconds or 0, inst.crn), name)
                    _add(f.limit_ru, units.value(inst.limit_seconds, inst.crn), name)
                    try:
                        usage = client.instance_usage(inst.crn)
                        used = usage.consumed_seconds
                    except Exception:
                        errors += 1
                        continue
                    f.usage.add(used, instance=name)
                    _add(f.usage_ru, units.value(used, inst.crn, ru=usage.consumed_ru), name)
                    if inst.allocation_seconds:
                        f.fairness.add(used / inst.allocation_seconds, instance=name)
        finally:
            f.api_seconds.add(time.monotonic() - started)
            f.api_errors.add(errors)
        if errors:
            raise RuntimeError(f"{errors} IBM call(s) failed")

    return run


def _add(family: Family, value: float | None, instance: str) -> None:
    """A sample only when there is a figure (no rate, no RU sample: never a guessed one)."""
    if value is not None:
        family.add(value, instance=instance)


def slurm_source(cfg: Config) -> Source:
    def run(f: Families) -> None:
        from qauvern_hpc.rebalance.demand import aggregate_pending
        from qauvern_hpc.slurm.squeue import pending_jobs

        prefix = cfg.rebalance.slurm.license_prefix
        if not prefix:
            return  # no per-instance licenses: the queue cannot be split per instance
        names = [i.name for i in cfg.instances]
        jobs = pending_jobs(cfg.slurm.squeue, clusters=cfg.slurm.cluster, timeout=SLURM_TIMEOUT)
        summary = aggregate_pending(
            jobs, prefix, names, now=time.time(), max_job_seconds=cfg.rebalance.demand.max_job_seconds
        )
        for name in names:
            stats = summary.by_instance.get(name)
            f.queued.add(stats.pending_jobs if stats else 0, instance=name)
            f.queued_seconds.add(stats.queued_seconds if stats else 0, instance=name)
            f.gated.add(stats.gated_jobs if stats else 0, instance=name)

    return run


def ledger_source(cfg: Config) -> Source:
    def run(f: Families) -> None:
        from qauvern_hpc.accounting.ledger import open_ledger

        now = int(time.time())
        with open_ledger(cfg.ledger.url) as ledger:
            per = ledger.usage_per_instance(now - 28 * 86400, None)
        for inst in cfg.instances:
            u = per.get(inst.name)
            f.attributed.add(u.quantum_seconds if u else 0.0, instance=inst.name)
            f.pending_runs.add(u.pending_runs if u else 0, instance=inst.name)

    return run


def journal_source(state_dir: Path) -> Source:
    def run(f: Families) -> None:
        from qauvern_hpc.rebalance.journal import JournalStore

        journals = JournalStore(state_dir).all() if state_dir.exists() else []
        counts: dict[str, int] = {}
        for j in journals:
            counts[j.status] = counts.get(j.status, 0) + 1
        for status, n in sorted(counts.items()):
            f.runs.add(n, status=status)
        f.failures.add(sum(n for s, n in counts.items() if s in ("failed", "abandoned")))
        if journals:
            f.last_run.add(max(j.created_at for j in journals))

    return run


def admission_source(cfg: Config, *, now: float | None = None) -> Source:
    """The admission controller's state file ({state_dir}/admission/state.json): caps, reasons, heartbeat."""

    def run(f: Families) -> None:
        from qauvern_hpc.admission.service import read_state

        state = read_state(cfg.slurm.state_dir)
        if state is None:
            raise RuntimeError("the admission controller has not written its state yet")
        at = time.time() if now is None else now
        for p in state.get("pairs") or ():
            labels = {"instance": str(p.get("instance")), "backend": str(p.get("backend"))}
            cap, running = p.get("cap"), int(p.get("running", 0))
            f.adm_cap.add(-1 if cap is None else cap, **labels)
            f.adm_admitted.add(0 if cap is None else max(0, int(cap) - running), **labels)
            f.adm_running.add(running, **labels)
            f.adm_pending.add(int(p.get("pending", 0)), **labels)
            f.adm_reason.add(1, **labels, reason=str(p.get("reason")))
        if isinstance(state.get("decided_at"), int | float):
            f.adm_last.add(state["decided_at"])
        if isinstance(state.get("heartbeat"), int | float):
            f.adm_heartbeat.add(max(0.0, at - state["heartbeat"]))
        read_at = (state.get("ibm") or {}).get("read_at")
        if isinstance(read_at, int | float):
            f.adm_ibm_age.add(max(0.0, at - read_at))
        f.adm_writes.add(int(state.get("writes_total", 0)))

    return run


def sources_for(
    cfg: Config, args: argparse.Namespace, *, ibm: bool = True, slurm: bool = True
) -> dict[str, Source]:
    from qauvern_hpc.rebalance.settings import state_dir

    state = state_dir(cfg)
    out: dict[str, Source] = {}
    if ibm:
        out["ibm"] = ibm_source(cfg, args)
    if slurm:
        out["slurm"] = slurm_source(cfg)
    out["ledger"] = ledger_source(cfg)
    out["journal"] = journal_source(state)
    if cfg.admission.enabled:
        out["admission"] = admission_source(cfg)
    return out
