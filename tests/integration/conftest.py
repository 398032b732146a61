"""Fixtures for tests that need a real Slurm cluster: the sandbox (qauvern_hpc/devtools/sandbox).

* `sandbox`: one cluster per test session (brought up once in a fresh /tmp directory, torn down at the end),
  with the default accounts (physics: qalice, qbob; chemistry: qcarol). Do not change its hooks: use
  `sandbox_factory` for a cluster of your own.
* `sandbox_factory(name, hooks=..., extra_conf=..., accounts=..., settings=..., accounting_of=...)`: more
  clusters (side by side with the first, on their own ports), torn down at the end of the session, the
  last created first. `accounting_of=other` makes a second cluster on `other`'s slurmdbd (Slurm's
  multi-cluster setup; give it `settings={"CLUSTER": ...}`).

Tests using them should be marked `@pytest.mark.slurm`. Without root or without the Slurm binaries they are
skipped with the reason, unless QAUVERN_HPC_REQUIRE_SLURM=1 (CI sets it), which turns the skip into a failure.
When a test that uses a sandbox fails, the tails of the sandbox's logs are attached to its report; the work
dirs of a session with failures are kept (and always with QAUVERN_HPC_KEEP_SANDBOX=1).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.devtools.sandbox import DEFAULT_ACCOUNTS, Hooks, Sandbox, SandboxError, missing_prerequisites

_failed_sandboxes: set[Path] = set()


def _require_slurm() -> None:
    problems = missing_prerequisites()
    if not problems:
        return
    reason = "Slurm sandbox unavailable: " + "; ".join(problems)
    if os.environ.get("QAUVERN_HPC_REQUIRE_SLURM") == "1":
        pytest.fail(f"QAUVERN_HPC_REQUIRE_SLURM=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _new_workdir(name: str) -> Path:
    # Not pytest's tmp_path: its parents are 0700, and munged (user munge), MariaDB (user mysql) and the
    # jobs of the test users must reach the work dir.
    path = Path(tempfile.mkdtemp(prefix=f"qauvern-hpc-{name}-", dir="/tmp"))
    path.chmod(0o755)
    return path


def _start(
    name: str,
    hooks: Hooks | None = None,
    extra_conf: Sequence[str] | None = None,
    settings: Mapping[str, str | int] | None = None,
    accounts: Mapping[str, Iterable[str]] | Iterable[str] = DEFAULT_ACCOUNTS,
    accounting_of: Sandbox | None = None,
) -> Sandbox:
    sb = Sandbox(_new_workdir(name))
    try:
        sb.up(hooks=hooks, extra_conf=extra_conf, settings=settings, accounting_of=accounting_of)
        sb.add_accounts(accounts)
    except SandboxError as exc:
        _failed_sandboxes.add(sb.workdir)
        with contextlib.suppress(SandboxError):
            sb.down()
        pytest.fail(f"sandbox {name} did not come up: {exc}\n{sb.logs(lines=30)}", pytrace=False)
    return sb


def _stop(sb: Sandbox) -> None:
    try:
        sb.down()
    finally:
        keep = os.environ.get("QAUVERN_HPC_KEEP_SANDBOX") == "1" or sb.workdir in _failed_sandboxes
        if not keep:
            shutil.rmtree(sb.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    _require_slurm()
    sb = _start("sandbox")
    yield sb
    _stop(sb)


class SandboxFactory:
    def __init__(self) -> None:
        self.created: list[Sandbox] = []

    def __call__(
        self,
        name: str = "extra",
        hooks: Hooks | None = None,
        extra_conf: Sequence[str] | None = None,
        settings: Mapping[str, str | int] | None = None,
        accounts: Mapping[str, Iterable[str]] | Iterable[str] = DEFAULT_ACCOUNTS,
        accounting_of: Sandbox | None = None,
    ) -> Sandbox:
        _require_slurm()
        sb = _start(name, hooks, extra_conf, settings, accounts, accounting_of)
        self.created.append(sb)
        return sb


@pytest.fixture(scope="session")
def sandbox_factory() -> Iterator[Callable[..., Sandbox]]:
    factory = SandboxFactory()
    yield factory
    for sb in reversed(factory.created):  # a cluster on another's accounting before that one
        _stop(sb)


def _sandboxes_of(item: pytest.Item) -> list[Sandbox]:
    found: list[Sandbox] = []
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    for value in funcargs.values():
        if isinstance(value, Sandbox):
            found.append(value)
        elif isinstance(value, SandboxFactory):
            found.extend(value.created)
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for sb in _sandboxes_of(item):
            _failed_sandboxes.add(sb.workdir)
            report.sections.append((f"sandbox logs ({sb.workdir})", sb.logs(lines=30)))
    return report
