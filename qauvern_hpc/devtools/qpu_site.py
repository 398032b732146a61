"""Wire qauvern-hpc into a sandbox cluster: a site config pointed at an emulator, the rendered policy,
the hook wrappers, the SPANK plugin and job_submit.lua. Used by `qauvern-hpc demo` and the end-to-end
tests, so what the demo shows is what the tests check.

The site has two instances (physics in us-east, chemistry in eu-de), two QPUs (ibm_torino batch,
ibm_fez dedicated) and rules: QOS `student` denied, accounts `phys*` -> physics (both QPUs), account `chem`
on partition `quantum` -> chemistry (ibm_fez only), everything else denied.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qauvern_hpc.config import compile_policy, parse_config
from qauvern_hpc.core import paths
from qauvern_hpc.core.files import LockBusy, lock_fd, release
from qauvern_hpc.devtools.sandbox import Hooks
from qauvern_hpc.policy.compiled import POLICY_JSON, POLICY_LUA, render_json, render_lua

ACCOUNT = "acct0001"
CRN_PHYS = f"crn:v1:bluemix:public:quantum-computing:us-east:a/{ACCOUNT}:phys0001::"
CRN_CHEM = f"crn:v1:bluemix:public:quantum-computing:eu-de:a/{ACCOUNT}:chem0001::"
CRN_OPEN = f"crn:v1:bluemix:public:quantum-computing:us-east:a/{ACCOUNT}:open0001::"
# `open_plan=True` adds an Open-plan instance `learners` that account `chem` reaches on partition `debug`
# (ibm_torino in job mode: the Open plan gets no dedicated session and a job needs none).
OPEN_PLAN_INSTANCE = """\
  - name: learners
    crn: "{crn}"
    plan: open
"""
OPEN_PLAN_RULE = """\
  - name: learners
    match: {accounts: [chem], partitions: [debug]}
    instance: learners
    resources: [ibm_torino]
"""
API_KEY = "demo-site-api-key-0123456789"
ACCOUNTS = {"physics": ["qalice", "qbob", "root"], "chem": ["qcarol"]}
JOB_SCRIPT = paths.DATA_DIR / "qpu_job.py"
# Per-instance licenses: job_submit.lua adds `qpu_<instance>` to each QPU job (the rebalancer reads the queue
# per instance from them and gates an exhausted instance on them).
LICENSE_PREFIX = "qpu_"
# Pair licenses (admission controller, `admission.enabled`): job_submit.lua adds `qpu_<instance>__<backend>`
# per requested QPU; declared whether or not the site enables admission (`render-policy --print slurm`).
PAIR_LICENSES = ("qpu_physics__ibm_torino", "qpu_physics__ibm_fez", "qpu_chemistry__ibm_fez")
SANDBOX_SETTINGS = {
    "LICENSES": "qpu:8,qpu_physics:10000,qpu_chemistry:10000,"
    + ",".join(f"{p}:10000" for p in PAIR_LICENSES),
    "ACCOUNTING_TRES": "license/qpu,license/qpu_physics,license/qpu_chemistry,"
    + ",".join(f"license/{p}" for p in PAIR_LICENSES),
}
# `wired_site` writes the emulator seed the site's config and API key belong to under this name.
SEED_FILE = "emulator-seed.json"
# A sandbox's hookd goes away on its own soon after the tests or the demo stop using it.
HOOKD_IDLE_SECONDS = 120


def config_text(
    base_url: str,
    state_dir: str | Path,
    *,
    fail_mode: str = "closed",
    expose: bool = True,
    open_plan: bool = False,
) -> str:
    expose_text = "true" if expose else "false"
    text = _config_text(base_url, state_dir, fail_mode, expose_text)
    if open_plan:
        text = text.replace("resources:\n", OPEN_PLAN_INSTANCE.format(crn=CRN_OPEN) + "resources:\n", 1)
        text = text.replace("default: deny\n", OPEN_PLAN_RULE + "default: deny\n", 1)
    return text


def _config_text(base_url: str, state_dir: str | Path, fail_mode: str, expose_text: str) -> str:
    return f"""\
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
    expose_api_key: {expose_text}
  - name: ibm_fez
    session_mode: dedicated
    fail_mode: {fail_mode}
    expose_api_key: {expose_text}
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
  state_dir: {state_dir}
"""


def emulator_seed(*, open_plan: bool = False) -> dict[str, Any]:
    seed = _emulator_seed()
    if open_plan:
        seed["accounts"][0]["plans"].append({"plan": "open", "usage_allocation_seconds": 600})
        for inst in seed["instances"]:
            inst["plan"] = "premium"
        seed["instances"].append(
            {"name": "learners", "crn": CRN_OPEN, "plan": "open", "usage_allocation_seconds": 600}
        )
    return seed


def _emulator_seed() -> dict[str, Any]:
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


@dataclass(frozen=True)
class Site:
    directory: Path
    config: Path
    policy: Path
    state_dir: Path
    log_file: Path


def operations_text(directory: Path) -> str:
    """The config sections of the collector and the rebalancer, with their state in `directory`."""
    return (
        f"ledger:\n  url: sqlite:///{directory}/ledger.db\n"
        f"rebalance:\n  state_dir: {directory}/rebalance\n"
        f"  slurm: {{license_prefix: {LICENSE_PREFIX}, gate: true, fairshare: true, fairshare_scale: 100}}\n"
    )


def admission_text(settings: Mapping[str, Any]) -> str:
    """An `admission:` section, enabled, with `settings` (period, hold_for, ...)."""
    items = "".join(f"  {k}: {v}\n" for k, v in settings.items())
    return f"admission:\n  enabled: true\n{items}"


def write_site(
    directory: Path,
    base_url: str,
    *,
    fail_mode: str = "closed",
    expose: bool = True,
    operations: bool = False,
    admission: Mapping[str, Any] | None = None,
    open_plan: bool = False,
) -> Site:
    """config.yaml, the key file (0600), policy.json and qpu_policy.lua in `directory`. With `operations`,
    also a ledger and a rebalance section (use `SANDBOX_SETTINGS` and `license_env()` for the cluster); with
    `admission`, an enabled admission section with those settings (pair licenses in the policy); with
    `open_plan`, the Open-plan instance `learners` and its rule (seed the emulator with
    `emulator_seed(open_plan=True)`)."""
    directory.mkdir(parents=True, exist_ok=True)
    state_dir = directory / "state"
    key = directory / "ibm.key"
    key.write_text(API_KEY + "\n")
    os.chmod(key, 0o600)
    text = config_text(base_url, state_dir, fail_mode=fail_mode, expose=expose, open_plan=open_plan)
    if operations:
        text += operations_text(directory)
    if admission is not None:
        text += admission_text(admission)
    cfg = directory / "config.yaml"
    cfg.write_text(text)
    policy = compile_policy(parse_config(text, cfg))
    (directory / POLICY_JSON).write_text(render_json(policy))
    (directory / POLICY_LUA).write_text(render_lua(policy))
    return site_of(directory)


def hookd_socket(site: Site) -> Path:
    """The site's hookd socket: in the site dir, or (AF_UNIX paths are limited to 107 bytes) in a private
    0700 temp dir remembered in the site dir."""
    path = site.directory / "hookd.sock"
    if len(os.fsencode(path)) <= 100:
        return path
    marker = site.directory / "hookd.sock.path"
    if marker.exists():
        return Path(marker.read_text().strip())
    import tempfile

    short = Path(tempfile.mkdtemp(prefix="qhookd-")) / "hookd.sock"
    marker.write_text(f"{short}\n")
    return short


def _wrapper(path: Path, kind: str, site: Site, hookd: str) -> Path:
    from qauvern_hpc.hooks.wrapper import render_wrapper, write_wrapper

    text = render_wrapper(
        kind,
        policy=site.policy,
        state_dir=site.state_dir,
        hookd=hookd,
        socket=hookd_socket(site),
        idle_timeout=HOOKD_IDLE_SECONDS,
        log_file=site.log_file,
        hook_env=site.directory / "hook.env",
    )
    return write_wrapper(path, text)


def license_env() -> dict[str, str]:
    """slurmctld's environment for job_submit.lua to add the per-instance license."""
    return {"QAUVERN_HPC_QPU_INSTANCE_LICENSE": LICENSE_PREFIX}


def stop_hookd(site: Site, timeout: float = 10.0) -> bool:
    """Stop the site's hookd (it exits when its socket file goes). True when it is gone within `timeout`."""
    import contextlib

    sock = hookd_socket(site)
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    lock = Path(f"{sock}.lock")
    if not lock.exists():
        return True
    try:
        release(lock_fd(lock, wait=timeout, create=False))
    except LockBusy:
        return False
    return True


def set_hook_env(site: Site, variables: dict[str, str]) -> None:
    """Variables the hook wrappers export (sourced at every hook run, so it can change after `up`)."""
    lines = [f"export {k}='{v}'" for k, v in variables.items() if "'" not in v]
    (site.directory / "hook.env").write_text("\n".join(lines) + "\n")


def sandbox_hooks(
    site: Site, *, plugin: Path | None = None, slurm_conf_dir: Path | None = None, hookd: str = "auto"
) -> Hooks:
    """The sandbox hook points for this site (builds the SPANK plugin into the site dir if not given)."""
    from qauvern_hpc.slurm.spank_build import build_plugin, plugstack_line

    so = plugin or build_plugin(site.directory / "qpu.so", check_running=False).path
    lua = paths.slurm_conf_dir() / "job_submit.lua"
    site.state_dir.mkdir(parents=True, exist_ok=True)
    return Hooks(
        plugstack_lines=[plugstack_line(so, state_dir=str(site.state_dir))],
        job_submit_lua=lua,
        etc_files=[site.directory / POLICY_LUA],
        prolog_slurmctld=_wrapper(site.directory / "prolog.sh", "prolog", site, hookd),
        epilog_slurmctld=_wrapper(site.directory / "epilog.sh", "epilog", site, hookd),
        prolog_epilog_timeout=120,
    )


def wired_site(directory: Path, base_url: str) -> tuple[Site, Hooks]:
    """The demo's whole wiring: the site (with the collector and rebalancer sections) in `directory`, its
    emulator seed beside it (`emulator-seed.json`), and the hooks of a sandbox that runs it: the SPANK plugin,
    job_submit.lua with the per-instance licenses, and the controller hooks. Start the cluster with
    `settings=SANDBOX_SETTINGS`, then call `set_hook_env(site, {"SLURM_CONF": ...})`."""
    site = write_site(directory, base_url, operations=True)
    (directory / SEED_FILE).write_text(json.dumps(emulator_seed(), indent=2) + "\n")
    hooks = sandbox_hooks(site)
    return site, dataclasses.replace(hooks, env={**hooks.env, **license_env()})


def site_of(directory: Path) -> Site:
    """The `Site` that `write_site` wrote into `directory` (for a later command: stop its hookd)."""
    return Site(
        directory,
        directory / "config.yaml",
        directory / POLICY_JSON,
        directory / "state",
        directory / "hooks.log",
    )
