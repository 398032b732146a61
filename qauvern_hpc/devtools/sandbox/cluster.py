"""Python wrapper of the sandbox scripts: a throwaway one-node Slurm cluster with accounting in one directory.

The shell scripts in `scripts/` are the implementation (tests, demo, `qauvern-hpc sandbox` and the containers
all run them); this module only calls them and runs Slurm's CLIs with the sandbox's environment.

    sb = Sandbox("/tmp/my-sandbox")
    sb.up(hooks=Hooks(prolog_slurmctld="/usr/local/sbin/qauvern-hpc-prolog"), extra_conf=["MinJobAge=30"])
    sb.add_accounts({"physics": ["qalice", "qbob"]})
    job = sb.submit("#!/bin/bash\\nhostname\\n", user="qalice", account="physics", partition="quantum")
    sb.wait_job(job, {"COMPLETED"})
    sb.job(job)["State"]        # from sacct
    sb.down()

Several clusters on one accounting (Slurm's multi-cluster setup: one slurmdbd, one slurmctld per cluster):

    b = Sandbox("/tmp/my-sandbox-b")
    b.up(accounting_of=sb, settings={"CLUSTER": "qb"})   # its own slurmctld + slurmd, sb's slurmdbd
    b.run(["sacct", "-M", "qsandbox,qb", ...])            # either cluster's CLIs see both
    b.down(); sb.down()                                  # the secondary first
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from qauvern_hpc.core.errors import QauvernError

SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
#: Programs the sandbox needs (Debian: slurm-wlm slurmdbd munge mariadb-server; util-linux for setpriv).
REQUIRED_PROGRAMS = (
    "munged",
    "munge",
    "mariadbd",
    "mariadb-install-db",
    "mariadb",
    "slurmdbd",
    "slurmctld",
    "slurmd",
    "sacctmgr",
    "sbatch",
    "sacct",
    "sinfo",
    "scontrol",
    "setpriv",
    "runuser",
    "useradd",
)
#: Test users every default sandbox knows about (created as Unix users on demand).
DEFAULT_ACCOUNTS: dict[str, tuple[str, ...]] = {"physics": ("qalice", "qbob"), "chemistry": ("qcarol",)}

# Job states after which a job never changes again (sacct's names).
TERMINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
    }
)
JOB_FIELDS = (
    "JobID",
    "User",
    "Account",
    "Partition",
    "QOS",
    "State",
    "ExitCode",
    "AllocTRES",
    "AdminComment",
)
# sacct with -j alone starts its window at some default; always give -S (a sandbox's jobs are all recent).
SACCT_START = "now-30days"


class SandboxError(QauvernError):
    """A sandbox script or a Slurm command failed; the message carries its output (and log tails)."""


class SubmitError(SandboxError):
    """sbatch refused a job; `stderr` holds sbatch's message."""

    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message)
        self.stderr = stderr


def default_workdir() -> Path:
    """`$QAUVERN_HPC_SANDBOX`, else /tmp/qauvern-hpc-sandbox.

    Not $XDG_RUNTIME_DIR: /run/user/0 is 0700, and munged, MariaDB and the test users must reach it.
    """
    return Path(os.environ.get("QAUVERN_HPC_SANDBOX") or "/tmp/qauvern-hpc-sandbox")


def missing_prerequisites() -> list[str]:
    """Why a sandbox cannot run here (empty when it can): not root, or programs missing."""
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append("not running as root (the sandbox starts munged, MariaDB and Slurm daemons)")
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p, path=path) is None]
    if missing:
        problems.append(
            "missing programs: " + ", ".join(missing) + " (install with: bash .ci/install-debian-deps.sh)"
        )
    return problems


@dataclass(frozen=True)
class Hooks:
    """The hook points of the sandbox's slurm.conf. Written to WORKDIR/hooks.env by `Sandbox.up`.

    Files are copied into WORKDIR/etc (beside slurm.conf) at every `up`; programs are referenced in place and
    must be executable. PrologSlurmctld/EpilogSlurmctld run with an environment of SLURM_* (and SPANK_*)
    variables only, without PATH: give absolute paths and let the program find its own config.
    `env` is exported to every daemon (e.g. variables that job_submit.lua reads with os.getenv).
    """

    plugstack_conf: str | Path | None = None
    plugstack_lines: Sequence[str] = ()
    job_submit_lua: str | Path | None = None
    etc_files: Sequence[str | Path] = ()
    prolog_slurmctld: str | Path | None = None
    epilog_slurmctld: str | Path | None = None
    prolog: str | Path | None = None
    epilog: str | Path | None = None
    prolog_flags: str | None = None
    prolog_epilog_timeout: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def variables(self) -> dict[str, str]:
        """The QAUVERN_SANDBOX_* variables (and `env`) that up.sh reads."""
        out: dict[str, str] = {}

        def put(name: str, value: object) -> None:
            if value is not None and value != "" and value != ():
                out[f"QAUVERN_SANDBOX_{name}"] = str(value)

        put("PLUGSTACK_CONF", _abs(self.plugstack_conf))
        put("PLUGSTACK_LINES", "\n".join(self.plugstack_lines))
        put("JOB_SUBMIT_LUA", _abs(self.job_submit_lua))
        put("ETC_FILES", " ".join(str(_abs(f)) for f in self.etc_files))
        put("PROLOG_SLURMCTLD", _abs(self.prolog_slurmctld))
        put("EPILOG_SLURMCTLD", _abs(self.epilog_slurmctld))
        put("PROLOG", _abs(self.prolog))
        put("EPILOG", _abs(self.epilog))
        put("PROLOG_FLAGS", self.prolog_flags)
        put("PROLOG_EPILOG_TIMEOUT", self.prolog_epilog_timeout)
        for key, value in self.env.items():
            if not key.isidentifier():
                raise SandboxError(f"hooks env: {key!r} is not a valid variable name")
            out[key] = value
        return out


def _abs(p: str | Path | None) -> str | None:
    return None if p is None else str(Path(p).resolve())


def render_hooks_env(variables: Mapping[str, str]) -> str:
    lines = ["# written by qauvern_hpc.devtools.sandbox.Sandbox.up; sourced by up.sh with `set -a`"]
    lines += [f"{k}={shlex.quote(v)}" for k, v in variables.items()]
    return "\n".join(lines) + "\n"


class Sandbox:
    """One sandbox cluster living in `workdir` (created on `up`; its parents must be world-traversable)."""

    def __init__(self, workdir: str | Path | None = None, *, script_timeout: float = 300.0) -> None:
        self.workdir = Path(workdir).resolve() if workdir is not None else default_workdir().resolve()
        self.script_timeout = script_timeout
        self._env: dict[str, str] | None = None
        #: how long the last `up` took, in seconds
        self.last_up_seconds: float | None = None

    # ----- paths -----
    @property
    def slurm_conf(self) -> Path:
        return self.workdir / "etc" / "slurm.conf"

    @property
    def etc_dir(self) -> Path:
        return self.workdir / "etc"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    @property
    def jobs_dir(self) -> Path:
        """Sticky, world-writable: the default working directory and output place of submitted jobs."""
        return self.workdir / "jobs"

    @property
    def cluster(self) -> str:
        """The ClusterName of its slurm.conf (what `sacct -M` / `squeue -M` name it by)."""
        for line in self.slurm_conf.read_text().splitlines():
            if line.startswith("ClusterName="):
                return line.partition("=")[2].strip()
        raise SandboxError(f"{self.slurm_conf} has no ClusterName")

    @property
    def hooks_env(self) -> Path:
        return self.workdir / "hooks.env"

    def __repr__(self) -> str:
        return f"Sandbox({str(self.workdir)!r})"

    # ----- lifecycle -----
    def up(
        self,
        hooks: Hooks | None = None,
        extra_conf: Sequence[str] | str | None = None,
        *,
        settings: Mapping[str, str | int] | None = None,
        accounting_of: Sandbox | None = None,
        echo: bool = False,
    ) -> float:
        """Start the cluster (idempotent); returns the seconds it took.

        `hooks`, `extra_conf` (slurm.conf lines) and `settings` (CPUS, MEMORY, LICENSES, CLUSTER, NODE,
        ACCOUNTING_TRES, TIMEOUT: up.sh's QAUVERN_SANDBOX_* settings without the prefix) replace
        WORKDIR/hooks.env when any of them is given; with none, an existing hooks.env is kept. A running
        cluster whose configuration changed gets slurmctld and slurmd restarted. `echo` streams up.sh's
        progress to stderr.

        `accounting_of`: a running sandbox whose munged, MariaDB and slurmdbd this one shares (a second
        cluster of Slurm's multi-cluster setup). This sandbox then runs only slurmctld and slurmd and needs
        its own cluster name (`settings={"CLUSTER": ...}`); it is fixed at the first `up` of a work dir.
        """
        if accounting_of is not None:
            settings = {**(settings or {}), "DBD_FROM": str(accounting_of.workdir)}
        if hooks is not None or extra_conf is not None or settings is not None:
            variables = (hooks or Hooks()).variables()
            if extra_conf is not None:
                lines = extra_conf.splitlines() if isinstance(extra_conf, str) else list(extra_conf)
                variables["QAUVERN_SANDBOX_EXTRA_CONF"] = "\n".join(lines)
            for key, value in (settings or {}).items():
                variables[f"QAUVERN_SANDBOX_{key.upper()}"] = str(value)
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.hooks_env.write_text(render_hooks_env(variables))
        start = time.monotonic()
        self._script("up.sh", echo=echo)
        self._env = None
        self.last_up_seconds = time.monotonic() - start
        return self.last_up_seconds

    def down(self, *, echo: bool = False) -> None:
        """Stop every process of this sandbox; logs, state and the database stay in the work dir."""
        if not self.workdir.is_dir():
            return
        self._script("down.sh", echo=echo)

    def status(self) -> dict[str, int | None]:
        """daemon -> pid, or None when it is not running. A sandbox on another's accounting (`up`'s
        `accounting_of`) has only slurmctld and slurmd."""
        if not self.workdir.is_dir():
            return dict.fromkeys(DAEMONS)
        res = self._script("status.sh", check=False)
        out: dict[str, int | None] = {}
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in DAEMONS and parts[1] in ("running", "stopped"):
                out[parts[0]] = int(parts[2]) if parts[1] == "running" and len(parts) == 3 else None
        return out or dict.fromkeys(DAEMONS)

    def is_up(self) -> bool:
        return all(pid is not None for pid in self.status().values())

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()

    # ----- environment and commands -----
    def env(self) -> dict[str, str]:
        """The variables a process needs to use this sandbox's Slurm (SLURM_CONF, QAUVERN_SANDBOX_WORKDIR)."""
        if self._env is None:
            res = self._script("env.sh")
            env: dict[str, str] = {}
            for line in res.stdout.splitlines():
                words = shlex.split(line)
                if len(words) == 2 and words[0] == "export" and "=" in words[1]:
                    key, _, value = words[1].partition("=")
                    env[key] = value
            self._env = env
        return dict(self._env)

    def run(
        self,
        cmd: Sequence[str],
        user: str | None = None,
        *,
        check: bool = False,
        timeout: float = 60.0,
        input: str | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command (a Slurm CLI, usually) with the sandbox's environment; as `user` through runuser."""
        env = {**os.environ, **self.env()}
        argv = ["runuser", "-u", user, "--", *cmd] if user else list(cmd)
        res = subprocess.run(
            argv,
            env=env,
            cwd=str(cwd or (self.jobs_dir if self.jobs_dir.is_dir() else self.workdir)),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and res.returncode != 0:
            raise SandboxError(
                f"{shlex.join(argv)} exited {res.returncode}:\n{res.stderr.strip() or res.stdout.strip()}"
            )
        return res

    def submit(
        self,
        script: str | Path,
        user: str,
        account: str | None = None,
        partition: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> int:
        """sbatch a job as `user`; returns the job id. `script` is the script's text (a bash shebang is added
        when it has none) or a Path to a script. Output goes to WORKDIR/jobs/slurm-JOBID.out unless
        `extra_args` name another. Raises SubmitError when sbatch refuses the job."""
        args = ["sbatch", "--parsable", f"--chdir={self.jobs_dir}"]
        if account:
            args.append(f"--account={account}")
        if partition:
            args.append(f"--partition={partition}")
        if not any(a.startswith(("-o", "--output")) for a in extra_args):
            args.append(f"--output={self.jobs_dir}/slurm-%j.out")
        args += list(extra_args)
        text: str | None = None
        if isinstance(script, Path):
            args.append(str(script.resolve()))
        else:
            text = script if script.startswith("#!") else "#!/bin/bash\n" + script
        res = self.run(args, user=user, input=text)
        if res.returncode != 0:
            raise SubmitError(f"sbatch as {user} failed: {res.stderr.strip()}", res.stderr)
        first = res.stdout.strip().split(";")[0]
        try:
            return int(first)
        except ValueError:
            raise SandboxError(f"unexpected sbatch output: {res.stdout!r}") from None

    def job(self, jobid: int, fields: Sequence[str] = JOB_FIELDS) -> dict[str, str]:
        """The job's allocation record from sacct (empty dict when slurmdbd does not have it yet)."""
        argv = ["sacct", "-P", "-n", "-X", "--noconvert", "-j", str(jobid), "-S", SACCT_START]
        res = self.run([*argv, "-o", ",".join(fields)], check=True)
        for line in res.stdout.splitlines():
            values = line.split("|")
            if len(values) == len(fields):
                return dict(zip(fields, values, strict=True))
        return {}

    def _sacct_state(self, jobid: int) -> str | None:
        # A quick job's record can show its end state before its partition and QOS (they arrive with the
        # separate "job start" message): only a record with a partition counts as written.
        rec = self.job(jobid, ("JobID", "State", "Partition"))
        if rec.get("State") and rec.get("Partition"):
            return rec["State"].split()[0]  # "CANCELLED by 0" -> "CANCELLED"
        return None

    def job_state(self, jobid: int) -> str | None:
        """The job's state: sacct's, else scontrol's (slurmdbd may lag a moment behind slurmctld)."""
        state = self._sacct_state(jobid)
        if state:
            return state
        res = self.run(["scontrol", "-o", "show", "job", str(jobid)])
        for word in res.stdout.split():
            if word.startswith("JobState="):
                return word.partition("=")[2]
        return None

    def wait_job(self, jobid: int, states: Collection[str] = ("COMPLETED",), timeout: float = 60.0) -> str:
        """Poll until the job is in one of `states` (sacct's names) and return it; an end state counts once
        sacct has the job's full record. Raises SandboxError on timeout or when the job ends in another
        state (with the job's record, its output's tail and the daemons' logs)."""
        wanted = {s.upper() for s in states}
        deadline = time.monotonic() + timeout
        while True:
            state = self.job_state(jobid)
            if state in wanted and (state not in TERMINAL_STATES or self._sacct_state(jobid) == state):
                return state
            expired = time.monotonic() > deadline
            if (state in TERMINAL_STATES and state not in wanted) or expired:
                why = f"still {state} after {timeout:.0f}s" if expired else f"ended {state}"
                raise SandboxError(f"job {jobid} {why}, expected {sorted(wanted)}\n{self._job_report(jobid)}")
            time.sleep(0.3)

    def _job_report(self, jobid: int) -> str:
        parts = [f"sacct: {self.job(jobid)}"]
        out = self.jobs_dir / f"slurm-{jobid}.out"
        if out.is_file():
            parts.append(f"--- {out} ---\n" + "\n".join(out.read_text(errors="replace").splitlines()[-20:]))
        parts.append(self.logs(("slurmctld.log", "slurmd.log"), lines=15))
        return "\n".join(parts)

    # ----- accounting -----
    def add_accounts(
        self, spec: Mapping[str, Iterable[str]] | Iterable[str] = DEFAULT_ACCOUNTS, *, echo: bool = False
    ) -> None:
        """Create accounts, users (Unix users too) and associations; idempotent.

        `spec`: {"physics": ["qalice", "qbob"], "theory@physics": ["qbob"]} (`@PARENT` for a sub-account) or
        seed-accounts.sh's strings ["physics:qalice,qbob", ...]. A user's first account is its default."""
        if isinstance(spec, Mapping):
            items = [f"{acct}:{','.join(users)}" for acct, users in spec.items()]
        else:
            items = [str(s) for s in spec]
        if items:
            self._script("seed-accounts.sh", *items, echo=echo)

    def add_unix_users(self, *names: str) -> None:
        """Create Unix users without any Slurm association (they exist, but Slurm refuses their jobs)."""
        if names:
            self._script("seed-accounts.sh", "--unix-only", *names)

    # ----- logs -----
    def logs(self, names: Sequence[str] | None = None, *, lines: int = 40) -> str:
        """The last `lines` lines of each log (all of W/log by default), for failure reports."""
        if not self.log_dir.is_dir():
            return f"(no logs: {self.log_dir} does not exist)"
        paths = [self.log_dir / n for n in names] if names else sorted(self.log_dir.iterdir())
        chunks = []
        for p in paths:
            if p.is_file() and p.stat().st_size > 0:
                tail = p.read_text(errors="replace").splitlines()[-lines:]
                chunks.append(f"----- {p} (last {len(tail)} lines) -----\n" + "\n".join(tail))
        return "\n".join(chunks)

    # ----- plumbing -----
    def _script(
        self, name: str, *args: str, echo: bool = False, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = ["bash", str(SCRIPTS_DIR / name), str(self.workdir), *args]
        try:
            res = subprocess.run(
                argv,
                stdout=subprocess.PIPE,
                stderr=None if echo else subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                timeout=self.script_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SandboxError(
                f"{name} {self.workdir}: no result after {self.script_timeout:.0f}s\n{self.logs(lines=20)}"
            ) from exc
        if check and res.returncode != 0:
            detail = res.stderr.strip() if res.stderr else "(see the output above)"
            raise SandboxError(f"{name} {self.workdir} failed (exit {res.returncode}):\n{detail}")
        if echo and res.stdout:
            sys.stderr.write(res.stdout)
        return res
