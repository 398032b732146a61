"""IBM Quantum's service plans: their Resource Controller plan ids and the execution modes each allows.

The one table of plan names and ids (the config, the client and the emulator read it). Sources
(docs/ibm-platform.md, "Plans"): internal, premium and paygo are the ids qauvern 0.14 uses; open and flex are
the ids qiskit-ibm-runtime maps plan names from (IBM publishes no id table). The same ids serve production
and staging.

Execution modes: IBM's guides say Open-plan workloads run in job or batch mode only; a dedicated session
is refused there. Every other plan allows all three modes. Standard library only.
"""

from __future__ import annotations

PLAN_IDS: dict[str, str] = {
    "internal": "91b2c828-2952-4f05-aed8-bedf92c6c480",
    "premium": "7f666d17-7893-47d8-bf9d-2b2389fc4dfc",
    "open": "850b21a7-71de-4e53-9441-1abdd202f35d",
    "flex": "53bde9d3-cdbb-46f5-a98f-60ebcadf7260",
    "paygo": "5304b575-3cff-4455-90dc-ae4367762093",
}
"""Plan name -> Resource Controller plan id."""

PLAN_NAMES: dict[str, str] = {v: k for k, v in PLAN_IDS.items()}

SESSION_MODES = ("batch", "dedicated", "job")
"""How a Slurm job reaches a QPU: an IBM batch session, a dedicated session, or no session (job mode)."""

NO_DEDICATED_SESSIONS = frozenset({"open"})
"""Plans on which IBM refuses dedicated sessions (batch sessions and job mode are allowed)."""


def plan_name(value: str) -> str:
    """A plan name or id (any case, blanks around) -> its name. Raises ValueError for an unknown plan."""
    v = value.strip().lower()
    if v in PLAN_IDS:
        return v
    if v in PLAN_NAMES:
        return PLAN_NAMES[v]
    raise ValueError(f"unknown plan {value!r} (use {', '.join(PLAN_IDS)}, or their plan id)")


def default_session_mode(plan: str) -> str:
    """The mode of a resource that names none, on an instance of `plan`: job mode on the Open plan (where
    IBM opens no dedicated session and a job needs none), a batch session elsewhere."""
    return "job" if plan == "open" else "batch"


def allows(plan: str, mode: str) -> bool:
    """Does IBM let an instance on `plan` run in `mode`?"""
    return not (mode == "dedicated" and plan in NO_DEDICATED_SESSIONS)
