"""`analyze` per plan against the emulator: each instance's figure is IBM's over its plan's period (the
rolling 28 days, the Flex contract, Pay-As-You-Go since creation) with the period in the document, the
account's plan-wide usage says its period, and the table's column reads "28d" only when it is 28 days."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from qauvern_hpc.commands import analyze
from qauvern_hpc.planner.optimizer import plan_allocations
from qauvern_hpc.rebalance.gather import ibm_snapshot, plan_usage_window
from qauvern_hpc.rebalance.settings import instance_settings, plan_options
from tests.support.ibm import EmulatedIBM
from tests.unit.rebalance.test_plan_periods import CRN_A, CRN_B, DAILY, NOW, config

pytestmark = pytest.mark.process  # starts the emulator

CONTRACT = {"contract_start": "2026-11-12T00:00:00+00:00", "contract_end": "2027-11-12T00:00:00+00:00"}


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    analyze.add_arguments(parser)
    args = parser.parse_args(list(argv))
    args.json = False
    return args


def _analyze(ibm: EmulatedIBM, cfg: Any, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    settings = instance_settings(cfg)
    account = ibm_snapshot(ibm.client, cfg, settings, now=NOW, today=NOW.date())
    plan = plan_allocations(account, settings, today=NOW.date(), options=plan_options(cfg))
    args = _args("--unit", "seconds")
    doc = analyze.analysis(
        cfg,
        account,
        settings,
        plan,
        {s.crn: {} for s in settings},
        today=NOW.date(),
        start=NOW.date(),
        args=args,
        usage_period=plan_usage_window(cfg, list(account.instances), NOW).label,
    )
    analyze._print(args, doc)
    return doc, capsys.readouterr().out


def test_premium_keeps_the_28d_column(capsys: pytest.CaptureFixture[str]) -> None:
    with EmulatedIBM(
        {CRN_A: (200_000, None), CRN_B: (200_000, None)}, instance_extra={CRN_A: {"usage_history": DAILY}}
    ) as ibm:
        doc, out = _analyze(ibm, config("plan: premium"), capsys)
    physics = doc["instances"][0]
    assert physics["consumed_28d_seconds"] == 28 * 3000  # the last 28 of its 40 days
    assert physics["usage_period"]["label"] == "rolling 28 days"
    assert doc["account"]["usage_period"] == "rolling 28 days"
    assert "28d" in out and "Period" not in out


def test_flex_counts_over_the_contract_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with EmulatedIBM(
        {CRN_A: (200_000, None), CRN_B: (200_000, None)},
        plan="flex",
        plan_extra=CONTRACT,
        instance_extra={CRN_A: {"usage_history": DAILY}},
    ) as ibm:
        doc, out = _analyze(ibm, config("plan: flex"), capsys)  # the contract from IBM's usage_period
    physics = doc["instances"][0]
    assert physics["consumed_28d_seconds"] == 11 * 3000  # the contract's 11 days, not 28
    assert physics["usage_period"]["kind"] == "contract" and physics["usage_period"]["source"] == "ibm"
    assert doc["account"]["usage_period"] == "contract 2026-11-12 .. 2027-11-12"
    assert doc["account"]["consumed_seconds"] == 11 * 3000
    assert "Period" in out and "contract 2026-11-12" in out and "28d" not in out


def test_paygo_counts_since_creation(capsys: pytest.CaptureFixture[str]) -> None:
    created = {"created_at": "2026-11-01T00:00:00+00:00"}
    with EmulatedIBM(
        {CRN_A: (200_000, None), CRN_B: (200_000, None)},
        plan="paygo",
        instance_extra={CRN_A: {**created, "usage_history": DAILY}, CRN_B: created},
    ) as ibm:
        doc, out = _analyze(ibm, config("plan: paygo"), capsys)
    physics = doc["instances"][0]
    assert physics["consumed_28d_seconds"] == 40 * 3000  # everything, not the last 28 days
    assert physics["usage_period"]["kind"] == "since_creation"
    assert "since creation" in out and "28d" not in out
