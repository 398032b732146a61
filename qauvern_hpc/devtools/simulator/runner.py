"""Load a config, scenario and trace; run policies side by side; render the comparison. (File I/O only.)"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qauvern_hpc.config import compile_policy, load_config_full
from qauvern_hpc.core import paths
from qauvern_hpc.core.errors import UsageError
from qauvern_hpc.devtools.simulator.bound import lower_bound
from qauvern_hpc.devtools.simulator.engine import simulate
from qauvern_hpc.devtools.simulator.metrics import RunResult
from qauvern_hpc.devtools.simulator.policies import POLICIES, make_policy
from qauvern_hpc.devtools.simulator.scenario import load_scenario
from qauvern_hpc.devtools.simulator.setup import SimSetup, build_setup
from qauvern_hpc.devtools.simulator.trace import load_trace

DATA_DIR = paths.DATA_DIR / "sim"


@dataclass(frozen=True, slots=True)
class Comparison:
    setup: SimSetup
    results: tuple[RunResult, ...]
    trace: str
    config: str
    scenario: str | None

    def to_dict(self) -> dict[str, Any]:
        s = self.setup
        return {
            "trace": self.trace,
            "config": self.config,
            "scenario": self.scenario,
            "start": s.start.isoformat(),
            "days": s.days,
            "budget_seconds": s.budget,
            "purchased_seconds": round(s.purchased_seconds),
            "instances": list(s.instance_names),
            "backends": list(s.backend_names),
            "results": {r.policy: r.to_dict() for r in self.results},
        }


def expand_policies(names: Sequence[str] | None) -> list[str]:
    """`all` or repeated names -> policies in the canonical order, without duplicates."""
    chosen: list[str] = []
    for name in names or ["all"]:
        for part in name.split(","):
            p = part.strip()
            if p == "all":
                chosen.extend(POLICIES)
            elif p in POLICIES:
                chosen.append(p)
            else:
                raise UsageError(f"unknown policy {p!r} (known: {', '.join(POLICIES)}, all)")
    return [p for p in POLICIES if p in chosen]


def load_setup(
    trace: str | Path, config: str | Path, scenario: str | Path | None, *, days: float | None = None
) -> SimSetup:
    loaded = load_config_full(config, check_key_files=False)
    policy = compile_policy(loaded)
    return build_setup(loaded.config, policy, load_trace(trace), load_scenario(scenario), days=days)


def run_comparison(
    trace: str | Path,
    config: str | Path,
    scenario: str | Path | None,
    policies: Sequence[str],
    *,
    days: float | None = None,
    rebalance_every_hours: float = 1.0,
    seed: int = 1,
    progress: Callable[[str, float], None] | None = None,
) -> Comparison:
    if not (rebalance_every_hours > 0 and math.isfinite(rebalance_every_hours)):
        raise UsageError(f"--rebalance-every must be a positive number of hours, got {rebalance_every_hours}")
    setup = load_setup(trace, config, scenario, days=days)
    built = [make_policy(name) for name in policies]  # fail early (e.g. qauvern missing)
    bound = lower_bound(setup, seed).figures()
    results = []
    for pol in built:
        cb = None
        if progress is not None:

            def cb(frac: float, name: str = pol.name) -> None:
                progress(name, frac)

        res = simulate(
            setup,
            pol,
            rebalance_every_seconds=max(1, round(rebalance_every_hours * 3600)),
            seed=seed,
            progress=cb,
        )
        res.bound = bound
        results.append(res)
    scen = None if scenario is None else str(scenario)
    return Comparison(setup, tuple(results), str(trace), str(config), scen)


def _hours(v: float) -> str:
    return "-" if math.isnan(v) else f"{v / 3600:.1f} h"


def _over_bound(r: RunResult, value: float, key: str) -> str:
    b = (r.bound or {}).get(key)
    if not b or math.isnan(value):
        return "-"
    return f"x{value / b:.1f}"


ROWS: tuple[tuple[str, str, Callable[[RunResult], str]], ...] = (
    ("used", "purchased time used", lambda r: f"{100 * r.used_share:.1f} %"),
    ("wasted", "wasted while work was queued", lambda r: f"{100 * r.wasted_share:.1f} %"),
    ("wait_median", "median wait (submit -> done)", lambda r: _hours(r.wait_median_seconds)),
    ("wait_p95", "p95 wait", lambda r: _hours(r.wait_p95_seconds)),
    ("limit_hit_jobs", "jobs that hit a limit", lambda r: str(r.limit_hit_jobs)),
    ("limit_failures", "failures at a limit (all attempts)", lambda r: str(r.limit_failures)),
    ("timeouts", "attempts that timed out", lambda r: str(r.timeouts)),
    ("held", "slot-hours held waiting at IBM", lambda r: f"{r.held_wait_slot_hours:.0f}"),
    ("worst_p95", "worst project's p95 wait", lambda r: _hours(r.worst_project_p95_seconds)),
    (
        "median_bound",
        "median / lower bound",
        lambda r: _over_bound(r, r.wait_median_seconds, "bound_median_seconds"),
    ),
    ("p95_bound", "p95 / lower bound", lambda r: _over_bound(r, r.wait_p95_seconds, "bound_p95_seconds")),
    ("unfinished", "jobs not done at the end", lambda r: f"{r.jobs_unfinished} / {r.jobs_total}"),
    ("jain", "Jain fairness (used/entitled)", lambda r: f"{r.jain:.3f}"),
    ("changes", "allocation changes", lambda r: f"{r.allocation_changes} in {r.rebalances_changed} runs"),
)


def comparison_table(cmp: Comparison) -> str:
    headers = ["", *(r.policy for r in cmp.results)]
    body = [[label, *(fn(r) for r in cmp.results)] for _key, label, fn in ROWS]
    widths = [max(len(row[c]) for row in [headers, *body]) for c in range(len(headers))]
    lines = []
    for n, row in enumerate([headers, *body]):
        cells = [row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    s = cmp.setup
    head = (
        f"{Path(cmp.trace).name}: {len(s.jobs)} jobs, {s.days:g} days, budget {s.budget / 96000:g} QAU/28 d, "
        f"{len(s.instance_names)} instances, backends {', '.join(s.backend_names)}"
    )
    bound = cmp.results[0].bound if cmp.results else None
    foot = ""
    if bound:
        foot = (
            f"\nlower bound (any policy): median {_hours(bound['bound_median_seconds'])}, p95 "
            f"{_hours(bound['bound_p95_seconds'])}; clairvoyant SRPT (a reference, not a bound): median "
            f"{_hours(bound['srpt_median_seconds'])}, p95 {_hours(bound['srpt_p95_seconds'])}"
        )
    return head + "\n" + "\n".join(lines) + foot


__all__ = ["DATA_DIR", "Comparison", "comparison_table", "expand_policies", "load_setup", "run_comparison"]
