"""How the emulator sizes a job's QPU time (IBM's quick estimate, and the emulator-specific overrides)."""

from __future__ import annotations

import pytest

from qauvern_hpc.devtools.emulator.workload import estimate_work, quick_estimate


def test_quick_formula() -> None:
    assert quick_estimate(0) == 2.0
    assert quick_estimate(10_000) == pytest.approx(5.5)


def test_sampler_pubs_shots_and_bindings() -> None:
    params = {
        "pubs": [
            ["circ"],  # default shots
            ["circ", [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], 100],  # 3 bindings x 100 shots
            ["circ", [0.1, 0.2], 50],  # one binding of two parameters
            ["circ", {"theta": [[0.1, 0.2], [0.3, 0.4]]}, 10],  # a (2, 2) bindings array in a mapping
        ],
        "shots": 1000,
    }
    work = estimate_work("sampler", params)
    assert work.executions == 1000 + 300 + 50 + 40
    assert work.num_circuits == 4
    assert work.quantum_seconds == pytest.approx(2 + 0.00035 * 1390)


def test_sampler_default_shots_from_options_or_4096() -> None:
    assert estimate_work("sampler", {"pubs": [["c"]]}).executions == 4096
    assert estimate_work("sampler", {"pubs": [["c"]], "options": {"default_shots": 10}}).executions == 10


def test_estimator_precision_sets_shots() -> None:
    work = estimate_work("estimator", {"pubs": [["c", "ZZ", [[0.1], [0.2]], 0.01], ["c", "ZZ"]]})
    assert work.executions == 2 * 10_000 + 4096
    assert estimate_work("estimator", {"pubs": [["c", "ZZ"]], "precision": 0.1}).executions == 100


def test_emulator_overrides() -> None:
    work = estimate_work(
        "sampler", {"pubs": [["c"]], "emulator": {"quantum_seconds": 12.5, "fail_after_seconds": 3}}
    )
    assert (work.quantum_seconds, work.fail_after_seconds, work.executions) == (12.5, 3.0, 4096)
    assert estimate_work("sampler", {"emulator": {"executions": 20_000}}).quantum_seconds == pytest.approx(
        9.0
    )
    assert estimate_work("sampler", {"emulator": {"fail_reason": "x"}}).fail_reason == "x"
    # nonsense is ignored rather than trusted
    odd = estimate_work("sampler", {"pubs": "nope", "emulator": {"quantum_seconds": -5, "executions": True}})
    assert (odd.quantum_seconds, odd.executions, odd.fail_after_seconds) == (2.0, 0, None)
