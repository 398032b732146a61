"""`qauvern-hpc usage` on a real SQLite ledger: grouping, windows (rolling, explicit, balance period), QAU and
hours, JSON and CSV, and the options it refuses."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest

from qauvern_hpc.accounting.ledger import FINAL, PENDING, RunRow, open_ledger
from qauvern_hpc.cli import main
from qauvern_hpc.devtools import qpu_site

NOW = int(time.time())
DAY = 86400


def _run(
    job: int, user: str, account: str, seconds: float | None, *, ended_days_ago: float, **kw: object
) -> RunRow:
    end = int(NOW - ended_days_ago * DAY)
    base = dict(
        cluster="alpha",
        job_id=str(job),
        job_id_raw=job,
        array_job_id=None,
        array_task_id=None,
        het_job_id=None,
        het_offset=None,
        run=None,
        user=user,
        account=account,
        partition="quantum",
        qos="normal",
        resource="ibm_torino",
        instance="physics",
        session_id=f"s-{job}",
        rule="physics",
        submit=end - 200,
        start=end - 100,
        end=end,
        wall_seconds=100,
        quantum_seconds=seconds,
        usage_state=FINAL if seconds is not None else PENDING,
        slurm_state="COMPLETED",
    )
    base.update(kw)
    return RunRow(**base)  # type: ignore[arg-type]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    s = qpu_site.write_site(tmp_path, "http://127.0.0.1:9", operations=True)
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 60 * DAY))
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 35 * DAY))
    text = s.config.read_text().replace(
        "rebalance:\n", f"rebalance:\n  balance_period: {{start_date: '{start}', end_date: '{end}'}}\n", 1
    )
    s.config.write_text(text)
    with open_ledger(f"sqlite:///{tmp_path}/ledger.db") as ledger:
        ledger.upsert_runs(
            [
                _run(1, "alice", "physics", 9600.0, ended_days_ago=1),
                _run(2, "alice", "physics", 2400.0, ended_days_ago=10),
                _run(3, "bob", "physics", 48000.0, ended_days_ago=20, resource="ibm_fez"),
                _run(4, "carol", "chem", 96000.0, ended_days_ago=40, instance="chemistry"),  # balance period
                _run(5, "bob", "physics", None, ended_days_ago=2),  # IBM has not reported yet
            ]
        )
    return s.config


def _json(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> dict[str, object]:
    assert main(["-c", str(config), "--json", "usage", *args]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert isinstance(doc, dict)
    return doc


def test_rolling_28_days_by_user_with_qau_and_hours(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _json(capsys, site, "--by", "user")
    rows = {r["user"]: r for r in doc["rows"]}  # type: ignore[attr-defined]
    assert set(rows) == {"alice", "bob"}  # carol's job ended 40 days ago
    assert rows["alice"]["jobs"] == 2 and rows["alice"]["quantum_seconds"] == 12000.0
    assert rows["alice"]["quantum_hours"] == pytest.approx(12000 / 3600, abs=1e-4)
    assert rows["alice"]["qau"] == pytest.approx(0.125)
    assert rows["bob"]["jobs"] == 2 and rows["bob"]["qau"] == pytest.approx(0.5)  # pending counts 0 so far


def test_explicit_windows_and_balance_period(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    week = _json(capsys, site, "--by", "account", "--window", "7d")
    assert [(r["account"], r["quantum_seconds"]) for r in week["rows"]] == [("physics", 9600.0)]  # type: ignore[attr-defined]
    since = time.strftime("%Y-%m-%d", time.gmtime(NOW - 50 * DAY))
    until = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(NOW - 5 * DAY))
    span = _json(capsys, site, "--by", "instance", "--since", since, "--until", until)
    assert {r["instance"]: r["quantum_seconds"] for r in span["rows"]} == {  # type: ignore[attr-defined]
        "chemistry": 96000.0,
        "physics": 50400.0,
    }
    period = _json(capsys, site, "--by", "account", "--balance-period")
    assert [(r["account"], r["qau"]) for r in period["rows"]] == [("chem", 1.0)]  # type: ignore[attr-defined]
    assert "balance period" in period["window"]["label"]  # type: ignore[index]


def test_csv_and_table(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(site), "usage", "--by", "resource", "--window", "28d", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["resource"], float(r["quantum_seconds"])) for r in rows] == [
        ("ibm_fez", 48000.0),
        ("ibm_torino", 12000.0),
    ]
    assert main(["-c", str(site), "usage", "--by", "user"]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "hours" in out and "1 run(s) still await IBM" in out
    assert "3.33 h" in out  # alice: 12,000 s


def test_unit_qau_and_ru_without_rus_in_the_ledger(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _json(capsys, site, "--by", "user")
    assert doc["unit"] == "hours"  # no run of the window has RUs: IBM's unit is unknown here
    doc = _json(capsys, site, "--by", "user", "--unit", "qau")
    rows = {r["user"]: r for r in doc["rows"]}  # type: ignore[attr-defined]
    assert doc["unit"] == "qau" and rows["alice"]["in_unit"] == pytest.approx(0.125)
    assert rows["alice"]["quantum_seconds"] == 12000.0  # unchanged
    doc = _json(capsys, site, "--by", "user", "--unit", "ru")
    rows = {r["user"]: r for r in doc["rows"]}  # type: ignore[attr-defined]
    assert rows["alice"]["in_unit"] is None and rows["alice"]["resource_units"] is None  # never a guess
    assert main(["-c", str(site), "usage", "--by", "user", "--unit", "ru"]) == 0
    out = capsys.readouterr().out
    assert "n/a" in out and "have no RUs from IBM" in out


def test_ledger_rus_make_ru_the_default(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qauvern_hpc.accounting.ledger import RunKey

    with open_ledger(f"sqlite:///{site.parent}/ledger.db") as ledger:
        for job, seconds, ru in ((1, 9600.0, 24000.0), (2, 2400.0, 6000.0), (3, 48000.0, 120000.0)):
            resource = "ibm_fez" if job == 3 else "ibm_torino"
            assert ledger.set_usage(RunKey("alpha", job, 0, resource), seconds, True, resource_units=ru)
    doc = _json(capsys, site, "--by", "user")
    rows = {r["user"]: r for r in doc["rows"]}  # type: ignore[attr-defined]
    assert doc["unit"] == "ru"
    assert rows["alice"]["in_unit"] == 30000.0  # IBM's RUs as stored, not seconds at some rate
    assert rows["bob"]["in_unit"] is None and rows["bob"]["runs_without_ru"] == 1  # job 5: no figure yet
    assert main(["-c", str(site), "usage", "--by", "user", "--csv"]) == 0
    parsed = {r["user"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert parsed["alice"]["unit"] == "ru" and float(parsed["alice"]["in_unit"]) == 30000.0
    assert float(parsed["alice"]["quantum_seconds"]) == 12000.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "not an ISO date"),
        (["--window", "lots"], "--window"),
        (["--since", "2026-02-01", "--until", "2026-01-01"], "after the start"),
        (["--csv", "--window", "1d"], None),
    ],
)
def test_bad_options(
    site: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str | None
) -> None:
    if message is None:  # --json and --csv together
        assert main(["-c", str(site), "--json", "usage", *args]) == 2
        assert "mutually exclusive" in capsys.readouterr().err
        return
    assert main(["-c", str(site), "usage", *args]) == 2
    assert message in capsys.readouterr().err
