"""The job record (`{state_dir}/jobs/{jobid}.json`): round trip, the on-disk format, tolerant reading."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from qauvern_hpc.hooks import common
from qauvern_hpc.hooks.release import iter_records
from qauvern_hpc.record.job_record import JobRecord, ResourceRecord

# A record as the prolog and the epilog wrote it before JobRecord existed (json.dumps(dict, sort_keys=True)).
WRITTEN = {
    "account": "physics",
    "error": None,
    "format": 1,
    "instance": "physics-2025",
    "job_id": "42",
    "partition": "qpu",
    "prepared_at": 1767225600.5,
    "qos": "normal",
    "requested": "ibm_torino",
    "resources": [
        {
            "api_key_file": "/etc/qauvern-hpc/physics.key",
            "backend": "ibm_torino",
            "close_error": "503 Service Unavailable",
            "crn": "crn:v1:bluemix:public:quantum-computing:us-east:a/acc:inst::",
            "instance": "physics-2025",
            "resource": "ibm_torino",
            "session_id": "sess-1",
            "session_mode": "batch",
        },
        {
            "api_key_file": None,
            "backend": "ibm_fez",
            "cancelled_jobs": ["j1", "j2"],
            "closed_at": 1767229200.0,
            "crn": "crn:v1:bluemix:public:quantum-computing:us-east:a/acc:inst::",
            "instance": "physics-2025",
            "resource": "ibm_fez",
            "session_id": "sess-2",
            "session_mode": "dedicated",
        },
    ],
    "rule": "physics",
    "ended_at": 1767229300.0,
    "slurm_exit_code": "0:0",
    "user": "alice",
}


def test_a_written_record_reads_back_and_writes_the_same_bytes() -> None:
    text = json.dumps(WRITTEN, sort_keys=True) + "\n"
    record = JobRecord.from_json(text)
    assert record.job_id == "42" and record.rule == "physics" and record.ended_at == 1767229300.0
    first, second = record.resources
    assert first.is_open and first.close_error == "503 Service Unavailable"
    assert not second.is_open and second.cancelled_jobs == ("j1", "j2")
    assert record.open_sessions == (first,)
    assert record.to_json() == text
    assert JobRecord.from_json(record.to_json()) == record


def test_a_new_record_has_the_prologs_keys_and_no_optional_ones() -> None:
    record = JobRecord(job_id="7", user="bob", prepared_at=1.0, rule=None, instance=None)
    record = record.with_resource(ResourceRecord(resource="ibm_torino", session_id=None))
    doc = json.loads(record.to_json())
    assert set(doc) == {
        "format", "job_id", "user", "account", "partition", "qos", "requested", "prepared_at", "resources",
        "error", "rule", "instance",
    }  # fmt: skip
    assert doc["resources"] == [
        {"resource": "ibm_torino", "instance": "", "crn": "", "backend": "", "session_mode": "",
         "session_id": None, "api_key_file": None}
    ]  # fmt: skip
    assert not record.open_sessions  # no session was opened


def test_an_old_or_partial_record_is_read_with_defaults_and_unknown_keys_kept() -> None:
    text = json.dumps(
        {
            "user": "carol",
            "prepared_at": "yesterday",  # wrong type: default
            "resources": [{"resource": "ibm_torino", "session_id": "s", "future": 1}, "junk"],
            "later_field": {"x": 1},
        }
    )
    record = JobRecord.from_json(text, job_id="9")
    assert record.job_id == "9" and record.user == "carol" and record.prepared_at is None
    assert record.format == 1 and record.rule is None and record.ended_at is None
    [res] = record.resources
    assert res.is_open and res.crn == ""
    doc = json.loads(record.to_json())
    assert doc["later_field"] == {"x": 1} and doc["resources"][0]["future"] == 1


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", '"a string"'])
def test_a_bad_file_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        JobRecord.from_json(text)


def test_the_hooks_read_and_write_records_through_the_state_dir(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = common.StatePaths(str(tmp_path), "42")
    assert common.read_record(paths) is None
    (tmp_path / "jobs").mkdir()
    record = JobRecord.from_json(json.dumps(WRITTEN))
    common.write_record(paths, replace(record, ended_at=None))
    back = common.read_record(paths)
    assert back is not None and back.ended_at is None and back.resources == record.resources
    (tmp_path / "jobs" / "43.json").write_text("[]")
    with pytest.raises(ValueError, match=r"43\.json"):
        common.read_record(common.StatePaths(str(tmp_path), "43"))
    with caplog.at_level(logging.WARNING):
        found = [(p.name, r.job_id) for p, r in iter_records(tmp_path)]
    assert found == [("42.json", "42")]  # the bad file is skipped with a warning
    assert "43.json" in caplog.text
