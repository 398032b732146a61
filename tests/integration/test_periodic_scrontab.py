"""slurm-conf/scrontab-qauvern-hpc installed into a real Slurm (the sandbox with ScronParameters=enable):
slurmctld accepts both entries, queues them as cron jobs with the shipped schedules and #SCRON options, and
refuses a broken entry (so this test can fail).

Debian 12's slurm-client (22.05.8) ships no `scrontab` binary: there the tests skip, saying so.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from qauvern_hpc.devtools.sandbox import Sandbox

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
needs_scrontab = pytest.mark.skipif(
    shutil.which("scrontab") is None,
    reason="no scrontab binary (Debian 12's slurm-client does not ship it); the #SCRON options are still "
    "checked with sbatch --test-only",
)

SCRONTAB = Path(__file__).resolve().parents[2] / "slurm-conf" / "scrontab-qauvern-hpc"
ADMIN = "qalice"  # the sandbox's root has no association; any user with one installs the same file


def _local_copy(sb: Sandbox) -> Path:
    """The shipped file with the site-specific bits pointed at the sandbox: partition, log directory."""
    logs = sb.jobs_dir / "scron-logs"
    logs.mkdir(exist_ok=True)
    logs.chmod(0o777)
    text = SCRONTAB.read_text().replace("--partition=admin", "--partition=debug")
    text = text.replace("/var/log/qauvern-hpc/", f"{logs}/")
    path = sb.jobs_dir / "scrontab-qauvern-hpc"
    path.write_text(text)
    path.chmod(0o644)
    return path


@needs_scrontab
def test_scrontab_is_accepted_and_queued(sandbox_factory: Callable[..., Sandbox]) -> None:
    sb = sandbox_factory("scron", extra_conf=["ScronParameters=enable"])
    path = _local_copy(sb)
    res = sb.run(["scrontab", str(path)], user=ADMIN)
    assert res.returncode == 0, res.stderr
    try:
        listed = sb.run(["scrontab", "-l"], user=ADMIN, check=True).stdout
        assert "qauvern-hpc rebalance --yes" in listed and "qauvern-hpc collect" in listed
        jobs = sb.run(["squeue", "-h", "-u", ADMIN, "-o", "%i|%j|%T|%r"], check=True).stdout.split()
        by_name = {j.split("|")[1]: j.split("|") for j in jobs}
        assert set(by_name) == {"qauvern-hpc-collect", "qauvern-hpc-rebalance"}, jobs
        for job_id, _name, state, reason in by_name.values():
            assert state == "PENDING" and reason == "BeginTime", (job_id, state, reason)
        specs = {}
        for name, (job_id, *_rest) in by_name.items():
            show = sb.run(["scontrol", "show", "job", job_id], check=True).stdout
            assert re.search(r"\bCronJob=Yes\b", show), show
            m = re.search(r"CrontabSpec=(.+?)(?:\s{2,}|\n|$)", show)
            assert m, show
            specs[name] = m.group(1).strip()
            assert "Partition=debug" in show
        assert specs == {"qauvern-hpc-collect": "*/15 * * * *", "qauvern-hpc-rebalance": "7 * * * *"}
    finally:
        sb.run(["scrontab", "-r"], user=ADMIN)


@needs_scrontab
def test_a_broken_entry_is_refused(sandbox_factory: Callable[..., Sandbox]) -> None:
    sb = sandbox_factory("scron-bad", extra_conf=["ScronParameters=enable"])
    path = _local_copy(sb)
    path.write_text(path.read_text().replace("7 * * * *", "61 * * * *"))
    res = sb.run(["scrontab", str(path)], user=ADMIN)
    try:
        assert res.returncode != 0, res.stdout
    finally:
        sb.run(["scrontab", "-r"], user=ADMIN)


def test_scron_options_are_valid_sbatch_options(sandbox_factory: Callable[..., Sandbox]) -> None:
    """Each #SCRON line holds sbatch options: real sbatch --test-only accepts them, and refuses a typo."""
    sb = sandbox_factory("scron-opts")
    lines = [ln for ln in _local_copy(sb).read_text().splitlines() if ln.startswith("#SCRON ")]
    assert len(lines) == 2
    for line in lines:
        options = line.removeprefix("#SCRON ").split()
        res = sb.run(["sbatch", "--test-only", *options, "--wrap", "true"], user=ADMIN)
        assert res.returncode == 0, f"{line}: {res.stderr}"
        assert "to start at" in res.stderr, res.stderr
    bad = sb.run(["sbatch", "--test-only", "--tmie=00:10:00", "--wrap", "true"], user=ADMIN)
    assert bad.returncode != 0
