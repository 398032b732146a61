"""Prolog/epilog behaviour that needs no IBM: fast path, refusals, a broken setup. Never a non-zero exit."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qauvern_hpc.hooks import epilog, prolog
from qauvern_hpc.hooks.jobenv import parse_env_file
from tests.support.site import write_site

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Each hook run is its own process in production: start every test without log handlers."""
    logger = logging.getLogger("qauvern_hpc")
    saved = logger.handlers[:]
    logger.handlers.clear()
    yield
    for h in logger.handlers:
        h.close()
    logger.handlers[:] = saved


def _env(policy: Path, state: Path, **kw: str) -> dict[str, str]:
    env = {
        "SLURM_JOB_ID": "101",
        "SLURM_JOB_USER": "qalice",
        "SLURM_JOB_ACCOUNT": "physics",
        "SLURM_JOB_PARTITION": "debug",
        "SPANK_QPU": "ibm_torino",
        "QAUVERN_HPC_POLICY": str(policy),
        "QAUVERN_HPC_STATE_DIR": str(state),
        "QAUVERN_HPC_LOG_FILE": str(state.parent / "hooks.log"),
    }
    env.update(kw)
    return env


def _run(monkeypatch: pytest.MonkeyPatch, hook: object, env: dict[str, str]) -> int:
    for key in list(os.environ):
        if key.startswith(("SLURM_", "SPANK_", "QAUVERN_HPC_")):
            monkeypatch.delenv(key)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return hook.main()  # type: ignore[attr-defined, no-any-return]


def test_job_without_qpu_touches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(tmp_path / "missing.json", tmp_path / "state")
    del env["SPANK_QPU"]
    assert _run(monkeypatch, prolog, env) == 0
    assert _run(monkeypatch, epilog, env) == 0
    assert not (tmp_path / "state").exists()


def test_denied_by_rule_hands_the_refusal_to_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = write_site(tmp_path / "site", "http://127.0.0.1:9")
    state = tmp_path / "state"
    assert _run(monkeypatch, prolog, _env(policy, state, SLURM_JOB_QOS="student")) == 0
    env = parse_env_file((state / "jobs" / "101.env").read_text())
    assert env["QAUVERN_HPC_FAIL_MODE"] == "closed"
    assert "students use the simulator" in env["QAUVERN_HPC_ERROR"]
    assert "QRMI_JOB_QPU_RESOURCES" not in env


def test_resource_outside_the_rule_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = write_site(tmp_path / "site", "http://127.0.0.1:9")
    state = tmp_path / "state"
    env = _env(policy, state, SLURM_JOB_ACCOUNT="chem", SLURM_JOB_PARTITION="quantum", SPANK_QPU="ibm_torino")
    assert _run(monkeypatch, prolog, env) == 0
    text = (state / "jobs" / "101.env").read_text()
    assert "QAUVERN_HPC_ERROR=qpu:" in text and "chemistry" in text


def test_missing_policy_still_tells_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    env = _env(tmp_path / "nope.json", state, QAUVERN_HPC_DEFAULT_FAIL_MODE="open")
    assert _run(monkeypatch, prolog, env) == 0
    got = parse_env_file((state / "jobs" / "101.env").read_text())
    assert got["QAUVERN_HPC_FAIL_MODE"] == "open"
    assert "policy file not found" in got["QAUVERN_HPC_ERROR"]
    assert "policy file not found" in (tmp_path / "hooks.log").read_text()


def test_unreachable_ibm_follows_the_fail_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 9 (discard) on loopback refuses connections: IBM is "down".
    policy = write_site(tmp_path / "site", "http://127.0.0.1:9", fail_mode="open")
    state = tmp_path / "state"
    assert _run(monkeypatch, prolog, _env(policy, state)) == 0
    env = parse_env_file((state / "jobs" / "101.env").read_text())
    assert env["QAUVERN_HPC_FAIL_MODE"] == "open"
    assert env["QAUVERN_HPC_ERROR"].startswith("qpu: could not acquire ibm_torino")
    # Fail-open: the job still learns where its QPU is, without a session.
    assert env["QRMI_JOB_QPU_RESOURCES"] == "ibm_torino"
    assert "ibm_torino_QRMI_IBM_QCS_SESSION_ID" not in env
    # The epilog has nothing to release and still exits 0.
    assert _run(monkeypatch, epilog, _env(policy, state)) == 0
    assert not (state / "jobs" / "101.env").exists()


def test_hook_fast_path_imports_almost_nothing() -> None:
    """Slurm runs both hooks for every job: a job without --qpu must not pay for our imports."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from qauvern_hpc.hooks import prolog, epilog\n"
        "assert prolog.main() == 0 and epilog.main() == 0\n"
        "heavy = ('logging', 'subprocess', 'json', 'httpx', 'pydantic', 'yaml', "
        "'qauvern_hpc.policy.compiled')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    env = {"SLURM_JOB_ID": "5", "PATH": "/usr/bin:/bin", "QAUVERN_HPC_STATE_DIR": "/nonexistent"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
