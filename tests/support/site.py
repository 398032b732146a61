"""A small site config + rendered policy for tests of the job path (emulator-backed)."""

from __future__ import annotations

import os
from pathlib import Path

from qauvern_hpc.config import compile_policy, parse_config
from qauvern_hpc.policy import POLICY_JSON, POLICY_LUA, render_json, render_lua

ACCOUNT = "acct0001"
CRN_PHYS = f"crn:v1:bluemix:public:quantum-computing:us-east:a/{ACCOUNT}:phys0001::"
CRN_CHEM = f"crn:v1:bluemix:public:quantum-computing:eu-de:a/{ACCOUNT}:chem0001::"
API_KEY = "test-key-physics-0123456789"


def config_text(base_url: str, *, fail_mode: str = "closed", expose_api_key: bool = True) -> str:
    return f"""
ibm:
  account_id: {ACCOUNT}
  plan: premium
  endpoints:
    emulator: {base_url}
  api_key_file: ibm.key
instances:
  - name: physics
    crn: "{CRN_PHYS}"
  - name: chemistry
    crn: "{CRN_CHEM}"
resources:
  - name: ibm_torino
    fail_mode: {fail_mode}
    expose_api_key: {str(expose_api_key).lower()}
  - name: ibm_fez
    session_mode: dedicated
    fail_mode: {fail_mode}
    expose_api_key: {str(expose_api_key).lower()}
rules:
  - name: students-denied
    match: {{qos: [student]}}
    deny: true
    message: students use the simulator
  - name: physics
    match: {{accounts: [phys*]}}
    instance: physics
    resources: [ibm_torino, ibm_fez]
  - name: chemistry
    match: {{accounts: [chem], partitions: [quantum]}}
    instance: chemistry
    resources: [ibm_fez]
default: deny
slurm:
  state_dir: {{state_dir}}
"""


def emulator_seed() -> dict[str, object]:
    return {
        "accounts": [{"id": ACCOUNT, "plans": [{"plan": "premium", "usage_allocation_seconds": 1_000_000}]}],
        "api_keys": [{"key": API_KEY, "name": "site"}],
        "backends": [{"name": "ibm_torino", "status": "online"}, {"name": "ibm_fez", "status": "online"}],
        "instances": [
            {
                "name": "physics",
                "crn": CRN_PHYS,
                "usage_allocation_seconds": 400_000,
                "instance_limit_seconds": 600_000,
            },
            {"name": "chemistry", "crn": CRN_CHEM, "usage_allocation_seconds": 300_000},
        ],
    }


def write_site(directory: Path, base_url: str, **kw: object) -> Path:
    """Write config.yaml, the key file (0600) and the rendered policy; return the policy.json path."""
    directory.mkdir(parents=True, exist_ok=True)
    state_dir = directory / "state"
    key = directory / "ibm.key"
    key.write_text(API_KEY + "\n")
    os.chmod(key, 0o600)
    text = config_text(base_url, **kw).replace("{state_dir}", str(state_dir))  # type: ignore[arg-type]
    cfg_path = directory / "config.yaml"
    cfg_path.write_text(text)
    policy = compile_policy(parse_config(text, cfg_path))
    (directory / POLICY_JSON).write_text(render_json(policy))
    (directory / POLICY_LUA).write_text(render_lua(policy))
    return directory / POLICY_JSON
