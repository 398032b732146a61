"""The rebalancer on several clusters (`slurm.cluster: [qa, qb]`), pure parts: `squeue -M` output tagged
per cluster and summed per instance, the Slurm changes grouped per cluster, and the journal resuming a run
killed between two clusters (or in the middle of one) with exactly the steps not yet applied."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.rebalance.apply import FaultHook, build_steps, execute
from qauvern_hpc.rebalance.demand import aggregate_pending
from qauvern_hpc.rebalance.enforce import plan_slurm
from qauvern_hpc.rebalance.journal import Journal, JournalStore, Step
from qauvern_hpc.slurm.sacctmgr import Association
from qauvern_hpc.slurm.squeue import parse_squeue, pending_jobs
from tests.unit.rebalance.test_rebalance import CONFIG, FakeAudit, _plan, cfg

CLUSTERS = "slurm: {cluster: [qa, qb]}\n"


def test_squeue_dash_m_tags_each_job_with_its_cluster_and_demand_sums_them() -> None:
    # squeue -M qa,qb prints a "CLUSTER: name" header before each cluster's jobs (a blank line between)
    lines = [
        "CLUSTER: qa\n",
        "11|u|chem|p|normal|qpu_chem:1|00:10:00|1000|5|Priority\n",
        "\n",
        "CLUSTER: qb\n",
        "100001|u|chem|p|normal|qpu_chem:1|00:20:00|1100|5|BeginTime\n",
        "100002|u|chem|p|normal|qpu_chem:1|00:20:00|1200|5|BeginTime\n",
        "100003|u|phys|p|normal|qpu_physics:1|00:05:00|1300|5|AssocGrpLicense\n",
    ]
    jobs = list(parse_squeue(lines))
    assert [(j.job_id, j.cluster) for j in jobs] == [
        ("11", "qa"),
        ("100001", "qb"),
        ("100002", "qb"),
        ("100003", "qb"),
    ]
    q = aggregate_pending(jobs, "qpu_", ["chem", "physics"], now=2000, max_job_seconds=3600)
    chem = q.by_instance["chem"]
    assert chem.pending_jobs == 3 and chem.queued_seconds == 600 + 2 * 1200  # the sum over both clusters
    assert chem.by_cluster == {"qa": 1, "qb": 2}
    assert q.by_instance["physics"].by_cluster == {"qb": 1}
    assert chem.to_dict()["by_cluster"] == {"qa": 1, "qb": 2}
    # One cluster (or none named): no header, no tag.
    single = list(parse_squeue([lines[1]]))
    assert single[0].cluster == ""
    assert (
        aggregate_pending(single, "qpu_", ["chem"], now=2000, max_job_seconds=3600)
        .by_instance["chem"]
        .by_cluster
        == {}
    )


def test_pending_jobs_reads_each_cluster_with_its_own_squeue_and_tags_its_jobs(tmp_path: Path) -> None:
    # 22.05.8's `squeue -h -M qa,qb` prints both clusters' jobs with no header: one call per cluster
    fake = tmp_path / "squeue"
    fake.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do last="$a"; done\n'  # -M NAME comes last
        'echo "$*" >> ' + str(tmp_path / "calls") + "\n"
        'echo "1|u|chem|p|normal|qpu_chem:1|00:10:00|1000|5|Priority"\n'
        '[ "$last" = qb ] && echo "2|u|chem|p|normal|qpu_chem:1|00:10:00|1000|5|Priority"\n'
        "exit 0\n"
    )
    fake.chmod(0o755)
    jobs = pending_jobs(str(fake), clusters=["qa", "qb"])
    assert [(j.job_id, j.cluster) for j in jobs] == [("1", "qa"), ("1", "qb"), ("2", "qb")]
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [c.split()[-2:] for c in calls] == [["-M", "qa"], ["-M", "qb"]]
    (tmp_path / "calls").unlink()
    assert [j.cluster for j in pending_jobs(str(fake), clusters=["qa"])] == [""]  # one cluster: one call
    assert len((tmp_path / "calls").read_text().splitlines()) == 1


def _assocs() -> list[Association]:
    """Both clusters' account associations, as sacctmgr lists them (not in cluster order)."""
    out: list[Association] = []
    for cluster in ("qb", "qa"):
        out += [
            Association(cluster, "root", "", "", 1, {}),
            Association(cluster, "physics", "", "root", 1, {}),
            Association(cluster, "chem", "", "root", 1, {}),
        ]
    return out


class ClusterSlurm:
    """sacctmgr over several clusters: associations keyed by (cluster, account); every write recorded."""

    def __init__(self, assocs: list[Association]) -> None:
        self.assocs = {(a.cluster, a.account): a for a in assocs}
        self.calls: list[tuple[str, str, Any]] = []

    def associations(self) -> list[Association]:
        return list(self.assocs.values())

    def set_fairshare(self, account: str, cluster: str, value: int) -> None:
        self.calls.append((cluster, account, value))
        key = (cluster, account)
        self.assocs[key] = self.assocs[key]._replace(fairshare=value)

    def set_grp_tres(self, account: str, cluster: str, tres: str, value: int | None) -> None:
        self.calls.append((cluster, account, f"{tres}={value}"))
        key = (cluster, account)
        g = dict(self.assocs[key].grp_tres)
        if value is None:
            g.pop(tres, None)
        else:
            g[tres] = value
        self.assocs[key] = self.assocs[key]._replace(grp_tres=g)


def _slurm_steps() -> list[Step]:
    c, plan = _plan(1500)  # chem at its limit: gated; Fairshare moves to physics
    c = cfg(CLUSTERS)
    sp = plan_slurm(c, plan, _assocs(), {"license/qpu_chem"})
    return [s for s in build_steps(plan, sp) if s.kind != "ibm"]


def test_slurm_changes_are_grouped_per_cluster_in_config_order_and_gate_every_cluster() -> None:
    steps = _slurm_steps()
    clusters = [s.target["cluster"] for s in steps]
    assert clusters == sorted(clusters) and set(clusters) == {"qa", "qb"}  # qa's group, then qb's
    for cluster in ("qa", "qb"):
        mine = [s for s in steps if s.target["cluster"] == cluster]
        # per cluster: Fairshare (physics; chem stays at 1) first, the gate last, on its root association
        assert [s.kind for s in mine] == ["fairshare", "gate"], mine
        assert mine[-1].target == {"cluster": cluster, "account": "root", "tres": "license/qpu_chem"}
    # The config's order decides, not the names: qb first when listed first.
    _, plan = _plan(1500)
    sp = plan_slurm(cfg("slurm: {cluster: [qb, qa]}\n"), plan, _assocs(), {"license/qpu_chem"})
    assert [ch.cluster for ch in sp.changes] == ["qb"] * 2 + ["qa"] * 2
    assert CONFIG  # the shared config of the rebalancer's unit tests


class Killed(BaseException):
    """Stands for the kill: nothing after it runs (not an Exception, so no handler catches it)."""


class KillAt(FaultHook):
    def __init__(self, point: str, n: int = 1) -> None:
        super().__init__("")
        self.kill_point, self.n, self.count = point, n, 0

    def hit(self, point: str) -> None:
        if point == self.kill_point:
            self.count += 1
            if self.count == self.n:
                raise Killed


def _kill_then_resume(
    tmp_path: Path, fault: FaultHook
) -> tuple[list[Step], ClusterSlurm, Journal, list[Any]]:
    steps = _slurm_steps()
    slurm, audit, store = ClusterSlurm(_assocs()), FakeAudit(), JournalStore(tmp_path)
    with pytest.raises(Killed):
        execute(Journal("r", "rebalance", "me", 0.0, steps), store, ibm=None, slurm=slurm, audit=audit,
                actor="me", fault=fault)  # fmt: skip
    before_resume = list(slurm.calls)
    loaded = store.load("r")  # what the next run finds on disk
    slurm.calls.clear()
    out = execute(loaded, store, ibm=None, slurm=slurm, audit=audit, actor="me2", resume=True,
                  fault=FaultHook(""))  # fmt: skip
    assert out.ok and store.load("r").status == "completed", loaded.error
    # every step written once in all, and audited once
    assert len(before_resume) + len(slurm.calls) == len(steps)
    assert sorted(e.after["step"] for e in audit.entries) == sorted(s.id for s in steps)
    return steps, slurm, loaded, before_resume


def test_killed_between_two_clusters_resumes_with_the_next_cluster_only(tmp_path: Path) -> None:
    _, slurm, loaded, before = _kill_then_resume(tmp_path, KillAt("between-clusters"))
    assert {c for c, _, _ in before} == {"qa"} and len(before) == 2  # qa complete when killed
    assert {c for c, _, _ in slurm.calls} == {"qb"} and len(slurm.calls) == 2  # the resume: qb only
    assert slurm.assocs[("qa", "root")].grp_tres == {"license/qpu_chem": 0}
    assert slurm.assocs[("qb", "root")].grp_tres == {"license/qpu_chem": 0}
    assert [s.state for s in loaded.steps] == ["done"] * 4


def test_killed_in_the_middle_of_a_cluster_finishes_it_then_the_next(tmp_path: Path) -> None:
    # Killed right after qa's 1st sacctmgr write returned, before it was recorded.
    _, slurm, loaded, before = _kill_then_resume(tmp_path, KillAt("after-slurm-write", 1))
    assert [c for c, _, _ in before] == ["qa"]
    assert [c for c, _, _ in slurm.calls] == ["qa", "qb", "qb"]  # qa's gate, then all of qb
    found = [s for s in loaded.steps if s.note and "found in place" in s.note]
    assert len(found) == 1 and found[0].target["cluster"] == "qa"


def test_a_resumed_run_compares_each_step_with_its_own_clusters_value(tmp_path: Path) -> None:
    """Someone changed qb's physics Fairshare meanwhile: qa's value alone would say "not applied yet"; the run
    is abandoned when it reaches qb's step, after finishing qa."""
    steps = _slurm_steps()
    slurm, audit, store = ClusterSlurm(_assocs()), FakeAudit(), JournalStore(tmp_path)
    with contextlib.suppress(Killed):
        execute(Journal("r", "rebalance", "me", 0.0, steps), store, ibm=None, slurm=slurm, audit=audit,
                actor="me", fault=KillAt("after-slurm-write", 1))  # fmt: skip
    slurm.assocs[("qb", "physics")] = slurm.assocs[("qb", "physics")]._replace(fairshare=42)
    slurm.calls.clear()
    out = execute(store.load("r"), store, ibm=None, slurm=slurm, audit=audit, actor="me2", resume=True,
                  fault=FaultHook(""))  # fmt: skip
    assert out.journal.status == "abandoned" and "(qb)" in (out.journal.error or "")
    assert {c for c, _, _ in slurm.calls} == {"qa"} and slurm.assocs[("qb", "physics")].fairshare == 42
