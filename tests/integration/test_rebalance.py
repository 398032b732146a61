"""`qauvern-hpc rebalance` end to end: the real sandbox Slurm (job_submit.lua adding per-instance licenses,
sacctmgr, squeue) and the IBM emulator. No fake Slurm output anywhere.

The tests run in file order and share one cluster: a burst moves allocation; an exhausted instance is gated
and ungated when its usage rolls off; a run killed between the IBM PATCH and sacctmgr is finished by the
next run with nothing applied twice; that run is rolled back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.accounting.ledger import open_ledger
from qauvern_hpc.devtools import qpu_site
from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.devtools.sandbox import Sandbox
from qauvern_hpc.rebalance.apply import CRASH_ENV, CRASH_EXIT
from qauvern_hpc.rebalance.journal import JournalStore
from qauvern_hpc.slurm.sacctmgr import parse_associations

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

LICENSES = "qpu:8,qpu_physics:10000,qpu_chemistry:10000"
TRES = "license/qpu,license/qpu_physics,license/qpu_chemistry"
CHEM_LIMIT = 4000


@dataclass
class Rig:
    sb: Sandbox
    emu: Any
    site: qpu_site.Site
    job_script: Path

    @property
    def state_dir(self) -> Path:
        return self.site.directory / "rebalance"

    def rebalance(self, *args: str, crash: str | None = None) -> tuple[int, dict[str, Any], str]:
        env = dict(os.environ, SLURM_CONF=str(self.sb.slurm_conf))
        env.pop(CRASH_ENV, None)
        if crash:
            env[CRASH_ENV] = crash
        proc = subprocess.run(
            [sys.executable, "-m", "qauvern_hpc", "rebalance", "-c", str(self.site.config), "--json", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        try:
            doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
        except ValueError:
            doc = {"raw": proc.stdout}
        return proc.returncode, doc, proc.stderr

    def allocation(self, crn: str) -> int:
        for inst in self.emu.state.snapshot()["instances"]:
            if inst["crn"] == crn:
                return int(inst["usage_allocation_seconds"])
        raise KeyError(crn)

    def assocs(self) -> dict[str, Any]:
        out = self.sb.run(
            [
                "sacctmgr",
                "-n",
                "-P",
                "show",
                "assoc",
                "format=cluster,account,user,parentname,fairshare,grptres",
            ],
            check=True,
        ).stdout
        return {a.account: a for a in parse_associations(out) if a.is_account}

    def squeue(self, job: int) -> tuple[str, str, str]:
        out = self.sb.run(["squeue", "-h", "-j", str(job), "-o", "%T|%r|%W"]).stdout.strip()
        state, _, rest = out.partition("|")
        reason, _, lic = rest.partition("|")
        return state, reason, lic


def _config(text: str, site_dir: Path) -> str:
    text = text.replace(
        f'    crn: "{qpu_site.CRN_CHEM}"\n',
        f'    crn: "{qpu_site.CRN_CHEM}"\n    limit_seconds: {CHEM_LIMIT}\n',
    )
    return text + (
        f"ledger:\n  url: sqlite:///{site_dir}/ledger.db\n"
        f"rebalance:\n  state_dir: {site_dir}/rebalance\n"
        "  slurm: {license_prefix: qpu_, gate: true, fairshare: true, fairshare_scale: 100}\n"
    )


@pytest.fixture(scope="module")
def rig(sandbox_factory: Callable[..., Sandbox]) -> Iterator[Rig]:
    site_dir = Path(tempfile.mkdtemp(prefix="qauvern-hpc-rebal-", dir="/tmp"))
    site_dir.chmod(0o755)
    with run_emulator(qpu_site.emulator_seed(), clock="real") as emu:
        site = qpu_site.write_site(site_dir, emu.base_url)
        site.config.write_text(_config(site.config.read_text(), site_dir))
        hooks = qpu_site.sandbox_hooks(site)
        hooks = replace(hooks, env={**hooks.env, "QAUVERN_HPC_QPU_INSTANCE_LICENSE": "qpu_"})
        sb = sandbox_factory(
            "rebal",
            hooks=hooks,
            accounts=qpu_site.ACCOUNTS,
            settings={"LICENSES": LICENSES, "ACCOUNTING_TRES": TRES},
        )
        qpu_site.set_hook_env(site, {"SLURM_CONF": str(sb.slurm_conf)})
        script = sb.jobs_dir / "qpu_job.py"
        shutil.copy(qpu_site.JOB_SCRIPT, script)
        script.chmod(0o755)
        yield Rig(sb, emu, site, script)
        sb.run(["scancel", "-u", "qalice"])
        sb.run(["scancel", "-u", "qcarol"])
        stop = getattr(qpu_site, "stop_hookd", None)
        if stop is not None:
            stop(site)
    shutil.rmtree(site_dir, ignore_errors=True)


def _wait(pred: Callable[[], bool], timeout: float = 60.0, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def _burst(rig: Rig, n: int) -> list[int]:
    jobs = [
        rig.sb.submit(
            "echo never\n",
            user="qalice",
            account="physics",
            extra_args=["--qpu=ibm_torino", "--begin=now+1hour", "-t", "20"],
        )
        for _ in range(n)
    ]
    assert _wait(lambda: all(rig.squeue(j)[0] == "PENDING" for j in jobs), 30)
    for j in jobs:
        assert "qpu_physics" in rig.squeue(j)[2]  # job_submit.lua recorded the instance
    return jobs


def _row(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in doc["instances"] if r["instance"] == name)


def test_burst_of_pending_jobs_moves_allocation_in_one_run(rig: Rig) -> None:
    rc, doc, err = rig.rebalance("--yes")
    assert rc == 0, err
    # Nothing queued, nothing used: both give their allocation back down to the minimum.
    assert rig.allocation(qpu_site.CRN_PHYS) == 60 and rig.allocation(qpu_site.CRN_CHEM) == 60

    jobs = _burst(rig, 5)
    try:
        rc, doc, err = rig.rebalance("--yes")
        assert rc == 0, err
        assert doc["status"] == "completed"
        phys = _row(doc, "physics")
        assert phys["queue"]["pending_jobs"] == 5 and phys["queue"]["queued_seconds"] == 5 * 20 * 60
        assert phys["active"] and "need" in phys["why"] and "5 jobs" in phys["why"]
        # The whole pool goes to physics, up to its live limit; chemistry (idle) stays at the minimum.
        assert rig.allocation(qpu_site.CRN_PHYS) == 600_000
        assert rig.allocation(qpu_site.CRN_CHEM) == 60
        # Its Fairshare mirrors the share: 600000 / 600060 of 100 points.
        assert rig.assocs()["physics"].fairshare == 100 and rig.assocs()["chem"].fairshare == 1
        # The same state again: nothing to do.
        rc, doc, err = rig.rebalance("--yes")
        assert rc == 0 and doc["status"] == "nothing_to_do", (doc.get("steps"), err)
    finally:
        rig.sb.run(["scancel", *map(str, jobs)])


def test_exhausted_instance_pends_with_a_reason_and_starts_after_usage_rolls_off(rig: Rig) -> None:
    roll_off_in = 40.0
    at = rig.emu.clock.now() - timedelta(days=28) + timedelta(seconds=roll_off_in)
    rig.emu.state.add_usage(qpu_site.CRN_CHEM, 5000, at=at)
    added = time.monotonic()
    rc, doc, err = rig.rebalance("--yes")
    assert rc == 0, err
    chem = _row(doc, "chemistry")
    assert chem["limit_reached"] and chem["slurm"]["gated"] == {"current": False, "new": True}
    assocs = rig.assocs()
    assert assocs["root"].grp_tres == {"license/qpu_chemistry": 0}  # root's Grp limits cover every account
    assert assocs["chem"].grp_tres == {}

    job = rig.sb.submit(
        f"/usr/bin/python3 {rig.job_script} 1\n",
        user="qcarol",
        account="chem",
        partition="quantum",
        extra_args=["--qpu=ibm_fez"],
    )
    assert _wait(lambda: rig.squeue(job)[:2] == ("PENDING", "AssocGrpLicense"), 30), rig.squeue(job)
    time.sleep(4)
    assert rig.squeue(job)[0] == "PENDING"  # still held back: no session was opened at IBM
    assert not [s for s in rig.emu.state.snapshot()["sessions"] if s["instance"] == qpu_site.CRN_CHEM]

    time.sleep(max(0.0, roll_off_in + 2 - (time.monotonic() - added)))
    rc, doc, err = rig.rebalance("--yes")
    assert rc == 0, err
    chem = _row(doc, "chemistry")
    assert not chem["limit_reached"] and chem["slurm"]["gated"] == {"current": True, "new": False}
    assert "license/qpu_chemistry" not in rig.assocs()["root"].grp_tres
    assert rig.sb.wait_job(job, timeout=120) == "COMPLETED"
    entries = [e for e in _audit(rig) if e.action in ("slurm.gate", "slurm.ungate")]
    assert {e.action for e in entries} == {"slurm.gate", "slurm.ungate"}


def _audit(rig: Rig, run_id: str | None = None) -> list[Any]:
    ledger = open_ledger(f"sqlite:///{rig.site.directory}/ledger.db")
    try:
        return ledger.audit_entries(run_id)
    finally:
        ledger.close()


def _patches(rig: Rig, crn: str) -> int:
    from urllib.parse import quote

    enc = quote(crn, safe="")
    return sum(
        1
        for r in rig.emu.requests
        if r.method == "PATCH" and (r.path.endswith(enc) or r.path.endswith(crn)) and r.status == 200
    )


def test_killed_between_ibm_patch_and_sacctmgr_then_rerun_converges(rig: Rig) -> None:
    rc, doc, err = rig.rebalance("--yes")  # settle
    assert rc == 0, err
    before_fs = {a: v.fairshare for a, v in rig.assocs().items()}
    jobs = _burst(rig, 3)
    try:
        rc, plan, err = rig.rebalance("--dry-run")
        assert rc == 0, err
        ibm_steps = [s for s in plan["steps"] if s["kind"] == "ibm"]
        assert ibm_steps and any(s["kind"] == "fairshare" for s in plan["steps"]), plan["steps"]
        rig.emu.clear_requests()
        # Killed right after the LAST IBM PATCH returned, before it was recorded and before any sacctmgr.
        rc, doc, err = rig.rebalance("--yes", crash=f"after-ibm-write:{len(ibm_steps)}")
        assert rc == CRASH_EXIT, err
        store = JournalStore(rig.state_dir)
        [crashed] = store.unfinished()
        ibm = [s for s in crashed.steps if s.kind == "ibm"]
        assert [s.state for s in ibm] == ["done"] * (len(ibm) - 1) + ["started"]
        for s in ibm:  # every PATCH reached IBM ...
            assert rig.allocation(s.target["crn"]) == s.after["allocation_seconds"]
        assert {a: v.fairshare for a, v in rig.assocs().items()} == before_fs  # ... Slurm was not touched

        rc, doc, err = rig.rebalance("--yes")
        assert rc == 0, err
        [resumed] = doc["resumed_runs"]
        assert resumed["run_id"] == crashed.run_id and resumed["status"] == "completed"
        assert resumed["found_in_place"] == [ibm[-1].id]
        assert doc["status"] == "nothing_to_do"  # converged: the fresh plan matches what is live
        # Nothing applied twice: one PATCH per instance, one audit entry per step.
        for s in ibm:
            assert _patches(rig, s.target["crn"]) == 1, s.target
        done = store.load(crashed.run_id)
        assert all(s.state == "done" for s in done.steps)
        ids = [e.after["step"] for e in _audit(rig, crashed.run_id) if isinstance(e.after, dict)]
        assert sorted(ids) == sorted(s.id for s in done.steps) and len(ids) == len(set(ids))
        for s in done.steps:
            if s.kind == "fairshare":
                assert rig.assocs()[s.target["account"]].fairshare == s.after
    finally:
        rig.sb.run(["scancel", *map(str, jobs)])
    pytest.crashed_run = crashed.run_id  # type: ignore[attr-defined]


def test_rollback_restores_the_previous_run(rig: Rig) -> None:
    run_id = getattr(pytest, "crashed_run", None)
    if run_id is None:
        pytest.skip("needs the crashed run of the previous test")
    old = JournalStore(rig.state_dir).load(run_id)
    rc, doc, err = rig.rebalance("--rollback", run_id, "--dry-run")
    assert rc == 0 and doc["status"] == "dry_run", err
    assert len(doc["steps"]) == len(old.steps)
    assert rig.allocation(qpu_site.CRN_PHYS) == 600_000  # a dry run changes nothing
    rc, doc, err = rig.rebalance("--rollback", run_id, "--yes")
    assert rc == 0, err
    assert doc["status"] == "completed"
    for s in old.steps:
        if s.kind == "ibm":
            assert rig.allocation(s.target["crn"]) == s.before["allocation_seconds"]
        elif s.kind == "fairshare":
            assert rig.assocs()[s.target["account"]].fairshare == s.before
    entries = _audit(rig, doc["run_id"])
    assert entries and all(e.reason.startswith(f"rollback of {run_id}") for e in entries)
    # A second rollback finds everything restored already.
    rc, doc, err = rig.rebalance("--rollback", run_id, "--yes")
    assert rc == 0 and doc["status"] == "nothing_to_do", err
