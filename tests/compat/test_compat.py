"""The Slurm gateway against what other Slurm releases really print (tests/compat/fixtures/VERSION/).

Each directory was recorded by `tests/compat/run.sh RELEASE` on the sandbox cluster (up.sh) running inside a
debootstrapped Debian release (bookworm 22.05, trixie 24.11, sid 26.05): the real daemons and clients of
that release, the command lines qauvern-hpc builds (each `*.argv` file), their stdout, stderr and exit status.
These tests check, per release:

* the recorded command lines are still the ones the code builds (else: re-record with run.sh);
* every sacct field and squeue format code we ask for exists in that release;
* the parsers read the output: job states, AdminComment records, requeue runs (Restarts on 24.11+), array
  tasks, time limits, licenses, pending reasons, associations, TRES, license totals;
* the rebalancer's Slurm writes succeed (and succeed again: idempotent), the root-association license gate
  makes a job pend with AssocGrpLicense and the ungate lets it run;
* the SPANK plugin compiles against that release's headers (-Werror), passes its harness and loads in sbatch;
* the QPU job path recorded by `tests/compat/job_path.sh RELEASE` (fixtures/VERSION/job-path/): every step
  passed there, and the `scontrol show job` outputs replay through the prolog's AdminComment reader and merge.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.hooks import admin_comment_set
from qauvern_hpc.rebalance.demand import aggregate_pending
from qauvern_hpc.record.admin_comment import (
    PREFIX,
    admin_comment_from_show_job,
    admin_comment_from_show_job_json,
    merge_admin_comment,
    parse_admin_comment,
    show_job_is_ambiguous,
)
from qauvern_hpc.slurm import sacctmgr as sacctmgr_mod
from qauvern_hpc.slurm import squeue as squeue_mod
from qauvern_hpc.slurm.run import classify_failure
from qauvern_hpc.slurm.sacct import (
    DEFAULT_FIELDS,
    FINISHED_STATES,
    SacctRecord,
    build_sacct_argv,
    parse_sacct,
    parse_slurm_version,
    sacct_fields,
)
from qauvern_hpc.slurm.sacctmgr import Sacctmgr, parse_associations, parse_tres_names
from qauvern_hpc.slurm.squeue import SQUEUE_FIELDS, parse_license_totals, parse_squeue, squeue_argv

FIXTURES = Path(__file__).parent / "fixtures"
CLUSTER = "qsandbox"  # up.sh's default cluster name
RERECORD = (
    "the command line changed: re-record with `bash tests/compat/run.sh RELEASE` (see tests/compat/README.md)"
)
VERSIONS = sorted((d.name for d in FIXTURES.iterdir() if d.is_dir()), key=parse_slurm_version)


def test_the_newer_releases_are_recorded() -> None:
    majors = {parse_slurm_version(v)[:2] for v in VERSIONS}
    assert {(22, 5), (24, 11), (26, 5)} <= majors, VERSIONS


class Recording:
    def __init__(self, version: str) -> None:
        self.dir = FIXTURES / version
        self.version = parse_slurm_version(version)

    def text(self, name: str) -> str:
        return (self.dir / name).read_text()

    def argv(self, name: str) -> list[str]:
        return self.text(f"{name}.argv").splitlines()

    def status(self, name: str) -> int:
        return int(self.text(f"{name}.status"))

    def stderr(self, name: str) -> str:
        path = self.dir / f"{name}.stderr"
        return path.read_text() if path.exists() else ""

    def succeeded(self, name: str) -> bool:
        """Did the command succeed as qauvern-hpc's run_slurm judges it (sacctmgr's no-op exit 1 is fine)?"""
        return (
            classify_failure(self.argv(name), self.status(name), self.text(name), self.stderr(name)) is None
        )

    def jobs(self) -> dict[str, str]:
        return dict(item.split("=") for item in self.text("jobs.txt").split())


@pytest.fixture(params=VERSIONS)
def rec(request: pytest.FixtureRequest) -> Recording:
    return Recording(request.param)


def test_recorded_by_the_release_it_is_named_after(rec: Recording) -> None:
    assert parse_slurm_version(rec.text("version.txt")) == rec.version


# ----- sacct -----------------------------------------------------------------------------------------


def _window(argv: Sequence[str]) -> tuple[int, int]:
    opts = dict(a.split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    return int(opts["--starttime"].removeprefix("uts")), int(opts["--endtime"].removeprefix("uts"))


@pytest.mark.parametrize(("name", "fields"), [("sacct.txt", None), ("sacct-default.txt", DEFAULT_FIELDS)])
def test_sacct_command_line_is_the_collectors(
    rec: Recording, name: str, fields: Sequence[str] | None
) -> None:
    argv = rec.argv(name)
    start, end = _window(argv)
    want = build_sacct_argv(
        start,
        end,
        clusters=(CLUSTER,),
        states=FINISHED_STATES,
        fields=sacct_fields(rec.version) if fields is None else fields,
    )
    assert argv == want, RERECORD
    assert rec.status(name) == 0, rec.stderr(name)


def test_every_sacct_field_we_ask_for_exists(rec: Recording) -> None:
    known = {f.lower() for f in rec.text("sacct-helpformat.txt").split()}
    for field in sacct_fields(rec.version):
        assert field.lower() in known, f"Slurm {rec.version}: sacct has no field {field}"
    # sacct_fields() adds Restarts exactly where sacct has it.
    assert ("restarts" in known) == ("Restarts" in sacct_fields(rec.version))


def _parse(rec: Recording, name: str) -> list[SacctRecord]:
    fields = next(a for a in rec.argv(name) if a.startswith("--format=")).removeprefix("--format=").split(",")
    return list(parse_sacct(rec.text(name).splitlines(), fields, strict=True))


@pytest.mark.parametrize("name", ["sacct.txt", "sacct-default.txt"])
def test_sacct_output_parses_into_what_the_jobs_did(rec: Recording, name: str) -> None:
    records = _parse(rec, name)
    ids = rec.jobs()
    by_id: dict[str, list[SacctRecord]] = {}
    for r in records:
        by_id.setdefault(r.job_id, []).append(r)
    assert {r.cluster for r in records} == {CLUSTER}

    (ok,) = by_id[ids["ok"]]
    assert (ok.state, ok.exit_code, ok.user, ok.account) == ("COMPLETED", 0, "qalice", "physics")
    assert ok.qpu is not None and ok.qpu.instance == "physics"
    assert ok.start is not None and ok.end is not None and ok.submit is not None and ok.end >= ok.start
    assert ok.time_limit == 5 * 60 and ok.node_list == "qnode1"

    (failed,) = by_id[ids["failed"]]
    assert (failed.state, failed.exit_code) == ("FAILED", 3)
    # Free text and our " | " separator before the record: still found (AdminComment is the last field).
    assert failed.admin_comment.startswith("checked by ops | ")
    assert failed.qpu is not None and failed.qpu.instance == "physics"

    (cancelled,) = by_id[ids["cancelled"]]
    assert (cancelled.state, cancelled.cancelled_by, cancelled.elapsed) == ("CANCELLED", 0, 0)
    assert cancelled.qpu is None
    # A job cancelled before it ran: 22.05 prints its cancel time as Start, 24.11+ print None.
    if rec.version < (24, 11, 0):
        assert cancelled.start == cancelled.end
    else:
        assert cancelled.start is None

    arr = ids["array"]
    tasks = sorted((r.array_task_id, r.array_job_id) for r in records if r.job_id.startswith(f"{arr}_"))
    assert tasks == [(0, int(arr)), (1, int(arr))]

    runs = by_id[ids["requeued"]]
    assert [r.state for r in runs] == ["REQUEUED", "COMPLETED"]  # -D: both runs, each its own submit time
    assert runs[0].submit is not None and runs[1].submit is not None and runs[0].submit < runs[1].submit
    if "Restarts" in _fields(rec, name):
        assert [r.run for r in runs] == [0, 1]
    else:
        assert [r.run for r in runs] == [None, None]

    # Pending jobs cancelled before they ran: limits as the rebalancer asked them.
    assert by_id[ids["later"]][0].time_limit == 2 * 86400
    assert by_id[ids["unlimited"]][0].time_limit is None  # Partition_Limit
    held = by_id[f"{ids['held_array']}_[0-2]"][0]
    assert (held.array_tasks, held.state, held.time_limit) == ("0-2", "CANCELLED", 90 * 60)


def _fields(rec: Recording, name: str) -> list[str]:
    return next(a for a in rec.argv(name) if a.startswith("--format=")).split("=", 1)[1].split(",")


def test_sacct_json_agrees_with_the_parsable_output(rec: Recording) -> None:
    """--json is not what we parse; it is a second opinion on the same jobs (and names the data_parser)."""
    assert rec.status("sacct.json") == 0, rec.stderr("sacct.json")
    doc = json.loads(rec.text("sacct.json"))
    comments = {str(j["job_id"]): _admin_comment(j) for j in doc["jobs"]}
    ok = rec.jobs()["ok"]
    (record,) = (r for r in _parse(rec, "sacct.txt") if r.job_id == ok)
    assert comments[ok] == record.admin_comment


def _admin_comment(job: dict[str, Any]) -> str:
    comment = job.get("comment")
    if isinstance(comment, dict):  # data_parser v0.0.39+: {"administrator": ..., "job": ..., "system": ...}
        return str(comment.get("administrator") or "")
    return str(job.get("admin_comment") or "")


# ----- squeue / scontrol -----------------------------------------------------------------------------


@contextmanager
def _replay(rec: Recording, name: str, seen: list[list[str]]) -> Iterator[Iterator[str]]:
    yield iter(rec.text(name).splitlines(keepends=True))


def _pending(rec: Recording, name: str, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> list[Any]:
    calls: list[list[str]] = []

    def stream(argv: Sequence[str], **_: Any) -> Any:
        calls.append(list(argv))
        return _replay(rec, name, calls)

    monkeypatch.setattr(squeue_mod, "stream_slurm", stream)
    jobs = squeue_mod.pending_jobs(**kw)
    assert calls == [rec.argv(name)], RERECORD
    return jobs


def test_every_squeue_format_code_we_ask_for_exists(rec: Recording) -> None:
    assert rec.argv("squeue.txt") == squeue_argv(), RERECORD
    if rec.version < (23, 0, 0):  # no --helpformat before 23.02: the recorded -o output has to do
        assert "unrecognized option '--helpformat'" in rec.stderr("squeue-helpformat.txt")
        assert rec.status("squeue.txt") == 0
        assert all(len(line.split("|")) == len(SQUEUE_FIELDS) for line in rec.text("squeue.txt").splitlines())
        return
    assert set(SQUEUE_FIELDS) <= set(rec.text("squeue-helpformat.txt").split())


def test_pending_jobs_parse_as_the_rebalancer_reads_them(
    rec: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = {j.job_id: j for j in _pending(rec, "squeue.txt", monkeypatch)}
    ids = rec.jobs()
    gated = jobs[ids["gated"]]
    assert gated.reason == "AssocGrpLicense" and gated.licenses == (("qpu_chem", 1),)
    assert gated.time_limit_seconds == 300 and gated.submit_epoch and gated.submit_epoch > 1_700_000_000
    for task in range(3):
        held = jobs[f"{ids['held_array']}_{task}"]  # -r: one line per array task
        assert held.held and held.reason == "JobHeldUser"
        assert dict(held.licenses) == {"qpu_physics": 1, "qpu": 1} and held.time_limit_seconds == 5400
    assert jobs[ids["later"]].time_limit_seconds == 2 * 86400 and jobs[ids["later"]].reason == "BeginTime"
    assert jobs[ids["unlimited"]].time_limit_seconds is None
    assert jobs[ids["no_license"]].licenses == ()
    assert (gated.user, gated.account, gated.partition, gated.qos) == ("qcarol", "chem", "debug", "normal")

    summary = aggregate_pending(jobs.values(), "qpu_", ["physics", "chem"], now=2e9, max_job_seconds=86400)
    chem, physics = summary.by_instance["chem"], summary.by_instance["physics"]
    assert (chem.pending_jobs, chem.gated_jobs) == (2, 1)
    assert physics.pending_jobs == 1  # held array tasks are not demand (count_held=False)


def test_pending_jobs_with_clusters_skip_the_cluster_header(
    rec: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None of the releases prints a "CLUSTER: name" line when -M names only the local cluster (the header
    # that pending_jobs skips comes with several clusters). The jobs are the same as without -M.
    with_m = _pending(rec, "squeue-clusters.txt", monkeypatch, clusters=(CLUSTER,))
    assert with_m == list(parse_squeue(rec.text("squeue.txt").splitlines()))


def test_squeue_json_agrees_with_the_parsable_output(rec: Recording) -> None:
    doc = json.loads(rec.text("squeue.json"))
    reasons = {str(j["job_id"]): j["state_reason"] for j in doc["jobs"]}
    parsed = {j.job_id: j.reason for j in parse_squeue(rec.text("squeue.txt").splitlines())}
    gated = rec.jobs()["gated"]
    assert reasons[gated] == parsed[gated] == "AssocGrpLicense"


def test_license_totals(rec: Recording, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(squeue_mod, "run_slurm", lambda argv, **_: _check(rec, "scontrol-licenses.txt", argv))
    assert squeue_mod.configured_licenses() == {"qpu": 8, "qpu_chem": 1000, "qpu_physics": 1000}
    assert parse_license_totals(rec.text("scontrol-licenses.txt"))["qpu"] == 8


def _check(rec: Recording, name: str, argv: Sequence[str]) -> str:
    assert list(argv) == rec.argv(name), RERECORD
    assert rec.succeeded(name), rec.stderr(name)
    return rec.text(name)


# ----- sacctmgr: reads, the rebalancer's writes, the gate ---------------------------------------------


def test_associations_and_tres(rec: Recording, monkeypatch: pytest.MonkeyPatch) -> None:
    name = {"n": "sacctmgr-assoc.txt"}
    monkeypatch.setattr(sacctmgr_mod, "run_slurm", lambda argv, **_: _check(rec, name["n"], argv))
    assocs = {(a.account, a.user): a for a in Sacctmgr().associations()}
    assert assocs[("root", "")].grp_tres == {"license/qpu_chem": 0}  # the gate, as written
    assert assocs[("physics", "")].fairshare == 500 and assocs[("physics", "")].parent == "root"
    assert assocs[("physics", "qalice")].user == "qalice" and not assocs[("physics", "qalice")].is_account
    name["n"] = "sacctmgr-assoc-cluster.txt"
    assert {(a.account, a.user) for a in Sacctmgr(clusters=(CLUSTER,)).associations()} == set(assocs)
    name["n"] = "sacctmgr-tres.txt"
    assert {"license/qpu", "license/qpu_chem", "license/qpu_physics", "cpu"} <= Sacctmgr().tres_names()
    ungated = {(a.account, a.user): a for a in parse_associations(rec.text("sacctmgr-assoc-ungated.txt"))}
    assert "license/qpu_chem" not in ungated[("root", "")].grp_tres
    assert parse_tres_names(rec.text("sacctmgr-tres.txt")) == Sacctmgr().tres_names()


def test_rebalancer_writes_succeed_twice_and_the_gate_holds_jobs(
    rec: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = {"n": ""}
    monkeypatch.setattr(sacctmgr_mod, "run_slurm", lambda argv, **_: _check(rec, name["n"], argv))
    mgr = Sacctmgr()
    for name["n"] in ("sacctmgr-gate.txt", "sacctmgr-gate-again.txt"):
        mgr.set_grp_tres("root", CLUSTER, "license/qpu_chem", 0)
    for name["n"] in ("sacctmgr-fairshare.txt", "sacctmgr-fairshare-again.txt"):
        mgr.set_fairshare("physics", CLUSTER, 500)
    name["n"] = "sacctmgr-ungate.txt"
    mgr.set_grp_tres("root", CLUSTER, "license/qpu_chem", None)
    assert rec.text("gated-reason.txt").strip() == "AssocGrpLicense"
    assert rec.text("gated-after-ungate.txt").strip() == "finished"


# ----- the SPANK plugin ------------------------------------------------------------------------------


def test_spank_plugin_builds_and_loads(rec: Recording) -> None:
    assert rec.text("spank-build.status").strip() == "0", rec.text("spank-build.txt")[-2000:]
    assert "--qpu=" in rec.text("spank-sbatch-help.txt")


# ----- the QPU job path (tests/compat/job_path.sh): outcomes and `scontrol show job` -----------------------

JOB_PATH_STEPS = (
    "site",
    "up",
    "good",
    "forbidden",
    "malformed",
    "admin",
    "collect",
    "multiline",
    "forged",
    "collect-multiline",
    "down",
)
JOB_PATH_VERSIONS = [v for v in VERSIONS if (FIXTURES / v / "job-path" / "job-path.json").is_file()]


class JobPath:
    def __init__(self, version: str) -> None:
        self.dir = FIXTURES / version / "job-path"
        self.version = parse_slurm_version(version)
        self.doc: dict[str, Any] = json.loads((self.dir / "job-path.json").read_text())
        self.steps = {s["name"]: s for s in self.doc["steps"]}

    def show(self, name: str) -> str:
        return (self.dir / f"show-job-{name}.txt").read_text()

    def show_json(self, name: str) -> str:
        return (self.dir / f"show-job-{name}.json").read_text()

    def job(self, step: str) -> str:
        return str(self.steps[step]["job"])


@pytest.fixture(params=JOB_PATH_VERSIONS)
def jp(request: pytest.FixtureRequest) -> JobPath:
    return JobPath(request.param)


def test_the_job_path_is_recorded_on_every_release() -> None:
    majors = {parse_slurm_version(v)[:2] for v in JOB_PATH_VERSIONS}
    assert {(22, 5), (24, 11), (26, 5)} <= majors, JOB_PATH_VERSIONS


def test_every_job_path_step_passed(jp: JobPath) -> None:
    assert parse_slurm_version(jp.doc["slurm_version"]) == jp.version
    assert tuple(jp.steps) == JOB_PATH_STEPS
    failed = {name: s["detail"] for name, s in jp.steps.items() if not s["ok"]}
    assert not failed, failed


def test_refusals_name_their_reason(jp: JobPath) -> None:
    forbidden = jp.steps["forbidden"]["messages"]
    assert "rule 'students-denied'" in forbidden[0] and "students use the simulator" in forbidden[0]
    assert "rule 'chemistry' does not allow QPU resource 'ibm_torino'" in forbidden[1]
    assert "no rule grants QPU access" in forbidden[2]
    malformed = jp.steps["malformed"]["messages"]  # the SPANK plugin's own words, then sbatch's
    assert all("Invalid --qpu argument" in m for m in malformed), malformed
    assert "invalid byte \\x3b" in malformed[0] and "more than once" in malformed[1]


def test_show_job_admin_comment_is_read_as_slurm_holds_it(jp: JobPath) -> None:
    note, multiline = jp.doc["notes"]["admin"], jp.doc["notes"]["multiline"]
    assert admin_comment_from_show_job(jp.show("none")) is None
    assert admin_comment_from_show_job(jp.show("admin")) == note
    assert admin_comment_from_show_job(jp.show("multiline")) == multiline
    ours = admin_comment_from_show_job(jp.show("ours"))
    rec = parse_admin_comment(ours)
    assert ours is not None and ours.startswith(PREFIX)
    assert rec is not None and rec.instance == "physics" and rec.resources[0][0] == "ibm_torino"
    # What the prolog's merge makes of the held job's comment is what Slurm shows once the job has run.
    merged = admin_comment_from_show_job(jp.show("merged"))
    assert merged is not None and merged.startswith(f"{note} | {PREFIX}")
    assert merge_admin_comment(note, merged.split(" | ")[-1]) == merged


def test_show_job_trailing_blank_after_admin_comment(jp: JobPath) -> None:
    # 22.05 and 24.11 end the AdminComment line with a blank of their own, 26.05 does not (its value
    # arrives intact through `scontrol --json` in the prolog anyway).
    line = next(x for x in jp.show("admin").splitlines() if x.startswith("   AdminComment="))
    assert line.endswith(" ") == (jp.version < (26, 0, 0)), repr(line)


def test_forged_admin_comment_lines_are_not_trusted(jp: JobPath) -> None:
    note = jp.doc["notes"]["admin"]
    for name in ("forged", "forged-note"):
        text = jp.show(name)
        # The job name and comment print as lines of their own: the text form is ambiguous on every release.
        assert admin_comment_from_show_job(text) == "forged by the user1"
        assert show_job_is_ambiguous(text)
    assert not show_job_is_ambiguous(jp.show("admin"))
    job = jp.job("forged")
    if jp.version < (23, 0, 0):
        assert "unrecognized option '--json'" in jp.show_json("forged")
        return
    assert admin_comment_from_show_job_json(jp.show_json("forged"), job) is None
    assert admin_comment_from_show_job_json(jp.show_json("forged-note"), job) == note
    with pytest.raises(ValueError):
        admin_comment_from_show_job_json(jp.show_json("forged-note"), "999999")


@pytest.mark.parametrize(("name", "want_note"), [("forged-note", True), ("admin", True), ("none", False)])
def test_the_prologs_merge_replayed(
    jp: JobPath, monkeypatch: pytest.MonkeyPatch, name: str, want_note: bool
) -> None:
    """admin_comment_set.merged_comment over the recorded outputs: scontrol --json where the release has it
    (24.11+), else the text form, which is not trusted when ambiguous (22.05 with a forged job name)."""
    text = jp.show(name)
    job = text.split()[0].removeprefix("JobId=")
    js = jp.dir / f"show-job-{name}.json"

    def scontrol(_: str, *args: str) -> tuple[int, str, str]:
        if args[0] == "--json":
            if jp.version < (23, 0, 0):
                return 1, "", "scontrol: unrecognized option '--json'"
            return 0, js.read_text(), ""
        assert args == ("show", "job", job)
        return 0, text, ""

    monkeypatch.setattr(admin_comment_set, "_scontrol", scontrol)
    ours = f"{PREFIX}rule=physics;inst=physics;res=ibm_torino@sess-x"
    merged = admin_comment_set.merged_comment("scontrol", job, ours)
    note = jp.doc["notes"]["admin"]
    if name == "forged-note" and jp.version < (23, 0, 0):
        assert merged == ours  # ambiguous text: our record alone, never the user's text
    elif want_note:
        assert merged == f"{note} | {ours}"
    else:
        assert merged == ours
    assert "forged" not in merged
