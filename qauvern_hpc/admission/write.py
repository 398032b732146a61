"""Caps -> Slurm: the pair caps of a decision written as GrpTRES license items on each cluster's root
association, through `slurm.sacctmgr` (one `sacctmgr -i modify account where name=root cluster=C set
GrpTRES=license/a=N,license/b=-1` per cluster and period, only for the items that differ from what is live).
Each cluster gets its own caps (`split.cluster_caps`: a cluster's GrpTRES counts only its own jobs).

Invariants:
* The live values are read back every period (`live_caps`): an item someone else changed (drift) differs
  from the desired value and is written again, and `drift` names it.
* A cap of None is "no limit": the item is removed (`-1`); an absent item already means no limit.
* Only `license/qpu_*__*` items (pair licenses) of root associations are read or written; a pair whose
  license is not a tracked TRES is skipped (sacctmgr would refuse the whole call) and reported.
* Never touches nodes or jobs: Grp limits are checked when a job starts, so lowering a cap kills nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from qauvern_hpc.policy.licenses import LICENSE_PREFIX, PAIR_SEPARATOR
from qauvern_hpc.slurm.sacctmgr import Association, Sacctmgr

ROOT = "root"
Caps = Mapping[str, int | None]  # "license/qpu_a__b" -> cap (None: no limit)
ClusterCaps = Mapping[str, Caps]  # cluster -> its caps


def is_pair_tres(tres: str) -> bool:
    name = tres.removeprefix("license/")
    return tres.startswith("license/") and name.startswith(LICENSE_PREFIX) and PAIR_SEPARATOR in name


def live_caps(associations: Iterable[Association]) -> dict[str, dict[str, int]]:
    """Cluster -> the pair items set on its root association (absent = no limit)."""
    out: dict[str, dict[str, int]] = {}
    for a in associations:
        if a.is_account and a.account == ROOT:
            out[a.cluster] = {t: v for t, v in a.grp_tres.items() if is_pair_tres(t)}
    return out


def changes(desired: Caps, live: Mapping[str, int]) -> dict[str, int | None]:
    """The items to set so that `live` becomes `desired` (None = remove). Items not in `desired` are left
    alone: a pair that left the config is not ours to guess about."""
    out: dict[str, int | None] = {}
    for tres, want in desired.items():
        have = live.get(tres)
        if want is None or want < 0:
            if have is not None:
                out[tres] = None
        elif have != want:
            out[tres] = int(want)
    return out


@dataclass
class WriteResult:
    written: dict[str, dict[str, int | None]] = field(default_factory=dict)  # cluster -> items set
    drift: list[str] = field(default_factory=list)  # "cluster: tres live X, last written Y"
    untracked: list[str] = field(default_factory=list)  # pair TRES Slurm does not track

    @property
    def writes(self) -> int:
        return len(self.written)


class CapWriter:
    """Reads the live caps and writes the differences, one sacctmgr call per cluster."""

    def __init__(self, sacctmgr: Sacctmgr) -> None:
        self.sacctmgr = sacctmgr
        self._tracked: set[str] | None = None
        self.live_clusters: list[str] = []  # the clusters the last `apply` found

    def tracked(self, refresh: bool = False) -> set[str]:
        if self._tracked is None or refresh:
            self._tracked = {t for t in self.sacctmgr.tres_names() if t.startswith("license/")}
        return self._tracked

    def live(self) -> dict[str, dict[str, int]]:
        found = live_caps(self.sacctmgr.associations())
        if not found:
            from qauvern_hpc.core.errors import ServiceUnavailable

            raise ServiceUnavailable("sacctmgr shows no root association (is the cluster in slurmdbd?)")
        return found

    def apply(
        self,
        desired: ClusterCaps,
        last_written: Mapping[str, Mapping[str, int | None]] | None = None,
        *,
        live: Mapping[str, Mapping[str, int]] | None = None,
        dry_run: bool = False,
    ) -> WriteResult:
        """Bring each cluster's root association to its `desired` caps (a live cluster absent from
        `desired` is left alone). `live`: what `live()` returned this period (read again when None).
        `last_written` (cluster -> items) is what this controller wrote before: a live value that differs
        from it is reported as drift (and repaired)."""
        result = WriteResult()
        tracked = self.tracked()
        every = {t for caps in desired.values() for t in caps}
        if any(t not in tracked for t in every):
            tracked = self.tracked(refresh=True)
        result.untracked = sorted(t for t in every if t not in tracked)
        live_all = self.live() if live is None else live
        self.live_clusters = sorted(live_all)
        for cluster, now_items in sorted(live_all.items()):
            if cluster not in desired:
                continue
            wanted = {t: v for t, v in desired[cluster].items() if t in tracked}
            before = (last_written or {}).get(cluster, {})
            for tres, wrote in before.items():
                have = now_items.get(tres)
                if tres in wanted and have != (None if wrote is None or wrote < 0 else wrote):
                    result.drift.append(
                        f"{cluster}: {tres} is {_show(have)}, this controller wrote {_show(wrote)}"
                    )
            items = changes(wanted, now_items)
            if items:
                if not dry_run:
                    self.sacctmgr.set_grp_tres_items(ROOT, cluster, items)
                result.written[cluster] = items
        return result


def everywhere(caps: Caps, clusters: Iterable[str]) -> dict[str, dict[str, int | None]]:
    """The same caps on every cluster (fail modes: open and closed mean the same on each)."""
    return {c: dict(caps) for c in clusters}


def _show(value: int | None) -> str:
    return "unset" if value is None or value < 0 else str(value)


def failsafe_caps(fail_modes: Mapping[str, str]) -> dict[str, int | None]:
    """TRES -> the cap of its resource's fail mode: open -> no limit, closed -> 0."""
    return {t: (None if mode == "open" else 0) for t, mode in fail_modes.items()}


__all__ = [
    "ROOT",
    "CapWriter",
    "Caps",
    "ClusterCaps",
    "WriteResult",
    "changes",
    "everywhere",
    "failsafe_caps",
    "is_pair_tres",
    "live_caps",
]
