"""README's first command ends in `qauvern-hpc demo`: it must work as written; and the HTML usage report it
writes from the ledger its real jobs filled opens in a browser (headless Chromium) without a console error."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slurm

SECTIONS = ("summary", "usage", "shares", "forecast", "moves", "waits", "top")  # reports.html.SECTIONS


@pytest.fixture(scope="module")
def demo(sandbox_factory: object, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # sandbox_factory only makes the test skip/fail like the other Slurm tests when Slurm is missing.
    report = tmp_path_factory.mktemp("demo") / "report.html"
    proc = subprocess.run(
        [sys.executable, "-m", "qauvern_hpc", "demo", "--json", "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"result": json.loads(proc.stdout), "stderr": proc.stderr, "report": report}


def test_demo_runs_every_job_on_its_instance_and_cleans_up(demo: dict[str, Any]) -> None:
    result = demo["result"]
    assert [j["state"] for j in result["jobs"]] == ["COMPLETED"] * 3
    by_job = {j["user"]: j for j in result["jobs"]}
    assert {r["instance"] for r in by_job["qalice"]["resources"]} == {"physics"}
    assert {r["instance"] for r in by_job["qcarol"]["resources"]} == {"chemistry"}
    assert all(r["session_state"] == "closed" for j in result["jobs"] for r in j["resources"])
    assert [r["quantum_seconds"] for r in by_job["qbob"]["resources"]] == [5.0, 5.0]
    assert all(r["message"].startswith("qpu:") for r in result["refused"])
    assert "cluster up" in demo["stderr"] and "stopping the cluster" in demo["stderr"]
    # The admin side ran as real commands against the same config and cluster.
    ops = result["operations"]
    assert ops["rebalance"]["exit"] == 0, ops["rebalance"]
    assert ops["rebalance"]["json"]["status"] == "completed"
    moved = {r["instance"]: r["allocation_seconds"] for r in ops["rebalance"]["json"]["instances"]}
    assert moved["physics"]["new"] != moved["physics"]["current"]
    for name in ("collect", "usage"):
        assert ops[name]["exit"] == 0 or ops[name].get("skipped"), ops[name]
    # doctor finds the demo's installation whole: nothing failed, and collect has just run
    assert ops["doctor"]["exit"] == 0, ops["doctor"]
    checks = {c["name"]: c["status"] for c in ops["doctor"]["json"]["checks"]}
    assert "fail" not in checks.values(), ops["doctor"]["json"]
    assert checks["collect"] == "ok" and checks["sbatch --qpu"] == "ok" and checks["IBM physics"] == "ok"
    # Last, the HTML usage report from the ledger those jobs filled; its path is printed.
    assert ops["report"]["exit"] == 0, ops["report"]
    assert (
        result["report"] == str(demo["report"])
        and f"usage report written to {demo['report']}" in demo["stderr"]
    )
    figures = ops["report"]["json"]
    assert figures["totals"]["jobs"] == 3 and "physics" in figures["forecasts"]
    assert {m["target"] for m in figures["moves"]} >= {"IBM instance physics"}  # the rebalance just above


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (bash .ci/setup.sh installs Debian's package)")
    flags = ["--headless", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--hide-scrollbars"]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)


def _console_messages(stderr: str) -> list[str]:
    """What the page logged to its console (Chromium logs `INFO:CONSOLE:line] "text", source: ..`)."""
    return [line for line in stderr.splitlines() if re.search(r":CONSOLE[:(]\d+", line)]


def test_demo_report_opens_in_headless_chromium_with_every_section(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    report: Path = demo["report"]
    url = report.resolve().as_uri()
    dom = _chromium("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for section in SECTIONS:
        assert re.search(rf'<section id="{section}">\s*<h2>', dom.stdout), section
    assert len(re.findall(r'<img src="data:image/svg\+xml;base64,', dom.stdout)) == 4
    assert _console_messages(dom.stderr) == [], dom.stderr[-2000:]
    shot = tmp_path / "report.png"
    png = _chromium(f"--screenshot={shot}", "--window-size=1100,4000", url)
    assert png.returncode == 0 and shot.stat().st_size > 50_000, png.stderr[-2000:]
    assert _console_messages(png.stderr) == []
    # the check can fail: a page with a script error is caught
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>console.error('x'); nope();</script></body></html>")
    assert len(_console_messages(_chromium("--dump-dom", bad.as_uri()).stderr)) == 2


def test_demo_with_the_time_fields_removed_attributes_and_decides_the_same(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    """The demo again, its emulator serving RUs only (IBM's announced removal of the time fields): every job
    is charged the same seconds, collect and doctor succeed, and the rebalancer moves allocation the same
    way as in the run above (the amounts follow the real clock's usage windows, so they agree to 1 %)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qauvern_hpc",
            "demo",
            "--json",
            "--ru-only",
            "--report",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ru, times = json.loads(proc.stdout), demo["result"]
    assert ru["ru_only"] is True and times["ru_only"] is False

    def charged(result: dict[str, Any]) -> list[tuple[str, str, float]]:
        return sorted(
            (j["user"], r["instance"], r["quantum_seconds"]) for j in result["jobs"] for r in j["resources"]
        )

    def moves(result: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        rows = result["operations"]["rebalance"]["json"]["instances"]
        return {
            r["instance"]: (r["allocation_seconds"]["current"], r["allocation_seconds"]["new"]) for r in rows
        }

    def usage(result: dict[str, Any]) -> list[tuple[str, float]]:
        rows = result["operations"]["usage"]["json"]["rows"]
        return sorted((r["account"], r["quantum_seconds"]) for r in rows)

    assert charged(ru) == charged(times)
    # collect stored the same seconds, usage reports them (a dedicated session is charged its wall time,
    # which differs between two runs by the real clock's tenths of a second)
    assert [a for a, _ in usage(ru)] == [a for a, _ in usage(times)] and usage(ru)
    assert [s for _, s in usage(ru)] == pytest.approx([s for _, s in usage(times)], abs=1.0)
    ru_moves, time_moves = moves(ru), moves(times)
    assert ru_moves.keys() == time_moves.keys()
    for name, (current, new) in ru_moves.items():
        was_current, was_new = time_moves[name]
        assert current == was_current and (new > current) == (was_new > was_current), name
        assert abs(new - was_new) <= 0.01 * was_new, name
    assert ru["operations"]["collect"]["exit"] == 0 and ru["operations"]["doctor"]["exit"] == 0
