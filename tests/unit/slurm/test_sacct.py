"""sacct --parsable2 parser and command line.

Fixtures: tests/unit/fixtures/sacct (hand-written in the real format, see its README).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from qauvern_hpc.record.admin_comment import AdminRecord
from qauvern_hpc.slurm.sacct import (
    DEFAULT_FIELDS,
    FINISHED_STATES,
    SacctParseError,
    SacctParser,
    SacctRecord,
    build_sacct_argv,
    parse_sacct,
    parse_slurm_version,
    sacct_env,
    sacct_fields,
)
from tests.support.paths import UNIT_FIXTURES

FIXTURES = UNIT_FIXTURES / "sacct"


def load(name: str, fields: tuple[str, ...] = DEFAULT_FIELDS) -> list[SacctRecord]:
    with open(FIXTURES / name, encoding="utf-8") as fh:
        return list(parse_sacct(fh, fields))


def by_id(records: list[SacctRecord]) -> dict[str, SacctRecord]:
    return {r.job_id: r for r in records}


def test_default_fields_fixture_every_record() -> None:
    recs = load("default_fields.txt")
    assert [r.job_id for r in recs] == [
        "1001",
        "1002",
        "1003_4",
        "1010_[5-9%2]",
        "1020+0",
        "1020+1",
        "1030",
        "1040",
        "1040",
        "1050",
        "1060",
        "1070",
        "1080",
    ]
    plain = recs[0]
    assert plain == SacctRecord(
        cluster="alpha",
        job_id="1001",
        job_id_raw=1001,
        array_job_id=None,
        array_task_id=None,
        array_tasks=None,
        het_job_id=None,
        het_offset=None,
        user="alice",
        account="physics",
        partition="cpu",
        qos="normal",
        state="COMPLETED",
        cancelled_by=None,
        exit_code=0,
        exit_signal=0,
        submit=1767225600,
        start=1767225610,
        end=1767225670,
        elapsed=60,
        time_limit=1800,
        node_list="node01",
        admin_comment="",
        qpu=None,
        restarts=None,
    )


def test_qpu_record_from_admin_comment() -> None:
    rec = by_id(load("default_fields.txt"))["1002"]
    assert rec.qpu == AdminRecord("chem", "chem-2026", (("ibm_torino", "sess-1a2b"),))
    assert rec.admin_comment == "qauvern:v1;rule=chem;inst=chem-2026;res=ibm_torino@sess-1a2b"


def test_array_task_and_pending_range() -> None:
    recs = by_id(load("default_fields.txt"))
    task = recs["1003_4"]
    assert (task.job_id_raw, task.array_job_id, task.array_task_id, task.array_tasks) == (1007, 1003, 4, None)
    assert (task.state, task.exit_code, task.exit_signal) == ("FAILED", 1, 0)
    assert task.node_list == "node[01-02]"
    assert task.qpu is not None and task.qpu.resources == (("ibm_fez", "sess-2"), ("ibm_torino", None))
    pending = recs["1010_[5-9%2]"]
    assert (pending.job_id_raw, pending.array_job_id, pending.array_task_id) == (1010, 1010, None)
    assert pending.array_tasks == "5-9%2"
    assert (pending.start, pending.end, pending.time_limit, pending.elapsed) == (None, None, None, 0)
    assert pending.node_list == "None assigned"


def test_het_components_have_their_own_raw_ids() -> None:
    recs = by_id(load("default_fields.txt"))
    first, second = recs["1020+0"], recs["1020+1"]
    assert (first.het_job_id, first.het_offset, first.job_id_raw) == (1020, 0, 1020)
    assert (second.het_job_id, second.het_offset, second.job_id_raw) == (1020, 1, 1021)
    assert first.time_limit is None  # Partition_Limit
    assert first.qpu == AdminRecord("bio", "bio-main", (("ibm_kyiv", "s@x"),))  # percent-decoded
    assert second.qpu is None


def test_cancelled_by_uid() -> None:
    rec = by_id(load("default_fields.txt"))["1030"]
    assert (rec.state, rec.cancelled_by, rec.exit_code, rec.exit_signal) == ("CANCELLED", 0, 0, 15)


def test_requeued_runs_are_separate_records_with_their_submit_times() -> None:
    runs = [r for r in load("default_fields.txt") if r.job_id == "1040"]
    assert [(r.state, r.submit, r.end, r.run) for r in runs] == [
        ("REQUEUED", 1767226300, 1767226400, None),
        ("COMPLETED", 1767226401, 1767226620, None),
    ]
    assert [r.qpu.resources[0][1] for r in runs if r.qpu] == ["sess-r0", "sess-r1"]


def test_running_job_and_admin_comment_with_pipe_and_other_text() -> None:
    rec = by_id(load("default_fields.txt"))["1050"]
    assert (rec.state, rec.end, rec.elapsed, rec.time_limit) == ("RUNNING", None, 3600, 86400)
    assert rec.admin_comment == "ticket 42 | qauvern:v1;rule=physics;inst=phys-2026;res=ibm_fez@sess-run"
    assert rec.qpu == AdminRecord("physics", "phys-2026", (("ibm_fez", "sess-run"),))


def test_newline_inside_admin_comment_is_folded_back() -> None:
    recs = by_id(load("default_fields.txt"))
    assert recs["1060"].admin_comment == "moved from\nold cluster | see ticket 7"
    assert recs["1060"].qpu is None
    assert recs["1070"].state == "OUT_OF_MEMORY" and recs["1070"].exit_signal == 125
    assert recs["1080"].qpu == AdminRecord("bio", "bio-main", (("ibm_kyiv", None),))


def test_stats_count_lines_records_and_skipped_steps() -> None:
    text = (
        "alpha|5|5|u|a|p|normal|COMPLETED|0:0|1767225600|1767225601|1767225602|1|1|n1|\n"
        "alpha|5.batch|5.batch|||||COMPLETED|0:0|1767225600|1767225601|1767225602|1||n1|\n"
        "alpha|5.0|5.0|||||COMPLETED|0:0|1767225600|1767225601|1767225602|1||n1|\n"
        "alpha|6+0.extern|6.extern|||||COMPLETED|0:0|1767225600|1767225601|1767225602|1||n1|\n"
        "\n"
    )
    parser = SacctParser()
    recs = list(parser.parse(io.StringIO(text)))
    assert [r.job_id for r in recs] == ["5"]
    assert (parser.stats.lines, parser.stats.records, parser.stats.steps_skipped) == (5, 1, 3)


def test_restarts_field_on_slurm_24_11() -> None:
    fields = sacct_fields((24, 11, 0))
    assert fields[-2:] == ("Restarts", "AdminComment")
    recs = load("restarts_24_11.txt", fields)
    assert [(r.restarts, r.run, r.state) for r in recs] == [
        (0, 0, "REQUEUED"),
        (1, 1, "PREEMPTED"),
        (2, 2, "COMPLETED"),
    ]
    assert sacct_fields((22, 5, 8)) == DEFAULT_FIELDS
    assert "Restarts" not in DEFAULT_FIELDS


def test_multi_cluster_same_job_id() -> None:
    recs = load("multi_cluster.txt")
    assert [(r.cluster, r.job_id_raw, r.user) for r in recs] == [
        ("alpha", 2001, "alice"),
        ("beta", 2001, "zed"),
    ]


def test_other_field_orders_and_non_raw_columns() -> None:
    fields = ("JobIDRaw", "JobID", "State", "Elapsed", "Timelimit", "End")
    text = "77|77|TIMEOUT|1-02:03:04|2-00:00:00|1767225600\n78|78|COMPLETED|05:06|UNLIMITED|Unknown\n"
    recs = list(parse_sacct(io.StringIO(text), fields))
    assert [(r.elapsed, r.time_limit, r.end) for r in recs] == [
        (93784, 172800, 1767225600),
        (306, None, None),
    ]
    assert recs[0].cluster == "" and recs[0].admin_comment == "" and recs[0].qpu is None


def test_wrapped_negative_elapsed_is_unknown() -> None:
    """sacct prints a negative difference as a huge unsigned number (seen from 22.05's `sacct -c` for a
    job without an end): not a duration."""
    fields = ("JobID", "JobIDRaw", "ElapsedRaw")
    recs = list(parse_sacct(io.StringIO("1|1|2527740591\n2|2|2147483647\n3|3|0\n"), fields))
    assert [r.elapsed for r in recs] == [None, 2147483647, 0]


def test_strict_mode_raises_with_line_number() -> None:
    text = "alpha|1|1|u|a|p|q|COMPLETED|0:0|1|1|1|1|1|n|\nalpha|x1|x1|u|a|p|q|COMPLETED|0:0|1|1|1|1|1|n|\n"
    with pytest.raises(SacctParseError, match="line 2"):
        list(parse_sacct(io.StringIO(text)))


def test_lenient_mode_counts_bad_lines() -> None:
    text = (
        "garbage without pipes\n"
        "alpha|1|1|u|a|p|q|COMPLETED|0:0|1|1|1|1|1|n|\n"
        "alpha|9_x|9|u|a|p|q|F|0:0|1|1|1|1|1|n|\n"
    )
    parser = SacctParser(strict=False)
    assert [r.job_id for r in parser.parse(io.StringIO(text))] == ["1"]
    assert parser.stats.bad_lines == 2
    assert parser.stats.first_error is not None and "line 1" in parser.stats.first_error


def test_pipe_in_middle_field_is_an_error_when_admin_comment_is_not_last() -> None:
    fields = ("JobID", "JobIDRaw", "AdminComment", "State")
    with pytest.raises(SacctParseError, match="5 fields, expected 4"):
        list(parse_sacct(io.StringIO("1|1|a | b|COMPLETED\n"), fields))


def test_parser_needs_job_ids() -> None:
    with pytest.raises(ValueError, match="JobIDRaw"):
        SacctParser(("JobID", "State"))


def test_build_sacct_argv_follows_the_facts_note() -> None:
    argv = build_sacct_argv(
        1767225600, 1767229200, clusters=("alpha", "beta"), states=("CD", "F"), fields=("JobID", "JobIDRaw")
    )
    assert argv == [
        "sacct",
        "--parsable2",
        "--noheader",
        "--noconvert",
        "--allocations",
        "--duplicates",
        "--allusers",
        "--starttime=uts1767225600",
        "--endtime=uts1767229200",
        "--clusters=alpha,beta",
        "--state=CD,F",
        "--format=JobID,JobIDRaw",
    ]
    default = build_sacct_argv(1767225600, None, sacct="/usr/bin/sacct")
    assert default[0] == "/usr/bin/sacct"
    assert "--starttime=uts1767225600" in default
    assert not any(a.startswith(("--endtime", "--clusters", "--state")) for a in default)
    assert default[-1] == "--format=" + ",".join(DEFAULT_FIELDS)
    assert "COMPLETED" in FINISHED_STATES and "REQUEUED" in FINISHED_STATES


def test_build_sacct_argv_rejects_bad_windows() -> None:
    with pytest.raises(ValueError, match="epoch"):
        build_sacct_argv(0, None)
    with pytest.raises(ValueError, match="before"):
        build_sacct_argv(1767225600, 1767225599)


def test_env_and_version() -> None:
    assert sacct_env() == {"SLURM_TIME_FORMAT": "%s"}
    assert parse_slurm_version("slurm-wlm 22.05.8\n") == (22, 5, 8)
    assert parse_slurm_version("slurm 24.11.5") == (24, 11, 5)
    with pytest.raises(SacctParseError):
        parse_slurm_version("no version here")


def test_memory_does_not_hold_records() -> None:
    """The parser is a generator: records of a long stream are not kept."""
    line = "alpha|{i}|{i}|u|a|p|q|COMPLETED|0:0|1767225600|1767225601|1767225602|1|1|n1|\n"

    def lines() -> Iterator[str]:
        for i in range(1, 20001):
            yield line.format(i=i)

    parser = SacctParser()
    gen = parser.parse(lines())
    first = next(gen)
    assert first.job_id_raw == 1
    last = first
    for rec in gen:
        last = rec
    assert last.job_id_raw == 20000
    assert parser.stats.records == 20000


def test_fast_admin_decoding_matches_parse_admin_comment() -> None:
    from qauvern_hpc.record.admin_comment import (
        format_admin_comment,
        merge_admin_comment,
        parse_admin_comment,
    )
    from qauvern_hpc.slurm.sacct import _decode_admin

    texts = [
        "qauvern:v1;rule=chem;inst=chem-2026;res=ibm_torino@sess-1",
        "qauvern:v1;rule=;inst=;res=",
        "qauvern:v1;rule=a;inst=b;res=x@-,y@s2",
        "qauvern:v1;rule=a;inst=b;res=x@s,",
        "qauvern:v1;rule=a;inst=b;res=x",  # malformed resource
        "qauvern:v1;rule=a;inst=b;res=@s",  # malformed resource
        "qauvern:v1;inst=b;rule=a;res=x@s",  # other order
        "qauvern:v1;rule=a;inst=b",  # no res
        "qauvern:v1;rule=a=b;inst=c;res=x@s",
        "qauvern:v1;rule=a;inst=b;res=x@s;extra=1",
        "qauvern:v1;rule=a;inst=b;res=x@s ",
        " qauvern:v1;rule=a;inst=b;res=x@s",
        "note | qauvern:v1;rule=a;inst=b;res=x@s",
        "note|qauvern:v1;rule=a;inst=b;res=x@s",
        "qauvern:v1;rule=a;inst=b;res=x@s|tail",
        "qauvern:v1;rule=a;inst=b;res=x@s\nnext line",
        "qauvern:v1;rule=a;inst=b;res=x@s\tz",
        "qauvern:v1;rule=a;inst=b;res=x@s\r",
        "qauvern:v1;rule=a;inst=b;res=x@1 qauvern:v1;rule=c;inst=d;res=y@2",
        format_admin_comment(
            {"rule": "a;b", "instance": "x | y", "resources": [{"resource": "r@", "session_id": "s,1"}]}
        ),
        merge_admin_comment(
            "ticket 1", format_admin_comment({"rule": "r", "instance": "i", "resources": []})
        ),
    ]
    for text in texts:
        assert _decode_admin(text) == parse_admin_comment(text), text


def test_qpu_only_yields_exactly_the_qpu_records() -> None:
    with open(FIXTURES / "default_fields.txt", encoding="utf-8") as fh:
        full = [r for r in parse_sacct(fh) if r.qpu is not None]
    parser = SacctParser(qpu_only=True)
    with open(FIXTURES / "default_fields.txt", encoding="utf-8") as fh:
        only = list(parser.parse(fh))
    assert only == full
    assert [r.job_id for r in only] == ["1002", "1003_4", "1020+0", "1030", "1040", "1040", "1050", "1080"]
    assert (parser.stats.records, parser.stats.filtered, parser.stats.lines) == (8, 5, 14)


@pytest.mark.parametrize("at_end", [False, True])
def test_qpu_only_finds_our_record_after_a_newline_in_admin_comment(at_end: bool) -> None:
    head = "alpha|7|7|u|a|qpu|normal|COMPLETED|0:0|1767225600|1767225601|1767225700|99|10|n1|note line1\n"
    cont = "line2 | qauvern:v1;rule=r;inst=i;res=ibm_fez@s7\n"
    other = "alpha|8|8|u|a|cpu|normal|COMPLETED|0:0|1767225600|1767225601|1767225700|99|10|n1|\n"
    text = (other + head + cont) if at_end else (head + cont + other)
    parser = SacctParser(qpu_only=True)
    recs = list(parser.parse(io.StringIO(text)))
    assert [(r.job_id, r.admin_comment) for r in recs] == [
        ("7", "note line1\nline2 | qauvern:v1;rule=r;inst=i;res=ibm_fez@s7")
    ]
    assert recs[0].qpu == AdminRecord("r", "i", (("ibm_fez", "s7"),))
    assert recs[0].end == 1767225700
    assert (parser.stats.records, parser.stats.filtered) == (1, 1)
    assert recs == [r for r in parse_sacct(io.StringIO(text)) if r.qpu is not None]
