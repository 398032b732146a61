"""`--unit ru|qau|hours|seconds` of the reports, over real HTTP against the emulator account of
tests/integration/test_admin_commands (RU rate 2.5 per second, so a figure left in seconds or converted
twice shows). The seconds fields of --json stay as they were; `unit` and `in_unit` are added."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qauvern_hpc.devtools.emulator import run_emulator
from tests.integration.test_admin_commands import GAMMA_HISTORY, PHYS_HISTORY, Rig, seed
from tests.integration.test_ru_only_commands import NO_SLURM

pytestmark = pytest.mark.slow

RATE = 2.5
PHYS_USED = sum(PHYS_HISTORY)  # 35,000 s
GAMMA_USED = sum(GAMMA_HISTORY)  # 15,000 s


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with run_emulator({**seed(), "resource_units_per_second": RATE}, clock="real") as emu:
        yield Rig(emu, tmp_path_factory.mktemp("units"))


def _rows(doc: dict[str, object]) -> dict[str, dict[str, object]]:
    return {r["name"]: r for r in doc["instances"]}  # type: ignore[attr-defined,index]


def test_instances_default_to_ru_when_ibm_reports_in_ru(rig: Rig) -> None:
    code, doc, err = rig.run("instances", "--json")
    assert code == 0, err
    assert doc["unit"] == "ru"
    rows = _rows(doc)
    assert rows["physics"]["consumed_28d_seconds"] == PHYS_USED  # unchanged
    assert rows["physics"]["in_unit"] == {
        "allocation": 400_000 * RATE,
        "limit": 600_000 * RATE,
        "consumed": PHYS_USED * RATE,
    }
    assert rows["chemistry"]["in_unit"]["limit"] is None  # no limit, not "no rate"
    assert doc["totals"]["in_unit"] == {
        "total_allocation": 710_000 * RATE,
        "total_consumed": (PHYS_USED + GAMMA_USED) * RATE,
    }
    assert doc["ru_per_second"] == {r["crn"]: RATE for r in doc["instances"]}
    code, text, err = rig.run("instances")
    assert code == 0, err
    assert "figures in ru" in text and "1,000,000 RU" in text and "87,500 RU" in text


@pytest.mark.parametrize(
    ("unit", "allocation", "text"),
    [("qau", 400_000 / 96_000, "4.17 QAU"), ("hours", 400_000 / 3600, "111.1 h"), ("seconds", 400_000, "")],
)
def test_instances_in_other_units(rig: Rig, unit: str, allocation: float, text: str) -> None:
    code, doc, err = rig.run("instances", "--json", "--unit", unit)
    assert code == 0, err
    assert doc["unit"] == unit and doc["ru_per_second"] is None
    assert _rows(doc)["physics"]["in_unit"]["allocation"] == pytest.approx(allocation, abs=1e-4)
    assert _rows(doc)["physics"]["allocation_seconds"] == 400_000
    code, table, err = rig.run("instances", "--unit", unit)
    assert code == 0 and text in table, err


def test_show_account_figures_in_ru_at_the_shared_rate(rig: Rig) -> None:
    code, doc, err = rig.run("show", "--json", "--unit", "ru")
    assert code == 0, err
    account = doc["account"]
    assert account["budget_seconds"] == 1_000_000 and account["unit"] == "ru"
    assert account["in_unit"]["budget"] == 1_000_000 * RATE
    assert _rows(doc)["gamma"]["in_unit"]["consumed"] == GAMMA_USED * RATE
    code, text, err = rig.run("show", "--unit", "ru")
    assert code == 0, err
    assert "2,500,000 RU" in text  # the budget


def test_config_report_unit_sets_the_default(rig: Rig, tmp_path: Path) -> None:
    config = tmp_path / "qau.yaml"
    config.write_text(rig.config.read_text() + "report:\n  unit: qau\n")
    code, doc, err = rig.run("instances", "--json", config=config)
    assert code == 0, err
    assert doc["unit"] == "qau"
    code, doc, err = rig.run("instances", "--json", "--unit", "hours", config=config)
    assert doc["unit"] == "hours"  # --unit wins over the config


def test_analyze_in_ru_and_hours(rig: Rig) -> None:
    code, doc, err = rig.run("analyze", "--json", "--days", "14")
    assert code == 0, err
    assert doc["unit"] == "ru"
    phys = _rows(doc)["physics"]
    assert phys["consumed_28d_seconds"] == PHYS_USED
    assert phys["in_unit"]["consumed_28d"] == PHYS_USED * RATE
    assert phys["in_unit"]["consumed_14d"] == phys["consumed_14d_seconds"] * RATE
    assert phys["in_unit"]["new_allocation"] == phys["new_allocation_seconds"] * RATE
    assert phys["in_unit"]["window_total"] == phys["window"]["total_seconds"] * RATE
    assert doc["account"]["in_unit"]["budget"] == 1_000_000 * RATE
    code, doc, err = rig.run("analyze", "--json", "--days", "14", "--unit", "hours")
    assert code == 0, err
    assert _rows(doc)["gamma"]["in_unit"]["consumed_28d"] == pytest.approx(GAMMA_USED / 3600, abs=1e-4)
    code, text, err = rig.run("analyze", "--days", "14", "--daily", "--unit", "ru")
    assert code == 0, err
    assert "Instance analysis in ru" in text and "Every day (ru)" in text
    assert "87,500 RU" in text  # physics' 28-day usage


def test_metrics_add_resource_unit_gauges_and_keep_the_seconds(rig: Rig) -> None:
    code, text, err = rig.run("metrics", "--no-slurm")
    assert code == 1, err  # this rig has no ledger or journal: their scrape_error is 1
    assert 'qauvern_hpc_instance_usage_28d_seconds{instance="physics"} 35000' in text
    assert 'qauvern_hpc_instance_usage_28d_resource_units{instance="physics"} 87500' in text
    assert 'qauvern_hpc_instance_allocation_resource_units{instance="physics"} 1000000' in text
    assert 'qauvern_hpc_instance_limit_resource_units{instance="gamma"} 50000' in text
    assert 'qauvern_hpc_instance_limit_resource_units{instance="chemistry"}' not in text  # no limit
    assert 'qauvern_hpc_scrape_error{source="ibm"} 0' in text


def test_rebalance_dry_run_in_ru_and_qau(rig: Rig, tmp_path: Path) -> None:
    config = tmp_path / "no-slurm.yaml"
    config.write_text(rig.config.read_text() + NO_SLURM)
    code, doc, err = rig.run("rebalance", "--dry-run", "--no-slurm", "--json", config=config)
    assert code == 0, err
    assert doc["unit"] == "ru"
    assert doc["in_unit"]["allocation_budget"] == doc["allocation_budget_seconds"] * RATE
    rows = {r["instance"]: r for r in doc["instances"]}
    phys = rows["physics"]
    assert phys["consumed_28d_seconds"] == PHYS_USED
    assert phys["in_unit"]["consumed"] == PHYS_USED * RATE
    assert phys["in_unit"]["allocation"] == {
        "current": phys["allocation_seconds"]["current"] * RATE,
        "new": phys["allocation_seconds"]["new"] * RATE,
    }
    code, doc, err = rig.run("rebalance", "--dry-run", "--no-slurm", "--json", "--unit", "qau", config=config)
    assert code == 0, err
    assert doc["unit"] == "qau" and doc["ru_per_second"] is None
    assert doc["instances"][0]["in_unit"]["allocation"]["current"] == pytest.approx(
        400_000 / 96_000, abs=1e-6
    )
    code, text, err = rig.run("rebalance", "--dry-run", "--no-slurm", "--unit", "ru", config=config)
    assert code == 0, err
    assert "figures in ru" in text and "87,500 RU" in text and "budget 2,500,000 RU" in text
