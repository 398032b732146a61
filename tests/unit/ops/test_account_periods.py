"""`show` and `instances` read each instance's usage over its plan's period: a Flex and a Pay-As-You-Go
account against the emulator; the rows (`--json`) carry `usage_period` and IBM's limit-reached flag, the
account summary the period the plan-wide usage counts over."""

from __future__ import annotations

import pytest

from qauvern_hpc.ops.account import read_account, read_instances
from tests.support.ibm import EmulatedIBM
from tests.unit.rebalance.test_plan_periods import CRN_A, CRN_B, DAILY, NOW, config

pytestmark = pytest.mark.process  # starts the emulator


def test_flex_rows_and_summary_show_the_contract() -> None:
    contract = {"contract_start": "2026-11-12T00:00:00+00:00", "contract_end": "2027-11-12T00:00:00+00:00"}
    with EmulatedIBM(
        {CRN_A: (200_000, None), CRN_B: (200_000, None)},
        plan="flex",
        plan_extra=contract,
        instance_extra={CRN_A: {"usage_history": DAILY}},
    ) as ibm:
        cfg = config("plan: flex, contract_start: 2026-11-12, contract_end: 2027-11-12")
        rows = read_instances(ibm.client, cfg)
        summary = read_account(ibm.client, cfg, rows, now=NOW)
    physics = rows[0].to_dict()
    assert physics["consumed_28d_seconds"] == 11 * 3000
    assert physics["usage_period"]["label"] == "contract 2026-11-12 .. 2027-11-12"
    assert physics["limit_reached"] is None  # no limit
    assert summary.usage_period == "contract 2026-11-12 .. 2027-11-12"
    assert summary.consumed_seconds == 11 * 3000


def test_paygo_rows_say_since_creation_and_limit_reached() -> None:
    with EmulatedIBM(
        {CRN_A: (200_000, 100_000), CRN_B: (200_000, None)},
        plan="paygo",
        instance_extra={CRN_A: {"created_at": "2026-11-01T00:00:00+00:00", "usage_history": DAILY}},
    ) as ibm:
        rows = read_instances(ibm.client, config("plan: paygo"))
    physics = rows[0].to_dict()
    assert physics["consumed_28d_seconds"] == 40 * 3000
    assert physics["usage_period"]["kind"] == "since_creation"
    assert physics["limit_reached"] is True
