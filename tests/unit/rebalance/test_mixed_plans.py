"""A config whose instances are on several plans, against the emulator: the rebalancer plans only the
instances of `ibm.plan` (IBM's allocation budget is per plan) and says which it leaves out and why; `show`
and `instances` list the others as "other plan (X)", not as missing from the plan."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from qauvern_hpc.config import parse_config
from qauvern_hpc.core.errors import ExitCode
from qauvern_hpc.ops.account import problems_exit_code, read_account, read_instances
from qauvern_hpc.planner.optimizer import plan_allocations
from qauvern_hpc.rebalance.enforce import SlurmPlan
from qauvern_hpc.rebalance.gather import ibm_snapshot
from qauvern_hpc.rebalance.report import plan_json
from qauvern_hpc.rebalance.settings import instance_settings, left_out, plan_options
from tests.support.ibm import EmulatedIBM

pytestmark = pytest.mark.process  # starts the emulator

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # the emulator's START
CRN_A = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:aaaa::"
CRN_B = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:bbbb::"
CRN_OPEN = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:open::"
CRN_FLEX = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:flex::"


def config(*, mixed: bool = True, crn_a: str = CRN_A) -> Any:
    others = (
        f"""  - {{name: learners, crn: "{CRN_OPEN}", plan: open}}
  - {{name: partner, crn: "{CRN_FLEX}", plan: flex}}
"""
        if mixed
        else ""
    )
    text = f"""\
ibm: {{account_id: acct, plan: premium}}
instances:
  - {{name: physics, crn: "{crn_a}"}}
  - {{name: chem, crn: "{CRN_B}"}}
{others}resources: [{{name: ibm_torino}}]
rules: [{{name: all, instance: physics, resources: [ibm_torino]}}]
"""
    return parse_config(text, "/tmp/c.yaml", check_key_files=False).config


@pytest.fixture
def ibm() -> Any:
    with EmulatedIBM(
        {CRN_A: (200_000, None), CRN_B: (100_000, None), CRN_OPEN: (600, None), CRN_FLEX: (50_000, None)},
        budget=1_000_000,
        other_plans=("open", "flex"),
        instance_extra={
            CRN_A: {"plan": "premium"},
            CRN_B: {"plan": "premium"},
            CRN_OPEN: {"plan": "open"},
            CRN_FLEX: {"plan": "flex"},
        },
    ) as fake:
        yield fake


def test_the_rebalancer_plans_only_the_instances_of_its_plan_and_says_which_it_leaves_out(
    ibm: EmulatedIBM,
) -> None:
    cfg = config()
    settings = instance_settings(cfg)
    assert [s.name for s in settings] == ["physics", "chem"]
    skipped = left_out(cfg)
    assert [(s.name, s.plan) for s in skipped] == [("learners", "open"), ("partner", "flex")]
    assert skipped[0].reason == "Open plan: no allocation to move (IBM's allocation budget is per plan)"
    assert skipped[1].reason.startswith("other plan (flex): ")
    account = ibm_snapshot(ibm.client, cfg, settings, now=NOW, today=NOW.date())  # no "missing" error
    assert {s.crn for s in account.instances} == {CRN_A, CRN_B}
    plan = plan_allocations(account, settings, today=NOW.date(), options=plan_options(cfg))
    assert plan.ok and set(plan.by_crn) == {CRN_A, CRN_B}
    doc = plan_json(plan, [], [], SlurmPlan((), {}), [], skipped)
    assert [(d["name"], d["plan"]) for d in doc["left_out"]] == [("learners", "open"), ("partner", "flex")]


def test_a_single_plan_config_leaves_nothing_out_and_plans_as_before(ibm: EmulatedIBM) -> None:
    mixed, single = config(), config(mixed=False)
    assert left_out(single) == []
    assert instance_settings(single) == instance_settings(mixed)


def test_show_and_instances_list_other_plans_instances_as_such_not_missing(ibm: EmulatedIBM) -> None:
    cfg = config()
    rows = read_instances(ibm.client, cfg)
    by = {r.name: r for r in rows}
    assert [r.name for r in rows] == ["physics", "chem", "learners", "partner"]
    assert by["learners"].note == "other plan (open)" and by["learners"].error is None
    assert by["partner"].to_dict()["note"] == "other plan (flex)"
    assert by["physics"].note is None and by["physics"].allocation_seconds == 200_000
    assert problems_exit_code(rows) == ExitCode.OK
    summary = read_account(ibm.client, cfg, rows, now=NOW)
    assert summary is not None
    # an instance of ibm.plan that IBM does not list is still missing (exit 3)
    gone = config(crn_a="crn:v1:bluemix:public:quantum-computing:us-east:a/acct:gone::")
    assert problems_exit_code(read_instances(ibm.client, gone)) == ExitCode.CONFIG
