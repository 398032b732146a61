"""Several clusters in one ledger: the same job id on two clusters is two rows, usage groups by cluster,
and each cluster keeps its own high-water mark."""

from __future__ import annotations

from qauvern_hpc.accounting.ledger import FINAL, Ledger
from tests.unit.accounting.test_ledger import backend, ledger, pg_server, row  # noqa: F401 (fixtures)


def test_usage_by_cluster_keeps_the_same_job_id_of_two_clusters_apart(ledger: Ledger) -> None:  # noqa: F811
    ledger.upsert_runs(
        [
            row(1, cluster="qa", quantum_seconds=10.0, usage_state=FINAL),
            row(1, cluster="qb", quantum_seconds=4.0, usage_state=FINAL),
            row(2, cluster="qb", quantum_seconds=1.5, usage_state=FINAL),
        ]
    )
    by = {u.key: (u.jobs, u.quantum_seconds) for u in ledger.usage_by("cluster")}
    assert by == {"qa": (1, 10.0), "qb": (2, 5.5)}
    assert [u.quantum_seconds for u in ledger.usage_by("account")] == [15.5]


def test_each_cluster_has_its_own_high_water_mark(ledger: Ledger) -> None:  # noqa: F811
    ledger.set_high_water("qa", 100)
    ledger.set_high_water("qb", 200)
    ledger.set_high_water("qa", 150)
    assert (ledger.get_high_water("qa"), ledger.get_high_water("qb"), ledger.get_high_water("qc")) == (
        150,
        200,
        None,
    )
