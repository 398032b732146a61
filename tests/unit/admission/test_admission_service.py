"""The admission controller's I/O around `decide`: observing IBM and Slurm, writing caps with sacctmgr,
the loop's state file, lock and failsafe, `admit why`, and the rebalancer giving up the gate."""

from __future__ import annotations

import datetime as dt
import io
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from qauvern_hpc.admission.model import (
    AdmissionSettings,
    ControllerState,
    Decision,
    Observation,
    PairDecision,
)
from qauvern_hpc.admission.observe import (
    JobTracker,
    Learnt,
    PairSpec,
    backend_view,
    instance_view,
    jobs_per_license,
    pair_specs,
)
from qauvern_hpc.admission.service import (
    Controller,
    Sources,
    controller_lock,
    explain_job,
    failsafe,
    lock_held,
    read_state,
    settings_of,
)
from qauvern_hpc.admission.write import CapWriter, changes, live_caps
from qauvern_hpc.config import compile_policy, parse_config
from qauvern_hpc.core.errors import ConfigError, LockHeld, ServiceUnavailable
from qauvern_hpc.devtools import qpu_site
from qauvern_hpc.policy.compiled import slurm_license_lines
from qauvern_hpc.rebalance.enforce import plan_slurm
from qauvern_hpc.slurm.sacctmgr import Association
from qauvern_hpc.slurm.squeue import LicenseJob, license_jobs_argv, parse_job_lines
from tests.unit.rebalance.test_rebalance import ASSOCS, _plan
from tests.unit.rebalance.test_rebalance import cfg as rebalance_cfg

FEZ = "qpu_chemistry__ibm_fez"
TORINO = "qpu_physics__ibm_torino"


def site_policy(admission: bool = True, fail_mode: str = "closed") -> Any:
    text = qpu_site.config_text("http://127.0.0.1:1", "/tmp/state", fail_mode=fail_mode)
    if admission:
        text += qpu_site.admission_text({"period": 3})
    return compile_policy(parse_config(text, "/tmp/c.yaml", check_key_files=False))


def test_every_admission_key_of_the_config_reaches_the_controllers_settings() -> None:
    keys = {"period": 45, "max_ibm_wait": "15m", "burst": 3, "open_below": 0.25, "cap_slack": 0}
    keys["lost_backoff_max"] = "2h"
    site = qpu_site.config_text("http://127.0.0.1:1", "/tmp/state")
    text = site + qpu_site.admission_text(keys)
    s = settings_of(parse_config(text, "/tmp/c.yaml", check_key_files=False).config)
    assert (s.period_seconds, s.max_ibm_wait_seconds, s.burst) == (45.0, 900.0, 3)
    assert (s.open_below, s.cap_slack, s.lost_backoff_max_seconds) == (0.25, 0, 7200.0)
    bad = site + qpu_site.admission_text({"open_below": 2})
    with pytest.raises(ConfigError, match="open_below"):
        parse_config(bad, "/tmp/c.yaml", check_key_files=False)


# -- policy, squeue ------------------------------------------------------------------------------------------


def test_policy_carries_pair_licenses_only_with_admission_and_slurm_lines_name_them() -> None:
    on = site_policy()
    assert on.pair_licenses == {
        "physics": {"ibm_torino": TORINO, "ibm_fez": "qpu_physics__ibm_fez"},
        "chemistry": {"ibm_fez": FEZ},
    }
    assert set(qpu_site.PAIR_LICENSES) == {lic for m in on.pair_licenses.values() for lic in m.values()}
    lines = slurm_license_lines(on)
    assert lines[0].startswith("Licenses=") and f"{FEZ}:100000" in lines[0]
    assert lines[1].startswith("AccountingStorageTRES=") and f"license/{TORINO}" in lines[1]
    off = site_policy(admission=False)
    assert off.pair_licenses == {} and slurm_license_lines(off) == []
    assert "pair_licenses" not in off.to_dict()
    assert type(on).from_dict(on.to_dict()).pair_licenses == on.pair_licenses


def test_pair_specs_take_the_resource_fail_mode() -> None:
    specs = {s.license: s for s in pair_specs(site_policy(fail_mode="open"))}
    assert specs[FEZ].fail_mode == "open" and specs[FEZ].backend == "ibm_fez"
    assert specs[FEZ].crn == qpu_site.CRN_CHEM and specs[FEZ].tres == f"license/{FEZ}"


def test_squeue_license_jobs_parse_and_count_per_pair() -> None:
    assert license_jobs_argv(job_ids=["7"])[:5] == ["squeue", "-h", "-r", "-j", "7"]
    assert "PENDING,RUNNING" in license_jobs_argv()
    jobs = parse_job_lines(
        [
            f"1|PENDING|qpu_chemistry:1,{FEZ}:1|100|AssocGrpLicense\n",
            f"2|RUNNING|qpu_chemistry:1,{FEZ}:1|90|None\n",
            f"3|PENDING|{FEZ}:1|50|JobHeldUser\n",  # held: Slurm will not start it by itself
            f"4|PENDING|{TORINO}:1|(null)|Priority\n",
            "CLUSTER: c1\n",
            "\n",
        ]
    )
    assert [j.job_id for j in jobs] == ["1", "2", "3", "4"]
    counts = jobs_per_license(jobs, [FEZ, TORINO, "qpu_x__y"], now=160)
    assert counts[FEZ].pending == 1 and counts[FEZ].running == 1 and counts[FEZ].oldest_pending_age == 60
    assert counts[TORINO].pending == 1 and counts[TORINO].oldest_pending_age is None
    assert counts["qpu_x__y"].pending == 0


# -- IBM views -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason", "status", "message", "serving"),
    [
        ("online", "active", "online", "active", True),
        ("online", None, "online", "active", True),
        ("paused", "maintenance", "paused", "maintenance", False),
        ("maintenance", None, "paused", "maintenance", False),
        ("offline", None, "offline", "offline", False),
        ("online", "calibrating", "online", "calibrating", False),
        ("weird", None, "paused", "weird", False),
    ],
)
def test_backend_view_maps_ibm_status(
    name: str, reason: str | None, status: str, message: str, serving: bool
) -> None:
    device = SimpleNamespace(
        name="ibm_fez",
        status=SimpleNamespace(name=name, reason=reason),
        queue_length=3,
        wait_time_seconds=SimpleNamespace(p50=40, p95=90),
    )
    v = backend_view(device, now=5.0)
    assert (v.status, v.message, v.serving, v.length_queue, v.observed_at) == (
        status,
        message,
        serving,
        3,
        5.0,
    )
    assert (v.wait_p50_seconds, v.wait_p95_seconds) == (40.0, 90.0)


def test_instance_view_limit_reached_from_ibm_or_usage() -> None:
    raw = SimpleNamespace(consumed_seconds=10, allocation_seconds=100, limit_seconds=10, limit_reached=None)
    assert instance_view("a", raw, 1.0).limit_reached
    raw.limit_reached = False
    assert not instance_view("a", raw, 1.0).limit_reached


# -- writing caps --------------------------------------------------------------------------------------------


def test_changes_only_what_differs_and_none_removes() -> None:
    live = {"license/a__b": 0, "license/c__d": 2}
    assert changes({"license/a__b": 0, "license/c__d": None, "license/e__f": 1}, live) == {
        "license/c__d": None,
        "license/e__f": 1,
    }
    assert changes({"license/a__b": None}, {}) == {}


class FakeSacctmgr:
    def __init__(self, root: dict[str, int] | None = None, tracked: set[str] | None = None) -> None:
        self.root = dict(root or {})
        self.tracked = tracked if tracked is not None else {f"license/{FEZ}", f"license/{TORINO}"}
        self.calls: list[tuple[str, str, dict[str, int | None]]] = []
        self.fail = False

    def tres_names(self) -> set[str]:
        return set(self.tracked)

    def associations(self) -> list[Association]:
        if self.fail:
            raise ServiceUnavailable("slurmdbd down")
        return [
            Association("c1", "root", "", "", 1, dict(self.root)),
            Association("c1", "chem", "", "root", 1, {}),
        ]

    def set_grp_tres_items(self, account: str, cluster: str, items: dict[str, int | None]) -> None:
        self.calls.append((account, cluster, dict(items)))
        for t, v in items.items():
            if v is None:
                self.root.pop(t, None)
            else:
                self.root[t] = v


def test_cap_writer_one_call_per_cluster_skips_untracked_and_reports_drift() -> None:
    fake = FakeSacctmgr({f"license/{FEZ}": 3, "license/qpu_physics": 0})
    assert live_caps(fake.associations()) == {"c1": {f"license/{FEZ}": 3}}  # instance gate is not ours
    w = CapWriter(fake)  # type: ignore[arg-type]
    desired = {f"license/{FEZ}": 0, f"license/{TORINO}": None, "license/qpu_x__y": 1}
    r = w.apply({"c1": desired}, {"c1": {f"license/{FEZ}": 0}})
    assert fake.calls == [("root", "c1", {f"license/{FEZ}": 0})]
    assert r.untracked == ["license/qpu_x__y"] and len(r.drift) == 1 and "is 3" in r.drift[0]
    assert w.apply({"c1": desired}, {"c1": {f"license/{FEZ}": 0}}).written == {}  # in place: no call
    assert w.apply({"other": {f"license/{FEZ}": 5}}).written == {}  # a cluster not live: not written
    assert len(fake.calls) == 1


# -- the loop ------------------------------------------------------------------------------------------------


class FakeIbm:
    def __init__(self) -> None:
        self.status = "online"
        self.down = False
        self.jobs: list[Any] = []
        self.sessions: dict[str, list[Any]] = {}  # session id -> its jobs (final states included)
        self.session_down = False
        self.with_wait: list[bool] = []

    def instance_usage(self, crn: str) -> Any:
        if self.down:
            raise ServiceUnavailable("IBM down")
        return SimpleNamespace(
            consumed_seconds=0, allocation_seconds=100, limit_seconds=None, limit_reached=False
        )

    def backends(self, crn: str, *, with_wait: bool = True) -> list[Any]:
        self.with_wait.append(with_wait)
        st = SimpleNamespace(name=self.status, reason=None)
        return [
            SimpleNamespace(name=n, status=st, queue_length=0, wait_time_seconds=None) for n in ("ibm_fez",)
        ]

    def pending_jobs(self, crn: str, backend: str | None = None, *, page_size: int = 100) -> list[Any]:
        if self.down:
            raise ServiceUnavailable("IBM down")
        return list(self.jobs)

    def session_jobs(self, crn: str, session_id: str, *, page_size: int = 100) -> list[Any]:
        if self.session_down:
            raise ServiceUnavailable("IBM down")
        return list(self.sessions.get(session_id, ()))


def stand_in_decide(
    obs: Observation, state: ControllerState, settings: AdmissionSettings
) -> tuple[Decision, ControllerState]:
    """Closes pairs of not-serving backends, opens the others; holds when IBM is stale (tests only)."""
    stale = obs.ibm_read_at is None or obs.now - obs.ibm_read_at > 0
    out = []
    for p in obs.pairs:
        b = obs.backends.get(p.backend)
        cap = None if b is not None and b.serving else 0
        reason = "hold" if stale else ("open" if cap is None else "backend_not_serving")
        detail = f"backend {p.backend} {b.status if b else '?'}"
        out.append(PairDecision(p.instance, p.backend, cap, reason, detail, obs.now))
    return Decision(obs.now, tuple(out)), state


def _controller(
    tmp_path: Path, jobs: list[LicenseJob], clock: list[float]
) -> tuple[Controller, FakeIbm, FakeSacctmgr]:
    ibm, fake = FakeIbm(), FakeSacctmgr()
    specs = [PairSpec("chemistry", "ibm_fez", FEZ, "closed", qpu_site.CRN_CHEM)]
    sources = Sources(ibm=ibm, jobs=lambda: list(jobs), writer=CapWriter(fake))  # type: ignore[arg-type]
    c = Controller(
        specs, AdmissionSettings(period_seconds=3), tmp_path, sources, decide_fn=stand_in_decide,
        clock=lambda: clock[0], log=io.StringIO(),
    )  # fmt: skip
    return c, ibm, fake


def test_period_writes_on_change_only_and_records_state(tmp_path: Path) -> None:
    clock = [1000.0]
    jobs = [LicenseJob("5", "PENDING", ((FEZ, 1),), 990, "AssocGrpLicense")]
    c, ibm, fake = _controller(tmp_path, jobs, clock)
    ibm.status = "paused"
    ibm.jobs = [
        SimpleNamespace(backend="ibm_fez", status="Queued", created=dt.datetime.fromtimestamp(940, dt.UTC)),
        SimpleNamespace(backend="ibm_fez", status="Running", created=None),
        SimpleNamespace(backend="ibm_torino", status="Queued", created=None),  # not a pair of chemistry
    ]
    seen: list[Observation] = []
    c.decide_fn = lambda o, s, st: (seen.append(o), stand_in_decide(o, s, st))[1]
    r = c.step()
    assert (seen[0].pairs[0].ibm_queued, seen[0].pairs[0].ibm_running) == (1, 1)
    assert seen[0].pairs[0].oldest_ibm_queued_age == 60.0
    assert r.decided and r.written == {"c1": {f"license/{FEZ}": 0}} and fake.root == {f"license/{FEZ}": 0}
    st = read_state(tmp_path)
    assert st is not None and st["heartbeat"] == 1000.0 and st["pairs"][0]["cap"] == 0
    assert (
        st["pairs"][0]["pending"] == 1
        and (tmp_path / "admission" / "state.json").stat().st_mode & 0o777 == 0o644
    )
    clock[0] += 3
    assert c.step().written == {}  # nothing changed: no sacctmgr call
    assert len(fake.calls) == 1
    ibm.status = "online"
    clock[0] += 3
    assert c.step().written == {"c1": {f"license/{FEZ}": None}}
    # A restarted controller resumes the views and the applied caps from the state file.
    c2, _, _ = _controller(tmp_path, jobs, clock)
    assert c2.applied == {"c1": {f"license/{FEZ}": None}} and c2.ibm_read_at == 1006.0
    why = explain_job(jobs[0], read_state(tmp_path), now=1007.0)
    assert any("may start on ibm_fez" in line for line in why["lines"])


def test_ibm_down_holds_views_and_slurm_down_writes_nothing(tmp_path: Path) -> None:
    clock = [1000.0]
    c, ibm, fake = _controller(tmp_path, [], clock)
    c.step()
    ibm.down = True
    clock[0] += 3
    r = c.step()
    assert not r.ibm_ok and r.decided and r.pairs[0]["reason"] == "hold" and c.ibm_read_at == 1000.0
    st = read_state(tmp_path)
    assert st is not None and st["ibm"]["error"] and st["ibm"]["failing_since"] == 1003.0
    fake.fail = True
    clock[0] += 3
    r = c.step()
    assert r.decided and r.errors and "sacctmgr" in r.errors[-1]


def _job(
    jid: str, status: str, created: float | None, session: str | None = "s1", q: float | None = None
) -> Any:
    at = dt.datetime.fromtimestamp(created, dt.UTC) if created is not None else None
    usage = SimpleNamespace(quantum_seconds=q)
    return SimpleNamespace(
        id=jid, backend="ibm_fez", status=status, created=at, session_id=session, usage=usage
    )


def test_job_tracker_learns_starts_and_service_times_from_consecutive_reads() -> None:
    ibm = FakeIbm()
    tracker = JobTracker(max_tries=2)
    lic_of = {("chemistry", "ibm_fez"): FEZ}

    def read(now: float, *jobs: Any) -> dict[str, Learnt]:
        return tracker.update(ibm, {"chemistry": ("crn", list(jobs))}, lic_of, now)  # type: ignore[arg-type]

    # first read: nothing to compare with
    first = [_job("A", "Queued", 900), _job("B", "Running", 800), _job("C", "Queued", 950)]
    first += [_job("D", "Queued", 960, session=None), _job("F", "Queued", 970, session="s9")]
    assert read(1000, *first) == {}
    # A started (between 1000 and 1030: waited ~115 s), E is new and already running (created 1010: ~10 s),
    # B finished (120 quantum s), C was cancelled while queued, D has no session (not readable), F unknown
    ibm.sessions["s1"] = [_job("A", "Running", 900, q=5.0), _job("B", "Completed", 800, q=120.0)]
    ibm.sessions["s1"].append(_job("C", "Cancelled", 950, q=0.0))
    got = read(1030, _job("A", "Running", 900), _job("E", "Running", 1010))
    assert got == {  # C left the queue unstarted after ~65 s: a loss (decide backs off only after long ones)
        FEZ: Learnt(
            done_jobs=1,
            done_quantum_seconds=120.0,
            started_jobs=2,
            started_wait_seconds=125.0,
            lost_jobs=1,
            lost_wait_seconds=65.0,
        )
    }
    assert set(tracker.gone) == {"F"}  # its final state is looked for again next period
    # A leaves while IBM's session list cannot be read: retried, then learnt once
    ibm.session_down = True
    assert read(1060, _job("E", "Running", 1010)) == {}
    assert set(tracker.gone) == {"A"}  # F given up after max_tries
    ibm.session_down = False
    ibm.sessions["s1"] = [_job("A", "Completed", 900, q=80.0)]
    assert read(1090, _job("E", "Running", 1010)) == {FEZ: Learnt(done_jobs=1, done_quantum_seconds=80.0)}
    assert tracker.gone == {} and read(1120, _job("E", "Running", 1010)) == {}
    # a queued job that ran and finished between two reads: started and done
    read(1150, _job("G", "Queued", 1140), _job("E", "Running", 1010))
    ibm.sessions["s1"] = [_job("G", "Completed", 1140, q=30.0)]
    got = read(1180, _job("E", "Running", 1010))
    assert got == {
        FEZ: Learnt(done_jobs=1, done_quantum_seconds=30.0, started_jobs=1, started_wait_seconds=25.0)
    }


def test_controller_feeds_decide_what_was_learnt_once_and_asks_for_the_wait_estimate(tmp_path: Path) -> None:
    clock = [1000.0]
    c, ibm, _ = _controller(tmp_path, [], clock)
    seen: list[Observation] = []
    c.decide_fn = lambda o, s, st: (seen.append(o), stand_in_decide(o, s, st))[1]
    ibm.jobs = [_job("A", "Queued", 990)]
    c.step()
    assert ibm.with_wait == [True]
    clock[0] += 3
    ibm.jobs = []
    ibm.sessions["s1"] = [_job("A", "Completed", 990, q=40.0)]
    c.step()
    p = seen[-1].pairs[0]
    assert (p.done_jobs, p.done_quantum_seconds, p.started_jobs) == (1, 40.0, 1)
    assert p.started_wait_seconds == 11.5  # left the queue between 1000 and 1003
    ibm.down = True  # the held views teach nothing again
    clock[0] += 3
    c.step()
    p = seen[-1].pairs[0]
    assert (p.done_jobs, p.started_jobs, p.ibm_queued) == (0, 0, 0)


def test_run_stops_on_event_and_lock_is_exclusive(tmp_path: Path) -> None:
    clock = [1000.0]
    c, _, _ = _controller(tmp_path, [], clock)
    with controller_lock(tmp_path):
        assert lock_held(tmp_path)
        with pytest.raises(LockHeld), controller_lock(tmp_path):
            pass
        stop = threading.Event()
        stop.set()
        assert c.run(stop) == 0
        assert c.run(threading.Event(), max_periods=2) == 2
    assert not lock_held(tmp_path)


def test_failsafe_applies_fail_modes_and_why_names_the_backend(tmp_path: Path) -> None:
    specs = [
        PairSpec("chemistry", "ibm_fez", FEZ, "closed", qpu_site.CRN_CHEM),
        PairSpec("physics", "ibm_torino", TORINO, "open", qpu_site.CRN_PHYS),
    ]
    fake = FakeSacctmgr({f"license/{TORINO}": 0})
    out = failsafe(specs, tmp_path, CapWriter(fake), now=50.0)  # type: ignore[arg-type]
    assert fake.root == {f"license/{FEZ}": 0}
    assert [p["reason"] for p in out["pairs"]] == ["failed_closed", "failed_open"]
    st = read_state(tmp_path)
    job = LicenseJob("9", "PENDING", (("qpu_chemistry", 1), (FEZ, 1)), 10, "AssocGrpLicense")
    why = explain_job(job, st, now=60.0)
    assert "waits for ibm_fez (instance chemistry)" in why["lines"][0] and "fails closed" in why["lines"][0]
    assert any("never run" in line or "decides every" in line for line in why["lines"])


# -- the rebalancer gives the gate up ------------------------------------------------------------------------


def test_rebalancer_sets_no_gate_with_admission_but_removes_an_old_one() -> None:
    _, plan = _plan(1500)
    c = rebalance_cfg("admission: {enabled: true}\n")
    sp = plan_slurm(c, plan, ASSOCS, {"license/qpu_chem", "license/qpu_physics"})
    assert not [ch for ch in sp.changes if ch.kind == "gate"]
    gated = [
        Association("hpc", "root", "", "", 1, {"license/qpu_chem": 0}) if a.account == "root" else a
        for a in ASSOCS
    ]
    sp = plan_slurm(c, plan, gated, {"license/qpu_chem"})
    assert [(ch.kind, ch.after) for ch in sp.changes if ch.kind == "gate"] == [("gate", None)]


# -- metrics and doctor --------------------------------------------------------------------------------------


def _state(heartbeat: float, ibm_error: str | None = None) -> dict[str, Any]:
    return {
        "format": 1,
        "heartbeat": heartbeat,
        "decided_at": heartbeat,
        "period_seconds": 30,
        "ibm": {"read_at": heartbeat - 5, "error": ibm_error},
        "writes_total": 7,
        "pairs": [
            {"instance": "chemistry", "backend": "ibm_fez", "license": FEZ, "cap": 0,
             "reason": "backend_not_serving", "detail": "ibm_fez is paused (maintenance)", "running": 0,
             "pending": 2},
            {"instance": "physics", "backend": "ibm_torino", "license": TORINO, "cap": None, "reason": "open",
             "detail": "", "running": 1, "pending": 0},
        ],
    }  # fmt: skip


def test_metrics_show_each_pair_cap_reason_and_heartbeat(tmp_path: Path) -> None:
    from qauvern_hpc.admission.service import write_state
    from qauvern_hpc.ops.metrics import admission_source, gather, render

    write_state(tmp_path, _state(1000.0))
    cfg = SimpleNamespace(slurm=SimpleNamespace(state_dir=tmp_path))
    text = render(gather({"admission": admission_source(cfg, now=1012.0)}, now=1012.0))  # type: ignore[arg-type]
    assert 'qauvern_hpc_admission_cap{backend="ibm_fez",instance="chemistry"} 0' in text
    assert 'qauvern_hpc_admission_cap{backend="ibm_torino",instance="physics"} -1' in text
    assert 'qauvern_hpc_admission_pending{backend="ibm_fez",instance="chemistry"} 2' in text
    assert 'reason="backend_not_serving"} 1' in text
    assert "qauvern_hpc_admission_heartbeat_age_seconds 12" in text
    assert "qauvern_hpc_admission_last_decision_timestamp_seconds 1000" in text
    assert "qauvern_hpc_admission_writes 7" in text
    assert 'qauvern_hpc_scrape_error{source="admission"} 0' in text
    empty = SimpleNamespace(slurm=SimpleNamespace(state_dir=tmp_path / "none"))
    text = render(gather({"admission": admission_source(empty)}))  # type: ignore[arg-type]
    assert 'qauvern_hpc_scrape_error{source="admission"} 1' in text


def test_doctor_warns_when_the_heartbeat_is_older_than_three_periods() -> None:
    from qauvern_hpc.ops.doctor import check_admission, check_pair_licenses

    ok = check_admission(_state(1000.0), now=1050.0, period=30, sched_interval="2s")
    assert ok.status == "ok" and "chemistry/ibm_fez cap 0 (backend_not_serving)" in ok.detail
    assert "physics/ibm_torino no limit (open)" in ok.detail and "sched_interval 2s" in ok.detail
    stale = check_admission(_state(1000.0), now=1000.0 + 91, period=30)
    assert stale.status == "warn" and "last decided" in stale.detail and "systemctl" in stale.hint
    assert check_admission(None, now=0, period=30).status == "warn"
    assert check_admission(_state(1000.0, "503"), now=1001.0, period=30).status == "warn"
    conf = {"Licenses": f"qpu:8,{FEZ}:100", "AccountingStorageTRES": f"license/{FEZ}"}
    assert check_pair_licenses(conf, [FEZ]).status == "ok"
    bad = check_pair_licenses(conf, [FEZ, TORINO])
    assert bad.status == "fail" and TORINO in bad.detail and "render-policy" in bad.hint
