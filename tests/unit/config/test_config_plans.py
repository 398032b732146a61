"""Plans per instance: job mode by default on the Open plan, a dedicated session there refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qauvern_hpc.config import parse_config
from qauvern_hpc.core.errors import ConfigError
from qauvern_hpc.ibm.plans import PLAN_IDS, plan_name
from qauvern_hpc.policy.compiled import Policy
from qauvern_hpc.policy.mapping import JobIdentity, decide

CRN_PREMIUM = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:prem-1::"
CRN_OPEN = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:open-1::"


def site(fez_mode: str | None = None, open_plan: str = "open") -> str:
    mode = f"\n    session_mode: {fez_mode}" if fez_mode else ""
    return f"""\
ibm:
  account_id: acct
  plan: premium
instances:
  - name: paid
    crn: "{CRN_PREMIUM}"
  - name: learners
    crn: "{CRN_OPEN}"
    plan: {open_plan}
resources:
  - name: ibm_torino
  - name: ibm_fez{mode}
rules:
  - name: paid
    match: {{accounts: [physics]}}
    instance: paid
    resources: ["*"]
  - name: learners
    match: {{accounts: [students]}}
    instance: learners
    resources: [ibm_torino, ibm_fez]
"""


def policy_of(text: str, tmp_path: Path) -> Policy:
    return parse_config(text, tmp_path / "config.yaml", check_key_files=False).config.to_policy()


def modes(policy: Policy, account: str) -> dict[str, str]:
    d = decide(policy, JobIdentity("u", account, "debug"), ["ibm_torino", "ibm_fez"])
    assert d.allowed, d.message
    return {g.resource: g.session_mode for g in d.resources}


def test_a_resource_without_a_mode_runs_in_job_mode_on_the_open_plan_and_batch_elsewhere(
    tmp_path: Path,
) -> None:
    policy = policy_of(site(), tmp_path)
    assert modes(policy, "students") == {"ibm_torino": "job", "ibm_fez": "job"}
    assert modes(policy, "physics") == {"ibm_torino": "batch", "ibm_fez": "batch"}
    assert policy.instances["learners"].plan == "open"
    assert policy.instances["paid"].plan == "premium"  # ibm.plan is the default


def test_an_explicit_batch_mode_is_kept_on_the_open_plan(tmp_path: Path) -> None:
    policy = policy_of(site("batch"), tmp_path)
    assert modes(policy, "students") == {"ibm_torino": "job", "ibm_fez": "batch"}


def test_the_policy_json_round_trip_keeps_plans_and_modes(tmp_path: Path) -> None:
    policy = policy_of(site("job"), tmp_path)
    again = Policy.from_dict(policy.to_dict())
    assert modes(again, "students") == {"ibm_torino": "job", "ibm_fez": "job"}
    assert modes(again, "physics") == {"ibm_torino": "batch", "ibm_fez": "job"}


def test_a_policy_rendered_before_plans_per_instance_still_loads_as_batch(tmp_path: Path) -> None:
    data = policy_of(site(), tmp_path).to_dict()
    for inst in data["instances"].values():
        del inst["plan"], inst["session_mode"]
    for res in data["resources"].values():
        res["session_mode"] = "batch"
    assert modes(Policy.from_dict(data), "students") == {"ibm_torino": "batch", "ibm_fez": "batch"}


def test_a_dedicated_session_on_an_open_plan_instance_is_refused_naming_resource_instance_and_plan(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(site("dedicated"), tmp_path / "config.yaml", check_key_files=False)
    message = str(info.value)
    assert "resources[1].session_mode" in message
    assert "'ibm_fez'" in message and "'learners'" in message and "open plan" in message
    # the same mode on the premium instance alone is fine
    text = site("dedicated").replace("resources: [ibm_torino, ibm_fez]", "resources: [ibm_torino]")
    assert modes(policy_of(text, tmp_path), "physics")["ibm_fez"] == "dedicated"


def test_check_config_exits_3_for_a_dedicated_session_on_the_open_plan(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(site("dedicated"))
    done = subprocess.run(
        [sys.executable, "-m", "qauvern_hpc", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "ibm_fez" in done.stderr and "learners" in done.stderr and "open plan" in done.stderr


@pytest.mark.parametrize("text", ["freemium", "", "850b21a7"])
def test_an_unknown_instance_plan_is_refused_with_the_known_ones(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(site(open_plan=repr(text)), tmp_path / "config.yaml", check_key_files=False)
    assert "unknown plan" in str(info.value) and "open, flex" in str(info.value)


def test_plans_are_read_by_name_or_id() -> None:
    assert plan_name(" Open ") == "open"
    assert plan_name(PLAN_IDS["flex"].upper()) == "flex"
    assert len(set(PLAN_IDS.values())) == len(PLAN_IDS)
