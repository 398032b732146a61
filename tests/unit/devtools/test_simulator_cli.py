"""Trace parsing (strict, line-numbered errors), the trace generator and `qauvern-hpc simulate`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from qauvern_hpc.cli import main
from qauvern_hpc.config import compile_policy, load_config_full
from qauvern_hpc.devtools.simulator.generate import generate_trace, projects_from_policy
from qauvern_hpc.devtools.simulator.runner import DATA_DIR, expand_policies
from qauvern_hpc.devtools.simulator.trace import COLUMNS, TraceError, format_trace, parse_trace

HEADER = ",".join(COLUMNS)
ROW = "2026-01-05T09:00:00Z,alice,physics,quantum,normal,ibm_torino,1800,2h"


# --------------------------------------------------------------------------------------------- parsing


def test_parse_a_row() -> None:
    (job,) = parse_trace(f"{HEADER}\n{ROW}\n")
    assert job.submit_time == datetime(2026, 1, 5, 9, tzinfo=UTC)
    assert (job.user, job.account, job.partition, job.qos, job.qpu) == (
        "alice",
        "physics",
        "quantum",
        "normal",
        "ibm_torino",
    )
    assert (job.quantum_seconds, job.wall_limit_seconds, job.line) == (1800, 7200, 2)


def test_columns_in_any_order_offsets_and_blank_lines() -> None:
    cols = list(reversed(COLUMNS))
    text = ",".join(cols) + "\n\n" + "3600,60,ibm_fez,,quantum,chem,bob,2026-01-05T10:00:00+01:00\n"
    (job,) = parse_trace(text)
    assert job.submit_time == datetime(2026, 1, 5, 9, tzinfo=UTC)
    assert job.qos == "" and job.line == 3


def test_round_trip() -> None:
    jobs = parse_trace(f"{HEADER}\n{ROW}\n{ROW}\n")
    assert parse_trace(format_trace(jobs)) == [j for j in jobs]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"trace:1: empty trace"),
        ("submit_time,user\n", r"trace:1: bad header: missing column\(s\) account"),
        (HEADER + ",extra\n", r"trace:1: bad header: unknown column\(s\) 'extra'"),
        (HEADER + "\n", r"trace: the trace has a header but no jobs"),
        (
            f"{HEADER}\n{ROW}\nyesterday,a,b,c,d,e,1,1\n",
            r"trace:3: submit_time: 'yesterday' is not an ISO 8601",
        ),
        (f"{HEADER}\n{ROW.replace(',1800,', ',0,')}\n", r"trace:2: quantum_seconds: must be greater than 0"),
        (f"{HEADER}\n{ROW.replace(',2h', ',-5')}\n", r"trace:2: wall_limit_seconds: not a duration"),
        (f"{HEADER}\n{ROW},x\n", r"trace:2: 9 field\(s\), the header has 8"),
        (f"{HEADER}\n{ROW.replace('alice', '')}\n", r"trace:2: user: empty"),
        (
            f"{HEADER}\n{ROW}\n{ROW.replace('T09', 'T08')}\n",
            r"trace:3: submit_time .* is before the previous row's",
        ),
        (f'{HEADER}\n{ROW}\n"unterminated,a\n', r"trace:\d+: .*"),
    ],
)
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        parse_trace(text)


# --------------------------------------------------------------------------------------------- generator


def _policy():  # type: ignore[no-untyped-def]
    return compile_policy(load_config_full(DATA_DIR / "site.yaml", check_key_files=False))


def test_generator_is_seeded_and_follows_the_rules() -> None:
    policy = _policy()
    start = datetime(2026, 1, 5, tzinfo=UTC)
    a = generate_trace(policy, start=start, days=20, budget_seconds=12 * 96000, seed=4)
    b = generate_trace(policy, start=start, days=20, budget_seconds=12 * 96000, seed=4)
    c = generate_trace(policy, start=start, days=20, budget_seconds=12 * 96000, seed=5)
    assert a == b and a != c
    assert [j.submit_time for j in a] == sorted(j.submit_time for j in a)
    profiles = {p.account: p.profile for p in projects_from_policy(policy)}
    assert profiles == {
        "physics": "dominant",
        "chemistry": "bursty",
        "materials": "deadline",
        "biology": "bursty",
        "course101": "idle",
    }
    total = sum(j.quantum_seconds for j in a)
    # demand ~ load x purchased time (12 QAU per 28 days over 20 days); the random draw stays near it
    assert 0.5 < total / (12 * 96000 * 20 / 28) < 1.6
    by_account: dict[str, int] = {}
    for j in a:
        by_account[j.account] = by_account.get(j.account, 0) + j.quantum_seconds
    assert max(by_account, key=lambda k: by_account[k]) == "physics"


# --------------------------------------------------------------------------------------------- CLI


def sim_args(*extra: str) -> list[str]:
    return [
        "simulate",
        "--config",
        str(DATA_DIR / "site.yaml"),
        "--scenario",
        str(DATA_DIR / "scenario.yaml"),
        "--trace",
        str(DATA_DIR / "mixed-90d-s1.csv"),
        "--days",
        "6",
        *extra,
    ]


def test_cli_json_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*sim_args("--json", "--policy", "static", "--policy", "qauvern-hpc")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["results"]) == ["static", "qauvern-hpc"]
    assert out["days"] == 6
    r = out["results"]["qauvern-hpc"]
    for key in (
        "used_share",
        "wasted_seconds",
        "wait_median_seconds",
        "wait_p95_seconds",
        "limit_hit_jobs",
        "jain",
    ):
        assert key in r
    assert r["rebalances"] == 6 * 24 - 1
    assert out["results"]["static"]["allocation_changes"] == 0


def test_cli_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "sim.png"
    assert main([*sim_args("--policy", "all", "--rebalance-every", "6", "--plot", str(png))]) == 0
    out = capsys.readouterr().out
    assert "purchased time used" in out and "p95 wait" in out
    assert out.splitlines()[1].split() == ["static", "qauvern", "qauvern-hpc"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.csv"
    args = ["simulate", "-c", str(DATA_DIR / "site.yaml"), "--scenario", str(DATA_DIR / "scenario.yaml")]
    assert main([*args, "--generate", str(out), "--days", "5", "--seed", "3"]) == 0
    jobs = parse_trace(out.read_text())
    assert jobs and jobs[0].submit_time.date().isoformat() >= "2026-01-05"
    assert main([*args, "--trace", str(out), "--policy", "static", "--json"]) == 0
    capsys.readouterr()


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "-c", str(DATA_DIR / "site.yaml")]) == 2
    assert "--trace is required" in capsys.readouterr().err
    assert main(sim_args("--policy", "fifo")) == 2
    assert "unknown policy 'fifo'" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{HEADER}\n{ROW.replace(',1800,', ',lots,')}\n")
    args = sim_args()
    args[args.index("--trace") + 1] = str(bad)
    assert main(args) == 2
    assert f"{bad}:2: quantum_seconds" in capsys.readouterr().err
    assert main([*sim_args("--rebalance-every", "0")]) == 2
    capsys.readouterr()


def test_cli_without_qauvern_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "qauvern", None)
    assert main(sim_args("--policy", "qauvern")) == 2
    err = capsys.readouterr().err
    assert "qauvern package is not installed" in err and "pip install" in err


def test_expand_policies() -> None:
    assert expand_policies(None) == ["static", "qauvern", "qauvern-hpc"]
    assert expand_policies(["qauvern-hpc", "static,qauvern-hpc"]) == ["static", "qauvern-hpc"]


def test_help_teaches() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--help"])
    assert exc.value.code == 0
