"""Read and set the association settings the rebalancer manages, through `sacctmgr` (always `-i`).

Read (verified on Slurm 22.05.8):

    sacctmgr -n -P show assoc format=cluster,account,user,parentname,fairshare,grptres
    sacctmgr -n -P show tres format=type,name,id

    qsandbox|physics||root|500|cpu=8,license/qpu_physics=0      <- an account association (user empty)
    qsandbox|physics|qalice||1|                                 <- a user association

Write, account associations only (user empty), one setting per command so a failure names it:

    sacctmgr -i modify account where name=A cluster=C set Fairshare=N
    sacctmgr -i modify account where name=A cluster=C set GrpTRES=license/qpu_x=0      (gate)
    sacctmgr -i modify account where name=A cluster=C set GrpTRES=license/qpu_x=-1     (ungate: removes it)

The admission controller sets all the pair caps of a cluster in ONE call (documented in sacctmgr(1) 22.05):

    sacctmgr -i modify account where name=root cluster=C set GrpTRES=license/qpu_a__b=2,license/qpu_c__d=-1

`-i` commits without asking. Setting a value that is already in place prints "Modified" (exit 0) on 22.05 and
"Nothing modified" (exit 1) on other versions; `run_slurm` treats both as success, so every write here is
idempotent. GrpTRES set this way changes only the named TRES; the others stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from qauvern_hpc.slurm.run import run_slurm

ASSOC_FORMAT = "cluster,account,user,parentname,fairshare,grptres"


class Association(NamedTuple):
    cluster: str
    account: str
    user: str  # "" for the account's own association
    parent: str  # parent account ("" for user associations and root)
    fairshare: int | None  # None: "parent" or unreadable
    grp_tres: Mapping[str, int]  # "license/qpu_physics" -> 0

    @property
    def is_account(self) -> bool:
        return self.user == ""


def parse_tres(text: str) -> dict[str, int]:
    """`cpu=8,license/qpu_x=0` -> {"cpu": 8, "license/qpu_x": 0}; items without a number are skipped."""
    out: dict[str, int] = {}
    for item in text.strip().split(","):
        name, sep, value = item.strip().partition("=")
        if sep and name and value.lstrip("-").isdigit():
            out[name] = int(value)
    return out


def parse_associations(text: str) -> list[Association]:
    """`sacctmgr -n -P show assoc format=ASSOC_FORMAT` output -> associations."""
    out: list[Association] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) < 6:
            continue
        cluster, account, user, parent, fairshare, grptres = parts[:6]
        fs = fairshare.strip()
        out.append(
            Association(
                cluster=cluster.strip(),
                account=account.strip(),
                user=user.strip(),
                parent=parent.strip(),
                fairshare=int(fs) if fs.isdigit() else None,
                grp_tres=parse_tres(grptres),
            )
        )
    return out


def parse_tres_names(text: str) -> set[str]:
    """`sacctmgr -n -P show tres format=type,name,id` -> {"cpu", "license/qpu", ...}."""
    out: set[str] = set()
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) >= 2 and parts[0].strip():
            kind, name = parts[0].strip(), parts[1].strip()
            out.add(f"{kind}/{name}" if name else kind)
    return out


class Sacctmgr:
    """The sacctmgr calls the rebalancer makes. `clusters` restricts reads and writes to those clusters."""

    def __init__(self, sacctmgr: str = "sacctmgr", clusters: Iterable[str] = (), timeout: float = 60.0):
        self.sacctmgr = sacctmgr
        self.clusters = tuple(c for c in clusters if c)
        self.timeout = timeout

    def _where_cluster(self) -> list[str]:
        return ["where", f"cluster={','.join(self.clusters)}"] if self.clusters else []

    def associations(self) -> list[Association]:
        argv = [self.sacctmgr, "-n", "-P", "show", "assoc", *self._where_cluster(), f"format={ASSOC_FORMAT}"]
        return parse_associations(run_slurm(argv, timeout=self.timeout))

    def tres_names(self) -> set[str]:
        argv = [self.sacctmgr, "-n", "-P", "show", "tres", "format=type,name,id"]
        return parse_tres_names(run_slurm(argv, timeout=self.timeout))

    def modify_account_argv(self, account: str, cluster: str, setting: str) -> list[str]:
        where = ["where", f"name={account}"]
        if cluster:
            where.append(f"cluster={cluster}")
        return [self.sacctmgr, "-i", "modify", "account", *where, "set", setting]

    def set_fairshare(self, account: str, cluster: str, value: int) -> None:
        run_slurm(self.modify_account_argv(account, cluster, f"Fairshare={int(value)}"), timeout=self.timeout)

    def set_grp_tres(self, account: str, cluster: str, tres: str, value: int | None) -> None:
        """Set one GrpTRES item of an account; None removes it (-1)."""
        v = -1 if value is None else int(value)
        run_slurm(self.modify_account_argv(account, cluster, f"GrpTRES={tres}={v}"), timeout=self.timeout)

    def set_grp_tres_items(self, account: str, cluster: str, items: Mapping[str, int | None]) -> None:
        """Set several GrpTRES items of an account in one call (None removes an item: -1)."""
        if not items:
            return
        value = ",".join(f"{t}={-1 if v is None else int(v)}" for t, v in items.items())
        run_slurm(self.modify_account_argv(account, cluster, f"GrpTRES={value}"), timeout=self.timeout)


__all__ = [
    "ASSOC_FORMAT",
    "Association",
    "Sacctmgr",
    "parse_associations",
    "parse_tres",
    "parse_tres_names",
]
