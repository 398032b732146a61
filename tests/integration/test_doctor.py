"""`qauvern-hpc doctor` on a real Slurm cluster wired like production (hooks, SPANK plugin, job_submit.lua,
per-instance licenses) with the IBM emulator: all green when it is right, and the right finding and fix
for each thing an admin typically gets wrong."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.devtools import qpu_site
from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.devtools.sandbox import Sandbox

pytestmark = pytest.mark.slurm


@dataclass
class Rig:
    sb: Sandbox
    emu: Any
    site: qpu_site.Site

    def doctor(self, *args: str, config: Path | None = None) -> tuple[int, dict[str, dict[str, str]], str]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "qauvern_hpc",
                "-c",
                str(config or self.site.config),
                "--json",
                "doctor",
                *args,
            ],
            env={**os.environ, "SLURM_CONF": str(self.sb.slurm_conf)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        doc = json.loads(proc.stdout)
        return proc.returncode, {c["name"]: c for c in doc["checks"]}, doc["status"]

    def config_with(self, old: str, new: str) -> Path:
        text = self.site.config.read_text()
        assert old in text, old
        path = self.site.directory / "config-variant.yaml"
        path.write_text(text.replace(old, new, 1))
        return path


@pytest.fixture(scope="module")
def rig(sandbox_factory: Callable[..., Sandbox]) -> Iterator[Rig]:
    site_dir = Path(tempfile.mkdtemp(prefix="qauvern-hpc-doctor-", dir="/tmp"))
    site_dir.chmod(0o755)
    with run_emulator(qpu_site.emulator_seed(), clock="real") as emu:
        site = qpu_site.write_site(site_dir, emu.base_url, operations=True)
        hooks = qpu_site.sandbox_hooks(site)
        hooks = replace(hooks, env={**hooks.env, **qpu_site.license_env()})
        sb = sandbox_factory(
            "doctor", hooks=hooks, accounts=qpu_site.ACCOUNTS, settings=dict(qpu_site.SANDBOX_SETTINGS)
        )
        qpu_site.set_hook_env(site, {"SLURM_CONF": str(sb.slurm_conf)})
        try:
            yield Rig(sb, emu, site)
        finally:
            qpu_site.stop_hookd(site)
    shutil.rmtree(site_dir, ignore_errors=True)


def test_a_correct_installation_has_no_failure(rig: Rig) -> None:
    rc, checks, status = rig.doctor()
    assert rc == 0, checks
    assert status in ("ok", "warn")
    for name in (
        "config",
        "slurmctld",
        "slurm.conf PrologSlurmctld",
        "slurm.conf EpilogSlurmctld",
        "slurm.conf PrologEpilogTimeout",
        "rendered policy",
        "SPANK plugin (plugstack.conf)",
        "sbatch --qpu",
        "job_submit.lua",
        "per-instance licenses",
        "state directory",
        "accounting",
        "IBM physics",
        "IBM chemistry",
    ):
        assert checks[name]["status"] == "ok", checks[name]
    assert "22.05" in checks["slurmctld"]["detail"]
    assert "allocation 400000 s" in checks["IBM physics"]["detail"]
    # collect has never run on this cluster: a warning with the fix, not a failure
    assert checks["collect"]["status"] == "warn" and "never run" in checks["collect"]["detail"]
    assert "collect" in checks["collect"]["hint"]


def test_a_running_hookd_is_pinged_and_answers(rig: Rig) -> None:
    job = rig.sb.submit("true\n", user="qalice", account="physics", extra_args=["--qpu=ibm_torino"])
    assert rig.sb.wait_job(job, timeout=90) == "COMPLETED"  # the first QPU job starts hookd (auto)
    _, checks, _ = rig.doctor("--no-ibm")
    assert checks["hookd"]["status"] == "ok"
    assert "pid=" in checks["hookd"]["detail"] and "requests=" in checks["hookd"]["detail"]
    assert checks["IBM"]["status"] == "skip"


def test_a_state_dir_the_hooks_and_the_plugin_do_not_use_fails_both(rig: Rig) -> None:
    cfg = rig.config_with(f"state_dir: {rig.site.state_dir}", "state_dir: /var/tmp/elsewhere")
    rc, checks, status = rig.doctor("--no-ibm", config=cfg)
    assert rc == 1 and status == "fail"
    assert checks["slurm.conf PrologSlurmctld"]["status"] == "fail"
    assert "/var/tmp/elsewhere" in checks["slurm.conf PrologSlurmctld"]["detail"]
    assert checks["SPANK plugin (plugstack.conf)"]["status"] == "fail"
    assert "state_dir=/var/tmp/elsewhere" in checks["SPANK plugin (plugstack.conf)"]["hint"]
    assert checks["state directory"]["status"] == "fail"  # and it does not exist
    # the edited config is not the one policy.json was rendered from
    assert (
        checks["rendered policy"]["status"] == "warn" and "render-policy" in checks["rendered policy"]["hint"]
    )


def test_ibm_refusing_the_key_and_an_unknown_crn_are_failures(rig: Rig) -> None:
    rig.emu.faults.add(path=r"^/identity/token$", method="POST", status=400, times=1000)
    try:
        rc, checks, _ = rig.doctor()
    finally:
        rig.emu.faults.clear()
    assert rc == 1
    assert checks["IBM physics"]["status"] == "fail" and checks["IBM chemistry"]["status"] == "fail"
    cfg = rig.config_with(qpu_site.CRN_CHEM, qpu_site.CRN_CHEM.replace("chem0001", "gone0001"))
    rc, checks, _ = rig.doctor(config=cfg)
    assert rc == 1
    assert checks["IBM chemistry"]["status"] == "fail" and "not visible" in checks["IBM chemistry"]["detail"]
    assert checks["IBM physics"]["status"] == "ok"


def test_a_missing_account_and_an_invalid_config(rig: Rig) -> None:
    cfg = rig.config_with("accounts: [chem]", "accounts: [chem, astro]")
    rc, checks, _ = rig.doctor("--no-ibm", config=cfg)
    assert checks["accounting"]["status"] == "warn" and "astro" in checks["accounting"]["detail"]
    broken = rig.site.directory / "broken.yaml"
    broken.write_text("ibm: [\n")
    rc, checks, status = rig.doctor(config=broken)
    assert rc == 3 and status == "fail" and list(checks) == ["config"]
    assert "broken.yaml" in checks["config"]["detail"]
