"""Reading the current AdminComment from real `scontrol show job` output (Slurm 22.05, recorded) and the
detached script that merges our record into it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qauvern_hpc.hooks import admin_comment_set
from qauvern_hpc.record.admin_comment import admin_comment_from_show_job, parse_admin_comment
from tests.support.paths import REPO, UNIT_FIXTURES

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)

FIXTURES = UNIT_FIXTURES / "scontrol"
SCRIPT = Path(admin_comment_set.__file__)
OURS = "qauvern:v1;rule=physics;inst=physics;res=ibm_torino@sess-9"


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("showjob-22.05.txt", "admin says hi = x | y Comment=foo"),
        ("showjob-nl-22.05.txt", "admin = x | y \n second line   StdErr=z"),
        ("showjob-none-22.05.txt", None),
    ],
)
def test_admin_comment_is_read_from_real_show_job_output(fixture: str, expected: str | None) -> None:
    assert admin_comment_from_show_job((FIXTURES / fixture).read_text()) == expected


def test_a_comment_line_that_looks_like_a_key_is_still_ours_when_indented_differently() -> None:
    text = "   WorkDir=/tmp\n   AdminComment=a \n    Foo=b\n\tBar=c \n   StdErr=/x\n"
    assert admin_comment_from_show_job(text) == "a \n    Foo=b\n\tBar=c"


def _fake_scontrol(
    tmp_path: Path, show: str, show_rc: int = 0, update_rc: int = 0, show_json: str | None = None
) -> tuple[Path, Path]:
    """A stand-in scontrol that prints recorded `show job` output and logs the update's arguments. With
    `show_json` it answers `--json show job` like 24.11+ (recorded output); without, it refuses `--json`
    like 22.05's scontrol, which has no such option."""
    log = tmp_path / "update.log"
    (tmp_path / "shown.txt").write_text(show)
    (tmp_path / "shown.json").write_text(show_json or "")
    json_rc = 0 if show_json is not None else 1
    fake = tmp_path / "scontrol"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --json ]; then cat {tmp_path}/shown.json; exit {json_rc}; fi\n'
        f'if [ "$1" = show ]; then cat {tmp_path}/shown.txt; exit {show_rc}; fi\n'
        f'printf "%s\\n" "$@" > {log}; exit {update_rc}\n'
    )
    fake.chmod(0o755)
    return fake, log


def _run(fake: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "QAUVERN_HPC_SCONTROL": str(fake)}
    return subprocess.run(
        [sys.executable, "-I", "-S", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_the_script_keeps_the_admins_text_and_appends_our_record(tmp_path: Path) -> None:
    fake, log = _fake_scontrol(tmp_path, (FIXTURES / "showjob-22.05.txt").read_text())
    res = _run(fake, "17", OURS)
    assert res.returncode == 0, res.stderr
    assert log.read_text().splitlines() == [
        "update",
        "JobId=17",
        f"AdminComment=admin says hi = x | y Comment=foo | {OURS}",
    ]
    written = log.read_text().splitlines()[2].removeprefix("AdminComment=")
    rec = parse_admin_comment(written)
    assert rec is not None and rec.resources == (("ibm_torino", "sess-9"),)


def test_a_requeued_runs_old_record_is_replaced_not_repeated(tmp_path: Path) -> None:
    old = "qauvern:v1;rule=physics;inst=physics;res=ibm_torino@sess-1"
    text = (FIXTURES / "showjob-22.05.txt").read_text().replace("Comment=foo ", f"Comment=foo | {old} ")
    fake, log = _fake_scontrol(tmp_path, text)
    assert _run(fake, "17", OURS).returncode == 0
    assert log.read_text().splitlines()[2] == f"AdminComment=admin says hi = x | y Comment=foo | {OURS}"


def test_no_comment_yet_writes_ours_alone(tmp_path: Path) -> None:
    fake, log = _fake_scontrol(tmp_path, (FIXTURES / "showjob-none-22.05.txt").read_text())
    assert _run(fake, "17", OURS).returncode == 0
    assert log.read_text().splitlines()[2] == f"AdminComment={OURS}"


def test_unreadable_current_value_still_writes_our_record(tmp_path: Path) -> None:
    fake, log = _fake_scontrol(tmp_path, "", show_rc=1)
    res = _run(fake, "17", OURS)
    assert res.returncode == 0
    assert "cannot read AdminComment" in res.stderr
    assert log.read_text().splitlines()[2] == f"AdminComment={OURS}"


def test_a_refused_update_and_bad_arguments_exit_1(tmp_path: Path) -> None:
    fake, _ = _fake_scontrol(tmp_path, "", update_rc=1)
    assert _run(fake, "17", OURS).returncode == 1
    res = _run(fake, "17", "not-ours")
    assert res.returncode == 1 and "not an AdminComment record of ours" in res.stderr
    assert _run(fake, "x17", OURS).returncode == 1
    assert _run(fake, "17").returncode == 1


def test_the_script_imports_nothing_beyond_the_standard_library_and_admin_comment() -> None:
    probe = (
        "import runpy, sys\n"
        f"sys.argv = [{str(SCRIPT)!r}, 'x']\n"
        "try:\n"
        f"    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 1\n"
        "heavy = ('qauvern_hpc', 'pydantic', 'httpx', 'yaml')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['qauvern_hpc', 'qauvern_hpc.record', 'qauvern_hpc.record.admin_comment']"


COMPAT = REPO / "tests" / "compat" / "fixtures"


def test_json_is_preferred_and_a_forged_text_line_is_ignored(tmp_path: Path) -> None:
    # 24.11, recorded: the job's name holds "\n   AdminComment=forged by the user1"; the JSON tells the truth
    rec = COMPAT / "24.11.5" / "job-path"
    text = (rec / "show-job-forged-note.txt").read_text()
    doc = (rec / "show-job-forged-note.json").read_text()
    job_id = text.split()[0].removeprefix("JobId=")
    fake, log = _fake_scontrol(tmp_path, text, show_json=doc)
    assert _run(fake, job_id, OURS).returncode == 0
    assert log.read_text().splitlines()[2] == f"AdminComment=ticket=4711 | checked by ops = yes | {OURS}"


def test_without_json_an_ambiguous_text_form_writes_our_record_alone(tmp_path: Path) -> None:
    # 22.05, recorded: two AdminComment= lines (one from the job name): the user's text is never kept
    text = (COMPAT / "22.05.8" / "job-path" / "show-job-forged-note.txt").read_text()
    job_id = text.split()[0].removeprefix("JobId=")
    fake, log = _fake_scontrol(tmp_path, text)
    res = _run(fake, job_id, OURS)
    assert res.returncode == 0 and "several AdminComment= lines" in res.stderr
    assert log.read_text().splitlines()[2] == f"AdminComment={OURS}"
