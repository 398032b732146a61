"""One pair's decided cap split between the clusters (pure): each cluster's root association counts only
its own jobs in GrpTRES, so writing the decided cap N on each of k clusters would let k*N jobs run.

    caps = cluster_caps({"license/qpu_a__b": 3}, jobs, ["qa", "qb"])   # {"qa": {...: 1}, "qb": {...: 2}}

Cluster c gets its running jobs plus its share of the admissions (decided cap - running on all clusters):
one per pending job of the pair, oldest submitted first (then cluster, then job id: deterministic),
whatever the admissions left after that round-robin over the clusters in name order.

Invariants:
* The sum over the clusters of a pair's caps never exceeds the decided cap (when the decided cap is below
  what runs, each cluster gets at most its running jobs: nothing new starts anywhere).
* None (no limit) is None on every cluster; 0 is 0 on every cluster.
* One cluster (or none known): the decided caps unchanged, whatever the jobs say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from qauvern_hpc.admission.write import Caps
from qauvern_hpc.slurm.squeue import LicenseJob


def split_cap(
    cap: int | None, clusters: Sequence[str], running: Mapping[str, int], pending: Sequence[str]
) -> dict[str, int | None]:
    """`cap` for the whole site -> cluster -> cap. `running`: cluster -> jobs running; `pending`: the
    cluster of each pending job, oldest first (a cluster not in `clusters` takes no admission)."""
    names = sorted(set(clusters))
    if cap is None or cap <= 0 or len(names) <= 1:
        return {c: (None if cap is None else max(0, cap)) for c in names}
    out: dict[str, int] = {}
    left = cap
    for c in names:  # running jobs first; a cap below them leaves each cluster at most its own
        out[c] = min(max(0, running.get(c, 0)), left)
        left -= out[c]
    for c in pending:
        if left <= 0:
            break
        if c in out:
            out[c] += 1
            left -= 1
    i = 0
    while left > 0:  # room beyond the pending jobs (a standing cap): spread it
        out[names[i % len(names)]] += 1
        left -= 1
        i += 1
    return dict(out)


def _oldest_first(job: LicenseJob) -> tuple[bool, int, str, int, str]:
    jid = job.job_id.split("_", 1)[0]
    return (
        job.submit_epoch is None,
        job.submit_epoch or 0,
        job.cluster,
        int(jid) if jid.isdigit() else 0,
        job.job_id,
    )


def cluster_caps(
    decided: Caps, jobs: Iterable[LicenseJob], clusters: Sequence[str]
) -> dict[str, dict[str, int | None]]:
    """Decided caps (pair TRES -> cap) -> cluster -> pair TRES -> cap, for `clusters` (the clusters whose
    root association is written). Jobs are counted as `jobs_per_license` counts them: running, and
    pending that Slurm may start by itself."""
    names = sorted(set(clusters))
    if len(names) <= 1:
        return {c: dict(decided) for c in names}
    by_tres = {t.removeprefix("license/").lower(): t for t in decided}
    running: dict[str, dict[str, int]] = {t: {} for t in decided}
    pending: dict[str, list[LicenseJob]] = {t: [] for t in decided}
    for job in jobs:
        for name, _count in job.licenses:
            tres = by_tres.get(name.lower())
            if tres is None:
                continue
            if job.state == "RUNNING":
                running[tres][job.cluster] = running[tres].get(job.cluster, 0) + 1
            elif job.counts_as_demand:
                pending[tres].append(job)
    out: dict[str, dict[str, int | None]] = {c: {} for c in names}
    for tres, cap in decided.items():
        order = [j.cluster for j in sorted(pending[tres], key=_oldest_first)]
        for c, v in split_cap(cap, names, running[tres], order).items():
            out[c][tres] = v
    return out


__all__ = ["cluster_caps", "split_cap"]
