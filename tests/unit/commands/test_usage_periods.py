"""`qauvern-hpc usage` over each instance's plan period (the config's facts; the report asks IBM nothing), on
the ledger of `test_usage_command`: physics ran 1, 10 and 20 days ago (60,000 s) and has a run IBM has not
reported yet; chemistry ran 40 days ago (96,000 s)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from qauvern_hpc.cli import main
from tests.unit.commands.test_usage_command import DAY, NOW, site

__all__ = ["site"]  # the fixture

CHEM = 'crn:v1:bluemix:public:quantum-computing:eu-de:a/acct0001:chem0001::"\n'


def _day(days_ago: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - days_ago * DAY))


def _plans(
    config: Path, *, default: str = "premium", chemistry: str | None = None, contract: str = ""
) -> Path:
    text = config.read_text().replace("  plan: premium\n", f"  plan: {default}\n{contract}", 1)
    if chemistry:
        text = text.replace(CHEM, f"{CHEM}    plan: {chemistry}\n", 1)
    config.write_text(text)
    return config


def _json(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> dict[str, object]:
    assert main(["-c", str(config), "--json", "usage", *args]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert isinstance(doc, dict)
    return doc


def test_premium_default_window_is_unchanged(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _json(capsys, site, "--by", "instance")
    assert doc["window"] == {"since": doc["window"]["since"], "until": None, "label": "last 28d"}  # type: ignore[index]
    assert {r["instance"]: r["quantum_seconds"] for r in doc["rows"]} == {"physics": 60000.0}  # type: ignore[attr-defined]
    assert all("period" not in r for r in doc["rows"])  # type: ignore[attr-defined]


def test_mixed_plans_by_instance_count_each_over_its_own_period(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _plans(site, chemistry="flex", contract=f"  contract_start: '{_day(60)}'\n")
    doc = _json(capsys, site, "--by", "instance")
    rows = {r["instance"]: r for r in doc["rows"]}  # type: ignore[attr-defined]
    assert rows["physics"]["quantum_seconds"] == 60000.0 and rows["physics"]["period"] == "rolling 28 days"
    # chemistry's run ended 40 days ago: outside 28 days, inside its Flex contract
    assert rows["chemistry"]["quantum_seconds"] == 96000.0
    assert rows["chemistry"]["period"].startswith(f"contract {_day(60)[:10]} .. ")
    periods = doc["window"]["periods"]  # type: ignore[index]
    assert periods["chemistry"]["kind"] == "contract" and periods["chemistry"]["since"] == NOW - 60 * DAY
    assert periods["physics"]["kind"] == "rolling"
    assert main(["-c", str(site), "usage", "--by", "instance"]) == 0
    out = capsys.readouterr().out
    assert "each instance's plan period" in out and "contract" in out and "rolling 28 days" in out
    assert "1 run(s) still await IBM" in out  # physics' pending run, counted in its own period


def test_mixed_plans_other_groupings_say_they_count_28_days(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _plans(site, chemistry="flex", contract=f"  contract_start: '{_day(60)}'\n")
    doc = _json(capsys, site, "--by", "account")
    assert [(r["account"], r["quantum_seconds"]) for r in doc["rows"]] == [("physics", 60000.0)]  # type: ignore[attr-defined]
    note = doc["window"]["note"]  # type: ignore[index]
    assert "different periods" in note and "rolling 28 days" in note and "chemistry: contract" in note
    assert main(["-c", str(site), "usage", "--by", "account"]) == 0
    assert "Note: the instances' plans count usage over different periods" in capsys.readouterr().out
    # an explicit window is the admin's: no periods, no note
    doc = _json(capsys, site, "--by", "instance", "--window", "28d")
    assert "note" not in doc["window"] and "periods" not in doc["window"]  # type: ignore[operator]
    assert [r["instance"] for r in doc["rows"]] == ["physics"]  # type: ignore[attr-defined]


def test_paygo_counts_everything_since_creation(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _plans(site, default="paygo")
    doc = _json(capsys, site, "--by", "account")  # one period for all: every grouping follows it
    assert {r["account"]: r["quantum_seconds"] for r in doc["rows"]} == {"chem": 96000.0, "physics": 60000.0}  # type: ignore[attr-defined]
    window = doc["window"]
    assert window["since"] is None and window["until"] is None  # type: ignore[index]
    assert window["period"]["kind"] == "since_creation"  # type: ignore[index]
    assert window["label"] == "since creation (all the ledger holds) (paygo plan period)"  # type: ignore[index]


def test_an_ended_flex_contract_counts_only_its_days(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    contract = f"  contract_start: '{_day(60)}'\n  contract_end: '{_day(30)}'\n"
    _plans(site, default="flex", contract=contract)
    doc = _json(capsys, site, "--by", "user")
    assert [(r["user"], r["quantum_seconds"]) for r in doc["rows"]] == [("carol", 96000.0)]  # type: ignore[attr-defined]
    assert doc["window"]["until"] == NOW - 30 * DAY  # type: ignore[index]
    assert doc["window"]["period"]["kind"] == "contract"  # type: ignore[index]


def test_flex_without_a_contract_start_counts_28_days_and_says_why(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _plans(site, chemistry="flex")
    doc = _json(capsys, site, "--by", "instance")
    assert set(doc["rows"][0]) >= {"period"}  # type: ignore[index]
    periods = doc["window"]["periods"]  # type: ignore[index]
    assert periods["physics"]["label"] == "rolling 28 days"
    assert [r["instance"] for r in doc["rows"]] == ["physics"]  # type: ignore[attr-defined]
    assert main(["-c", str(site), "usage", "--by", "account"]) == 0
    assert "(Flex: ibm.contract_start not set)" in capsys.readouterr().out
