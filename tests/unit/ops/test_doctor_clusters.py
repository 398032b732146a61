"""doctor checks every cluster of slurm.cluster: `squeue -M NAME` answers, and slurmdbd has an association on
it for each account the config maps there. sacctmgr's output is the recorded 22.05.8 association listing
(cluster `qsandbox`), replayed as two clusters: `qa` (the recording as is) and `qb` (chem only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qauvern_hpc.config import parse_config
from qauvern_hpc.ops.doctor import check_cluster
from qauvern_hpc.ops.doctor_gather import _clusters, mapped_accounts
from tests.support.paths import UNIT_FIXTURES

RECORDED = (UNIT_FIXTURES / "rebalance" / "sacctmgr-assoc-22.05.8.txt").read_text()
TWO_CLUSTERS = RECORDED.replace("qsandbox|", "qa|") + "".join(
    line.replace("qsandbox|", "qb|") + "\n" for line in RECORDED.splitlines() if "|physics|" not in line
)
CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:{g}::"


def config(
    tmp_path: Path,
    clusters: str,
    *,
    squeue_fails: str = "",
    sacctmgr_fails: bool = False,
    phys_on: str = "qa",
) -> object:
    sacctmgr = tmp_path / "sacctmgr"
    listing = tmp_path / "assoc.txt"
    listing.write_text(TWO_CLUSTERS)
    body = (
        'echo "sacctmgr: error: slurmdbd: Connection refused" >&2; exit 1'
        if sacctmgr_fails
        else (f"cat {listing}")
    )
    sacctmgr.write_text(f"#!/bin/sh\n{body}\n")
    squeue = tmp_path / "squeue"
    squeue.write_text(
        "#!/bin/sh\n"
        f'if [ "$2" = "{squeue_fails}" ]; then\n'
        '  echo "squeue: error: Problem talking to the database: Connection refused" >&2; exit 1\nfi\n'
        'echo "CLUSTER: $2"\n'
    )
    for p in (sacctmgr, squeue):
        p.chmod(0o755)
    text = f"""
ibm: {{account_id: acct, plan: premium}}
instances: [{{name: phys, crn: "{CRN.format(g="p")}"}}, {{name: chem, crn: "{CRN.format(g="c")}"}}]
resources: [{{name: ibm_torino}}]
slurm: {{cluster: [{clusters}], sacctmgr: {sacctmgr}, squeue: {squeue}}}
rules:
  - name: phys
    match: {{accounts: [physics], clusters: ["{phys_on}"]}}
    instance: phys
    resources: [ibm_torino]
  - {{name: chem, match: {{accounts: [chem, "!guest"]}}, instance: chem, resources: [ibm_torino]}}
"""
    return parse_config(text, "/tmp/c.yaml", check_key_files=False).config


def statuses(checks: list) -> dict[str, tuple[str, str]]:  # type: ignore[type-arg]
    return {c.name: (c.status, c.detail) for c in checks}


def test_every_cluster_answers_and_has_its_mapped_accounts(tmp_path: Path) -> None:
    cfg = config(tmp_path, "qa, qb")
    got = statuses(_clusters(cfg, {}))  # type: ignore[arg-type]
    assert got["cluster qa"][0] == "ok" and "2 mapped accounts" in got["cluster qa"][1]
    # physics is mapped only on qa (its rule says so): qb needs chem alone, which it has
    assert got["cluster qb"][0] == "ok" and "1 mapped accounts" in got["cluster qb"][1]


def test_a_missing_association_and_an_unregistered_cluster(tmp_path: Path) -> None:
    cfg = config(tmp_path, "qa, qb, qc", phys_on="q*")  # physics on every cluster now
    got = statuses(_clusters(cfg, {}))  # type: ignore[arg-type]
    assert got["cluster qa"][0] == "ok"
    assert got["cluster qb"] == ("warn", "accounts the config maps here have no association on it: physics")
    assert got["cluster qc"] == ("fail", "slurmdbd has no association on it")


def test_unreachable_slurmctld_or_slurmdbd_fail_per_cluster(tmp_path: Path) -> None:
    got = statuses(_clusters(config(tmp_path, "qa, qb", squeue_fails="qb"), {}))  # type: ignore[arg-type]
    assert got["cluster qa"][0] == "ok"
    assert (
        got["cluster qb"][0] == "fail"
        and "squeue -M qb: squeue: error: Problem talking" in got["cluster qb"][1]
    )
    got = statuses(_clusters(config(tmp_path, "qa", sacctmgr_fails=True), {}))  # type: ignore[arg-type]
    assert got["cluster qa"][0] == "fail" and "Connection refused" in got["cluster qa"][1]


def test_no_clusters_configured_is_skipped(tmp_path: Path) -> None:
    cfg = config(tmp_path, "")
    assert [(c.name, c.status) for c in _clusters(cfg, {})] == [("clusters", "skip")]  # type: ignore[arg-type]


def test_mapped_accounts_leave_out_globs_and_exclusions(tmp_path: Path) -> None:
    cfg = config(tmp_path, "qa, qb")
    assert mapped_accounts(cfg) == {"physics", "chem"}  # type: ignore[arg-type]
    assert mapped_accounts(cfg, "qb") == {"chem"}  # type: ignore[arg-type]


@pytest.mark.parametrize("accounts", [None, []])
def test_check_cluster_without_listing(accounts: list[str] | None) -> None:
    c = check_cluster("qa", squeue_error=None, accounts=accounts, accounts_error="boom", wanted=["x"])
    assert c.status == "fail"
