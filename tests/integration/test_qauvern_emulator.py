"""qauvern 0.14's API client and CLI (nobody here wrote them) against the emulator, as a black box.

qauvern hard-codes IBM's hosts in `IBMQuantumAPIClient.__init__` and `_get_regional_base_url`; the test wraps
the constructor to point the IAM, Resource Controller and Quantum API URLs at the emulator (every region maps
to the same base, as `Endpoints.single()` does) and changes nothing else.

qauvern computes its windows from the real `datetime.now()`, so the emulator runs on a real clock started now,
and the seeded history is relative to today.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from qauvern import api_client
from qauvern.cli import main as qauvern_main
from qauvern.plan import Plan

from qauvern_hpc.devtools.emulator import Emulator, run_emulator
from qauvern_hpc.devtools.emulator.testing import (
    ACCOUNT,
    ALPHA_HISTORY,
    API_KEY,
    BUDGET,
    CRN_ALPHA,
    CRN_BETA,
    make_seed,
)

CRN_DELTA = f"crn:v1:bluemix:public:quantum-computing:us-east:a/{ACCOUNT}:delta-0005::"
CRN_OLD = f"crn:v1:bluemix:public:quantum-computing:eu-de:a/{ACCOUNT}:old-0006::"
DELTA_HISTORY = [500] * 10
ALPHA = {"28d": sum(ALPHA_HISTORY[:28]), "14d": sum(ALPHA_HISTORY[:14]), "7d": sum(ALPHA_HISTORY[:7])}
ALPHA |= {"3d": sum(ALPHA_HISTORY[:3]), "24h": ALPHA_HISTORY[0]}


def _not_near_midnight() -> None:
    """Seeded days are relative to today (UTC); keep the emulator and qauvern on the same side of midnight."""
    now = datetime.now(tz=UTC)
    to_midnight = (
        datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) - now
    ).total_seconds()
    if to_midnight < 20:
        time.sleep(to_midnight + 1)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    _not_near_midnight()
    seed = make_seed(clock={"mode": "real"}, page_size=3)
    seed["instances"] += [
        {
            "name": "delta",
            "crn": CRN_DELTA,
            "usage_allocation_seconds": 100_000,
            "usage_history": DELTA_HISTORY,
        },
        {"name": "old", "crn": CRN_OLD, "usage_allocation_seconds": 0, "usage_history": {40: 999}},
    ]
    with run_emulator(seed) as e:
        yield e


@pytest.fixture
def patched(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    base = emu.base_url
    original = api_client.IBMQuantumAPIClient.__init__

    def init(
        self: Any,
        api_key: str | None = None,
        iam_token: str | None = None,
        base_url: str | None = None,
        staging: bool = False,
    ) -> None:
        original(self, api_key=api_key, iam_token="placeholder", base_url=f"{base}/api", staging=staging)
        self.iam_token_url = f"{base}/identity/token"
        self.resource_controller_url = base
        self.iam_token = iam_token
        if iam_token is None:
            self._obtain_iam_token()
        else:
            self._set_authorization_header()

    monkeypatch.setattr(api_client.IBMQuantumAPIClient, "__init__", init)
    monkeypatch.setattr(
        api_client.IBMQuantumAPIClient, "_get_regional_base_url", lambda self, crn: f"{base}/api"
    )
    monkeypatch.delenv("IBMCLOUD_STAGING", raising=False)
    return base


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "qauvern.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "account_id": ACCOUNT,
                "plan": "premium",
                "minimum_allocation_seconds": 60,
                "instances": [{"name": "alpha", "crn": CRN_ALPHA}, {"name": "beta", "crn": CRN_BETA}],
            }
        )
    )
    return path


def test_discover_usage_and_account(emu: Emulator, patched: str) -> None:
    client = api_client.IBMQuantumAPIClient(api_key=API_KEY)
    found = client.discover_instances(Plan.PREMIUM)
    assert [(d.name, d.crn, d.allocation_seconds, d.limit_seconds) for d in found.active] == [
        ("alpha", CRN_ALPHA, 200_000, None),
        ("beta", CRN_BETA, 500_000, 600_000),
        ("delta", CRN_DELTA, 100_000, None),
    ]
    assert [d.crn for d in found.archived] == [CRN_OLD]
    rc_pages = [e for e in emu.requests if e.path.startswith("/v2/resource_instances")]
    assert len(rc_pages) == 2 and "start=" in rc_pages[1].path  # page_size 3, four instances

    states = [client.get_instance(d) for d in found.active]
    assert [s.consumed_seconds for s in states] == [ALPHA["28d"], 0, sum(DELTA_HISTORY)]

    account = client.get_account(ACCOUNT, Plan.PREMIUM, states[:2])
    assert account.allocation_budget_seconds == BUDGET
    assert account.unallocated_seconds == BUDGET - 200_000 - 500_000 - 100_000
    assert account.consumed_seconds == ALPHA["28d"] + sum(DELTA_HISTORY)
    assert account.limit_seconds is None

    detailed = client.get_detailed_usage(CRN_ALPHA, ACCOUNT)
    assert detailed == {
        "consumed_14day": ALPHA["14d"],
        "consumed_7day": ALPHA["7d"],
        "consumed_3day": ALPHA["3d"],
        "consumed_24h": ALPHA["24h"],
    }
    today = datetime.now(tz=UTC).date()
    daily = client.get_daily_usage(CRN_ALPHA, ACCOUNT, today - timedelta(days=60), today)
    assert daily == {today - timedelta(days=i): ALPHA_HISTORY[i] for i in range(1, 30)}  # today excluded
    assert today not in daily
    assert client.get_daily_usage(CRN_BETA, ACCOUNT, today - timedelta(days=60), today) == {}

    analytics = [e for e in emu.requests if "/analytics/" in e.path]
    assert analytics and all(e.header("Account-Id") == ACCOUNT for e in analytics)
    assert all(e.status == 200 for e in emu.requests)


def _analyze(config: Path) -> dict[str, Any]:
    result = CliRunner().invoke(
        qauvern_main, ["analyze", "--config", str(config), "--format", "json", "--api-key", API_KEY]
    )
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_cli_analyze_json_reports_the_seeded_numbers(emu: Emulator, patched: str, config: Path) -> None:
    report = _analyze(config)
    acct = report["account"]
    assert acct["account_id"] == ACCOUNT
    assert acct["allocation_budget_seconds"] == BUDGET
    assert acct["unallocated_seconds"] == 200_000
    assert acct["consumed_seconds"] == ALPHA["28d"] + sum(DELTA_HISTORY)
    assert acct["configured_consumed_seconds"] == ALPHA["28d"]
    assert acct["unmanaged_allocation_seconds"] == 100_000  # delta's allocation
    by_name = {i["name"]: i for i in report["instances"]}
    alpha = by_name["alpha"]
    assert (alpha["current_allocation_seconds"], alpha["current_limit_seconds"]) == (200_000, None)
    assert [alpha[f"consumed_{k}_seconds"] for k in ("28day", "14day", "7day", "3day", "24h")] == [
        ALPHA["28d"],
        ALPHA["14d"],
        ALPHA["7d"],
        ALPHA["3d"],
        ALPHA["24h"],
    ]
    assert alpha["fairness"] == pytest.approx(ALPHA["28d"] / 200_000)
    beta = by_name["beta"]
    assert (
        beta["current_allocation_seconds"],
        beta["current_limit_seconds"],
        beta["consumed_28day_seconds"],
    ) == (
        500_000,
        600_000,
        0,
    )


def test_cli_optimize_applies_patches_and_unallocated_stays_consistent(
    emu: Emulator, patched: str, config: Path
) -> None:
    plan = {i["crn"]: i for i in _analyze(config)["instances"]}
    dry = CliRunner().invoke(
        qauvern_main, ["optimize", "--config", str(config), "--dry-run", "--api-key", API_KEY]
    )
    assert dry.exit_code == 0 and "[DRY RUN]" in dry.output
    assert not [e for e in emu.requests if e.method == "PATCH"]

    result = CliRunner().invoke(
        qauvern_main, ["optimize", "--config", str(config), "--yes", "--api-key", API_KEY]
    )
    assert result.exit_code == 0, result.output
    assert "Failed" not in result.output
    patches = [e for e in emu.requests if e.method == "PATCH"]
    assert patches and all(e.status == 200 for e in patches)
    for crn, inst in plan.items():
        ext = emu.state.instance(crn)["extensions"]
        assert ext["usage_allocation_seconds"] == inst["new_allocation_seconds"]
        assert ext["instance_limit_seconds"] == inst["new_limit_seconds"]
    allocated = sum(
        i["extensions"]["usage_allocation_seconds"] for i in emu.state.instances() if ACCOUNT in i["id"]
    )
    summary = emu.state.snapshot()["summary"]["plans"][0]
    assert summary["unallocated_usage_seconds"] == BUDGET - allocated >= 0
    # the next run sees the new allocations and the consistent unallocated figure
    again = _analyze(config)
    assert again["account"]["unallocated_seconds"] == BUDGET - allocated
    assert again["validation_errors"] == []
    assert {i["crn"]: i["current_allocation_seconds"] for i in again["instances"]} == {
        crn: inst["new_allocation_seconds"] for crn, inst in plan.items()
    }


def test_qauvern_sees_a_429_as_an_error(emu: Emulator, patched: str, config: Path) -> None:
    emu.faults.add(path=r"/analytics/usage$", status=429, retry_after=1, times=1)
    result = CliRunner().invoke(
        qauvern_main, ["analyze", "--config", str(config), "--format", "json", "--api-key", API_KEY]
    )
    assert result.exit_code == 1
    assert "HTTP 429" in result.output and "rate_limited" in result.output


def test_real_clock_follows_wall_time(emu: Emulator) -> None:
    assert abs((emu.state.now() - datetime.now(tz=UTC)).total_seconds()) < 5
