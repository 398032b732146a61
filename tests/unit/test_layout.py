"""The package's shape (issue 11): one-way import arrows between packages, no import cycle between
modules, pure decision logic that imports nothing of the I/O edges, and modules a reader can take in."""

from __future__ import annotations

import pytest

from tests.support.imports_graph import cycles, imports, modules, package_of

KNOWN = modules()
GRAPH = imports(KNOWN)

# Which packages each package may import (besides itself). Read it bottom up: core, then the pure logic and
# the models, then the I/O edges, then the work that combines them, then the commands.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "policy": {"core"},
    "record": {"core"},
    "planner": {"core"},
    "ibm": {"core", "(root)"},
    "slurm": {"core", "record"},
    "config": {"core", "policy", "ibm"},
    "hooks": {"core", "ibm", "policy", "record"},
    "accounting": {"core", "config", "ibm", "record", "slurm"},
    "admission": {"core", "config", "ibm", "planner", "policy", "record", "slurm"},
    "rebalance": {"core", "accounting", "admission", "config", "ibm", "planner", "policy", "slurm"},
    "ops": {
        "core", "accounting", "admission", "config", "hooks", "ibm", "planner", "policy", "rebalance",
        "record", "slurm",
    },
    "reports": {"core", "accounting", "config"},
    "devtools": {
        "core", "accounting", "admission", "config", "hooks", "ibm", "planner", "policy", "rebalance",
        "record", "slurm",
    },
}  # fmt: skip
TOP = {"commands", "cli", "__main__", "(root)"}  # may import anything

# Pure modules: standard library (and pydantic-free) logic the simulator, the hooks and the planner share.
PURE = ("qauvern_hpc.planner.", "qauvern_hpc.policy.", "qauvern_hpc.record.", "qauvern_hpc.admission.model",
        "qauvern_hpc.admission.decide")  # fmt: skip

MAX_LINES = 620


def test_every_package_is_placed_in_the_layers() -> None:
    packages = {package_of(m) for m in KNOWN}
    assert packages - set(ALLOWED) - TOP == set()


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_run_one_way(package: str) -> None:
    wrong = sorted(
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        if package_of(m) == package
        for t in targets
        if package_of(t) != package and package_of(t) not in ALLOWED[package]
    )
    assert wrong == []


def test_the_allowed_arrows_themselves_have_no_cycle() -> None:
    graph = {p: set(targets) & set(ALLOWED) for p, targets in ALLOWED.items()}
    assert cycles(graph) == []


def test_no_two_modules_import_each_other_even_through_others() -> None:
    assert cycles(GRAPH) == []


def test_pure_modules_import_only_core_and_pure_modules() -> None:
    wrong = sorted(
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        if m.startswith(PURE)
        for t in targets
        if not (t.startswith(PURE) or package_of(t) == "core" or t == "qauvern_hpc")
    )
    assert wrong == []


def test_no_module_is_longer_than_a_reader_can_take_in() -> None:
    long = {m: n for m, p in KNOWN.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_graph_sees_a_cycle_when_there_is_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
