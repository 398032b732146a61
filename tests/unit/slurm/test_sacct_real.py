"""The REAL sacct binary (Debian's Slurm 22.05.8 here) against our argv and our parser, with no daemon.

sacct needs slurmdbd for accounting data, and no cluster runs here. Its job-completion mode does not:
`--completion` (`-c`) with `JobCompType=jobcomp/filetxt` reads finished jobs from a text file
(`fixtures/sacct/real_22_05_jobcomp.input`, hand-written in the jobcomp/filetxt format that slurmctld
writes) and prints them with the same option parsing and `--parsable2` printing code. What this proves
with the real binary: our argv is accepted option by option (`uts<epoch>` times, `--clusters`, `--state`
names, the field list); `SLURM_TIME_FORMAT=%s` prints epoch seconds and `Unknown` for unset times; the
line shape is what the parser reads; `--helpformat` lists our fields and has no `Restarts` on 22.05.

What it does not prove: the accounting path (slurmdbd) fills some fields differently. In jobcomp mode
User prints as `name(uid)`, Submit prints the start time, JobIDRaw repeats JobID, and AdminComment is
always empty. The recorded output (`real_22_05_jobcomp.txt`) is compared byte for byte on 22.05.

Without sacct installed the live tests skip (unless QAUVERN_HPC_REQUIRE_SLURM=1); the recorded fixtures
are always parsed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from qauvern_hpc.slurm.run import SlurmCommandError, run_slurm
from qauvern_hpc.slurm.sacct import (
    DEFAULT_FIELDS,
    FINISHED_STATES,
    build_sacct_argv,
    parse_sacct,
    parse_slurm_version,
    sacct_env,
    sacct_fields,
)
from tests.support.paths import UNIT_FIXTURES

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)

FIXTURES = UNIT_FIXTURES / "sacct"
START, END = 1767225600, 1767232800  # 2026-01-01 00:00 .. 02:00 UTC

_have_sacct = shutil.which("sacct") is not None
if not _have_sacct and os.environ.get("QAUVERN_HPC_REQUIRE_SLURM") == "1":  # pragma: no cover
    raise RuntimeError("QAUVERN_HPC_REQUIRE_SLURM=1 but the sacct binary is not installed")
needs_sacct = pytest.mark.skipif(not _have_sacct, reason="Slurm client binaries (sacct) not installed")


def _expected_records() -> list[tuple[object, ...]]:
    return [
        ("1001", "alice(1001)", "cpu", "COMPLETED", None, 0, 0, 1767225610, 1767225670, 60, 1800),
        ("1002", "bob(1002)", "qpu", "COMPLETED", None, 0, 0, 1767225705, 1767225805, 100, 3600),
        ("1003", "carol(1003)", "qpu", "FAILED", None, 1, 0, 1767225900, 1767225960, 60, 7200),
        ("1030", "erin(1004)", "qpu", "CANCELLED", None, 0, 15, 1767226210, 1767226230, 20, 600),
        ("1040", "frank(1005)", "qpu", "REQUEUED", None, 0, 0, 1767226310, 1767226400, 90, 3600),
        # EndTime unknown: sacct prints `Unknown`, and its elapsed (0 - start, unsigned) is garbage -> None
        ("1050", "alice(1001)", "qpu", "RUNNING", None, 0, 0, 1767226705, None, None, None),
        ("1060", "bob(1002)", "cpu", "TIMEOUT", None, 0, 0, 1767226801, 1767230401, 3600, None),
        ("1080", "heidi(1006)", "qpu", "NODE_FAIL", None, 1, 0, 1767227001, 1767227100, 99, 300),
    ]


def _check(text: str) -> None:
    recs = list(parse_sacct(text.splitlines(keepends=True)))
    got = [
        (
            r.job_id,
            r.user,
            r.partition,
            r.state,
            r.cancelled_by,
            r.exit_code,
            r.exit_signal,
            r.start,
            r.end,
            r.elapsed,
            r.time_limit,
        )
        for r in recs
    ]
    assert got == _expected_records()
    assert {(r.cluster, r.job_id_raw == int(r.job_id), r.admin_comment, r.qpu) for r in recs} == {
        ("alpha", True, "", None)
    }


def test_recorded_real_output_parses() -> None:
    _check((FIXTURES / "real_22_05_jobcomp.txt").read_text(encoding="utf-8"))


def test_recorded_helpformat_has_our_fields_and_no_restarts() -> None:
    names = set((FIXTURES / "helpformat_22_05.txt").read_text(encoding="utf-8").split())
    assert set(DEFAULT_FIELDS) <= names
    assert "Restarts" not in names  # 22.05 has no requeue count; runs are told apart by Submit
    assert "DBIndex" in names  # the database row id exists, but only per cluster database


# -- live, with the real binary ------------------------------------------------------------------------


@pytest.fixture
def jobcomp_env(tmp_path: Path) -> dict[str, str]:
    log = tmp_path / "jobcomp.txt"
    shutil.copy(FIXTURES / "real_22_05_jobcomp.input", log)
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        "ClusterName=alpha\n"
        "SlurmctldHost=localhost\n"
        "AccountingStorageType=accounting_storage/none\n"
        "JobCompType=jobcomp/filetxt\n"
        f"JobCompLoc={log}\n"
    )
    return {**sacct_env(), "SLURM_CONF": str(conf), "TZ": "UTC"}


def _version(env: dict[str, str]) -> tuple[int, int, int]:
    return parse_slurm_version(run_slurm(["sacct", "--version"], env=env, timeout=30))


def _verbose_window(argv: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(
        [*argv, "--completion", "--verbose"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    match = re.search(r"^sacct: Jobs (\S+) in the time window from (.+?) to (.+?)$", proc.stderr, re.M)
    assert match, proc.stderr
    return f"{match[1]} | {match[2]} | {match[3]}"


@needs_sacct
def test_real_sacct_accepts_our_argv_and_prints_what_we_parse(jobcomp_env: dict[str, str]) -> None:
    argv = build_sacct_argv(START, END, clusters=("alpha",))
    out = run_slurm([*argv, "--completion"], env=jobcomp_env, timeout=60)
    _check(out)
    if _version(jobcomp_env)[:2] == (22, 5):
        assert out == (FIXTURES / "real_22_05_jobcomp.txt").read_text(encoding="utf-8")


@needs_sacct
def test_real_sacct_reads_uts_times_as_epoch_in_any_time_zone(jobcomp_env: dict[str, str]) -> None:
    argv = build_sacct_argv(START, END)
    utc = _verbose_window(argv, jobcomp_env)
    assert utc.endswith("| Thu Jan 01 00:00:00 2026 | Thu Jan 01 02:00:00 2026")
    ny = _verbose_window(argv, {**jobcomp_env, "TZ": "America/New_York"})
    assert ny.endswith("| Wed Dec 31 19:00:00 2025 | Wed Dec 31 21:00:00 2025")  # same instants


@needs_sacct
def test_real_sacct_accepts_every_finished_state(jobcomp_env: dict[str, str]) -> None:
    states = _verbose_window(build_sacct_argv(START, END, states=FINISHED_STATES), jobcomp_env).split()[0]
    # 22.05 adds PENDING to REQUEUED (see FINISHED_STATES): pending jobs come back with finished ones
    assert set(states.split(",")) == {*FINISHED_STATES, "PENDING"}
    with pytest.raises(SlurmCommandError, match="unrecognized job state value 'BOGUS'"):
        run_slurm([*build_sacct_argv(START, END, states=("BOGUS",)), "--completion"], env=jobcomp_env)


@needs_sacct
def test_real_sacct_field_list_for_its_version(jobcomp_env: dict[str, str]) -> None:
    version = _version(jobcomp_env)
    fields = sacct_fields(version)
    run_slurm([*build_sacct_argv(START, END, fields=fields), "--completion"], env=jobcomp_env)
    helpformat = set(run_slurm(["sacct", "--completion", "--helpformat"], env=jobcomp_env).split())
    assert set(fields) <= helpformat
    if version[:2] < (24, 11):
        assert "Restarts" not in helpformat
        with pytest.raises(SlurmCommandError, match='Invalid field requested: "Restarts"'):
            run_slurm(
                [*build_sacct_argv(START, END, fields=(*fields, "Restarts")), "--completion"],
                env=jobcomp_env,
            )
