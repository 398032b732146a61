"""Slurm demand per instance: pending QPU jobs (squeue) and recent finished usage (ledger). Pure.

Which instance a pending job is for
-----------------------------------
job_submit.lua adds the license `<prefix><instance>` (e.g. `qpu_physics:1`) to every QPU job it lets
through, with the instance the mapping rules chose for the job's user, account, partition and QOS at submit
time (and again when an admin moves the job with `scontrol update`). squeue shows it (`%W`), so a pending
job maps to exactly the instance whose session the prolog will open, with no second decision here that
could disagree. A job with no such license is not a QPU job (or was submitted before the license was set
up) and is not counted; one naming an unknown instance counts as `unmapped`.

What is counted, per instance
-----------------------------
* `pending_jobs`: pending jobs and array tasks (held ones only with `count_held`: priority 0 or a
  JobHeld* reason means it will not start by itself);
* `queued_seconds`: the sum of their time limits, each cut to `max_job_seconds` (a job's QPU time is not
  known before it runs; UNLIMITED counts as the cap);
* `oldest_pending_age_seconds`: now - the oldest submit time;
* `max_priority` / `mean_priority`: Slurm's priorities (shown in the explanation; the weighting uses the
  counts and the age, not the priority, which mixes in factors unrelated to QPU demand);
* `held_jobs`, `gated_jobs` (pending with reason AssocGrpLicense, i.e. behind our gate);
* `by_cluster`: the counted pending jobs per cluster (with several clusters in `slurm.cluster` the queue is
  read with one `squeue -M NAME` per cluster, each job tagged with it; with one, this stays empty). The
  planner's demand is the sum over every cluster: an instance's allocation and limit are IBM's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qauvern_hpc.planner.model import DemandSignal
from qauvern_hpc.slurm.squeue import PendingJob

GATE_REASON = "AssocGrpLicense"


@dataclass(frozen=True, slots=True)
class QueueStats:
    instance: str
    pending_jobs: int = 0
    queued_seconds: int = 0
    oldest_pending_age_seconds: float = 0.0
    max_priority: int = 0
    mean_priority: float = 0.0
    held_jobs: int = 0
    gated_jobs: int = 0
    by_cluster: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "pending_jobs": self.pending_jobs,
            "queued_seconds": self.queued_seconds,
            "oldest_pending_age_seconds": round(self.oldest_pending_age_seconds, 1),
            "max_priority": self.max_priority,
            "mean_priority": round(self.mean_priority, 1),
            "held_jobs": self.held_jobs,
            "gated_jobs": self.gated_jobs,
            "by_cluster": dict(self.by_cluster),
        }


@dataclass(frozen=True, slots=True)
class QueueSummary:
    by_instance: Mapping[str, QueueStats]
    total_jobs: int  # every pending line squeue gave
    qpu_jobs: int  # those carrying an instance license (known or not)
    unmapped_jobs: int  # carrying `<prefix>X` for an X that is not a configured instance


def license_names(prefix: str, instances: Iterable[str]) -> dict[str, str]:
    """License name -> instance name."""
    return {f"{prefix}{name}": name for name in instances}


def aggregate_pending(
    jobs: Iterable[PendingJob],
    prefix: str,
    instances: Iterable[str],
    *,
    now: float,
    max_job_seconds: int,
    count_held: bool = False,
) -> QueueSummary:
    """Per-instance queue statistics from pending jobs, in one pass over them.

    A job's instance is decided once per distinct license list (jobs share the list objects squeue parsing
    hands out) and leads straight to that instance's accumulator row.
    """
    by_license = license_names(prefix, instances)
    inf = float("inf")
    # instance -> [jobs, queued, oldest_submit, prio_sum, prio_max, held, gated, {cluster: jobs}]
    acc: dict[str, list[Any]] = {}
    # jobs naming an unknown instance accumulate into a row of their own, counted as `unmapped`
    unknown: list[Any] = [0, 0, inf, 0, 0, 0, 0, {}]
    # license list -> the row of its instance, or None: not a QPU job
    row_of: dict[tuple[tuple[str, int], ...], list[Any] | None] = {}
    row_get = row_of.get
    missing: list[Any] = []  # a sentinel no row is
    cap = max_job_seconds
    total = 0
    for total, job in enumerate(jobs, 1):  # noqa: B007 (`total` is read after the loop)
        licenses = job[5]
        row = row_get(licenses, missing)
        if row is missing:
            row = None
            for name, _count in licenses:
                if name.startswith(prefix):
                    inst = by_license.get(name)
                    if not inst:
                        row = unknown
                    else:
                        row = acc.get(inst)
                        if row is None:
                            row = acc[inst] = [0, 0, inf, 0, 0, 0, 0, {}]
                    break
            row_of[licenses] = row
        if row is None:
            continue
        prio = job[8]
        reason = job[9]
        if prio == 0 or reason.startswith("JobHeld"):
            row[5] += 1
            if not count_held:
                continue
        if reason == GATE_REASON:
            row[6] += 1
        row[0] += 1
        limit = job[6]
        row[1] += cap if limit is None or limit > cap else limit
        submit = job[7]
        if submit is not None and submit < row[2]:
            row[2] = submit
        row[3] += prio
        if prio > row[4]:
            row[4] = prio
        cluster = job[10]
        if cluster:
            per = row[7]
            per[cluster] = per.get(cluster, 0) + 1

    def seen(r: list[Any]) -> int:  # every QPU job of a row, counted or held
        return int(r[0] if count_held else r[0] + r[5])

    unmapped = seen(unknown)
    qpu = unmapped + sum(seen(r) for r in acc.values())
    out: dict[str, QueueStats] = {}
    for inst, (n, queued, oldest, psum, pmax, held_n, gated, per_cluster) in acc.items():
        jobs_n = int(n)
        out[inst] = QueueStats(
            instance=inst,
            pending_jobs=jobs_n,
            queued_seconds=int(queued),
            oldest_pending_age_seconds=max(0.0, now - oldest) if jobs_n and oldest != float("inf") else 0.0,
            max_priority=int(pmax),
            mean_priority=psum / jobs_n if jobs_n else 0.0,
            held_jobs=int(held_n),
            gated_jobs=int(gated),
            by_cluster=dict(sorted(per_cluster.items())),
        )
    return QueueSummary(out, total, qpu, unmapped)


def demand_signals(
    queue: Mapping[str, QueueStats],
    recent_seconds: Mapping[str, float],
    crn_by_name: Mapping[str, str],
    inflight: Mapping[str, QueueStats] | None = None,
) -> dict[str, DemandSignal]:
    """The planner's per-CRN demand for every configured instance (zeros where nothing is queued or recent,
    so the explanation shows the demand terms for every instance).

    `inflight`: the same statistics over the instance's *running* QPU jobs (`aggregate_pending` run on
    `squeue -t RUNNING` lines), whose capped time limits count as work in flight (the fair demand signal's
    need includes it, so an instance whose jobs never queue in Slurm still shows need)."""
    out: dict[str, DemandSignal] = {}
    running = inflight or {}
    for name, crn in crn_by_name.items():
        q = queue.get(name)
        r = running.get(name)
        out[crn] = DemandSignal(
            queued_seconds=float(q.queued_seconds) if q else 0.0,
            pending_jobs=q.pending_jobs if q else 0,
            oldest_pending_age_seconds=q.oldest_pending_age_seconds if q else 0.0,
            recent_seconds=max(0.0, float(recent_seconds.get(name, 0.0))),
            inflight_seconds=float(r.queued_seconds) if r else 0.0,
        )
    return out


__all__ = [
    "GATE_REASON",
    "QueueStats",
    "QueueSummary",
    "aggregate_pending",
    "demand_signals",
    "license_names",
]
