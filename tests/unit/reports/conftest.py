"""A site config and a SQLite ledger with 40 days of QPU job runs and rebalancer audit entries."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from qauvern_hpc.accounting.ledger import FINAL, PENDING, RunRow, open_ledger
from qauvern_hpc.devtools import qpu_site

DAY = 86400
NOW = (
    int(time.time()) // DAY
) * DAY  # midnight today (UTC): the reports end here, the last full day is yesterday
NOON = 12 * 3600
EVIL = "<script>alert(1)</script>"  # a user name a report must escape


def run_row(job: int, user: str, account: str, instance: str | None, seconds: float | None, end: int,
            *, wait: int = 120, state: str = "COMPLETED", resource: str = "ibm_torino",
            ru: float | None = None) -> RunRow:  # fmt: skip
    start = end - 600
    return RunRow(
        cluster="hpc", job_id=str(job), job_id_raw=job, array_job_id=None, array_task_id=None,
        het_job_id=None, het_offset=None, run=0, user=user, account=account, partition="quantum",
        qos="normal", resource=resource, instance=instance, session_id=f"s{job}", rule=account,
        submit=start - wait, start=start, end=end, wall_seconds=600, quantum_seconds=seconds,
        usage_state=FINAL if seconds is not None else PENDING, slurm_state=state,
    )  # fmt: skip


@dataclass
class Site:
    config: Path
    ledger_url: str


def fill(url: str) -> None:
    rows: list[RunRow] = []
    job = 1000
    for day in range(40, 0, -1):  # 40 days ago .. yesterday
        end = NOW - day * DAY + NOON
        physics = 3 * 3600 if day <= 7 else 3600  # physics speeds up in the last week
        rows.append(run_row(job, "alice", "phys", "physics", physics / 2, end, wait=60 * day))
        rows.append(run_row(job + 1, "bob", "phys", "physics", physics / 2, end + 60, wait=30))
        rows.append(run_row(job + 2, "carol", "chem", "chemistry", 1800.0, end + 120, wait=7200))
        job += 3
    rows.append(run_row(job, EVIL, "chem", "chemistry", 60.0, NOW - 2 * DAY + NOON, state="FAILED"))
    rows.append(run_row(job + 1, "bob", "phys", "physics", 0.0, NOW - 3 * DAY + NOON, state="CANCELLED by 0"))
    rows.append(run_row(job + 2, "bob", "phys", "physics", None, NOW - 3600))  # IBM has not reported yet
    with open_ledger(url) as ledger:
        ledger.upsert_runs(rows)
        ledger.record_audit(
            "r1", "root", "ibm.update_instance",
            before={"target": {"crn": "c1", "name": "physics"},
                    "value": {"allocation_seconds": 20 * 3600, "limit_seconds": 60 * 3600}},
            after={"step": "ibm:physics", "target": {"crn": "c1", "name": "physics"},
                   "value": {"allocation_seconds": 30 * 3600, "limit_seconds": 80 * 3600}},
            reason="demand: 4 pending jobs", at=NOW - 10 * DAY,
        )  # fmt: skip
        ledger.record_audit(
            "r1", "root", "ibm.update_instance",
            before={"target": {"crn": "c2", "name": "chemistry"},
                    "value": {"allocation_seconds": 20 * 3600, "limit_seconds": 40 * 3600}},
            after={"step": "ibm:chemistry", "target": {"crn": "c2", "name": "chemistry"},
                   "value": {"allocation_seconds": 10 * 3600, "limit_seconds": 40 * 3600}},
            reason=f"under-used <b>{EVIL}</b>", at=NOW - 10 * DAY + 1,
        )  # fmt: skip
        ledger.record_audit(
            "r1", "root", "slurm.fairshare",
            before={"target": {"cluster": "hpc", "account": "phys"}, "value": 50},
            after={"step": "slurm:phys", "target": {"cluster": "hpc", "account": "phys"}, "value": 75},
            reason="mirrors physics: 75 of 100 points of the QPU budget", at=NOW - 10 * DAY + 2,
        )  # fmt: skip


@pytest.fixture
def site(tmp_path: Path) -> Site:
    s = qpu_site.write_site(tmp_path, "http://127.0.0.1:9", operations=True)
    url = f"sqlite:///{tmp_path}/ledger.db"
    fill(url)
    return Site(s.config, url)
