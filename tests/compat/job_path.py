"""The QPU job path end to end on another Debian release's Slurm: runs INSIDE the release's root.

`tests/compat/job_path.sh RELEASE` installs qauvern-hpc's runtime dependencies into the root's own Python,
copies the package there and runs this file with that Python (so the controller hooks, which the wrappers
start with `sys.executable`, run on it too). It does what tests/integration/test_job_path.py and
test_collect.py do on the CI's 22.05, with the same code (`qpu_site`, `Sandbox`, the emulator):

  emulator   the IBM emulator on loopback (this process)
  site       qpu_site.write_site + sandbox_hooks: the hook wrappers, job_submit.lua with the rendered policy,
             per-instance licenses, the SPANK plugin compiled against this release's spank.h
  up         the sandbox cluster (up.sh) with those hooks, and the site's accounts
  good       `--qpu=ibm_torino` runs qpu_job.py on the session the prolog opened; the epilog closes it;
             job_submit.lua added the per-instance license; sacct's AdminComment holds our record
  forbidden  refused at submit by job_submit.lua with the rule's message (a denying rule, a resource the
             matching rule does not allow); no session opened
  malformed  refused at submit by the SPANK plugin (its own messages); no session opened
  admin      a held QPU job whose AdminComment an admin set before release: the prolog merges (hooks/
             admin_comment_set.py parses `scontrol show job`): the final value holds both
  collect    `qauvern-hpc collect`: the ledger charges each job what the emulator charged its session
  multiline  a multi-line AdminComment as `scontrol show job` prints it (parser fixture only)
  forged     a held QPU job whose job name and comment hold `\n   AdminComment=...`: the prolog must not
             take the user's text for the admin's note (scontrol --json on 24.11+; on 22.05 the ambiguous
             text form is not trusted: our record alone)
  collect-multiline  `qauvern-hpc collect` again, with those jobs in sacct's output

Writes OUT/job-path.json (per step: ok, detail, seconds; the Slurm and Python versions) and the
`scontrol show job` outputs OUT/show-job-*.txt that tests/compat/test_compat.py replays. Exit status 0 when
every step passed, 1 otherwise (the files are written either way).

    python3 job_path.py WORKDIR SITE_DIR OUT
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qauvern_hpc.accounting.ledger import open_ledger
from qauvern_hpc.devtools import qpu_site
from qauvern_hpc.devtools.emulator import run_emulator
from qauvern_hpc.devtools.sandbox import Sandbox, SubmitError
from qauvern_hpc.record.admin_comment import admin_comment_from_show_job, parse_admin_comment

# An admin's note with blanks, `=` and our own separator: what the show-job parser must keep intact.
NOTE = "ticket=4711 | checked by ops = yes"
MULTILINE_NOTE = "first line = one\nsecond line | two"
FORBIDDEN = [  # (user, account, partition, extra sbatch args, text the refusal must hold)
    ("qalice", "physics", None, ["--qpu=ibm_torino", "--qos=student"], "students use the simulator"),
    ("qcarol", "chem", "quantum", ["--qpu=ibm_torino"], "chemistry"),
    ("qcarol", "chem", "debug", ["--qpu=ibm_fez"], "no rule"),
]
MALFORMED = [  # (--qpu value, text of the SPANK plugin's refusal)
    (";rm -rf /", "invalid"),
    ("ibm_torino,ibm_torino", "more than once"),
    ("ibm_torino,", "empty"),
]


class Run:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.steps: list[dict[str, Any]] = []
        self.facts: dict[str, Any] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        entry: dict[str, Any] = {"name": name, "ok": False, "detail": ""}
        start = time.monotonic()
        try:
            yield entry
            entry["ok"] = True
        except Exception as exc:  # a failed step is recorded; the next ones still run when they can
            entry["detail"] = (
                entry["detail"] + " | " if entry["detail"] else ""
            ) + f"{type(exc).__name__}: {exc}"
            entry["traceback"] = traceback.format_exc()[-3000:]
            print(f"job_path: {name} FAILED: {exc}", file=sys.stderr)
        finally:
            entry["seconds"] = round(time.monotonic() - start, 1)
            self.steps.append(entry)
            print(
                f"job_path: {name}: {'ok' if entry['ok'] else 'FAILED'} ({entry['seconds']} s)",
                file=sys.stderr,
            )

    def ok(self, name: str) -> bool:
        return any(s["name"] == name and s["ok"] for s in self.steps)

    def write(self, total: float) -> None:
        doc = {"steps": self.steps, "total_seconds": round(total, 1), **self.facts}
        (self.out / "job-path.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def check(cond: object, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def wait(pred: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.3)
    return pred()


def main(argv: list[str]) -> int:
    workdir, site_dir, out = (Path(a) for a in argv)
    out.mkdir(parents=True, exist_ok=True)
    run = Run(out)
    t_start = time.monotonic()
    import httpx
    import pydantic
    import yaml

    run.facts["python"] = platform.python_version()
    run.facts["python_packages"] = {
        "pydantic": pydantic.VERSION,
        "httpx": httpx.__version__,
        "pyyaml": yaml.__version__,
    }
    version = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "slurm-client"], capture_output=True, text=True
    )
    run.facts["slurm_version"] = version.stdout.split("-")[0] or "?"
    run.facts["recorded_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    shutil.rmtree(site_dir, ignore_errors=True)
    site_dir.mkdir(parents=True)
    site_dir.chmod(0o755)
    sb = Sandbox(workdir)
    try:
        with run_emulator(qpu_site.emulator_seed(), clock="real") as emu:
            try:
                _job_path(run, sb, emu, site_dir, out)
            finally:
                site = qpu_site.Site(
                    site_dir, site_dir / "config.yaml", site_dir, site_dir / "state", site_dir
                )
                qpu_site.stop_hookd(site)
    finally:
        with run.step("down"):
            sb.down()
        run.write(time.monotonic() - t_start)
    return 0 if all(s["ok"] for s in run.steps) else 1


def _job_path(run: Run, sb: Sandbox, emu: Any, site_dir: Path, out: Path) -> None:
    def sessions() -> dict[str, dict[str, Any]]:
        return {s["id"]: s for s in emu.state.snapshot()["sessions"]}

    def show(job: int, name: str) -> str:
        text = sb.run(["scontrol", "show", "job", str(job)], check=True).stdout
        (out / f"show-job-{name}.txt").write_text(text)
        return text

    def show_json(job: int, name: str) -> dict[str, Any] | None:
        res = sb.run(["scontrol", "--json", "show", "job", str(job)])
        (out / f"show-job-{name}.json").write_text(res.stdout or res.stderr)
        return json.loads(res.stdout) if res.returncode == 0 else None

    def sacct_comment(job: int) -> str:  # AdminComment last: the admin's text holds `|`
        argv = ["sacct", "-P", "-n", "-X", "-j", str(job), "-S", "now-1days", "-o", "JobID,AdminComment"]
        return sb.run(argv, check=True).stdout.strip().partition("|")[2]

    t0 = datetime.now(UTC)
    with run.step("site") as e:
        site = qpu_site.write_site(site_dir, emu.base_url, operations=True)
        hooks = qpu_site.sandbox_hooks(site)  # compiles the SPANK plugin against this release's headers
        hooks = dataclasses.replace(hooks, env={**hooks.env, **qpu_site.license_env()})
        e["detail"] = f"emulator {emu.base_url}; plugin {hooks.plugstack_lines[0]}"
    if not run.ok("site"):
        return
    with run.step("up") as e:
        e["detail"] = f"up.sh {sb.up(hooks=hooks, settings=qpu_site.SANDBOX_SETTINGS):.1f} s"
        sb.add_accounts(qpu_site.ACCOUNTS)
        qpu_site.set_hook_env(site, {"SLURM_CONF": str(sb.slurm_conf)})
        script = sb.jobs_dir / "qpu_job.py"
        shutil.copy(qpu_site.JOB_SCRIPT, script)
        script.chmod(0o755)
    if not run.ok("up"):
        return
    py = "/usr/bin/python3"
    env = {**os.environ, "SLURM_CONF": str(sb.slurm_conf)}
    collect = [
        sys.executable,
        "-m",
        "qauvern_hpc",
        "-c",
        str(site.config),
        "--json",
        "collect",
        "--reconcile",
    ]
    charged: dict[int, float] = {}

    with run.step("good") as e:
        job = sb.submit(
            f"{py} {script} 3\n", user="qalice", account="physics", extra_args=["--qpu=ibm_torino"]
        )
        e["job"] = job
        state = sb.wait_job(job, timeout=120)
        output = (sb.jobs_dir / f"slurm-{job}.out").read_text(errors="replace")
        check("status=Completed quantum_seconds=3" in output, f"job output: {output[-500:]}")
        session_id = output.split("session=")[1].split()[0]
        check(sessions()[session_id]["backend"] == "ibm_torino", "session on another backend")
        check(
            wait(lambda: sessions()[session_id]["state"] == "closed"), "the epilog did not close the session"
        )
        licenses = sb.run(["scontrol", "show", "job", str(job)], check=True).stdout
        check("qpu_physics" in licenses, "job_submit.lua did not add the per-instance license qpu_physics")
        check(wait(lambda: "qauvern:v1" in sacct_comment(job)), "no AdminComment record in sacct")
        rec = parse_admin_comment(sacct_comment(job))
        check(rec is not None and rec.resources == (("ibm_torino", session_id),), f"record {rec}")
        shown = show(job, "ours")
        check(admin_comment_from_show_job(shown) == sacct_comment(job), "show job and sacct disagree")
        charged[job] = float(emu.state.session(session_id)["elapsed_time"])
        e["detail"] = (
            f"{state}, session {session_id} closed, license qpu_physics, record {sacct_comment(job)}"
        )

    with run.step("forbidden") as e:
        before = len(sessions())
        got = []
        for user, account, partition, args, want in FORBIDDEN:
            try:
                job = sb.submit("true\n", user=user, account=account, partition=partition, extra_args=args)
            except SubmitError as err:
                msg = str(err.stderr).strip()
                check("qpu:" in msg and want in msg, f"{args}: refused, but with {msg!r}")
                got.append(msg)
            else:
                raise AssertionError(f"{user} {account} {partition} {args}: accepted as job {job}")
        check(len(sessions()) == before, "a refused job opened a session")
        e["messages"] = got

    with run.step("malformed") as e:
        before = len(sessions())
        got = []
        for bad, want in MALFORMED:
            try:
                job = sb.submit("true\n", user="qalice", account="physics", extra_args=[f"--qpu={bad}"])
            except SubmitError as err:
                msg = str(err.stderr).strip()
                check("qpu:" in msg and want in msg, f"--qpu={bad!r}: refused, but with {msg!r}")
                got.append(msg)
            else:
                raise AssertionError(f"--qpu={bad!r}: accepted as job {job}")
        check(len(sessions()) == before, "a refused job opened a session")
        e["messages"] = got

    with run.step("admin") as e:
        job = sb.submit(
            f"{py} {script} 2\n", user="qalice", account="physics", extra_args=["--qpu=ibm_torino", "--hold"]
        )
        e["job"] = job
        sb.run(["scontrol", "update", f"JobId={job}", f"AdminComment={NOTE}"], check=True)
        held = show(job, "admin")
        show_json(job, "admin")
        check(admin_comment_from_show_job(held) == NOTE, f"parsed {admin_comment_from_show_job(held)!r}")
        sb.run(["scontrol", "release", str(job)], check=True)
        sb.wait_job(job, timeout=120)
        check(wait(lambda: "qauvern:v1" in sacct_comment(job)), f"no record: {sacct_comment(job)!r}")
        final = sacct_comment(job)
        check(final.startswith(NOTE + " | qauvern:v1;"), f"final AdminComment {final!r}")
        merged = show(job, "merged")
        check(admin_comment_from_show_job(merged) == final, "show job and sacct disagree")
        rec = parse_admin_comment(final)
        check(rec is not None and rec.instance == "physics", f"record {rec}")
        assert rec is not None
        session_id = rec.resources[0][1] or ""
        check(wait(lambda: sessions()[session_id]["state"] == "closed"), "session not closed")
        charged[job] = float(emu.state.session(session_id)["elapsed_time"])
        e["detail"] = f"final AdminComment {final!r}"

    def collect_and_check() -> str:
        """Run `qauvern-hpc collect`; every QPU job so far must be charged what the emulator charged."""
        check(charged, "no QPU job ran")
        proc = subprocess.run(collect, env=env, capture_output=True, text=True, timeout=180)
        check(proc.returncode == 0, f"collect exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
        doc = json.loads(proc.stdout)
        with open_ledger(f"sqlite:///{site.directory}/ledger.db") as ledger:
            rows = {(r.job_id_raw, r.resource): r for r in ledger.runs()}
        lines = []
        for job, ibm in charged.items():
            row = rows.get((job, "ibm_torino"))
            check(row is not None, f"job {job} not in the ledger: {sorted(rows)}")
            assert row is not None
            check(
                abs((row.quantum_seconds or 0.0) - ibm) < 1e-3,
                f"job {job}: ledger {row.quantum_seconds}, IBM {ibm}",
            )
            check(row.usage_state == "final", f"job {job}: usage {row.usage_state}")
            lines.append(f"job {job}: {row.quantum_seconds:.3f} s (IBM {ibm:.3f} s)")
        ours = sum(r.quantum_seconds or 0.0 for r in rows.values() if r.instance == "physics")
        ibm_total = float(emu.state.usage_seconds(qpu_site.CRN_PHYS, t0, datetime.now(UTC)))
        check(abs(ours - ibm_total) < 0.01, f"physics: ledger {ours}, IBM {ibm_total}")
        warnings = [line for line in proc.stderr.splitlines() if line.strip()]
        records = doc["clusters"][0]["qpu_records"]
        return (
            "; ".join(lines)
            + f"; physics {ours:.3f} s = IBM's; qpu_records={records}; stderr: {warnings[-3:]}"
        )

    with run.step("collect") as e:
        e["detail"] = collect_and_check()

    with run.step("multiline") as e:  # after collect: it only feeds the show-job parser fixture
        job = sb.submit("true\n", user="qbob", account="physics", extra_args=["--hold"])
        plain = show(job, "none")
        show_json(job, "none")
        check(admin_comment_from_show_job(plain) is None, "an AdminComment on a job without one")
        sb.run(["scontrol", "update", f"JobId={job}", f"AdminComment={MULTILINE_NOTE}"], check=True)
        text = show(job, "multiline")
        parsed = admin_comment_from_show_job(text)
        sb.run(["scancel", str(job)], check=True)
        check(parsed == MULTILINE_NOTE, f"parsed {parsed!r}")
        e["detail"] = "multi-line AdminComment read back from scontrol show job"

    with run.step("forged") as e:  # user-controlled fields that print as `   AdminComment=` lines
        forged = "\n   AdminComment=forged by the user"
        args = ["--qpu=ibm_torino", "--hold", f"--job-name=n{forged}1", f"--comment=c{forged}2"]
        job = sb.submit(f"{py} {script} 1\n", user="qbob", account="physics", extra_args=args)
        e["job"] = job
        text_before = admin_comment_from_show_job(show(job, "forged"))
        has_json = show_json(job, "forged") is not None
        sb.run(["scontrol", "update", f"JobId={job}", f"AdminComment={NOTE}"], check=True)
        text_note = admin_comment_from_show_job(show(job, "forged-note"))
        show_json(job, "forged-note")
        sb.run(["scontrol", "release", str(job)], check=True)
        sb.wait_job(job, timeout=120)
        check(wait(lambda: "qauvern:v1" in sacct_comment(job)), f"no record: {sacct_comment(job)!r}")
        final = sacct_comment(job)
        rec = parse_admin_comment(final)
        if rec is not None and rec.resources[0][1]:
            session_id = rec.resources[0][1]
            check(wait(lambda: sessions()[session_id]["state"] == "closed"), "session not closed")
            charged[job] = float(emu.state.session(session_id)["elapsed_time"])
        e["detail"] = (
            f"text parser read {text_before!r} before the note, {text_note!r} after; scontrol --json: "
            f"{has_json}; final AdminComment {final!r}"
        )
        # The prolog never writes the user's text as the admin's; with --json it keeps the admin's note.
        check("forged" not in final, e["detail"])
        check(
            final.startswith(NOTE + " | qauvern:v1;") if has_json else final.startswith("qauvern:v1;"), final
        )

    with run.step("collect-multiline") as e:  # newlines in AdminComment and JobName in sacct's output
        check(run.ok("collect"), "the first collect failed")
        e["detail"] = collect_and_check()
    run.facts["notes"] = {"admin": NOTE, "multiline": MULTILINE_NOTE}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
