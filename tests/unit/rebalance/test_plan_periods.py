"""A Flex account and a Pay-As-You-Go account, planned over their own period against the emulator: the
snapshot carries IBM's figure over the plan's period and the period itself, the plan-wide usage counts over
the Flex contract, and a Pay-As-You-Go instance at its cost limit gets nothing new, with the reason shown."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from qauvern_hpc.config import parse_config
from qauvern_hpc.planner.optimizer import plan_allocations
from qauvern_hpc.rebalance.enforce import SlurmPlan
from qauvern_hpc.rebalance.gather import ibm_snapshot
from qauvern_hpc.rebalance.report import instance_rows
from qauvern_hpc.rebalance.settings import instance_settings, plan_options
from tests.support.ibm import EmulatedIBM

pytestmark = pytest.mark.process  # starts the emulator

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # the emulator's START
CRN_A = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:aaaa::"
CRN_B = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:bbbb::"
DAILY = [3000] * 40  # 3000 s on each of the 40 days before now (index 0 = today)


def config(ibm_extra: str) -> Any:
    text = f"""\
ibm: {{account_id: acct, {ibm_extra}}}
instances:
  - {{name: physics, crn: "{CRN_A}"}}
  - {{name: chem, crn: "{CRN_B}"}}
resources: [{{name: ibm_torino}}]
rules: [{{name: all, instance: physics, resources: [ibm_torino]}}]
"""
    return parse_config(text, "/tmp/c.yaml", check_key_files=False).config


def plan_of(ibm: EmulatedIBM, cfg: Any) -> tuple[Any, Any, list[dict[str, Any]]]:
    settings = instance_settings(cfg)
    account = ibm_snapshot(ibm.client, cfg, settings, now=NOW, today=NOW.date())
    plan = plan_allocations(account, settings, today=NOW.date(), options=plan_options(cfg))
    rows = instance_rows(plan, SlurmPlan((), {}), None, {}, {i.crn: i.name for i in cfg.instances})
    return account, plan, rows


@pytest.mark.parametrize("contract_in_config", [True, False])
def test_flex_account_is_planned_over_its_contract(contract_in_config: bool) -> None:
    contract = {"contract_start": "2026-11-12T00:00:00+00:00", "contract_end": "2027-11-12T00:00:00+00:00"}
    extra = "plan: flex" + (
        ", contract_start: 2026-11-12, contract_end: 2027-11-12" if contract_in_config else ""
    )
    with EmulatedIBM(
        {CRN_A: (200_000, None), CRN_B: (200_000, None)},
        budget=1_000_000,
        plan="flex",
        plan_extra=contract,
        instance_extra={CRN_A: {"usage_history": DAILY}},
    ) as ibm:
        account, plan, rows = plan_of(ibm, config(extra))
    physics = next(s for s in account.instances if s.crn == CRN_A)
    # 11 days of the contract (the 12th .. the 22nd), not the 28 of a rolling window
    assert physics.consumed_28d_seconds == 11 * 3000
    assert physics.window is not None and physics.window.label == "contract 2026-11-12 .. 2027-11-12"
    assert physics.window.source == "ibm"  # IBM's usage_period, whether or not the config has the dates
    assert account.consumed_seconds == 11 * 3000  # the plan-wide usage over the contract too
    p = plan.by_crn[CRN_A]
    assert p.floor_seconds == 11 * 3000 and p.window == physics.window
    assert rows[0]["usage_period"]["label"] == "contract 2026-11-12 .. 2027-11-12"
    assert rows[0]["usage_period"]["kind"] == "contract"


def test_paygo_account_is_planned_since_creation_and_stops_at_its_limit() -> None:
    created = {"created_at": "2026-11-01T00:00:00+00:00"}
    with EmulatedIBM(
        {CRN_A: (200_000, 100_000), CRN_B: (200_000, None)},
        budget=1_000_000,
        plan="paygo",
        instance_extra={
            CRN_A: {**created, "usage_history": DAILY},  # 40 x 3000 = 120,000 >= its 100,000 limit
            CRN_B: {**created, "usage_history": [500] * 3},
        },
    ) as ibm:
        account, plan, rows = plan_of(ibm, config("plan: paygo"))
    physics = next(s for s in account.instances if s.crn == CRN_A)
    assert physics.consumed_28d_seconds == 40 * 3000  # everything, not the last 28 days
    assert physics.ibm_limit_reached is True
    assert physics.window is not None and physics.window.kind == "since_creation"
    p = plan.by_crn[CRN_A]
    assert p.limit_reached and not p.active
    assert p.new_allocation_seconds == 40 * 3000  # pinned at its usage: nothing new to run on
    assert p.reason.startswith("Limit reached")
    assert rows[0]["limit_reached"] is True and rows[0]["usage_period"]["kind"] == "since_creation"
    chem = plan.by_crn[CRN_B]
    assert not chem.limit_reached and chem.active and chem.new_allocation_seconds > 200_000
