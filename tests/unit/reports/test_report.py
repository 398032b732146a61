"""`report`: the figures gathered from a real SQLite ledger, the self-contained page, the command's
options."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from qauvern_hpc.accounting.ledger import open_ledger
from qauvern_hpc.cli import main
from qauvern_hpc.core.report_units import Units
from qauvern_hpc.reports.gather import gather
from qauvern_hpc.reports.html import SECTIONS, render
from qauvern_hpc.reports.model import NEVER_STARTED, OTHERS, Series, Window, day_text
from tests.unit.reports.conftest import DAY, EVIL, NOW, Site

H = 3600.0
WINDOW = Window(NOW - 28 * DAY, NOW, "last 28 days", False)


def _gather(site: Site, by: str = "account"):  # type: ignore[no-untyped-def]
    with open_ledger(site.ledger_url) as ledger:
        return gather(ledger, WINDOW, by=by, limits={"physics": None, "chemistry": None}, now=NOW)


def test_gathered_figures(site: Site) -> None:
    data = _gather(site)
    # 28 days x 3 runs + the failed, the cancelled and the pending run
    assert data.totals == {
        "jobs": 87,
        "quantum_seconds": 21 * H + 7 * 3 * H + 28 * 1800 + 60,
        "pending_runs": 1,
    }
    assert {r.key: r.jobs for r in data.by_rows} == {"phys": 58, "chem": 29}
    assert data.usage.days[0] == WINDOW.since // DAY and data.usage.days[-1] == NOW // DAY - 1
    assert data.usage.seconds["phys"][-1] == 3 * H and data.usage.seconds["phys"][0] == 1 * H
    # the instance series starts 27 days earlier, for the first day's rolling 28 days
    assert len(data.instances.days) == 28 + 27
    assert [u.key for u in data.top_users][:2] == ["alice", "bob"] or [u.key for u in data.top_users][:2] == [
        "bob",
        "alice",
    ]


def test_allocations_moves_shares_and_forecast(site: Site) -> None:
    data = _gather(site)
    phys = data.allocations["physics"]
    assert [(p.allocation_seconds, p.limit_seconds) for p in phys] == [
        (20 * 3600, 60 * 3600),
        (30 * 3600, 80 * 3600),
    ]
    assert [m.action for m in data.moves] == ["ibm.update_instance", "ibm.update_instance", "slurm.fairshare"]
    assert data.moves[2].target == "Slurm account phys on hpc" and data.moves[2].after == 75
    shares = {s.instance: s for s in data.shares}
    assert shares["physics"].entitlement == pytest.approx(0.75)  # 30 h of 40 h allocated
    assert shares["chemistry"].entitlement == pytest.approx(0.25)
    assert shares["physics"].share + shares["chemistry"].share == pytest.approx(1.0)
    assert set(shares["physics"].accounts) == {"phys"}
    # physics: 21 x 1 h + 7 x 3 h = 42 h in the window, 3 h/day; each day 1 h leaves, 3 h come: 42 + 2d >= 80
    f = data.forecasts["physics"]
    assert (f.status, f.days, f.used_seconds, f.limit_seconds) == ("on_pace", 19, 42 * H, 80 * H)
    assert data.forecasts["chemistry"].status == "never"  # about 14 h at a steady 0.5 h/day, limit 40 h


def test_waits_and_failures_count_job_runs(site: Site) -> None:
    w = _gather(site).waits
    assert w.runs == 87
    assert w.states == {"CANCELLED": 1, "COMPLETED": 85, "FAILED": 1}  # "CANCELLED by 0" -> CANCELLED
    assert sum(w.failed_per_day.values()) == 2
    assert w.failed_per_day[NOW // DAY - 2] == 1
    # bob waits 30 s, alice 1 min per day ago (1..28 min), carol 2 h, the three others 2 min
    assert w.buckets == {"< 1 min": 28, "1-10 min": 9 + 3, "10-60 min": 19, "1-6 h": 28, "6-24 h": 0,
                         ">= 1 day": 0, NEVER_STARTED: 0}  # fmt: skip
    runs, _mean, longest = w.per_day[NOW // DAY - 1]
    assert runs == 4 and longest == 7200  # 3 runs a day, and the pending run started yesterday too


def test_by_user_folds_keys_beyond_the_chart_into_others(site: Site) -> None:
    from qauvern_hpc.reports.gather import _fold

    data = _gather(site, "user")
    assert set(data.usage.seconds) == {"alice", "bob", "carol", EVIL}
    many = Series(
        [1, 2], {f"u{i}": [float(i), 1.0] for i in range(12)}, {f"u{i}": [None, 1.0] for i in range(12)}
    )
    folded = _fold(many, 8)
    assert list(folded.seconds)[:2] == ["u11", "u10"] and OTHERS in folded.seconds
    assert folded.seconds[OTHERS] == [0.0 + 1 + 2 + 3, 4.0]  # u0..u3
    assert folded.resource_units[OTHERS] == [None, 4.0]


def test_the_page_is_self_contained_escaped_and_has_every_section(site: Site) -> None:
    data = _gather(site)
    page = render(data, Units("hours"))
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in page
    assert "<script" not in page.lower()  # neither ours nor the user named <script>
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched: every image is a data URI
    assert page.count('src="data:image/svg+xml;base64,') == 4
    assert "19 days" in page and day_text(NOW // DAY - 1 + 19) in page  # physics' forecast date


def test_command_writes_the_page_and_prints_the_figures(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.html"
    since, until = day_text(NOW // DAY - 28), day_text(NOW // DAY)
    args = [
        "-c",
        str(site.config),
        "--json",
        "report",
        "--html",
        str(out),
        "--since",
        since,
        "--until",
        until,
    ]
    assert main([*args, "--by", "instance", "--unit", "qau"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["html"] == str(out) and doc["unit"]["unit"] == "qau" and doc["by"] == "instance"
    assert set(doc["usage"]["seconds"]) == {"physics", "chemistry"}
    assert doc["forecasts"]["physics"]["days"] == 19
    assert '<section id="forecast">' in out.read_text()
    assert " QAU" in out.read_text()


def test_period_month(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(site.config), "--json", "report", "--period", "2026-12"]) == 0
    w = json.loads(capsys.readouterr().out)["window"]
    assert (w["since"], w["until"], w["label"]) == (1796083200, 1798761600, "December 2026")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--json"], None),
        ([], "nothing to write"),
        (["--json", "--until", "2026-01-01"], "--until needs --since"),
        (["--json", "--since", "2026-02-01", "--until", "2026-01-01"], "--until must be after --since"),
        (["--json", "--period", "soon"], "--period"),
        (["--json", "--period", "2026-13"], "no month 13"),
        (["--json", "--since", "yesterday"], "not an ISO date"),
    ],
)
def test_bad_options_are_refused_clearly(
    site: Site, args: list[str], message: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["-c", str(site.config), *[a for a in args if a == "--json"], "report",
               *[a for a in args if a != "--json"]])  # fmt: skip
    if message is None:
        assert rc == 0
        return
    assert rc == 2
    assert message in capsys.readouterr().err
