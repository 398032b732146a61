"""The report's forecast over each instance's plan period (the config's facts), on the ledger of conftest:
physics used 1 h a day from 40 to 8 days ago and 3 h a day in the last week (54 h), limit 80 h; chemistry
0.5 h a day for 40 days (plus 60 s), limit 40 h. Rolling 28 days (Premium): physics in 19 days, chemistry
never (its window holds 14 h for ever). Without roll-off the usage only grows."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from qauvern_hpc.cli import main
from qauvern_hpc.reports.model import day_text
from tests.unit.reports.conftest import DAY, NOW, Site

PREMIUM = "  plan: premium\n"


def _day(days_from_now: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW + days_from_now * DAY))


def _report(site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str], ibm: str) -> tuple[dict, str]:  # type: ignore[type-arg]
    site.config.write_text(site.config.read_text().replace(PREMIUM, ibm, 1))
    out = tmp_path / "r.html"
    assert main(["-c", str(site.config), "--json", "report", "--html", str(out), "--unit", "hours"]) == 0
    return json.loads(capsys.readouterr().out)["forecasts"], out.read_text()


def test_premium_forecast_rolls(site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f, page = _report(site, tmp_path, capsys, PREMIUM)
    assert f["physics"]["days"] == 19 and f["chemistry"]["status"] == "never"
    assert "period" not in f["physics"] and "28-day usage" in page


def test_flex_forecast_counts_the_contract_without_roll_off(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flex = f"  plan: flex\n  contract_start: '{_day(-45)}'\n  contract_end: '{_day(100)}'\n"
    f, page = _report(site, tmp_path, capsys, flex)
    phys, chem = f["physics"], f["chemistry"]
    assert phys["used_seconds"] == 54 * 3600  # the whole contract's usage up to the last full day
    assert (phys["status"], phys["days"]) == ("on_pace", 9)  # 54 h + 3 h a day >= 80 h on day 9
    assert phys["period"] == f"contract {_day(-45)[:10]} .. {_day(100)[:10]}"
    # chemistry: 20 h + 60 s at 0.5 h a day: its 40 h are reached on day 40, not never as on Premium
    assert (chem["status"], chem["days"]) == ("on_pace", 40)
    assert "period" in page and "contract" in page and day_text(NOW // DAY - 1 + 9) in page


def test_a_flex_contract_ending_before_the_limit_is_never(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flex = f"  plan: flex\n  contract_start: '{_day(-45)}'\n  contract_end: '{_day(5)}'\n"
    f, _ = _report(site, tmp_path, capsys, flex)
    assert f["physics"]["status"] == "never" and f["physics"]["used_seconds"] == 54 * 3600


def test_paygo_forecast_counts_everything_to_its_cost_limit(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f, page = _report(site, tmp_path, capsys, "  plan: paygo\n")
    assert (f["physics"]["status"], f["physics"]["days"]) == ("on_pace", 9)
    assert f["physics"]["period"] == "since creation (all the ledger holds)"
    assert (f["chemistry"]["status"], f["chemistry"]["days"]) == ("on_pace", 40)
    assert "Pay-As-You-Go" in page
