"""The admission controller on several clusters: each pair's decided cap split between the clusters (each
cluster's GrpTRES counts only its own jobs), squeue read cluster by cluster, each cluster written its own."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from qauvern_hpc.admission.model import AdmissionSettings, ControllerState, Decision, Observation
from qauvern_hpc.admission.observe import PairSpec
from qauvern_hpc.admission.service import Controller, Sources, explain_job, failsafe, read_state
from qauvern_hpc.admission.split import cluster_caps, split_cap
from qauvern_hpc.admission.write import CapWriter
from qauvern_hpc.commands.admit import _pairs_text
from qauvern_hpc.slurm.sacctmgr import Association
from qauvern_hpc.slurm.squeue import LicenseJob, license_jobs
from tests.unit.admission.test_admission_service import FakeIbm, stand_in_decide

FEZ = "qpu_chemistry__ibm_fez"
TRES = f"license/{FEZ}"


def test_one_cluster_is_the_identity() -> None:
    for cap in (None, 0, 1, 7):
        assert split_cap(cap, ["qa"], {"qa": 5}, ["qa", "qa"]) == {"qa": cap}
    jobs = [LicenseJob("1", "RUNNING", ((FEZ, 1),), 10, "None", "")]
    assert cluster_caps({TRES: 3}, jobs, ["c1"]) == {"c1": {TRES: 3}}


def test_admissions_go_to_the_clusters_with_pending_jobs_oldest_first() -> None:
    # pending only on qb: qb gets both admissions, qa nothing new
    assert split_cap(2, ["qa", "qb"], {}, ["qb", "qb"]) == {"qa": 0, "qb": 2}
    # running on both clusters stays; the one admission goes to the oldest pending job's cluster
    assert split_cap(4, ["qa", "qb"], {"qa": 2, "qb": 1}, ["qb", "qa"]) == {"qa": 2, "qb": 2}
    assert split_cap(4, ["qa", "qb"], {"qa": 2, "qb": 1}, ["qa", "qb"]) == {"qa": 3, "qb": 1}
    # room beyond the pending jobs (a standing cap) is spread over the clusters, never added twice
    assert split_cap(5, ["qb", "qa"], {}, ["qb"]) == {"qa": 2, "qb": 3}


def test_zero_and_no_limit_are_the_same_everywhere_and_a_cap_below_running_admits_nothing() -> None:
    assert split_cap(0, ["qa", "qb"], {"qa": 3}, ["qb"]) == {"qa": 0, "qb": 0}
    assert split_cap(None, ["qa", "qb"], {"qa": 3}, ["qb"]) == {"qa": None, "qb": None}
    below = split_cap(2, ["qa", "qb"], {"qa": 1, "qb": 2}, ["qa", "qb"])
    assert below == {"qa": 1, "qb": 1}  # each at or under its own running jobs: nothing new starts


@pytest.mark.parametrize("cap", [1, 2, 3, 6, 11])
def test_the_caps_of_the_clusters_never_sum_above_the_decided_cap(cap: int) -> None:
    running = {"qa": 2, "qb": 3, "qc": 0}
    for pending in ([], ["qc"] * 4, ["qa", "qb", "qc", "qx"]):  # qx: not a written cluster
        caps = split_cap(cap, ["qa", "qb", "qc"], running, pending)
        total = sum(v for v in caps.values() if v is not None)
        assert total == cap  # all of it is handed out, and no more


def test_cluster_caps_counts_each_clusters_jobs_and_orders_pending_by_submit_time() -> None:
    jobs = [
        LicenseJob("7", "RUNNING", ((FEZ, 1),), 5, "None", "qa"),
        LicenseJob("8", "PENDING", ((FEZ, 1),), 30, "AssocGrpLicense", "qa"),
        LicenseJob("3", "PENDING", ((FEZ, 1),), 20, "AssocGrpLicense", "qb"),  # the oldest pending
        LicenseJob("4", "PENDING", ((FEZ, 1),), 1, "JobHeldUser", "qa"),  # held: not demand
        LicenseJob("9", "PENDING", (("qpu_other__x", 1),), 1, "AssocGrpLicense", "qa"),  # not capped here
    ]
    out = cluster_caps({TRES: 2, "license/qpu_physics__ibm_fez": None}, jobs, ["qb", "qa"])
    assert out == {
        "qa": {TRES: 1, "license/qpu_physics__ibm_fez": None},
        "qb": {TRES: 1, "license/qpu_physics__ibm_fez": None},
    }
    assert cluster_caps({TRES: 3}, jobs, ["qa", "qb"]) == {"qa": {TRES: 2}, "qb": {TRES: 1}}


class TwoClusters:
    """sacctmgr over two clusters' root associations (the FakeSacctmgr of test_admission_service has one)."""

    def __init__(self) -> None:
        self.root: dict[str, dict[str, int]] = {"qa": {}, "qb": {}}
        self.calls: list[tuple[str, dict[str, int | None]]] = []
        self.reads = 0

    def tres_names(self) -> set[str]:
        return {TRES}

    def associations(self) -> list[Association]:
        self.reads += 1
        return [Association(c, "root", "", "", 1, dict(v)) for c, v in self.root.items()]

    def set_grp_tres_items(self, account: str, cluster: str, items: dict[str, int | None]) -> None:
        assert account == "root"
        self.calls.append((cluster, dict(items)))
        for t, v in items.items():
            if v is None:
                self.root[cluster].pop(t, None)
            else:
                self.root[cluster][t] = v


def test_writer_writes_each_cluster_its_own_cap() -> None:
    fake = TwoClusters()
    w = CapWriter(fake)  # type: ignore[arg-type]
    r = w.apply({"qa": {TRES: 0}, "qb": {TRES: 1}})
    assert fake.calls == [("qa", {TRES: 0}), ("qb", {TRES: 1})] and r.writes == 2
    fake.root["qb"][TRES] = 4  # someone else changed qb only
    r = w.apply({"qa": {TRES: 0}, "qb": {TRES: 1}}, {"qa": {TRES: 0}, "qb": {TRES: 1}})
    assert r.written == {"qb": {TRES: 1}} and r.drift == [f"qb: {TRES} is 4, this controller wrote 1"]


def test_controller_on_two_clusters_caps_the_pair_once_for_the_site(tmp_path: Path) -> None:
    fake = TwoClusters()
    jobs = [
        LicenseJob("1", "RUNNING", ((FEZ, 1),), 5, "None", "qa"),
        LicenseJob("1", "PENDING", ((FEZ, 1),), 10, "AssocGrpLicense", "qb"),
        LicenseJob("2", "PENDING", ((FEZ, 1),), 20, "AssocGrpLicense", "qa"),
    ]

    def cap_two(
        obs: Observation, state: ControllerState, settings: AdmissionSettings
    ) -> tuple[Decision, ControllerState]:
        d, st = stand_in_decide(obs, state, settings)
        return dataclasses.replace(d, pairs=tuple(dataclasses.replace(p, cap=2) for p in d.pairs)), st

    specs = [PairSpec("chemistry", "ibm_fez", FEZ, "closed", "crn:x")]
    sources = Sources(ibm=FakeIbm(), jobs=lambda: list(jobs), writer=CapWriter(fake))  # type: ignore[arg-type]
    c = Controller(
        specs, AdmissionSettings(period_seconds=3), tmp_path, sources, decide_fn=cap_two,
        clock=lambda: 100.0, log=io.StringIO(),
    )  # fmt: skip
    r = c.step()
    # cap 2 for the site = 1 running on qa + 1 admission, to qb's job (submitted before qa's pending one)
    assert r.written == {"qa": {TRES: 1}, "qb": {TRES: 1}} and fake.reads == 1
    st = read_state(tmp_path)
    assert st is not None and st["applied"] == {"qa": {TRES: 1}, "qb": {TRES: 1}}
    row = st["pairs"][0]
    assert (row["cap"], row["running"], row["pending"]) == (2, 1, 2)  # the site's totals, as before
    assert row["clusters"] == {
        "qa": {"cap": 1, "running": 1, "pending": 1},
        "qb": {"cap": 1, "running": 0, "pending": 1},
    }
    assert "2 (qa 1, qb 1)" in _pairs_text(st["pairs"])  # admit status shows each cluster's share
    waits = explain_job(jobs[2], st, now=101.0)["lines"][0]
    assert "waits for ibm_fez (instance chemistry) on cluster qa" in waits and "(1 running)" in waits
    starts = explain_job(jobs[1], st, now=101.0)["lines"][0]
    assert "may start on ibm_fez (instance chemistry) on cluster qb (cap 1, 0 running)" in starts
    # the failsafe closes the pair on both clusters and records it for both
    failsafe(specs, tmp_path, CapWriter(fake), now=200.0)  # type: ignore[arg-type]
    assert fake.root == {"qa": {TRES: 0}, "qb": {TRES: 0}}
    st = read_state(tmp_path)
    assert st is not None and st["applied"] == {"qa": {TRES: 0}, "qb": {TRES: 0}}


def test_license_jobs_reads_each_cluster_with_its_own_squeue_and_tags_its_jobs(tmp_path: Path) -> None:
    # 22.05.8's `squeue -h -M qa,qb` prints both clusters' jobs with no header: one call per cluster
    fake = tmp_path / "squeue"
    fake.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do last="$a"; done\n'  # -M NAME comes last
        'echo "$*" >> ' + str(tmp_path / "calls") + "\n"
        f'echo "1|RUNNING|{FEZ}:1|1000|None"\n'
        f'[ "$last" = qb ] && echo "2|PENDING|{FEZ}:1|1001|AssocGrpLicense"\n'
        "exit 0\n"
    )
    fake.chmod(0o755)
    jobs = license_jobs(str(fake), clusters=["qa", "qb"])
    assert [(j.job_id, j.state, j.cluster) for j in jobs] == [
        ("1", "RUNNING", "qa"),
        ("1", "RUNNING", "qb"),
        ("2", "PENDING", "qb"),
    ]
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [c.split()[-2:] for c in calls] == [["-M", "qa"], ["-M", "qb"]]
    (tmp_path / "calls").unlink()
    assert [j.cluster for j in license_jobs(str(fake), clusters=["qa"])] == [""]  # one cluster: one call
    assert len((tmp_path / "calls").read_text().splitlines()) == 1
