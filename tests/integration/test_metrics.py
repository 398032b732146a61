"""`qauvern-hpc metrics` against the IBM emulator: per-instance figures equal IBM's, a broken source is a
scrape_error, not a crash; the textfile is written atomically; the HTTP endpoint serves the same."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.devtools import qpu_site
from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.ops.metrics import Families, Family, gather, render


@pytest.fixture()
def emu() -> Iterator[Any]:
    with run_emulator(qpu_site.emulator_seed(), clock="real") as e:
        yield e


def _sample(text: str, name: str, **labels: str) -> float:
    lab = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pat = rf"^qauvern_hpc_{name}{{{re.escape(lab)}}} (\S+)$" if labels else rf"^qauvern_hpc_{name} (\S+)$"
    m = re.search(pat, text, re.M)
    assert m, f"{name} {labels} not in:\n{text}"
    return float(m.group(1))


def _site(emu: Any, tmp_path: Path) -> qpu_site.Site:
    site = qpu_site.write_site(tmp_path / "site", emu.base_url, operations=True)
    # No Slurm here: squeue fails, and the slurm source must fail softly.
    site.config.write_text(site.config.read_text().replace("slurm:\n", "slurm:\n  squeue: /bin/false\n", 1))
    return site


def _cli(site: qpu_site.Site, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "qauvern_hpc", "-c", str(site.config), "metrics", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_metrics_match_ibm_and_a_failing_source_is_reported(emu: Any, tmp_path: Path) -> None:
    site = _site(emu, tmp_path)
    out = tmp_path / "qauvern_hpc.prom"
    done = _cli(site, "--textfile", str(out))
    assert done.returncode == 1, done.stderr  # squeue cannot run here
    text = out.read_text()
    snap = {i["name"]: i for i in emu.state.snapshot()["instances"]}
    for name in ("physics", "chemistry"):
        assert (
            _sample(text, "instance_allocation_seconds", instance=name)
            == snap[name]["usage_allocation_seconds"]
        )
        used = _sample(text, "instance_usage_28d_seconds", instance=name)
        assert used == pytest.approx(emu.state.rolling_usage_seconds(snap[name]["crn"]), abs=1)
        assert _sample(text, "instance_fairness_ratio", instance=name) == pytest.approx(
            used / snap[name]["usage_allocation_seconds"]
        )
        assert _sample(text, "ledger_attributed_seconds", instance=name) == 0
    assert _sample(text, "scrape_error", source="ibm") == 0
    assert _sample(text, "scrape_error", source="slurm") == 1
    assert _sample(text, "scrape_error", source="ledger") == 0
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".qauvern_hpc.prom.")]  # no temp left


def test_ibm_down_is_a_scrape_error_and_the_rest_still_reports(emu: Any, tmp_path: Path) -> None:
    site = _site(emu, tmp_path)
    emu.faults.add(path=r"^/v2/resource_instances", status=500, times=100)
    done = _cli(site, "--no-slurm")
    assert done.returncode == 1
    assert _sample(done.stdout, "scrape_error", source="ibm") == 1
    assert _sample(done.stdout, "scrape_error", source="journal") == 0
    assert "instance_allocation_seconds{" not in done.stdout


def test_http_endpoint_serves_the_metrics(emu: Any, tmp_path: Path) -> None:
    site = _site(emu, tmp_path)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qauvern_hpc",
            "-c",
            str(site.config),
            "metrics",
            "--no-slurm",
            "--serve",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        with urllib.request.urlopen(url, timeout=60) as resp:
            body = resp.read().decode()
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert _sample(body, "scrape_error", source="ibm") == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_render_escapes_labels_and_gather_isolates_sources() -> None:
    fam = Family("x", "help text")
    fam.add(1.5, instance='a"b\\c\nd')
    assert 'qauvern_hpc_x{instance="a\\"b\\\\c\\nd"} 1.5' in render([fam])

    def boom(f: Families) -> None:
        raise RuntimeError("down")

    def fine(f: Families) -> None:
        f.queued.add(3, instance="p")

    text = render(gather({"a": boom, "b": fine}, now=10))
    assert 'qauvern_hpc_scrape_error{source="a"} 1' in text
    assert 'qauvern_hpc_scrape_error{source="b"} 0' in text
    assert 'qauvern_hpc_queued_qpu_jobs{instance="p"} 3' in text
    assert "qauvern_hpc_scrape_timestamp_seconds 10" in text
