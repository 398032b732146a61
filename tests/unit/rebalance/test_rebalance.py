"""The rebalancer's pure parts: squeue/sacctmgr parsing (recorded 22.05.8 output), demand aggregation, the
Slurm enforcement plan, the journal and lock, the executor's ordering, failure, resume and rollback."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.config import parse_config
from qauvern_hpc.core.errors import ConfigError, ExitCode, LockHeld, UsageError
from qauvern_hpc.planner.model import AccountSnapshot, DemandSignal, InstanceSettings, InstanceSnapshot
from qauvern_hpc.planner.optimizer import plan_allocations
from qauvern_hpc.rebalance.apply import FaultHook, build_steps, execute, rollback_steps
from qauvern_hpc.rebalance.demand import aggregate_pending, demand_signals
from qauvern_hpc.rebalance.enforce import SlurmPlan, fairshare_targets, mapped_accounts, plan_slurm
from qauvern_hpc.rebalance.journal import Journal, JournalStore, Step
from qauvern_hpc.rebalance.settings import instance_settings, plan_options
from qauvern_hpc.slurm.sacctmgr import Association, Sacctmgr, parse_associations, parse_tres, parse_tres_names
from qauvern_hpc.slurm.squeue import (
    PendingJob,
    parse_license_totals,
    parse_licenses,
    parse_squeue,
    parse_time_limit,
    squeue_argv,
)
from tests.support.ibm import EmulatedIBM, rc_path
from tests.support.paths import UNIT_FIXTURES

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)

FIX = UNIT_FIXTURES / "rebalance"
CRN_A = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:aaaa::"
CRN_B = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:bbbb::"

CONFIG = f"""\
ibm: {{account_id: acct, plan: premium}}
instances:
  - {{name: physics, crn: "{CRN_A}"}}
  - {{name: chem, crn: "{CRN_B}", limit_seconds: 1000}}
resources: [{{name: ibm_torino}}]
rules:
  - {{name: phys, match: {{accounts: [phys*]}}, instance: physics, resources: [ibm_torino]}}
  - {{name: chem, match: {{accounts: [chem, lab]}}, instance: chem, resources: [ibm_torino]}}
  - {{name: anyone, instance: chem, resources: [ibm_torino]}}
"""


def cfg(extra: str = "") -> Any:
    return parse_config(CONFIG + extra, "/tmp/c.yaml", check_key_files=False).config


# -- squeue -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5:00", 300),
        ("1:30:00", 5400),
        ("1-02:00:00", 93600),
        ("2-03", 2 * 86400 + 3 * 3600),
        ("2-03:04", 2 * 86400 + 3 * 3600 + 240),
        ("45", 2700),
        ("UNLIMITED", None),
        ("NOT_SET", None),
        ("INVALID", None),
        ("", None),
        ("1:x", None),
    ],
)
def test_time_limits(text: str, seconds: int | None) -> None:
    assert parse_time_limit(text) == seconds


def test_licenses() -> None:
    assert parse_licenses("qpu_physics:1,qpu:1") == (("qpu_physics", 1), ("qpu", 1))
    assert parse_licenses("(null)") == () and parse_licenses("") == ()
    assert parse_licenses("a*3,b") == (("a", 3), ("b", 1))


def test_recorded_squeue_output() -> None:
    jobs = list(parse_squeue((FIX / "squeue-22.05.8.txt").read_text().splitlines()))
    assert [j.job_id for j in jobs] == ["7", "8", "6", "5_0", "5_1", "5_2"]
    j7 = jobs[0]
    assert (j7.user, j7.account, j7.licenses, j7.time_limit_seconds, j7.priority, j7.reason) == (
        "qcarol",
        "chem",
        (("qpu_chem", 1),),
        300,
        10000,
        "BeginTime",
    )
    assert jobs[1].time_limit_seconds is None and not jobs[1].held
    assert jobs[3].held and jobs[3].submit_epoch == 1795397986
    assert squeue_argv("squeue", clusters=["a", ""])[-2:] == ["-M", "a"]
    totals = parse_license_totals((FIX / "scontrol-licenses-22.05.8.txt").read_text())
    assert totals == {"qpu": 8, "qpu_chem": 1000, "qpu_physics": 1000}


def test_malformed_squeue_line() -> None:
    with pytest.raises(ValueError, match="fields"):
        list(parse_squeue(["1|2|3"]))


# -- sacctmgr -----------------------------------------------------------------------------------------------


def test_recorded_sacctmgr_output() -> None:
    assocs = parse_associations((FIX / "sacctmgr-assoc-22.05.8.txt").read_text())
    chem = next(a for a in assocs if a.account == "chem" and a.is_account)
    assert chem.parent == "root" and chem.fairshare == 40
    assert chem.grp_tres == {"cpu": 8, "license/qpu_chem": 0}
    assert not next(a for a in assocs if a.user == "qcarol").is_account
    names = parse_tres_names((FIX / "sacctmgr-tres-22.05.8.txt").read_text())
    assert {"cpu", "license/qpu_physics", "fs/disk"} <= names
    assert parse_tres("license/x=-1,cpu=") == {"license/x": -1}


def test_sacctmgr_argv_is_idempotent_and_scoped() -> None:
    m = Sacctmgr("/opt/sacctmgr", ["hpc"])
    assert m.modify_account_argv("physics", "hpc", "Fairshare=5") == [
        "/opt/sacctmgr",
        "-i",
        "modify",
        "account",
        "where",
        "name=physics",
        "cluster=hpc",
        "set",
        "Fairshare=5",
    ]


# -- demand -------------------------------------------------------------------------------------------------


def job(
    jid: str,
    lic: str,
    *,
    limit: int | None = 600,
    submit: int = 1000,
    prio: int = 10,
    reason: str = "Priority",
) -> PendingJob:
    return PendingJob(jid, "u", "a", "p", "", parse_licenses(lic), limit, submit, prio, reason)


def test_aggregate_pending_counts_caps_and_ages() -> None:
    jobs = [
        job("1", "qpu_physics:1", limit=600, submit=1000, prio=5),
        job("2", "qpu:1,qpu_physics:1", limit=None, submit=500, prio=9),  # unlimited -> the cap
        job("3", "qpu_physics:1", limit=99999, submit=2000, prio=7, reason="AssocGrpLicense"),
        job("4", "qpu_physics:1", prio=0, reason="JobHeldUser"),  # held: not demand
        job("5", "qpu_ghost:1"),  # unknown instance
        job("6", "(null)"),  # not a QPU job
        job("7", "qpu_chem:1", limit=60, submit=3000),
    ]
    s = aggregate_pending(jobs, "qpu_", ["physics", "chem"], now=5000.0, max_job_seconds=3600)
    p = s.by_instance["physics"]
    assert (p.pending_jobs, p.queued_seconds, p.oldest_pending_age_seconds) == (3, 600 + 3600 + 3600, 4500.0)
    assert (p.max_priority, p.mean_priority, p.held_jobs, p.gated_jobs) == (9, 7.0, 1, 1)
    assert s.by_instance["chem"].queued_seconds == 60
    assert (s.total_jobs, s.qpu_jobs, s.unmapped_jobs) == (7, 6, 1)
    held = aggregate_pending(jobs, "qpu_", ["physics"], now=5000.0, max_job_seconds=3600, count_held=True)
    assert held.by_instance["physics"].pending_jobs == 4


def test_demand_signals_cover_every_instance() -> None:
    s = aggregate_pending([job("1", "qpu_physics:1")], "qpu_", ["physics"], now=1600.0, max_job_seconds=60)
    sig = demand_signals(s.by_instance, {"chem": 12.5}, {"physics": CRN_A, "chem": CRN_B})
    assert sig[CRN_A] == DemandSignal(60.0, 1, 600.0, 0.0)
    assert sig[CRN_B] == DemandSignal(0.0, 0, 0.0, 12.5)


def test_demand_moves_allocation_to_the_queued_instance() -> None:
    c = cfg()
    snap = AccountSnapshot(
        1_000_000,
        0,
        0,
        (
            InstanceSnapshot(CRN_A, "physics", 500_000, None, 0),
            InstanceSnapshot(CRN_B, "chem", 500_000, None, 0),
        ),
    )
    settings = instance_settings(c)
    queue = aggregate_pending(
        [job("1", "qpu_physics:1")], "qpu_", ["physics", "chem"], now=1000.0, max_job_seconds=3600
    )
    demand = demand_signals(queue.by_instance, {}, {"physics": CRN_A, "chem": CRN_B})
    plan = plan_allocations(snap, settings, today=date(2026, 1, 1), options=plan_options(c), demand=demand)
    by = plan.by_crn
    assert by[CRN_B].new_allocation_seconds == 60  # chem: nothing queued or used, back to the minimum
    assert by[CRN_A].new_allocation_seconds > 900_000


# -- config -------------------------------------------------------------------------------------------------


def test_config_refuses_placeholder_weights_unknown_instances_and_targets_without_period() -> None:
    with pytest.raises(ConfigError, match=r"rebalance\.demand"):
        cfg("rebalance: {weights: {physics: 2}}\n")
    with pytest.raises(ConfigError, match="unknown instance 'physic'"):
        cfg("rebalance: {slurm: {accounts: {physic: [p]}}}\n")
    bad = CONFIG.replace("limit_seconds: 1000}", "limit_seconds: 1000, target_usage_seconds: 500}")
    with pytest.raises(ConfigError, match=r"needs rebalance\.balance_period"):
        parse_config(bad, "/tmp/c.yaml", check_key_files=False)
    ok = parse_config(
        bad + "rebalance: {balance_period: {start_date: 2026-01-01, end_date: 2026-02-01}}\n",
        "/tmp/c.yaml",
        check_key_files=False,
    ).config
    s = instance_settings(ok)[1]
    assert s.target_usage_seconds == 500 and s.balance_period is not None


def test_duplicate_crns_are_refused_by_the_settings_builder_too() -> None:
    c = cfg()
    dup = c.model_copy(
        update={"instances": [c.instances[0], c.instances[0].model_copy(update={"name": "x"})]}
    )
    with pytest.raises(ConfigError, match="duplicate CRN"):
        instance_settings(dup)


# -- Slurm enforcement plan --------------------------------------------------------------------------------


def assoc(
    account: str, fs: int | None = 1, parent: str = "root", tres: dict[str, int] | None = None
) -> Association:
    return Association("hpc", account, "", parent, fs, tres or {})


ASSOCS = [
    assoc("root", parent=""),
    assoc("physics", 1),
    assoc("phys-lab", 1, parent="physics"),
    assoc("chem", 1),
    assoc("lab", 1),
    assoc("other", 1),
    Association("hpc", "physics", "alice", "", 1, {}),
]


def test_mapped_accounts_from_rule_globs_and_overrides() -> None:
    c = cfg()
    accounts = [a.account for a in ASSOCS]
    # The catch-all rule (no `accounts`) maps nothing; root never.
    assert mapped_accounts(c, accounts, ["physics", "chem"]) == {
        "physics": ("phys-lab", "physics"),
        "chem": ("chem", "lab"),
    }
    c2 = cfg("rebalance: {slurm: {accounts: {chem: [other]}}}\n")
    assert mapped_accounts(c2, accounts, ["physics", "chem"])["chem"] == ("other",)


def test_fairshare_targets_split_and_sum() -> None:
    got = fairshare_targets({"p": 750, "c": 250}, {"p": ["a", "b"], "c": ["b"]}, 100)
    assert got == {"a": 38, "b": 62}  # 37.5 -> 38; 37.5 + 25 = 62.5 -> 62 (banker's rounding)
    assert fairshare_targets({"p": 0}, {"p": ["a"]}, 100) == {"a": 1}


def _plan(chem_used: int) -> Any:
    c = cfg()
    snap = AccountSnapshot(
        1_000_000,
        0,
        chem_used,
        (
            InstanceSnapshot(CRN_A, "physics", 500_000, None, 100, consumed_24h_seconds=100),
            InstanceSnapshot(CRN_B, "chem", 500_000, 1000, chem_used),
        ),
    )
    return c, plan_allocations(snap, instance_settings(c), today=date(2026, 1, 1), options=plan_options(c))


def test_gate_when_limit_reached_on_the_root_association() -> None:
    c, plan = _plan(1500)
    assert plan.by_crn[CRN_B].limit_reached
    sp = plan_slurm(c, plan, ASSOCS, {"license/qpu_chem", "license/qpu_physics"})
    gates = [ch for ch in sp.changes if ch.kind == "gate"]
    assert [g.account for g in gates] == ["root"]  # Grp limits of root cover every account
    assert all(g.after == 0 and g.tres == "license/qpu_chem" for g in gates)
    assert sp.instances["chem"].gated_after and not sp.instances["physics"].gated_after
    # Apply order: ungates, fairshare, gates.
    kinds = [ch.kind for ch in sp.changes]
    assert kinds == sorted(kinds, key=["fairshare", "gate"].index)


def test_ungate_when_usage_rolled_off_and_nothing_when_in_place() -> None:
    c, plan = _plan(10)
    gated = [assoc("root", 1, "", {"license/qpu_chem": 0}) if a.account == "root" else a for a in ASSOCS]
    sp = plan_slurm(c, plan, gated, {"license/qpu_chem"})
    ungates = [ch for ch in sp.changes if ch.kind == "gate"]
    assert len(ungates) == 1 and all(u.before == 0 and u.after is None for u in ungates)
    # Converged state: no change at all.
    fs = {ch.account: ch.after for ch in sp.changes if ch.kind == "fairshare"}
    done = [assoc(a.account, fs.get(a.account, a.fairshare), a.parent) for a in ASSOCS if a.is_account]
    assert plan_slurm(c, plan, done, {"license/qpu_chem"}).changes == ()


def test_gate_without_tracked_license_is_a_warning() -> None:
    c, plan = _plan(1500)
    sp = plan_slurm(c, plan, ASSOCS, set())
    assert not [ch for ch in sp.changes if ch.kind == "gate"]
    assert any("AccountingStorageTRES" in w for w in sp.warnings)


# -- journal and lock ---------------------------------------------------------------------------------------


def test_journal_roundtrip_and_lock(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "rb")
    j = Journal(
        "r1",
        "rebalance",
        "me@h",
        1.0,
        [Step("s1", "fairshare", {"cluster": "c", "account": "a"}, 1, 2, "why")],
    )
    store.save(j)
    assert store.load("r1").to_dict() == j.to_dict()
    assert [x.run_id for x in store.unfinished()] == ["r1"]
    with pytest.raises(UsageError, match="no rebalance run"):
        store.load("nope")
    with store.lock():
        with pytest.raises(LockHeld, match="another rebalance is running") as err, store.lock():
            pass
        assert err.value.exit_code == ExitCode.LOCKED == 5
    with store.lock():  # released
        pass


# -- executor -----------------------------------------------------------------------------------------------


_EMULATED: list[EmulatedIBM] = []


@pytest.fixture(autouse=True)
def _close_emulated() -> Iterator[None]:
    yield
    while _EMULATED:
        _EMULATED.pop().close()


class FakeSlurm:
    def __init__(self, assocs: list[Association]) -> None:
        self.assocs = {a.account: a for a in assocs}
        self.calls: list[str] = []

    def associations(self) -> list[Association]:
        return list(self.assocs.values())

    def set_fairshare(self, account: str, cluster: str, value: int) -> None:
        self.calls.append(f"fs {account}={value}")
        self.assocs[account] = self.assocs[account]._replace(fairshare=value)

    def set_grp_tres(self, account: str, cluster: str, tres: str, value: int | None) -> None:
        self.calls.append(f"tres {account} {tres}={value}")
        g = dict(self.assocs[account].grp_tres)
        if value is None:
            g.pop(tres, None)
        else:
            g[tres] = value
        self.assocs[account] = self.assocs[account]._replace(grp_tres=g)


class FakeAudit:
    def __init__(self) -> None:
        self.entries: list[Any] = []

    def record_audit(self, run_id: str, actor: str, action: str, **kw: Any) -> int:
        self.entries.append(argparse.Namespace(run_id=run_id, actor=actor, action=action, **kw))
        return len(self.entries)

    def audit_entries(self, run_id: str | None = None) -> list[Any]:
        return [e for e in self.entries if run_id is None or e.run_id == run_id]


def _steps() -> tuple[list[Step], EmulatedIBM, FakeSlurm]:
    c, plan = _plan(1500)  # chem: limit reached -> decrease to its usage; physics grows
    slurm_assocs = [a for a in ASSOCS if a.is_account]
    sp = plan_slurm(c, plan, slurm_assocs, {"license/qpu_chem"})
    steps = build_steps(plan, sp)
    ibm = EmulatedIBM({CRN_A: (500_000, None), CRN_B: (500_000, 1000)})
    _EMULATED.append(ibm)
    return steps, ibm, FakeSlurm(slurm_assocs)


def test_execute_applies_in_order_and_audits_each_step(tmp_path: Path) -> None:
    steps, ibm, slurm = _steps()
    assert [s.kind for s in steps][:2] == ["ibm", "ibm"] and steps[0].after["allocation_seconds"] < 500_000
    audit = FakeAudit()
    store = JournalStore(tmp_path)
    j = Journal("r", "rebalance", "me", 0.0, steps)
    out = execute(j, store, ibm=ibm.client, slurm=slurm, audit=audit, actor="me", fault=FaultHook(""))
    assert out.ok and store.load("r").status == "completed"
    assert ibm.writes() == [CRN_B, CRN_A]  # the decrease first
    assert len(audit.entries) == len(steps) and all(e.after["step"] for e in audit.entries)
    assert slurm.assocs["root"].grp_tres == {"license/qpu_chem": 0}


def test_execute_stops_at_the_first_failed_write(tmp_path: Path) -> None:
    steps, ibm, slurm = _steps()
    # The first (decrease) write fails: the increase must not happen.
    ibm.fail(rc_path(CRN_B), method="PATCH", status=400, message="IBM said no")
    audit = FakeAudit()
    out = execute(
        Journal("r", "rebalance", "me", 0.0, steps),
        JournalStore(tmp_path),
        ibm=ibm.client,
        slurm=slurm,
        audit=audit,
        actor="me",
        fault=FaultHook(""),
    )
    assert not out.ok and out.failed is steps[0] and out.journal.status == "failed"
    assert ibm.writes() == [] and slurm.calls == []
    assert [s.state for s in steps][:2] == ["failed", "pending"]
    assert audit.entries[-1].action == "ibm.update_instance.failed"


class Boom(Exception):
    pass


class RaiseAt(FaultHook):
    """Raises Boom right after the n-th write (IBM or Slurm), before it is recorded."""

    def __init__(self, n: int) -> None:
        super().__init__("")
        self.n = n
        self.writes = 0

    def hit(self, point: str) -> None:
        if point.startswith("after-"):
            self.writes += 1
            if self.writes == self.n:
                raise Boom


def test_resume_after_a_crash_at_every_point_applies_nothing_twice(tmp_path: Path) -> None:
    for crash_after in range(1, 8):
        steps, ibm, slurm = _steps()
        audit = FakeAudit()
        store = JournalStore(tmp_path / str(crash_after))
        j = Journal("r", "rebalance", "me", 0.0, steps)
        # Simulate a kill after the n-th write: a fault that raises instead of exiting.
        with contextlib.suppress(Boom):
            execute(
                j, store, ibm=ibm.client, slurm=slurm, audit=audit, actor="me", fault=RaiseAt(crash_after)
            )
        writes_before = len(ibm.writes()) + len(slurm.calls)
        loaded = store.load("r")

        def live(ibm: EmulatedIBM = ibm) -> dict[str, dict[str, int | None]]:
            return ibm.live()

        out = execute(
            loaded, store, ibm=ibm.client, slurm=slurm, audit=audit, actor="me",
            read_live_ibm=live, resume=True, fault=FaultHook(""),
        )  # fmt: skip
        assert out.ok, (crash_after, loaded.error)
        writes = len(ibm.writes()) + len(slurm.calls)
        assert writes == len(steps), (crash_after, writes_before, writes)  # each step written exactly once
        ids = [e.after["step"] for e in audit.entries]
        assert sorted(ids) == sorted(s.id for s in steps), crash_after


def test_resume_abandons_when_someone_else_changed_a_value(tmp_path: Path) -> None:
    steps, ibm, slurm = _steps()
    store = JournalStore(tmp_path)
    j = Journal("r", "rebalance", "me", 0.0, steps)
    store.save(j)
    ibm.set_live(CRN_B, allocation_seconds=123, limit_seconds=1000)
    out = execute(
        j,
        store,
        ibm=ibm.client,
        slurm=slurm,
        audit=FakeAudit(),
        actor="me",
        read_live_ibm=lambda: ibm.live(),
        resume=True,
        fault=FaultHook(""),
    )
    assert out.journal.status == "abandoned" and "someone else" in (out.journal.error or "")
    assert ibm.writes() == []


def test_rollback_restores_before_values_decreases_first_and_reports_conflicts(tmp_path: Path) -> None:
    steps, ibm, slurm = _steps()
    j = Journal("r", "rebalance", "me", 0.0, steps)
    execute(
        j,
        JournalStore(tmp_path),
        ibm=ibm.client,
        slurm=slurm,
        audit=FakeAudit(),
        actor="me",
        fault=FaultHook(""),
    )
    back, conflicts = rollback_steps(j, ibm.live(), slurm.associations(), force=False)
    assert not conflicts and len(back) == len(steps)
    ibm_back = [s for s in back if s.kind == "ibm"]
    assert (
        ibm_back[0].target["crn"] == CRN_A and ibm_back[0].after["allocation_seconds"] == 500_000
    )  # decrease first
    slurm.set_fairshare("physics", "hpc", 7)
    back, conflicts = rollback_steps(j, ibm.live(), slurm.associations(), force=False)
    assert len(conflicts) == 1 and "physics" in conflicts[0]
    back, conflicts = rollback_steps(j, ibm.live(), slurm.associations(), force=True)
    assert not conflicts and len(back) == len(steps)


def test_confirmation_refused_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from qauvern_hpc.commands import rebalance as cmd

    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(UsageError, match="--yes") as err:
        cmd._confirm(argparse.Namespace(yes=False), 3)
    assert err.value.exit_code == 2
    cmd._confirm(argparse.Namespace(yes=True), 3)


def test_cli_registers_rebalance_and_optimize() -> None:
    from qauvern_hpc.cli import COMMANDS

    assert COMMANDS["rebalance"][0] == COMMANDS["optimize"][0] == "qauvern_hpc.commands.rebalance"


def test_empty_slurm_plan_builds_only_ibm_steps() -> None:
    _c, plan = _plan(0)
    steps = build_steps(plan, SlurmPlan((), {}, ()))
    assert steps and all(s.kind == "ibm" for s in steps)
    assert InstanceSettings(CRN_A).label == CRN_A


# -- dry run: interrupted runs ------------------------------------------------------------------------------


def _interrupted(tmp_path: Path, sub: str = "rb") -> tuple[Journal, JournalStore, EmulatedIBM, FakeSlurm]:
    """A run killed after its first IBM write was recorded and its second reached IBM unrecorded."""
    steps, ibm, slurm = _steps()
    assert [s.kind for s in steps[:2]] == ["ibm", "ibm"] and len(steps) > 2
    steps[0].state = "done"
    ibm.set_live(steps[0].target["crn"], **steps[0].after)
    steps[1].state = "started"
    ibm.set_live(steps[1].target["crn"], **steps[1].after)
    store = JournalStore(tmp_path / sub)
    j = Journal("20260101T000000Z-abcdef", "rebalance", "alice@head", 1.0, steps)
    store.save(j)
    return j, store, ibm, slurm


def test_preview_resume_predicts_what_execute_does(tmp_path: Path) -> None:
    from qauvern_hpc.rebalance.apply import preview_resume

    j, store, ibm, slurm = _interrupted(tmp_path)
    p = preview_resume(store.load(j.run_id), ibm.live(), slurm.associations())
    assert p.action == "finish" and p.conflict is None
    assert [s.id for s in p.found_in_place] == [j.steps[1].id]
    assert [s.id for s in p.to_apply] == [s.id for s in j.steps[2:]]
    assert "the next run finishes it first (1 step(s) found in place" in p.message
    assert "1/" in p.message and j.run_id in p.message
    out = execute(
        store.load(j.run_id), store, ibm=ibm.client, slurm=slurm, audit=FakeAudit(), actor="me",
        read_live_ibm=lambda: ibm.live(), resume=True, fault=FaultHook(""),
    )  # fmt: skip
    assert out.ok
    assert [s.id for s in out.confirmed] == [s.id for s in p.found_in_place]
    assert [s.id for s in out.applied] == [s.id for s in p.to_apply]


def test_preview_resume_abandon_and_stuck(tmp_path: Path) -> None:
    from qauvern_hpc.rebalance.apply import preview_resume

    j, store, ibm, slurm = _interrupted(tmp_path)
    changed = ibm.live()
    changed[j.steps[1].target["crn"]] = {"allocation_seconds": 123, "limit_seconds": None}
    p = preview_resume(j, changed, slurm.associations())
    assert p.action == "abandon" and "someone else" in (p.conflict or "")
    assert "abandons it" in p.message and not p.to_apply
    out = execute(
        store.load(j.run_id), store, ibm=ibm.client, slurm=slurm, audit=FakeAudit(), actor="me",
        read_live_ibm=lambda: changed, resume=True, fault=FaultHook(""),
    )  # fmt: skip
    assert out.journal.status == "abandoned" and ibm.writes() == [] and slurm.calls == []
    # --no-slurm: the IBM step is confirmed, the first Slurm step cannot be checked: the run stays unfinished.
    j, store, ibm, slurm = _interrupted(tmp_path, "rb2")
    p = preview_resume(j, ibm.live(), None)
    assert p.action == "stuck" and "--no-slurm" in (p.conflict or "")
    assert [s.id for s in p.found_in_place] == [j.steps[1].id] and not p.to_apply
    assert "cannot finish it" in p.message
    out = execute(
        store.load(j.run_id), store, ibm=ibm.client, slurm=None, audit=FakeAudit(), actor="me",
        read_live_ibm=lambda: ibm.live(), resume=True, fault=FaultHook(""),
    )  # fmt: skip
    assert out.journal.status == "applying" and "could not read live values" in (out.journal.error or "")


def test_lock_holder_probe_changes_nothing(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "rb")
    assert store.lock_holder() is None  # no lock file yet
    with store.lock():
        holder = store.lock_holder()
        assert holder is not None and "rebalance" in holder
        content = (store.dir / "lock").read_text()
    assert store.lock_holder() is None
    assert (store.dir / "lock").read_text() == content
    with store.lock():  # the probe left no lock behind
        pass


def _dry_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ibm: EmulatedIBM,
    slurm: FakeSlurm,
    *,
    json_out: bool,
    no_slurm: bool = False,
) -> tuple[int, str]:
    import io

    from rich.console import Console

    from qauvern_hpc.commands import rebalance as cmd
    from qauvern_hpc.rebalance.gather import Gathered

    c = cfg()
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG + f"rebalance: {{state_dir: {tmp_path / 'rb'}}}\n")
    snap = AccountSnapshot(
        1_000_000,
        0,
        1500,
        (
            InstanceSnapshot(CRN_A, "physics", 500_000, None, 100, consumed_24h_seconds=100),
            InstanceSnapshot(CRN_B, "chem", 500_000, 1000, 1500),
        ),
    )
    gathered = Gathered(
        now=0.0,
        today=date(2026, 1, 1),
        account=snap,
        settings=instance_settings(c),
        options=plan_options(c),
        queue=None,
        recent_seconds={},
        demand=None,
        associations=slurm.associations(),
        tres_names={"license/qpu_chem"},
    )
    monkeypatch.setattr(cmd, "_clients", lambda args, cfg: (ibm.new_client(), slurm))
    monkeypatch.setattr("qauvern_hpc.rebalance.gather.gather", lambda *a, **kw: gathered)
    out = io.StringIO()
    monkeypatch.setattr(cmd, "_console", lambda args: Console(file=out, width=200, highlight=False))
    args = argparse.Namespace(
        config=str(path), json=json_out, dry_run=True, yes=False, rollback=None, force=False,
        history=False, no_slurm=no_slurm, staging=False, unit=None,
    )  # fmt: skip
    monkeypatch.setattr("builtins.print", lambda *a, **kw: out.write(" ".join(map(str, a)) + "\n"))
    rc = cmd.run(args)
    return rc, out.getvalue()


def test_dry_run_reports_an_interrupted_run_and_leaves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    j, store, ibm, slurm = _interrupted(tmp_path)
    before = (store.runs / f"{j.run_id}.json").read_text()
    rc, text = _dry_run(tmp_path, monkeypatch, ibm, slurm, json_out=True)
    assert rc == 0
    doc = json.loads(text)
    assert doc["status"] == "dry_run" and doc["resumed_runs"] == []
    [run] = doc["interrupted_runs"]
    assert run["run_id"] == j.run_id and run["next_run"] == "finish" and run["actor"] == "alice@head"
    assert run["found_in_place"] == [j.steps[1].id] and run["to_apply"] == [s.id for s in j.steps[2:]]
    assert run["steps_done"] == 1 and run["steps_total"] == len(j.steps)
    assert (store.runs / f"{j.run_id}.json").read_text() == before  # untouched
    assert ibm.writes() == [] and slurm.calls == []

    rc, text = _dry_run(tmp_path, monkeypatch, ibm, slurm, json_out=False)
    assert rc == 0
    assert f"interrupted rebalance run {j.run_id}" in text and "the next run finishes it first" in text
    assert "this dry run leaves it as it is" in text and "rebalance plan" in text

    # Someone changed a value the run wrote: the next run abandons it.
    ibm.set_live(CRN_A, allocation_seconds=4242, limit_seconds=None)
    rc, text = _dry_run(tmp_path, monkeypatch, ibm, slurm, json_out=True)
    [run] = json.loads(text)["interrupted_runs"]
    assert run["next_run"] == "abandon" and "4242" in run["conflict"]

    # A rebalance holds the lock: the run may be in progress, not interrupted.
    with store.lock():
        rc, text = _dry_run(tmp_path, monkeypatch, ibm, slurm, json_out=True)
    [run] = json.loads(text)["interrupted_runs"]
    assert run["next_run"] == "wait" and "exit 5" in run["message"]


def test_dry_run_without_interrupted_runs_says_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    _, ibm, slurm = _steps()
    rc, text = _dry_run(tmp_path, monkeypatch, ibm, slurm, json_out=True)
    assert rc == 0 and json.loads(text)["interrupted_runs"] == []
    rc, text = _dry_run(tmp_path, monkeypatch, ibm, slurm, json_out=False)
    assert "interrupted" not in text
    assert ibm.writes() == []  # a dry run does not write to IBM
