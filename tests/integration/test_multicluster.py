"""Two real clusters on one slurmdbd (Slurm's multi-cluster setup), one PostgreSQL ledger: `collect` with
`slurm.cluster: [qa, qb]` attributes the QPU jobs of both exactly once, a cluster whose pull fails leaves
the other's accounting complete and is caught up on the next run, and two collectors sharing the ledger
from two state dirs (two hosts) never run together. `rebalance` reads both queues (a burst on qb moves
allocation in one run), gates an exhausted instance on both clusters' root associations (its jobs on qb
pend with AssocGrpLicense, the other instance's run), and two rebalancers on the ledger never both apply.

Cluster qb is a second sandbox on qa's munged/MariaDB/slurmdbd (`accounting_of`), with its own slurmctld,
slurmd, job ids from 100000 and its own site (hooks, state dir, hookd) on the same IBM emulator.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.accounting.ledger import open_ledger
from qauvern_hpc.accounting.ledger.models import StoredRun
from qauvern_hpc.devtools import qpu_site
from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.devtools.sandbox import Sandbox
from qauvern_hpc.slurm.sacctmgr import Association, parse_associations
from tests.unit.accounting.test_ledger import PgServer, pg_server  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
INSTANCES = (("physics", qpu_site.CRN_PHYS), ("chemistry", qpu_site.CRN_CHEM))


@dataclass
class Cluster:
    sb: Sandbox
    site: qpu_site.Site
    job_script: Path


@dataclass
class Multi:
    a: Cluster
    b: Cluster
    emu: Any
    url: str
    config: Path  # site A's config with slurm.cluster [qa, qb] and the PostgreSQL ledger
    t0: datetime

    def cli(self, *args: str, config: Path | None = None) -> tuple[int, Any, str]:
        import json

        proc = subprocess.run(
            [sys.executable, "-m", "qauvern_hpc", "-c", str(config or self.config), "--json", *args],
            env={**os.environ, "SLURM_CONF": str(self.a.sb.slurm_conf)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        doc = json.loads(proc.stdout) if proc.stdout.strip().startswith(("{", "[")) else proc.stdout
        return proc.returncode, doc, proc.stderr

    def config_with(
        self,
        name: str,
        *,
        state_dir: Path | None = None,
        sacct: Path | None = None,
        squeue: Path | None = None,
        chem_limit: int | None = None,
    ) -> Path:
        """A copy of the config: `state_dir` for the hooks' and the rebalancer's state (another host),
        another sacct or squeue, a limit on chemistry."""
        text = self.config.read_text()
        if state_dir:
            for old, new in (
                (f"  state_dir: {self.a.site.state_dir}\n", f"  state_dir: {state_dir}\n"),
                (
                    f"  state_dir: {self.a.site.directory}/rebalance\n",
                    f"  state_dir: {state_dir}/rebalance\n",
                ),
            ):
                assert old in text
                text = text.replace(old, new, 1)
        if sacct:
            text = text.replace("\nslurm:\n", f"\nslurm:\n  sacct: {sacct}\n", 1)
        if squeue:
            text = text.replace("\nslurm:\n", f"\nslurm:\n  squeue: {squeue}\n", 1)
        if chem_limit is not None:
            old = f'    crn: "{qpu_site.CRN_CHEM}"\n'
            assert old in text
            text = text.replace(old, f"{old}    limit_seconds: {chem_limit}\n", 1)
        path = self.config.parent / name
        path.write_text(text)
        return path

    def rows(self) -> list[StoredRun]:
        with open_ledger(self.url) as ledger:
            return ledger.runs()

    def high_water(self, cluster: str) -> int | None:
        with open_ledger(self.url) as ledger:
            return ledger.get_high_water(cluster)

    def run(
        self, c: Cluster, user: str, account: str, qpu: str, seconds: int, partition: str | None = None
    ) -> int:
        return c.sb.submit(
            f"/usr/bin/python3 {c.job_script} {seconds}\n",
            user=user,
            account=account,
            partition=partition,
            extra_args=[f"--qpu={qpu}"],
        )

    def settle(self, jobs: list[tuple[Cluster, int]]) -> None:
        for c, j in jobs:
            c.sb.wait_job(j, states=FINAL_STATES, timeout=120)
        assert _wait(lambda: all(s["state"] == "closed" for s in self.emu.state.snapshot()["sessions"]))
        for c, j in jobs:  # the AdminComment update is asynchronous
            assert _wait(
                lambda c=c, j=j: "qauvern:v1" in c.sb.job(j, ("JobID", "AdminComment"))["AdminComment"]
            )

    def assert_ledger_matches_ibm(self) -> None:
        """Every second the emulator charged since the tests began is in the ledger, once."""
        rows = self.rows()
        keys = [(r.cluster, r.job_id_raw, r.run, r.resource) for r in rows]
        assert len(keys) == len(set(keys))
        for name, crn in INSTANCES:
            ours = sum(r.quantum_seconds or 0.0 for r in rows if r.instance == name)
            ibm = float(self.emu.state.usage_seconds(crn, self.t0, datetime.now(UTC)))
            assert ours == pytest.approx(ibm, abs=0.01), name


def _wait(pred: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.3)
    return pred()


def _cluster(sb: Sandbox, site: qpu_site.Site) -> Cluster:
    qpu_site.set_hook_env(site, {"SLURM_CONF": str(sb.slurm_conf)})
    script = sb.jobs_dir / "qpu_job.py"
    shutil.copy(qpu_site.JOB_SCRIPT, script)
    script.chmod(0o755)
    return Cluster(sb, site, script)


@pytest.fixture(scope="module")
def multi(sandbox_factory: Callable[..., Sandbox], pg_server: PgServer) -> Iterator[Multi]:  # noqa: F811
    top = Path(tempfile.mkdtemp(prefix="qauvern-hpc-multi-", dir="/tmp"))
    top.chmod(0o755)
    url = pg_server.new_database()
    with run_emulator(qpu_site.emulator_seed(), clock="real") as emu:
        site_a = qpu_site.write_site(top / "a", emu.base_url, operations=True)
        site_b = qpu_site.write_site(top / "b", emu.base_url, operations=True)
        # job_submit.lua adds the per-instance license (the rebalancer's queue and gate), on both clusters
        licensed = {**qpu_site.SANDBOX_SETTINGS}
        hooks_a = qpu_site.sandbox_hooks(site_a)
        hooks_a = replace(hooks_a, env={**hooks_a.env, **qpu_site.license_env()})
        hooks_b = qpu_site.sandbox_hooks(site_b, plugin=site_a.directory / "qpu.so")
        hooks_b = replace(hooks_b, env={**hooks_b.env, **qpu_site.license_env()})
        settings = {"CLUSTER": "qa", **licensed}
        sb_a = sandbox_factory("mc-a", hooks=hooks_a, settings=settings, accounts=qpu_site.ACCOUNTS)
        sb_b = sandbox_factory(
            "mc-b",
            hooks=hooks_b,
            settings={"CLUSTER": "qb", **licensed},
            extra_conf=["FirstJobId=100000"],
            accounts=qpu_site.ACCOUNTS,
            accounting_of=sb_a,
        )
        text = site_a.config.read_text()
        head, _, tail = text.partition("ledger:\n  url: ")
        text = head + f"ledger:\n  url: {url}\n" + tail.partition("\n")[2]
        text = text.replace("\nslurm:\n", "\nslurm:\n  cluster: [qa, qb]\n", 1)
        config = site_a.directory / "config-multi.yaml"  # beside its key file (a relative path)
        config.write_text(text)
        try:
            yield Multi(_cluster(sb_a, site_a), _cluster(sb_b, site_b), emu, url, config, datetime.now(UTC))
        finally:
            qpu_site.stop_hookd(site_a)
            qpu_site.stop_hookd(site_b)
    shutil.rmtree(top, ignore_errors=True)


def test_jobs_on_both_clusters_are_attributed_exactly_once(multi: Multi) -> None:
    a, b = multi.a, multi.b
    jobs = [
        (a, multi.run(a, "qalice", "physics", "ibm_torino", 2)),
        (a, multi.run(a, "qcarol", "chem", "ibm_fez", 1, partition="quantum")),
        (b, multi.run(b, "qbob", "physics", "ibm_torino", 2)),
        (b, multi.run(b, "qcarol", "chem", "ibm_fez", 1, partition="quantum")),
    ]
    assert [j for _, j in jobs][2] >= 100000  # qb's own job ids
    multi.settle(jobs)

    rc, doc, err = multi.cli("collect")
    assert rc == 0, err
    assert [p["cluster"] for p in doc["clusters"]] == ["qa", "qb"]
    rows = multi.rows()
    where = {(r.job_id_raw, r.resource): r.cluster for r in rows}
    assert where == {
        (jobs[0][1], "ibm_torino"): "qa",
        (jobs[1][1], "ibm_fez"): "qa",
        (jobs[2][1], "ibm_torino"): "qb",
        (jobs[3][1], "ibm_fez"): "qb",
    }
    assert all(r.usage_state == "final" and (r.quantum_seconds or 0) > 0 for r in rows)
    multi.assert_ledger_matches_ibm()
    assert multi.high_water("qa") and multi.high_water("qb")

    rc, doc, err = multi.cli("collect")  # again: nothing changes, nothing is counted twice
    assert rc == 0, err
    assert sum(p["changed"] for p in doc["clusters"]) == 0
    multi.assert_ledger_matches_ibm()

    rc, doc, err = multi.cli("usage", "--by", "cluster", "--unit", "seconds")
    assert rc == 0, err
    by = {r["cluster"]: r["quantum_seconds"] for r in doc["rows"]}
    for name in ("qa", "qb"):
        assert by[name] == pytest.approx(
            sum(r.quantum_seconds or 0 for r in rows if r.cluster == name), abs=1e-3
        )


def test_a_failing_cluster_leaves_the_other_complete_and_is_caught_up(multi: Multi) -> None:
    a, b = multi.a, multi.b
    jobs = [
        (a, multi.run(a, "qbob", "physics", "ibm_torino", 1)),
        (b, multi.run(b, "qalice", "physics", "ibm_fez", 1)),
    ]
    multi.settle(jobs)
    # sacct reads slurmdbd, not slurmctld: qa's controller being down stops nothing. What does fail a
    # cluster's pull is sacct -M qa itself failing (slurmdbd refusing that cluster, a timeout): simulated.
    wrapper = multi.config.parent / "sacct-failing-for-qa"
    wrapper.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do\n'
        '  [ "$a" = "--clusters=qa" ] && { echo "sacct: error: qa unreachable" >&2; exit 1; }\n'
        "done\n"
        f'exec {shutil.which("sacct")} "$@"\n'
    )
    wrapper.chmod(0o755)
    mark_a = multi.high_water("qa")
    ctld = a.sb.status()["slurmctld"]
    assert ctld
    os.kill(ctld, 15)
    try:
        assert _wait(lambda: a.sb.status()["slurmctld"] is None, 30)
        rc, doc, err = multi.cli("collect", config=multi.config_with("config-failing.yaml", sacct=wrapper))
        assert rc == 1 and "qa unreachable" in err, err  # sacct's own failure (not "unavailable"): exit 1
        assert len(doc["pull_errors"]) == 1 and doc["pull_errors"][0].startswith("qa:")
        got = {(r.cluster, r.job_id_raw) for r in multi.rows()}
        assert ("qb", jobs[1][1]) in got and ("qa", jobs[0][1]) not in got
        assert multi.high_water("qa") == mark_a
        # The real sacct with qa's slurmctld still down: both clusters complete.
        rc, doc, err = multi.cli("collect")
        assert rc == 0, err
    finally:
        a.sb.up()
    got = {(r.cluster, r.job_id_raw) for r in multi.rows()}
    assert ("qa", jobs[0][1]) in got and ("qb", jobs[1][1]) in got
    assert (multi.high_water("qa") or 0) > (mark_a or 0)
    multi.assert_ledger_matches_ibm()


def test_two_collectors_sharing_the_postgresql_ledger_never_both_run(multi: Multi) -> None:
    """Two "hosts": the same ledger, different state dirs (so different flock files). The first collect is
    slowed down inside its run; the second, started meanwhile, is refused with exit 5."""
    flag = multi.config.parent / "slow-collect-started"
    slow = multi.config.parent / "sacct-slow"
    slow.write_text(f'#!/bin/sh\ntouch {flag}\nsleep 4\nexec {shutil.which("sacct")} "$@"\n')
    slow.chmod(0o755)
    host1 = multi.config_with("config-host1.yaml", state_dir=multi.config.parent / "host1", sacct=slow)
    host2 = multi.config_with("config-host2.yaml", state_dir=multi.config.parent / "host2")
    first = subprocess.Popen(
        [sys.executable, "-m", "qauvern_hpc", "-c", str(host1), "--json", "collect"],
        env={**os.environ, "SLURM_CONF": str(multi.a.sb.slurm_conf)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait(lambda: flag.exists() or first.poll() is not None, 60), "the first collect never ran"
        assert flag.exists(), first.communicate()[1]
        rc, _, err = multi.cli("collect", config=host2)
        assert rc == 5 and "another collect is running" in err and "qauvern-hpc collect pid" in err, err
    finally:
        _, err1 = first.communicate(timeout=120)
    assert first.returncode == 0, err1
    multi.assert_ledger_matches_ibm()


# -- rebalance on both clusters ------------------------------------------------------------------------------

CHEM_LIMIT = 4000


def _allocation(multi: Multi, crn: str) -> int:
    return next(
        int(i["usage_allocation_seconds"]) for i in multi.emu.state.snapshot()["instances"] if i["crn"] == crn
    )


def _roots(multi: Multi) -> dict[str, Association]:
    out = multi.a.sb.run(
        ["sacctmgr", "-n", "-P", "show", "assoc", "where", "cluster=qa,qb",
         "format=cluster,account,user,parentname,fairshare,grptres"],
        check=True,
    ).stdout  # fmt: skip
    return {a.cluster: a for a in parse_associations(out) if a.is_account and a.account == "root"}


def _sessions(multi: Multi, crn: str) -> list[Any]:
    return [s for s in multi.emu.state.snapshot()["sessions"] if s["instance"] == crn]


def _squeue(c: Cluster, job: int) -> tuple[str, str, str]:
    out = c.sb.run(["squeue", "-h", "-j", str(job), "-o", "%T|%r|%W"]).stdout.strip()
    state, _, rest = out.partition("|")
    reason, _, lic = rest.partition("|")
    return state, reason, lic


def test_a_burst_on_qb_moves_allocation_in_one_rebalance_and_the_gate_holds_jobs_on_qb(multi: Multi) -> None:
    """One rebalance: four chemistry jobs pending on qb raise chemistry's allocation (physics holds the pool
    after the tests above; one squeue per cluster, each job tagged with it). The next, with chemistry over
    its limit, gates chemistry on the root
    association of BOTH clusters (IBM's limit is the instance's); on qb a chemistry job then pends with
    AssocGrpLicense while a physics job runs."""
    a, b = multi.a, multi.b
    config = multi.config_with("config-rebalance.yaml", chem_limit=CHEM_LIMIT)
    rc, doc, err = multi.cli("rebalance", "--yes")  # settle what the tests above used (no chemistry limit)
    assert rc == 0, err
    before = _allocation(multi, qpu_site.CRN_CHEM)
    burst = [
        b.sb.submit("echo never\n", user="qcarol", account="chem", partition="quantum",
                    extra_args=["--qpu=ibm_fez", "--begin=now+1hour", "-t", "20"])
        for _ in range(4)
    ]  # fmt: skip
    late: list[int] = []
    try:
        assert _wait(lambda: all(_squeue(b, j)[0] == "PENDING" for j in burst), 30)
        assert all("qpu_chemistry" in _squeue(b, j)[2] for j in burst)
        rc, doc, err = multi.cli("rebalance", "--yes")
        assert rc == 0 and doc["status"] == "completed", err
        row = next(r for r in doc["instances"] if r["instance"] == "chemistry")
        assert row["queue"]["pending_jobs"] == 4 and row["queue"]["by_cluster"] == {"qb": 4}
        assert "4 jobs" in row["why"]
        assert _allocation(multi, qpu_site.CRN_CHEM) > before
        # chemistry over its limit, with usage older than the tests (the ledger checks above stay exact)
        multi.emu.state.add_usage(
            qpu_site.CRN_CHEM, CHEM_LIMIT + 1000, at=multi.emu.clock.now() - timedelta(days=28, seconds=-600)
        )
        rc, doc, err = multi.cli("rebalance", "--yes", config=config)
        assert rc == 0 and doc["status"] == "completed", err
        chem = next(r for r in doc["instances"] if r["instance"] == "chemistry")
        assert chem["limit_reached"] and chem["slurm"]["gated"]["new"] is True
        gates = [s for s in doc["steps"] if s["kind"] == "gate"]
        assert sorted(s["target"]["cluster"] for s in gates) == ["qa", "qb"]
        slurm_clusters = [s["target"]["cluster"] for s in doc["steps"] if s["kind"] != "ibm"]
        assert slurm_clusters == sorted(slurm_clusters)  # the journal's Slurm steps: qa's, then qb's
        roots = _roots(multi)
        assert {c: r.grp_tres.get("license/qpu_chemistry") for c, r in roots.items()} == {"qa": 0, "qb": 0}

        chem_sessions = len(_sessions(multi, qpu_site.CRN_CHEM))
        held = multi.run(b, "qcarol", "chem", "ibm_fez", 1, partition="quantum")
        free = multi.run(b, "qbob", "physics", "ibm_torino", 1)
        late = [held, free]
        assert _wait(lambda: _squeue(b, held)[:2] == ("PENDING", "AssocGrpLicense"), 30), _squeue(b, held)
        assert b.sb.wait_job(free, states=FINAL_STATES, timeout=120) == "COMPLETED"
        assert _squeue(b, held)[:2] == ("PENDING", "AssocGrpLicense")  # still held: never reached IBM
        assert len(_sessions(multi, qpu_site.CRN_CHEM)) == chem_sessions  # no session opened at IBM
    finally:
        b.sb.run(["scancel", *map(str, burst + late)])
        # ungate by hand: the next test's config has no chemistry limit, so no gate
        a.sb.run(["sacctmgr", "-i", "modify", "account", "where", "name=root", "cluster=qa,qb",
                  "set", "GrpTRES=license/qpu_chemistry=-1"])  # fmt: skip


def test_two_rebalancers_sharing_the_postgresql_ledger_never_both_apply(multi: Multi) -> None:
    """Two "hosts" (two state dirs: two flock files) want the same change (qa's physics Fairshare, moved
    by hand); the first is slowed down inside its run, the second is refused with exit 5 naming the holder,
    and the change is applied and audited by one run only."""
    a = multi.a
    since = time.time()
    a.sb.run(["sacctmgr", "-i", "modify", "account", "where", "name=physics", "cluster=qa",
              "set", "Fairshare=7"], check=True)  # fmt: skip
    flag = multi.config.parent / "slow-rebalance-started"
    slow = multi.config.parent / "squeue-slow"
    slow.write_text(f'#!/bin/sh\ntouch {flag}\nsleep 4\nexec {shutil.which("squeue")} "$@"\n')
    slow.chmod(0o755)
    host1 = multi.config_with("rebalance-host1.yaml", state_dir=multi.config.parent / "rb1", squeue=slow)
    host2 = multi.config_with("rebalance-host2.yaml", state_dir=multi.config.parent / "rb2")
    first = subprocess.Popen(
        [sys.executable, "-m", "qauvern_hpc", "-c", str(host1), "--json", "rebalance", "--yes"],
        env={**os.environ, "SLURM_CONF": str(multi.a.sb.slurm_conf)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait(lambda: flag.exists() or first.poll() is not None, 60), "the first rebalance never ran"
        assert flag.exists(), first.communicate()[1]
        rc, _, err = multi.cli("rebalance", "--yes", config=host2)
        assert rc == 5 and "another rebalance is running" in err and "pid" in err, err
    finally:
        out1, err1 = first.communicate(timeout=120)
    assert first.returncode == 0, err1
    import json

    doc = json.loads(out1)
    assert doc["status"] == "completed", doc
    step = "slurm:fairshare:qa:physics"
    assert step in [s["id"] for s in doc["steps"]]
    assert not list((multi.config.parent / "rb2" / "rebalance").glob("runs/*.json"))  # host2 wrote nothing
    with open_ledger(multi.url) as ledger:
        runs = {
            e.run_id for e in ledger.audit_entries() if e.at >= since and (e.after or {}).get("step") == step
        }
    assert runs == {doc["run_id"]}
