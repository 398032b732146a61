"""What Slurm should look like after a plan: Fairshare mirrored from the instances' shares, and gates on
instances whose quantum limit is reached. Pure: associations in, changes out.

Fairshare (`rebalance.slurm.fairshare`)
---------------------------------------
Each managed instance's share of the new managed allocation total, times `fairshare_scale`, is split evenly
among the Slurm accounts mapped to the instance; an account mapped to several instances gets the sum;
every value is at least 1. The accounts of an instance are `rebalance.slurm.accounts[instance]` when
given, else the Slurm accounts that the `accounts` globs of the allow rules for that instance match (a rule
without `accounts` maps no account: it would otherwise claim every account of the cluster). Slurm's
Fairshare is per association, not per TRES, so the mirror also weighs the mapped accounts' other work;
keep QPU projects in accounts of their own (or set `fairshare: false`).

Gate (`rebalance.slurm.gate`)
-----------------------------
QPU jobs carry the license `<prefix><instance>` (job_submit.lua). While an instance's limit is reached
(28-day usage >= effective limit, as planned), the root association of each cluster gets
`GrpTRES=license/<prefix><instance>=0`: Grp limits cover the whole tree (verified on 22.05.8: the root
association's GrpTRES is enforced), so every job of that instance, whatever its account, stays PENDING with
reason `AssocGrpLicense` instead of starting and failing at IBM; running jobs go on
(AccountingStorageEnforce=safe). Jobs of other instances are not affected. With several clusters
(`slurm.cluster`) the gate goes on the root association of every one of them: IBM's limit is the instance's,
whichever cluster a job runs on, so a job of an exhausted instance would fail at IBM from any cluster. When
usage rolls off (limit no longer reached) the item is removed (`=-1`). One sacctmgr call per gated instance
and cluster, whatever the number of accounts. The license must be a tracked TRES
(`AccountingStorageTRES=license/<prefix><instance>`), else the instance cannot be gated: a warning says so.

With `admission.enabled` the admission controller holds back an exhausted instance's jobs (its pair caps,
decided each period from IBM's `usage_limit_reached`): the rebalancer sets no gate any more (one writer)
and only removes a gate left from before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from qauvern_hpc.config import Config
from qauvern_hpc.planner.model import PlanResult
from qauvern_hpc.policy.mapping import list_match
from qauvern_hpc.slurm.sacctmgr import Association

FAIRSHARE = "fairshare"
GATE = "gate"
_GLOB_CHARS = frozenset("*?[!")


@dataclass(frozen=True, slots=True)
class SlurmChange:
    """One sacctmgr write. `before`/`after`: Fairshare points, or the GrpTRES value (None = not set)."""

    kind: str  # FAIRSHARE | GATE
    cluster: str
    account: str
    before: int | None
    after: int | None
    why: str
    tres: str | None = None  # GATE: "license/qpu_physics"
    instances: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        base = f"{self.kind}:{self.cluster}:{self.account}"
        return f"{base}:{self.tres}" if self.tres else base


@dataclass(frozen=True, slots=True)
class InstanceSlurmState:
    instance: str
    accounts: tuple[str, ...]
    fairshare_before: Mapping[str, int | None]
    fairshare_after: Mapping[str, int]
    license: str | None
    gate_available: bool
    gated_before: bool
    gated_after: bool


@dataclass(frozen=True, slots=True)
class SlurmPlan:
    changes: tuple[SlurmChange, ...]
    instances: Mapping[str, InstanceSlurmState]
    warnings: tuple[str, ...] = field(default_factory=tuple)


def mapped_accounts(
    cfg: Config, slurm_accounts: Iterable[str], instances: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """Instance name -> Slurm accounts mirroring it (config override, else the rules' account globs)."""
    accounts = sorted({a for a in slurm_accounts if a and a != "root"})
    known = set(accounts)
    overrides = cfg.rebalance.slurm.accounts
    # instance -> the `accounts` lists of its allow rules, each with "has no glob character"
    globs_of: dict[str, list[tuple[list[str], bool]]] = {}
    for r in cfg.rules:  # the default rule has no `accounts`: it maps no account
        if not r.deny and r.instance is not None and r.match.accounts is not None:
            globs = r.match.accounts
            plain = _GLOB_CHARS.isdisjoint("".join(globs))
            globs_of.setdefault(r.instance, []).append((globs, plain))
    out: dict[str, tuple[str, ...]] = {}
    for name in instances:
        if name in overrides:
            out[name] = tuple(sorted(set(overrides[name])))
            continue
        hits: set[str] = set()
        for globs, plain in globs_of.get(name, ()):
            if plain:  # plain names: no need to try every account
                hits.update(known.intersection(globs))
            else:
                hits.update([a for a in accounts if list_match(globs, a)[0]])
        out[name] = tuple(sorted(hits))
    return out


def fairshare_targets(
    shares: Mapping[str, int], accounts: Mapping[str, Sequence[str]], scale: int
) -> dict[str, int]:
    """Account -> Fairshare from instance allocations (`shares`, seconds) and their mapped accounts."""
    total = sum(v for v in shares.values() if v > 0)
    points: dict[str, float] = {}
    for inst, accts in accounts.items():
        if not accts:
            continue
        part = scale * shares.get(inst, 0) / total if total > 0 else 0.0
        for account in accts:
            points[account] = points.get(account, 0.0) + part / len(accts)
    return {a: max(1, round(p)) for a, p in points.items()}


def plan_slurm(
    cfg: Config,
    plan: PlanResult,
    associations: Sequence[Association],
    tres_names: set[str],
) -> SlurmPlan:
    """Changes that bring Slurm in line with `plan`, in apply order: ungates, Fairshare, gates."""
    rs = cfg.rebalance.slurm
    name_by_crn = {i.crn: i.name for i in cfg.instances}
    by_name = {name_by_crn[p.crn]: p for p in plan.instances if p.crn in name_by_crn}
    names = list(by_name)
    account_assocs = [a for a in associations if a.is_account and a.account != "root"]
    accounts = mapped_accounts(cfg, (a.account for a in account_assocs), names)
    warnings: list[str] = []
    known_accounts = {a.account for a in account_assocs}
    for inst, accts in accounts.items():
        kept = tuple([a for a in accts if a in known_accounts])
        if len(kept) != len(accts):
            if inst in rs.accounts:
                missing = [a for a in accts if a not in known_accounts]
                warnings.append(
                    f"rebalance.slurm.accounts[{inst}]: no Slurm account {', '.join(missing)} (skipped)"
                )
            accounts[inst] = kept

    ungates: list[SlurmChange] = []
    gates: list[SlurmChange] = []
    fairshare: list[SlurmChange] = []
    fs_after: dict[str, int] = {}
    if rs.fairshare:
        shares = {n: p.new_allocation_seconds for n, p in by_name.items()}
        fs_after = fairshare_targets(shares, accounts, rs.fairshare_scale)
        owners: dict[str, list[str]] = {}
        for inst, accts in accounts.items():
            for a in accts:
                owners.setdefault(a, []).append(inst)
        for assoc in account_assocs:
            want = fs_after.get(assoc.account)
            if want is None or assoc.fairshare == want:
                continue
            insts = tuple(owners.get(assoc.account, ()))
            fairshare.append(
                SlurmChange(
                    FAIRSHARE,
                    assoc.cluster,
                    assoc.account,
                    assoc.fairshare,
                    want,
                    f"mirrors {' + '.join(insts)}: {want} of {rs.fairshare_scale} points of the QPU budget",
                    instances=insts,
                )
            )
    top = [a for a in associations if a.is_account and a.account == "root"]
    set_on_top: dict[str, list[Association]] = {}  # TRES -> root associations where it is set
    for top_assoc in top:
        for t in top_assoc.grp_tres:
            set_on_top.setdefault(t, []).append(top_assoc)
    fs_live = {a.account: a.fairshare for a in account_assocs}
    states: dict[str, InstanceSlurmState] = {}
    prefix = rs.license_prefix
    for name, p in by_name.items():
        lic = f"{prefix}{name}" if prefix else None
        tres = f"license/{lic}" if lic else None
        available = bool(tres and tres in tres_names)
        tops = set_on_top.get(tres) if tres else None
        gated_before = bool(tops) and any(a.grp_tres[tres or ""] == 0 for a in tops or ())
        want_gate = rs.gate and p.limit_reached and not cfg.admission.enabled
        gated_after = gated_before
        if rs.gate and tres is not None:
            if not available:
                if want_gate:
                    warnings.append(
                        f"{name}: limit reached but its jobs cannot be gated: {tres} is not a tracked TRES "
                        f"(add it to Licenses= and AccountingStorageTRES= in slurm.conf)"
                    )
            else:
                gated_after = want_gate
                for assoc in top if want_gate else set_on_top.get(tres, ()):
                    live = assoc.grp_tres.get(tres)
                    if want_gate and live != 0:
                        gates.append(
                            SlurmChange(
                                GATE,
                                assoc.cluster,
                                assoc.account,
                                live,
                                0,
                                f"{name}: limit reached ({p.consumed_28d_seconds}s used of "
                                f"{p.effective_limit_seconds}s in 28 days): hold its QPU jobs",
                                tres=tres,
                                instances=(name,),
                            )
                        )
                    elif not want_gate and live is not None:
                        ungates.append(
                            SlurmChange(
                                GATE,
                                assoc.cluster,
                                assoc.account,
                                live,
                                None,
                                f"{name}: below its limit again ({p.consumed_28d_seconds}s used of "
                                f"{p.effective_limit_seconds}s): release its QPU jobs",
                                tres=tres,
                                instances=(name,),
                            )
                        )
        accts = accounts.get(name, ())
        states[name] = InstanceSlurmState(
            instance=name,
            accounts=accts,
            fairshare_before={a: fs_live.get(a) for a in accts} if accts else {},
            fairshare_after={a: fs_after[a] for a in accts if a in fs_after} if accts else {},
            license=lic,
            gate_available=available,
            gated_before=gated_before,
            gated_after=gated_after,
        )
    return SlurmPlan(by_cluster(ungates + fairshare + gates, cfg.slurm.cluster), states, tuple(warnings))


def by_cluster(changes: Sequence[SlurmChange], clusters: Sequence[str]) -> tuple[SlurmChange, ...]:
    """`changes` grouped per cluster, in the config's cluster order (others after, by name), each group
    keeping the apply order (ungates, Fairshare, gates): a run stopped between two clusters leaves one
    cluster complete and the next untouched, and the journal resumes with the next one only."""
    rank = {c: i for i, c in enumerate(clusters)}
    return tuple(sorted(changes, key=lambda c: (rank.get(c.cluster, len(rank)), c.cluster)))


__all__ = [
    "FAIRSHARE",
    "GATE",
    "InstanceSlurmState",
    "SlurmChange",
    "SlurmPlan",
    "by_cluster",
    "fairshare_targets",
    "mapped_accounts",
    "plan_slurm",
]
