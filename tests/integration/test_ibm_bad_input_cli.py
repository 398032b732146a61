"""What an admin sees when IBM answers garbage: `qauvern-hpc instances` and `show` run as processes
against the emulator over real HTTP, with the emulator's `raw` fault bodies (truncated JSON, an HTML page,
an empty body) on the calls they make. Every case is a one-line error per failed call naming the call, exit 4
(service unavailable), never a traceback. No Slurm is needed: these commands talk to IBM only."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.devtools.emulator import Emulator, run_emulator

ACCOUNT = "acct0077"
KEY = "bad-input-test-key-0077-xyz"
CRN_A = f"crn:v1:bluemix:public:quantum-computing:us-east:a/{ACCOUNT}:aaa-0001::"
CRN_B = f"crn:v1:bluemix:public:quantum-computing:eu-de:a/{ACCOUNT}:bbb-0002::"


def seed() -> dict[str, Any]:
    return {
        "accounts": [{"id": ACCOUNT, "plans": [{"plan": "premium", "usage_allocation_seconds": 100_000}]}],
        "api_keys": [{"key": KEY}],
        "backends": [{"name": "ibm_torino"}],
        "instances": [
            {"name": "a", "crn": CRN_A, "usage_allocation_seconds": 30_000, "usage_history": [0, 100]},
            {"name": "b", "crn": CRN_B, "usage_allocation_seconds": 20_000},
        ],
    }


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with run_emulator(seed(), clock="manual") as e:
        yield e


@pytest.fixture(scope="module")
def config(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad-input")
    key = d / "ibm.key"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    cfg = d / "config.yaml"
    cfg.write_text(
        f'ibm:\n  account_id: {ACCOUNT}\n  plan: premium\n  endpoints: {{emulator: "{emu.base_url}"}}\n'
        f'  api_key_file: {key}\ninstances:\n  - name: a\n    crn: "{CRN_A}"\n'
        f'  - name: b\n    crn: "{CRN_B}"\n'
    )
    return cfg


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("IBMCLOUD_API_KEY", "IBMCLOUD_STAGING")}
    return subprocess.run(
        [sys.executable, "-m", "qauvern_hpc", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(autouse=True)
def no_faults(emu: Emulator) -> Iterator[None]:
    emu.faults.clear()
    yield
    emu.faults.clear()


def test_the_rig_works_without_faults(config: Path) -> None:
    proc = run(config, "instances")
    assert proc.returncode == 0, proc.stderr
    assert "a" in proc.stdout and "b" in proc.stdout


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ('{"usage_consumed_seconds": 12', "reply is not JSON"),
        ("<html><body>502 Bad Gateway</body></html>", "reply is not JSON"),
        ("", "reply is empty"),
    ],
    ids=["truncated-json", "html", "empty"],
)
def test_malformed_usage_reply_is_one_line_per_instance(
    emu: Emulator, config: Path, raw: str, why: str
) -> None:
    emu.faults.add_from_dict({"path": r"^/api/v1/instances/usage$", "status": 200, "raw": raw})
    proc = run(config, "instances")
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr  # one per configured instance
    for name, crn in (("a", CRN_A), ("b", CRN_B)):
        assert (
            f"qauvern-hpc instances: {name} ({crn}): usage cannot be read: "
            f"IBM GET /v1/instances/usage: HTTP 200: {why}"
        ) in lines


@pytest.mark.parametrize(
    ("path", "raw", "call"),
    [
        (r"^/v2/resource_instances$", '{"resources": [', "GET /v2/resource_instances"),
        (r"^/identity/token$", '{"access_token": ', "POST /identity/token"),
        (r"^/api/v1/accounts/", "{plans: []}", "GET /v1/accounts/{id}"),
    ],
    ids=["rc-page", "iam", "account"],
)
def test_malformed_reply_to_a_call_everything_needs_is_one_line(
    emu: Emulator, config: Path, path: str, raw: str, call: str
) -> None:
    emu.faults.add_from_dict({"path": path, "status": 200, "raw": raw})
    proc = run(config, "show")
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr == f"qauvern-hpc show: error: IBM {call}: HTTP 200: reply is not JSON\n"


def test_malformed_error_body_still_names_call_and_status(emu: Emulator, config: Path) -> None:
    """A 5xx whose body is a proxy's HTML page: retried, then one line with the status and the page's text."""
    emu.faults.add_from_dict(
        {"path": r"^/v2/resource_instances$", "status": 502, "raw": "<html>upstream\nfailed</html>"}
    )
    proc = run(config, "instances")
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.startswith(
        "qauvern-hpc instances: error: IBM GET /v2/resource_instances: HTTP 502: <html>upstream failed</html>"
    )
    assert proc.stderr.count("\n") == 1 and "gave up after" in proc.stderr
