"""The prolog on an Open-plan instance: job mode, no IBM session, access still checked; the epilog closes
nothing; the AdminComment and the collector say job mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.accounting.collector import in_job_mode, session_groups, without_session
from qauvern_hpc.accounting.ledger.ingest import runs_from_record
from qauvern_hpc.accounting.ledger.models import PENDING, RunMode, StoredRun
from qauvern_hpc.devtools import qpu_site
from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.hooks import epilog, ibm_session, prolog
from qauvern_hpc.hooks.common import StatePaths, read_record
from qauvern_hpc.hooks.jobenv import parse_env_file
from qauvern_hpc.record.admin_comment import JOB_MODE_SESSION, format_admin_comment, parse_admin_comment
from qauvern_hpc.slurm.sacct import SacctRecord

pytestmark = pytest.mark.process  # starts the emulator


@pytest.fixture()
def emu() -> Iterator[Any]:
    with run_emulator(qpu_site.emulator_seed(open_plan=True), clock="real") as e:
        yield e


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    ibm_session.POOL.close()  # each test's emulator is gone after it


def _environ(site: qpu_site.Site, job_id: str = "41") -> dict[str, str]:
    return {
        "SLURM_JOB_ID": job_id,
        "SLURM_JOB_USER": "qcarol",
        "SLURM_JOB_ACCOUNT": "chem",
        "SLURM_JOB_PARTITION": "debug",
        "SPANK_QPU": "ibm_torino",
        "QAUVERN_HPC_POLICY": str(site.policy),
        "QAUVERN_HPC_STATE_DIR": str(site.state_dir),
        "QAUVERN_HPC_SCONTROL": "/bin/true",
    }


def test_an_open_plan_job_gets_no_session_and_a_job_mode_environment(emu: Any, tmp_path: Path) -> None:
    site = qpu_site.write_site(tmp_path / "site", emu.base_url, open_plan=True)
    record = prolog.prepare(_environ(site))
    assert record.error is None, record.error
    assert emu.state.snapshot()["sessions"] == []  # nothing opened at IBM
    (res,) = record.resources
    assert (res.instance, res.crn, res.session_mode, res.session_id) == (
        "learners",
        qpu_site.CRN_OPEN,
        "job",
        None,
    )
    env = parse_env_file(Path(StatePaths(str(site.state_dir), "41").env_file).read_text())
    assert env["ibm_torino_QRMI_IBM_QCS_SESSION_MODE"] == "job"
    assert env["ibm_torino_QRMI_IBM_QCS_SERVICE_CRN"] == qpu_site.CRN_OPEN
    for key in ("ibm_torino_QRMI_IBM_QCS_SESSION_ID", "ibm_torino_QRMI_JOB_ACQUISITION_TOKEN"):
        assert key not in env
    assert "QAUVERN_HPC_ERROR" not in env

    comment = format_admin_comment(record.to_dict())
    assert comment.endswith("res=ibm_torino@!job")
    parsed = parse_admin_comment(comment)
    assert parsed is not None and parsed.resources == (("ibm_torino", JOB_MODE_SESSION),)


def test_the_epilog_has_nothing_to_close_in_job_mode(
    emu: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = qpu_site.write_site(tmp_path / "site", emu.base_url, open_plan=True)
    environ = _environ(site)
    prolog.prepare(environ)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("QAUVERN_HPC_LOG_FILE", str(tmp_path / "hooks.log"))
    assert epilog.main() == 0
    record = read_record(StatePaths(str(site.state_dir), "41"))
    assert record is not None and record.ended_at is not None
    assert [r.close_error for r in record.resources] == [None]
    assert emu.state.snapshot()["sessions"] == []


def test_job_mode_still_checks_that_the_instance_sees_the_backend(emu: Any, tmp_path: Path) -> None:
    emu.state.patch({"instances": [{"name": "learners", "backends": ["ibm_fez"]}]})
    site = qpu_site.write_site(tmp_path / "site", emu.base_url, open_plan=True)
    record = prolog.prepare(_environ(site))
    assert record.error is not None and "ibm_torino" in record.error
    env = parse_env_file(Path(StatePaths(str(site.state_dir), "41").env_file).read_text())
    assert env["QAUVERN_HPC_FAIL_MODE"] == "closed" and "ibm_torino" in env["QAUVERN_HPC_ERROR"]


def test_the_premium_instances_of_the_same_site_still_open_sessions(emu: Any, tmp_path: Path) -> None:
    site = qpu_site.write_site(tmp_path / "site", emu.base_url, open_plan=True)
    environ = {**_environ(site), "SLURM_JOB_USER": "qalice", "SLURM_JOB_ACCOUNT": "physics"}
    record = prolog.prepare(environ)
    assert record.error is None, record.error
    (session,) = emu.state.snapshot()["sessions"]
    assert (session["mode"], record.resources[0].session_id) == ("batch", session["id"])


def _row(session_id: str | None, end: int | None = 200, mode: RunMode = "session") -> StoredRun:
    return StoredRun(
        "c", "41", 41, None, None, None, None, 0, "qcarol", "chem", "debug", "", "ibm_torino",
        "learners", session_id, "learners", 1, 100, end, 100, None, PENDING, "COMPLETED", 0.0, None, mode,
    )  # fmt: skip


def test_a_job_mode_run_is_stored_without_a_session_and_never_read_as_one() -> None:
    comment = format_admin_comment(
        {
            "rule": "learners",
            "instance": "learners",
            "resources": [{"resource": "ibm_torino", "session_mode": "job"}],
        }
    )
    record = SacctRecord(
        "c", "41", 41, None, None, None, None, None, "qcarol", "chem", "debug", "", "COMPLETED", None, 0, 0,
        1, 100, 200, 100, None, "", comment, parse_admin_comment(comment), None,
    )  # fmt: skip
    [stored] = runs_from_record(record)
    assert (stored.session_id, stored.mode) == (None, "job")
    job_mode, no_session, with_session = _row(None, mode="job"), _row(None), _row("sess-1")
    rows = [job_mode, no_session, with_session]
    assert [in_job_mode(r) for r in rows] == [True, False, False]
    assert list(session_groups(rows)) == [("learners", "sess-1")]
    finalized, unresolved = without_session(rows)  # a job-mode run is not "no session: 0 s"
    assert finalized == [no_session] and unresolved == []
