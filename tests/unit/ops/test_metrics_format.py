"""qauvern_hpc.ops.metrics writes the Prometheus text format by hand: Prometheus' own parser
(prometheus-client,
a test extra) must read every family, label and value back, including awkward label values and numbers."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from qauvern_hpc.ops.metrics import Families, Family, gather, render, write_textfile

parser = pytest.importorskip(
    "prometheus_client.parser", reason="prometheus-client (test extra) not installed"
)


def _all_families() -> list[Family]:
    def fill(f: Families) -> None:
        for i, fam in enumerate(f.all()):
            if fam.name not in ("scrape_error", "scrape_timestamp_seconds"):
                fam.add(i + 0.25, instance=f"inst-{i}")
        f.runs.add(2, status="applied")
        f.allocation.add(1e12, instance='we"ird\\na\nme')  # quote, backslash, newline in a label value
        f.fairness.add(math.inf, instance="zero-allocation")
        f.fairness.add(math.nan, instance="unknown")
        f.usage.add(-0.0, instance="neg")

    def broken(f: Families) -> None:
        raise ZeroDivisionError("a source that fails")

    return gather({"fill": fill, "broken": broken}, now=1_767_225_600.5)


def test_prometheus_parser_reads_back_every_sample() -> None:
    fams = _all_families()
    text = render(fams)
    parsed = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert set(parsed) == {"qauvern_hpc_" + f.name for f in fams}
    for fam in fams:
        got = parsed["qauvern_hpc_" + fam.name]
        assert got.type == fam.type and got.documentation == fam.help
        want = sorted((tuple(sorted(labels.items())), value) for labels, value in fam.samples)
        have = sorted((tuple(sorted(s.labels.items())), s.value) for s in got.samples)
        assert [w[0] for w in want] == [h[0] for h in have], fam.name
        for (_, w), (_, h) in zip(want, have, strict=True):
            assert (math.isnan(w) and math.isnan(h)) or w == h, fam.name


def test_awkward_values_survive() -> None:
    text = render(_all_families())
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in parser.text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("qauvern_hpc_instance_allocation_seconds", (("instance", 'we"ird\\na\nme'),))] == 1e12
    assert samples[("qauvern_hpc_instance_fairness_ratio", (("instance", "zero-allocation"),))] == math.inf
    assert math.isnan(samples[("qauvern_hpc_instance_fairness_ratio", (("instance", "unknown"),))])
    assert samples[("qauvern_hpc_scrape_error", (("source", "broken"),))] == 1
    assert samples[("qauvern_hpc_scrape_error", (("source", "fill"),))] == 0
    assert samples[("qauvern_hpc_scrape_timestamp_seconds", ())] == 1_767_225_600.5


def test_textfile_is_replaced_atomically_and_readable(tmp_path: Path) -> None:
    target = tmp_path / "qauvern_hpc.prom"
    target.write_text("old\n")
    inode = target.stat().st_ino
    write_textfile(target, render(_all_families()))
    assert target.stat().st_ino != inode  # a new file renamed over the old one, never rewritten in place
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)  # node_exporter runs as another user
    assert list(parser.text_string_to_metric_families(target.read_text()))
    assert [p.name for p in tmp_path.iterdir()] == ["qauvern_hpc.prom"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "qauvern_hpc.prom"
    target.write_text("old\n")

    def fail(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_textfile(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["qauvern_hpc.prom"]
