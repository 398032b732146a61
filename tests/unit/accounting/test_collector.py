"""The collector's pure decisions: pull windows, session grouping, which run a shared session is charged to,
and how IBM's session/jobs become attribution input."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from qauvern_hpc.accounting.collector import (
    charged_row,
    pull_window,
    session_charges,
    session_groups,
    session_usage,
    without_session,
)
from qauvern_hpc.accounting.ledger.models import StoredRun
from qauvern_hpc.commands.collect import parse_since
from qauvern_hpc.core.errors import UsageError


def _row(
    job: int, run: int = 0, *, instance: str | None = "physics", session: str | None = "s1", start: int = 100
) -> StoredRun:
    return StoredRun(
        "c",
        str(job),
        job,
        None,
        None,
        None,
        None,
        run,
        "u",
        "a",
        "p",
        "q",
        "ibm_torino",
        instance,
        session,
        "rule",
        start - 10,
        start,
        start + 5,
        5,
        None,
        "pending",
        "COMPLETED",
        0.0,
    )


def test_first_pull_looks_back_the_whole_window() -> None:
    assert pull_window(None, 10_000_000, overlap=900, first_lookback=86400) == (
        10_000_000 - 86400,
        10_000_000,
    )


def test_later_pulls_reread_the_overlap_before_the_mark() -> None:
    assert pull_window(9_000_000, 10_000_000, overlap=900, first_lookback=86400) == (8_999_100, 10_000_000)


def test_a_mark_in_the_future_never_makes_an_inverted_window() -> None:
    start, end = pull_window(20_000_000, 10_000_000, overlap=0, first_lookback=1)
    assert start <= end


def test_rows_group_by_instance_and_session_and_skip_unknown_ones() -> None:
    rows = [_row(1), _row(2, session="s2"), _row(3, instance=None), _row(4, session=None), _row(5)]
    groups = session_groups(rows)
    assert sorted(groups) == [("physics", "s1"), ("physics", "s2")]
    assert [r.job_id_raw for r in groups[("physics", "s1")]] == [1, 5]


def test_a_session_shared_by_requeued_runs_is_charged_to_the_earliest_run() -> None:
    runs = [_row(7, 0, start=100), _row(7, 2, start=300), _row(7, 1, start=200)]
    assert charged_row(runs).run == 0
    charges = session_charges(runs, 12.0, True)
    assert sorted((r.run, s, f) for r, s, f in charges) == [(0, 12.0, True), (1, 0.0, True), (2, 0.0, True)]
    assert session_charges([], 1.0, True) == []


def test_rows_ibm_cannot_be_asked_about() -> None:
    ended_no_session = _row(1, session=None)
    running_no_session = _row(2, session=None)._replace(end=None)
    no_instance = _row(3, instance=None)
    fine = _row(4)
    no_session, unresolved = without_session([ended_no_session, running_no_session, no_instance, fine])
    assert [r.job_id_raw for r in no_session] == [1]  # a running job may still record its session
    assert [r.job_id_raw for r in unresolved] == [3]


def test_session_usage_reads_ibm_fields_and_missing_usage_as_none() -> None:
    session = SimpleNamespace(id="s1", mode="batch", state="closed", elapsed_seconds=None)
    jobs: list[Any] = [
        SimpleNamespace(status="Completed", usage=SimpleNamespace(quantum_seconds=2.5)),
        SimpleNamespace(status="Queued", usage=None),
    ]
    usage = session_usage(session, jobs)
    assert usage.job_quantum_seconds == [2.5, None]
    assert usage.job_states == ["Completed", "Queued"]
    assert usage.mode == "batch" and usage.state == "closed"


def test_since_takes_dates_and_durations() -> None:
    assert parse_since("1970-01-02", 0) == 86400
    assert parse_since("2d", 1_000_000) == 1_000_000 - 2 * 86400
    with pytest.raises(UsageError, match="--since"):
        parse_since("yesterday", 0)
