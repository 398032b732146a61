"""`qauvern-hpc collect` and `usage` end to end: real Slurm jobs with --qpu on the sandbox, real sacct, the
IBM emulator's sessions. The ledger must hold exactly what the emulator charged, once, whatever fails on
the way.

Tests run in file order on one cluster; each adds jobs and checks the ledger against the emulator.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.accounting.collector import CRASH_ENV, CRASH_EXIT
from qauvern_hpc.accounting.ledger import open_ledger
from qauvern_hpc.accounting.ledger.models import StoredRun
from qauvern_hpc.devtools import qpu_site
from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.devtools.sandbox import Sandbox

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")


@dataclass
class Rig:
    sb: Sandbox
    emu: Any
    site: qpu_site.Site
    job_script: Path
    t0: datetime

    @property
    def ledger_url(self) -> str:
        return f"sqlite:///{self.site.directory}/ledger.db"

    def cli(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
        full = dict(os.environ)
        full.pop(CRASH_ENV, None)
        full.update(SLURM_CONF=str(self.sb.slurm_conf), **(env or {}))
        proc = subprocess.run(
            [sys.executable, "-m", "qauvern_hpc", "-c", str(self.site.config), "--json", *args],
            env=full,
            capture_output=True,
            text=True,
            timeout=180,
        )
        try:
            doc = json.loads(proc.stdout) if proc.stdout.strip() else None
        except ValueError:
            doc = proc.stdout
        return proc.returncode, doc, proc.stderr

    def rows(self) -> list[StoredRun]:
        with open_ledger(self.ledger_url) as ledger:
            return ledger.runs()

    def high_water(self) -> int | None:
        with open_ledger(self.ledger_url) as ledger:
            return ledger.get_high_water("")

    def ibm_usage(self, crn: str) -> float:
        """What the emulator charged the instance since the tests started (the seed's history is older)."""
        return float(self.emu.state.usage_seconds(crn, self.t0, datetime.now(UTC)))

    def session_charged(self, session_id: str) -> float:
        """What the emulator charges one session under IBM's rules: its jobs' quantum seconds in batch mode,
        the session's active wall time in dedicated mode."""
        return float(self.emu.state.session(session_id)["elapsed_time"])

    def run_jobs(self, specs: list[dict[str, Any]]) -> list[int]:
        ids = []
        for spec in specs:
            script = spec.get("script") or f"/usr/bin/python3 {self.job_script} {spec['seconds']}\n"
            ids.append(
                self.sb.submit(
                    script,
                    user=spec["user"],
                    account=spec["account"],
                    partition=spec.get("partition"),
                    extra_args=[f"--qpu={spec['qpu']}"],
                )
            )
        return ids

    def settle(self, ids: list[int]) -> dict[int, str]:
        states = {j: self.sb.wait_job(j, states=FINAL_STATES, timeout=120) for j in ids}
        assert _wait(lambda: all(s["state"] == "closed" for s in self.emu.state.snapshot()["sessions"]))
        # The AdminComment update is asynchronous: wait until sacct shows it for every job.
        for j in ids:
            assert _wait(functools.partial(self._recorded, j))
        return states

    def _recorded(self, job: int) -> bool:
        return "qauvern:v1" in self.sb.job(job, ("JobID", "AdminComment")).get("AdminComment", "")


def _wait(pred: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.3)
    return pred()


@pytest.fixture(scope="module")
def rig(sandbox_factory: Callable[..., Sandbox]) -> Iterator[Rig]:
    site_dir = Path(tempfile.mkdtemp(prefix="qauvern-hpc-collect-", dir="/tmp"))
    site_dir.chmod(0o755)
    with run_emulator(qpu_site.emulator_seed(), clock="real") as emu:
        site = qpu_site.write_site(site_dir, emu.base_url, operations=True)
        sb = sandbox_factory("collect", hooks=qpu_site.sandbox_hooks(site), accounts=qpu_site.ACCOUNTS)
        qpu_site.set_hook_env(site, {"SLURM_CONF": str(sb.slurm_conf)})
        script = sb.jobs_dir / "qpu_job.py"
        shutil.copy(qpu_site.JOB_SCRIPT, script)
        script.chmod(0o755)
        yield Rig(sb, emu, site, script, datetime.now(UTC))
        qpu_site.stop_hookd(site)
    shutil.rmtree(site_dir, ignore_errors=True)


def _by_job(rows: list[StoredRun]) -> dict[tuple[int, str], StoredRun]:
    return {(r.job_id_raw, r.resource): r for r in rows}


def _assert_charged(rig: Rig, row: StoredRun, nominal: float) -> None:
    """The row holds exactly what the emulator charged its session. That is at least the job's nominal
    quantum time (give or take the emulator's real clock on a busy machine) and, for a dedicated session,
    its active wall time, which is a little more."""
    assert row.session_id, row
    assert row.quantum_seconds == pytest.approx(rig.session_charged(row.session_id), abs=1e-3), row
    assert nominal - 0.25 <= (row.quantum_seconds or 0) <= nominal + 5, row


def _assert_ledger_matches_ibm(rig: Rig) -> None:
    rows = rig.rows()
    for name, crn in (("physics", qpu_site.CRN_PHYS), ("chemistry", qpu_site.CRN_CHEM)):
        ours = sum(r.quantum_seconds or 0.0 for r in rows if r.instance == name)
        assert ours == pytest.approx(rig.ibm_usage(crn), abs=0.01), name


def test_collect_attributes_exactly_the_emulators_usage_to_each_job(rig: Rig) -> None:
    specs: list[dict[str, Any]] = [
        {"user": "qalice", "account": "physics", "qpu": "ibm_torino", "seconds": 3},
        {"user": "qbob", "account": "physics", "qpu": "ibm_torino,ibm_fez", "seconds": 2},
        {"user": "qcarol", "account": "chem", "partition": "quantum", "qpu": "ibm_fez", "seconds": 2},
        # a job that fails after its quantum work: IBM still charges the work
        {
            "user": "qbob",
            "account": "physics",
            "qpu": "ibm_torino",
            "script": f"/usr/bin/python3 {rig.job_script} 1\nexit 3\n",
        },
    ]
    ids = rig.run_jobs(specs)
    states = rig.settle(ids)
    assert states[ids[3]] == "FAILED"

    rc, doc, err = rig.cli("collect", "--reconcile")
    assert rc == 0, err
    assert doc["clusters"][0]["qpu_records"] >= 4
    rows = _by_job(rig.rows())
    _assert_charged(rig, rows[(ids[0], "ibm_torino")], 3.0)
    _assert_charged(rig, rows[(ids[1], "ibm_torino")], 2.0)
    _assert_charged(rig, rows[(ids[3], "ibm_torino")], 1.0)
    assert rows[(ids[3], "ibm_torino")].slurm_state == "FAILED"
    carol = rows[(ids[2], "ibm_fez")]
    assert (carol.user, carol.account, carol.partition, carol.instance) == (
        "qcarol",
        "chem",
        "quantum",
        "chemistry",
    )
    assert all(r.usage_state == "final" for r in rows.values())
    _assert_ledger_matches_ibm(rig)

    # Reconciliation: the seed's pre-test usage is IBM's and nobody's job: shown as unattributed.
    rec = {r["instance"]: r for r in doc["reconciliation"]}
    for name in ("physics", "chemistry"):
        r = rec[name]
        assert r["unattributed_seconds"] == pytest.approx(
            r["ibm_seconds"] - r["attributed_seconds"], abs=0.01
        )
        assert r["attributed_seconds"] == pytest.approx(
            sum(x.quantum_seconds or 0 for x in rows.values() if x.instance == name), abs=0.01
        )


def test_a_second_collect_changes_nothing(rig: Rig) -> None:
    before = rig.rows()
    rc, doc, err = rig.cli("collect")
    assert rc == 0, err
    assert doc["finalized"] == 0 and doc["updated"] == 0
    assert sum(p["changed"] for p in doc["clusters"]) == 0
    after = rig.rows()
    assert [r._replace(updated_at=0) for r in after] == [r._replace(updated_at=0) for r in before]


def test_usage_by_account_and_user(rig: Rig) -> None:
    rc, doc, err = rig.cli("usage", "--by", "account")
    assert rc == 0, err
    by = {r["account"]: r for r in doc["rows"]}
    rows = rig.rows()
    assert by["physics"]["quantum_seconds"] == pytest.approx(
        sum(r.quantum_seconds or 0 for r in rows if r.account == "physics")
    )
    assert by["chem"]["qau"] == pytest.approx(by["chem"]["quantum_seconds"] / 96000, abs=1e-6)
    proc = subprocess.run(
        [sys.executable, "-m", "qauvern_hpc", "-c", str(rig.site.config), "usage", "--by", "user", "--csv"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    header = "user,jobs,quantum_seconds,quantum_hours,qau,wall_seconds,resource_units,unit,in_unit"
    assert proc.stdout.splitlines()[0] == header  # the columns of before first, in their order
    assert any(line.startswith("qcarol,") for line in proc.stdout.splitlines())


def test_cancelled_job_is_charged_what_ibm_charged(rig: Rig) -> None:
    [job] = rig.run_jobs([{"user": "qalice", "account": "physics", "qpu": "ibm_torino", "seconds": 60}])
    assert rig.sb.wait_job(job, states=("RUNNING",), timeout=60) == "RUNNING"
    time.sleep(4)  # some quantum work happens
    rig.sb.run(["scancel", str(job)], check=True)
    assert rig.settle([job])[job] == "CANCELLED"
    rc, _, err = rig.cli("collect")
    assert rc == 0, err
    row = _by_job(rig.rows())[(job, "ibm_torino")]
    assert row.slurm_state == "CANCELLED" and row.usage_state == "final"
    # IBM's rule: closing a session (the epilog) cancels its queued jobs, but the running one runs to the end
    # and is charged in full; the ledger says what IBM charged, not what the Slurm job's wall time suggests.
    _assert_charged(rig, row, 60.0)
    assert (row.wall_seconds or 0) < 30
    _assert_ledger_matches_ibm(rig)


def test_requeued_runs_are_distinct_rows_each_charged_its_own_session(rig: Rig) -> None:
    [job] = rig.run_jobs([{"user": "qbob", "account": "physics", "qpu": "ibm_torino", "seconds": 3}])
    assert rig.sb.wait_job(job, states=("RUNNING",), timeout=60) == "RUNNING"
    assert _wait(functools.partial(rig._recorded, job))
    rc, _, err = rig.cli("collect")  # run 0 seen while running
    assert rc == 0, err
    rig.sb.run(["scontrol", "requeue", str(job)], check=True)
    # the second run: runs again (after Slurm's requeue delay) and ends
    assert rig.sb.wait_job(job, states=("COMPLETED",), timeout=240) == "COMPLETED"
    assert _wait(lambda: all(s["state"] == "closed" for s in rig.emu.state.snapshot()["sessions"]))
    time.sleep(2)  # the second run's AdminComment update
    rc, _, err = rig.cli("collect")
    assert rc == 0, err
    runs = sorted((r for r in rig.rows() if r.job_id_raw == job), key=lambda r: r.run)
    assert [r.run for r in runs] == [0, 1], runs
    assert runs[0].slurm_state == "REQUEUED" and runs[1].slurm_state == "COMPLETED"
    assert runs[0].submit < runs[1].submit
    assert all(r.usage_state == "final" for r in runs)
    sessions = {r.session_id for r in runs}
    assert len(sessions) == 2, runs  # each run its own session, each charged once
    charged = {s: rig.session_charged(s) for s in sessions if s}
    for r in runs:  # each run carries exactly what IBM charged its session
        assert r.session_id and r.quantum_seconds == pytest.approx(charged[r.session_id], abs=1e-3), (
            r,
            charged,
        )
    _assert_charged(rig, runs[1], 3.0)
    _assert_ledger_matches_ibm(rig)
    rc, doc, err = rig.cli("collect")
    assert rc == 0 and doc["finalized"] == doc["updated"] == 0, err


def test_dry_run_reports_what_it_would_store_and_stores_nothing(rig: Rig) -> None:
    [job] = rig.run_jobs([{"user": "qalice", "account": "physics", "qpu": "ibm_torino", "seconds": 1}])
    rig.settle([job])
    mark, before = rig.high_water(), rig.rows()
    rc, doc, err = rig.cli("collect", "--dry-run")
    assert rc == 0, err
    assert doc["dry_run"] is True and doc["finalized"] >= 1
    assert sum(p["changed"] for p in doc["clusters"]) >= 1
    assert rig.rows() == before and rig.high_water() == mark
    rc, doc, err = rig.cli("collect")
    assert rc == 0 and doc["dry_run"] is False, err
    _assert_charged(rig, _by_job(rig.rows())[(job, "ibm_torino")], 1.0)
    _assert_ledger_matches_ibm(rig)


def test_ibm_failing_for_one_session_mid_collect_keeps_the_others(rig: Rig) -> None:
    ids = rig.run_jobs(
        [
            {"user": "qalice", "account": "physics", "qpu": "ibm_torino", "seconds": 1},
            {"user": "qbob", "account": "physics", "qpu": "ibm_torino", "seconds": 2},
        ]
    )
    rig.settle(ids)
    rc, _, err = rig.cli("collect", "--no-ibm")
    assert rc == 0, err
    rows = _by_job(rig.rows())
    broken = rows[(ids[1], "ibm_torino")].session_id
    assert broken and rows[(ids[0], "ibm_torino")].usage_state == "pending"
    rig.emu.faults.add(path=rf"^/api/v1/sessions/{broken}(/jobs)?$", method="GET", status=500, times=1000)
    try:
        rc, doc, err = rig.cli("collect")
    finally:
        rig.emu.faults.clear()
    assert rc == 4, err
    assert len(doc["errors"]) == 1 and broken in doc["errors"][0]
    rows = _by_job(rig.rows())
    assert rows[(ids[0], "ibm_torino")].usage_state == "final"
    assert rows[(ids[1], "ibm_torino")].usage_state == "pending"
    rc, _, err = rig.cli("collect")
    assert rc == 0, err
    _assert_charged(rig, _by_job(rig.rows())[(ids[1], "ibm_torino")], 2.0)
    _assert_ledger_matches_ibm(rig)


def test_slurmdbd_stopping_mid_collect_rolls_the_pull_back(rig: Rig) -> None:
    """The real sacct answers the first query (ended jobs), then slurmdbd is stopped before the second
    (running jobs): the rows of the first are in the open transaction and must not be committed."""
    spec = {"user": "qcarol", "account": "chem", "partition": "quantum", "qpu": "ibm_fez", "seconds": 1}
    [job] = rig.run_jobs([spec])
    rig.settle([job])
    pid = rig.sb.status()["slurmdbd"]
    assert pid
    flag = rig.site.directory / "stopped-slurmdbd"
    wrapper = rig.site.directory / "sacct-then-stop-slurmdbd"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'{shutil.which("sacct")} "$@"\n'
        "rc=$?\n"
        f"if [ ! -e {flag} ]; then\n"
        f"  touch {flag}; kill {pid}\n"
        f"  while kill -0 {pid} 2>/dev/null; do sleep 0.1; done\n"
        "fi\n"
        "exit $rc\n"
    )
    wrapper.chmod(0o755)
    config = rig.site.directory / "config-stopping.yaml"
    text = rig.site.config.read_text()
    assert "\nslurm:\n" in text
    config.write_text(text.replace("\nslurm:\n", f"\nslurm:\n  sacct: {wrapper}\n", 1))
    mark = rig.high_water()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "qauvern_hpc", "-c", str(config), "--json", "collect"],
            env={**os.environ, "SLURM_CONF": str(rig.sb.slurm_conf)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert flag.exists()
        assert proc.returncode == 4, proc.stderr
        assert rig.high_water() == mark
        assert (job, "ibm_fez") not in _by_job(rig.rows())
    finally:
        rig.sb.up()
    rc, _, err = rig.cli("collect")
    assert rc == 0, err
    _assert_charged(rig, _by_job(rig.rows())[(job, "ibm_fez")], 1.0)
    _assert_ledger_matches_ibm(rig)


def test_a_named_cluster_is_pulled_with_sacct_M_into_the_same_rows(rig: Rig) -> None:
    rows = rig.rows()
    name = rows[0].cluster
    assert name and all(r.cluster == name for r in rows)
    rc, doc, err = rig.cli("collect", "--cluster", name)
    assert rc == 0, err
    assert doc["clusters"][0]["cluster"] == name and doc["clusters"][0]["qpu_records"] >= len(
        {r.job_id_raw for r in rows if r.slurm_state != "REQUEUED"}
    )
    assert sum(p["changed"] for p in doc["clusters"]) == 0  # the same rows: nothing new
    with open_ledger(rig.ledger_url) as ledger:
        assert ledger.get_high_water(name) is not None  # its own high-water mark
    assert [r._replace(updated_at=0) for r in rig.rows()] == [r._replace(updated_at=0) for r in rows]


def test_ibm_failing_mid_collect_leaves_runs_pending_until_it_answers(rig: Rig) -> None:
    [job] = rig.run_jobs([{"user": "qbob", "account": "physics", "qpu": "ibm_torino", "seconds": 2}])
    rig.settle([job])
    rig.emu.faults.add(path=r"^/api/v1/sessions/[^/]+$", method="GET", status=503, times=1000)
    try:
        rc, _, err = rig.cli("collect")
    finally:
        rig.emu.faults.clear()
    assert rc == 4, err
    assert "could not be read" in err
    row = _by_job(rig.rows())[(job, "ibm_torino")]
    assert row.usage_state == "pending" and row.quantum_seconds is None
    # 429 with Retry-After is waited out within the run.
    rig.emu.faults.add(path=r"^/api/v1/sessions/[^/]+$", method="GET", status=429, retry_after=1, times=1)
    rc, _, err = rig.cli("collect")
    rig.emu.faults.clear()
    assert rc == 0, err
    row = _by_job(rig.rows())[(job, "ibm_torino")]
    assert row.usage_state == "final"
    _assert_charged(rig, row, 2.0)
    _assert_ledger_matches_ibm(rig)


def test_slurmdbd_down_stores_nothing_and_the_next_run_catches_up(rig: Rig) -> None:
    [job] = rig.run_jobs([{"user": "qalice", "account": "physics", "qpu": "ibm_torino", "seconds": 1}])
    rig.settle([job])
    mark = rig.high_water()
    pid = rig.sb.status()["slurmdbd"]
    assert pid
    os.kill(pid, signal.SIGTERM)
    assert _wait(lambda: rig.sb.status()["slurmdbd"] is None, 30)
    try:
        rc, _, err = rig.cli("collect")
        assert rc == 4, err
        assert rig.high_water() == mark
        assert (job, "ibm_torino") not in _by_job(rig.rows())
    finally:
        rig.sb.up()
    rc, _, err = rig.cli("collect")
    assert rc == 0, err
    _assert_charged(rig, _by_job(rig.rows())[(job, "ibm_torino")], 1.0)
    _assert_ledger_matches_ibm(rig)


def test_killed_mid_write_loses_nothing_and_counts_nothing_twice(rig: Rig) -> None:
    [job] = rig.run_jobs(
        [{"user": "qcarol", "account": "chem", "partition": "quantum", "qpu": "ibm_fez", "seconds": 1}]
    )
    rig.settle([job])
    mark = rig.high_water()
    before = len(rig.rows())
    rc, _, _ = rig.cli("collect", env={CRASH_ENV: "in-transaction"})
    assert rc == CRASH_EXIT
    assert rig.high_water() == mark and len(rig.rows()) == before  # the transaction was not committed
    rc, _, err = rig.cli("collect")
    assert rc == 0, err
    assert len(rig.rows()) == before + 1
    _assert_ledger_matches_ibm(rig)


def test_a_second_collect_at_the_same_time_is_refused(rig: Rig) -> None:
    import fcntl

    lock = rig.site.state_dir / "collect.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        rc, _, err = rig.cli("collect")
    finally:
        os.close(fd)
    assert rc == 5 and "another collect" in err


def test_with_the_time_fields_removed_a_job_is_charged_the_same_from_its_rus(rig: Rig) -> None:
    """IBM's announced next step: RUs only. The job's seconds come from its RUs at the instance's rate (the
    Resource Controller shows its allocation in both units); the row is final, holds both figures, and
    matches what the emulator charged, as with the time fields."""
    rig.emu.remove_time_fields()
    try:
        [job] = rig.run_jobs([{"user": "qalice", "account": "physics", "qpu": "ibm_torino", "seconds": 2}])
        assert rig.settle([job])[job] == "COMPLETED"
        rc, _doc, err = rig.cli("collect")
        assert rc == 0, err
        row = _by_job(rig.rows())[(job, "ibm_torino")]
        _assert_charged(rig, row, 2.0)
        assert row.usage_state == "final"
        assert row.resource_units == pytest.approx(row.quantum_seconds or 0, abs=1e-3)  # the seed's rate: 1
        _assert_ledger_matches_ibm(rig)
    finally:
        rig.emu.remove_time_fields(False)
