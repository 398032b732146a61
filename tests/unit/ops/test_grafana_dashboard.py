"""slurm-conf/grafana-qauvern-hpc.json: every panel's PromQL names only metrics `qauvern-hpc metrics` exports
(the list comes from the code's metric families) and only PromQL functions that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.ops.metrics import PREFIX, Families

DASHBOARD = Path(__file__).resolve().parents[3] / "slurm-conf" / "grafana-qauvern-hpc.json"
EXPORTED = {PREFIX + f.name for f in Families().all()}
FUNCTIONS = {
    "abs", "avg", "avg_over_time", "ceil", "clamp_min", "count", "delta", "floor", "increase",
    "label_values", "max", "max_over_time", "min", "min_over_time", "rate", "round", "sum", "time", "topk",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGE = re.compile(r"\[[0-9a-z:$_]+\]")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_VALUES = re.compile(r"(label_values\([^,()]*),\s*\w+\)")  # Grafana's: its 2nd argument is a label


def parse(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, functions) of a PromQL expression: strings, label matchers, grouping clauses and
    range selectors removed, then an identifier followed by `(` is a function, any other a metric."""
    text = _STRING.sub('""', expr)
    text = _RANGE.sub("", _GROUPING.sub("", _MATCHERS.sub("", _LABEL_VALUES.sub(r"\1)", text))))
    if text.count("(") != text.count(")"):
        raise ValueError(f"unbalanced parentheses in {expr!r}")
    metrics: set[str] = set()
    functions: set[str] = set()
    for m in _IDENT.finditer(text):
        rest = text[m.end() :].lstrip()
        (functions if rest.startswith("(") else metrics).add(m.group())
    return metrics, functions


def _exprs(doc: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets", ()):
            out.append((panel["title"], target["expr"]))
    for var in doc["templating"]["list"]:
        if var.get("type") == "query":
            out.append((f"variable {var['name']}", var["query"]))
    return out


DOC = json.loads(DASHBOARD.read_text())


def test_the_parser_finds_metrics_and_functions() -> None:
    metrics, functions = parse('max by (a, b) (x_total{instance=~"$i", y="f(z)"}) / time() - delta(w[1h])')
    assert (metrics, functions) == ({"x_total", "w"}, {"max", "time", "delta"})
    assert parse("label_values(up, instance)") == ({"up"}, {"label_values"})
    with pytest.raises(ValueError):
        parse("sum(x")


@pytest.mark.parametrize(("where", "expr"), _exprs(DOC))
def test_every_query_names_exported_metrics_only(where: str, expr: str) -> None:
    metrics, functions = parse(expr)
    assert metrics, f"{where}: {expr} names no metric"
    assert metrics <= EXPORTED, f"{where}: {sorted(metrics - EXPORTED)} are not exported by `metrics`"
    assert functions <= FUNCTIONS, f"{where}: unknown PromQL function(s) {sorted(functions - FUNCTIONS)}"


def test_the_dashboard_covers_the_budget_queue_ledger_rebalancer_and_admission() -> None:
    used = set().union(*(parse(e)[0] for _, e in _exprs(DOC)))
    wanted = (
        "instance_usage_28d_seconds",
        "instance_limit_seconds",
        "queued_qpu_jobs",
        "ledger_attributed_seconds",
        "rebalance_failed_runs",
        "admission_cap",
        "scrape_error",
    )
    for family in wanted:
        assert PREFIX + family in used
    ids = [p["id"] for p in DOC["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in DOC["panels"] if p["type"] != "row")
