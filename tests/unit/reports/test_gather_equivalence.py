"""The one-pass gather (`reports/query.py`) gives the same figures as the per-figure queries it replaced
(`legacy_gather.py`, the code as it was), on the report's test ledger and on a random ledger with what the
test ledger lacks: runs on two QPUs, runs with no instance, never started, still going (no end), IBM
usage still pending, RUs on some runs only; for each grouping and for closed, open and off-midnight windows.
SQLite always; PostgreSQL too when its server binaries are installed."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from qauvern_hpc.accounting.ledger import FINAL, PENDING, RunKey, RunRow, open_ledger
from qauvern_hpc.reports import query
from qauvern_hpc.reports.gather import BY, gather
from qauvern_hpc.reports.model import Window
from tests.unit.accounting.test_ledger import PgServer, pg_server  # noqa: F401  (the fixture)
from tests.unit.reports import legacy_gather
from tests.unit.reports.conftest import DAY, NOW, Site

LIMITS = {"physics": 60 * 3600, "chemistry": None, "inst0": 7200, "inst1": None}
WINDOWS = (
    Window(NOW - 28 * DAY, NOW, "closed", False),
    Window(NOW - 28 * DAY, NOW, "open", True),
    Window(NOW - 9 * DAY - 5000, NOW - 3 * DAY + 700, "off midnight, closed", False),
    Window(NOW - 9 * DAY - 5000, NOW - 3 * DAY + 700, "off midnight, open", True),
)


def _same(url: str) -> None:
    with open_ledger(url) as ledger:
        for window in WINDOWS:
            for by in BY:
                new = gather(ledger, window, by=by, limits=LIMITS, now=NOW)
                old = legacy_gather.gather(ledger, window, by=by, limits=LIMITS, now=NOW)
                assert new == old, (window.label, by)


def test_same_figures_on_the_report_ledger(site: Site) -> None:
    _same(site.ledger_url)


def _random_rows(rng: random.Random) -> Iterator[tuple[RunRow, float | None]]:
    """(row, its RUs) for 1500 job runs over 60 days; quantum seconds in halves (sums exact in any order)."""
    for job in range(1, 1501):
        user = rng.randrange(12)
        instance = None if rng.random() < 0.05 else f"inst{rng.randrange(3)}"
        end: int | None = NOW - rng.randrange(60 * DAY)
        start: int | None = end - rng.randrange(1, 7200)
        if rng.random() < 0.04:
            start = end = None  # still queued or running: no end yet
        elif rng.random() < 0.05:
            start = None  # cancelled before it started
        submit = (start or end or NOW) - rng.choice((5, 90, 900, 7200, 30000, 100000)) - rng.randrange(30)
        state = rng.choice(("COMPLETED",) * 6 + ("FAILED", "CANCELLED by 0", "TIMEOUT"))
        with_ru = rng.random() < 0.7
        for resource in ("ibm_torino", "ibm_fez")[: 2 if rng.random() < 0.2 else 1]:
            seconds = None if rng.random() < 0.05 else rng.randrange(0, 4000) / 2
            yield (
                RunRow(
                    cluster=rng.choice(("hpc", "gpu")), job_id=str(job), job_id_raw=job, array_job_id=None,
                    array_task_id=None, het_job_id=None, het_offset=None, run=0, user=f"u{user}",
                    account=f"acct{user % 4}", partition="quantum", qos="normal", resource=resource,
                    instance=instance, session_id=f"s{job}", rule="r", submit=submit, start=start, end=end,
                    wall_seconds=None if start is None else 600, quantum_seconds=seconds,
                    usage_state=FINAL if seconds is not None else PENDING, slurm_state=state,
                ),
                seconds * 1.5 if with_ru and seconds is not None else None,
            )  # fmt: skip


def _fill_random(url: str) -> None:
    rows = list(_random_rows(random.Random(15)))
    with open_ledger(url) as ledger:
        ledger.upsert_runs([r for r, _ in rows])
        for row, ru in rows:
            if ru is not None and row.quantum_seconds is not None:
                key = RunKey(row.cluster, row.job_id_raw, 0, row.resource)
                ledger.set_usage(key, row.quantum_seconds, True, ru)
        for i in range(6):
            ledger.record_audit(
                f"r{i}", "root", "ibm.update_instance",
                before={"target": {"crn": f"c{i % 2}", "name": f"inst{i % 2}"},
                        "value": {"allocation_seconds": 3600 * (i + 1), "limit_seconds": 7200 * (i + 1)}},
                after={"target": {"crn": f"c{i % 2}", "name": f"inst{i % 2}"},
                       "value": {"allocation_seconds": 3600 * (i + 2), "limit_seconds": 7200 * (i + 2)}},
                reason="demand", at=NOW - (30 - 5 * i) * DAY,
            )  # fmt: skip


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_same_figures_on_a_random_ledger(kind: str, tmp_path, request: pytest.FixtureRequest) -> None:  # type: ignore[no-untyped-def]
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/ledger.db"
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        url = server.new_database()
    _fill_random(url)
    with open_ledger(url) as ledger:  # the ledger has what the test is about
        rows = ledger.runs()
        assert any(r.end is None for r in rows) and any(r.start is None and r.end for r in rows)
        assert any(r.instance is None for r in rows) and any(r.usage_state == PENDING for r in rows)
        assert len({(r.cluster, r.job_id_raw) for r in rows}) < len(rows)  # some runs on two QPUs
    _same(url)


@pytest.mark.parametrize("open_end", [False, True])
def test_sqlite_groups_the_runs_from_the_covering_index_without_sorting(site: Site, open_end: bool) -> None:
    """The per-run grouping (the one pass's big part) reads only the runs_report index, in its order."""
    per_run, params = query._per_run(Window(NOW - 28 * DAY, NOW, "w", open_end))
    with open_ledger(site.ledger_url) as ledger:
        plan = [str(r[-1]) for r in ledger.query(f"EXPLAIN QUERY PLAN {per_run}", params)]
        indexes = [
            str(r[1]) for r in ledger.query("SELECT type, name FROM sqlite_master WHERE tbl_name = 'runs'")
        ]
    reads = [p for p in plan if "runs" in p.split()]
    assert reads and all(p.startswith("SEARCH runs USING COVERING INDEX runs_report") for p in reads), plan
    assert not [p for p in plan if "TEMP B-TREE" in p], plan
    assert "runs_report" in indexes and "runs_end" not in indexes  # its prefix serves runs_end's queries
