"""Pending jobs from `squeue`, and the licenses slurmctld knows (`scontrol show licenses`).

    for job in pending_jobs():            # streams: 100,000 pending jobs never sit in memory as one string
        job.licenses                      # (("qpu_physics", 1),)

The command line (verified on Slurm 22.05.8):

    squeue -h -r -t PENDING -o '%i|%u|%a|%P|%q|%W|%l|%V|%Q|%r'       with SLURM_TIME_FORMAT=%s

* `-r` lists every pending array task on its own line (otherwise `123_[0-99]` counts as one job);
* `%W` the licenses (`qpu:1,qpu_physics:1`, `(null)` when none), `%l` the time limit
  (`[D-]HH:MM:SS`, `MM:SS`, `UNLIMITED`, `NOT_SET`), `%V` the submit time (epoch seconds because of
  SLURM_TIME_FORMAT), `%Q` the priority (0 = held), `%r` the pending reason;
* fields are separated by `|`, which no Slurm user, account, partition, QOS or license name may contain.

Parsing is pure (`parse_squeue_line`, `parse_time_limit`, `parse_licenses`), so unit tests feed it recorded
output; `pending_jobs` runs the real command.

The admission controller reads pending AND running jobs with their licenses and state (`license_jobs`):

    squeue -h -r -t PENDING,RUNNING -o '%i|%T|%W|%V|%r'              with SLURM_TIME_FORMAT=%s

one `squeue -M NAME` per cluster when several are configured, each job tagged with its cluster (as
`pending_jobs` does): the controller splits each pair's cap between the clusters.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from qauvern_hpc.slurm.run import run_slurm, stream_slurm

SQUEUE_FIELDS = ("%i", "%u", "%a", "%P", "%q", "%W", "%l", "%V", "%Q", "%r")
SQUEUE_FORMAT = "|".join(SQUEUE_FIELDS)
_NONE = ("", "(null)", "N/A", "n/a")


class PendingJob(NamedTuple):
    """One pending job (or array task) as squeue shows it."""

    job_id: str
    user: str
    account: str
    partition: str
    qos: str
    licenses: tuple[tuple[str, int], ...]
    time_limit_seconds: int | None  # None: UNLIMITED / NOT_SET / unreadable
    submit_epoch: int | None
    priority: int
    reason: str
    cluster: str = ""  # with `squeue -M`: the cluster of the `CLUSTER: name` header above the line

    @property
    def held(self) -> bool:
        """Held by a user or an admin (priority 0 or a JobHeld* reason): will not start by itself."""
        return self.priority == 0 or self.reason.startswith("JobHeld")


class SqueueParseError(ValueError):
    """A line of squeue output that does not have our fields."""


def parse_time_limit(text: str) -> int | None:
    """Slurm's time format -> seconds: `D-HH:MM:SS`, `D-HH:MM`, `D-HH`, `HH:MM:SS`, `MM:SS`, `MM`.

    `UNLIMITED`, `NOT_SET`, `INVALID` and anything unreadable are None.
    """
    t = text.strip()
    if not t or not (t[0].isdigit()):
        return None
    days = 0
    if "-" in t:
        d, _, t = t.partition("-")
        if not d.isdigit():
            return None
        days = int(d)
        parts = t.split(":")
        if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
            return None
        nums = [int(p) for p in parts] + [0] * (3 - len(parts))  # D-HH[:MM[:SS]]
        h, m, s = nums
    else:
        parts = t.split(":")
        if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
            return None
        nums = [int(p) for p in parts]
        if len(nums) == 1:  # minutes
            h, m, s = 0, nums[0], 0
        elif len(nums) == 2:  # MM:SS
            h, m, s = 0, nums[0], nums[1]
        else:
            h, m, s = nums
    return ((days * 24 + h) * 60 + m) * 60 + s


_LICENSE_RE = re.compile(r"^([^:,*]+)(?:[:*](\d+))?$")


def parse_licenses(text: str) -> tuple[tuple[str, int], ...]:
    """`qpu:1,qpu_physics:2` -> (("qpu", 1), ("qpu_physics", 2)); `(null)` -> (). A name without a count
    counts 1; an `a|b` (OR) request from newer Slurms counts each side once."""
    t = text.strip()
    if t in _NONE:
        return ()
    out: list[tuple[str, int]] = []
    for item in t.replace("|", ",").split(","):
        item = item.strip()
        if not item:
            continue
        m = _LICENSE_RE.match(item)
        if m is None:
            continue
        out.append((m.group(1), int(m.group(2)) if m.group(2) else 1))
    return tuple(out)


def _int_or_none(text: str) -> int | None:
    t = text.strip()
    return int(t) if t.isdigit() else None


_cached_limit = functools.lru_cache(maxsize=4096)(parse_time_limit)
_cached_licenses = functools.lru_cache(maxsize=16384)(parse_licenses)
_new_job = tuple.__new__  # PendingJob(...) without the keyword-handling wrapper: one C call per job
_NFIELDS = len(SQUEUE_FIELDS)


def parse_squeue_line(line: str) -> PendingJob:
    """One line of `squeue -o SQUEUE_FORMAT` output. Raises SqueueParseError (a blank line too)."""
    for job in parse_squeue((line,)):
        return job
    raise SqueueParseError(f"squeue line has 1 fields, expected {_NFIELDS}: {line[:200]!r}")


def parse_squeue(lines: Iterable[str], cluster: str = "") -> Iterator[PendingJob]:
    """Parse squeue output; blank lines are skipped, malformed ones raise SqueueParseError. The jobs carry
    `cluster`, or the cluster of a `CLUSTER: name` header line above them (checked only on lines without
    our fields, so it costs nothing per job).

    Every field is stripped; an account or QOS of `(null)`/`N/A` is "". 100,000 lines take ~0.25 s: one
    split per line, and the texts that repeat across a queue (users, accounts, partitions, QOS, reasons,
    license lists, time limits) are processed once per distinct text and shared by the jobs that carry
    them (less work, and one string per distinct value in memory instead of one per job).
    """
    # raw field text -> its value, per call (bounded by the distinct texts of this queue)
    plain: dict[str, str] = {}
    optional: dict[str, str] = dict.fromkeys(_NONE, "")
    plain_get, optional_get = plain.get, optional.get
    licenses_of, limit_of = _cached_licenses, _cached_limit
    new, cls = _new_job, PendingJob
    for line in lines:
        parts = line.split("|")
        if len(parts) != _NFIELDS:
            if not line.strip():
                continue
            if line.startswith("CLUSTER: "):
                cluster = line[9:].strip()
                continue
            raise SqueueParseError(
                f"squeue line has {len(parts)} fields, expected {_NFIELDS}: {line[:200]!r}"
            )
        job_id, user, account, partition, qos, lic, limit, submit, prio, reason = parts
        # (the line's newline ends up in `reason`, which is stripped like every other text field)
        u = plain_get(user)
        if u is None:
            u = plain[user] = user.strip()
        a = optional_get(account)
        if a is None:
            a = optional[account] = account.strip()
        p = plain_get(partition)
        if p is None:
            p = plain[partition] = partition.strip()
        q = optional_get(qos)
        if q is None:
            q = optional[qos] = qos.strip()
        r = plain_get(reason)
        if r is None:
            r = plain[reason] = reason.strip()
        yield new(
            cls,
            (
                job_id.strip(),
                u,
                a,
                p,
                q,
                licenses_of(lic),
                limit_of(limit),
                int(submit) if submit.isdigit() else _int_or_none(submit),
                int(prio) if prio.isdigit() else (_int_or_none(prio) or 0),
                r,
                cluster,
            ),
        )


def squeue_argv(squeue: str = "squeue", *, clusters: Iterable[str] = ()) -> list[str]:
    argv = [squeue, "-h", "-r", "-t", "PENDING", "-o", SQUEUE_FORMAT]
    names = [c for c in clusters if c]
    if names:
        argv += ["-M", ",".join(names)]
    return argv


def pending_jobs(
    squeue: str = "squeue", *, clusters: Iterable[str] = (), timeout: float | None = 120.0
) -> list[PendingJob]:
    """Every pending job and array task. Raises ServiceUnavailable when slurmctld cannot be reached.

    With several clusters, one `squeue -M NAME` per cluster, each job tagged with its cluster: Slurm
    22.05.8's `squeue -h -M qa,qb` lists both clusters' jobs with no header saying which is whose (seen on
    two real clusters, `tests/integration/test_multicluster.py`)."""
    names = [c for c in clusters if c]
    out: list[PendingJob] = []
    for cluster in names if len(names) > 1 else [None]:
        argv = squeue_argv(squeue, clusters=names if cluster is None else [cluster])
        with stream_slurm(argv, env={"SLURM_TIME_FORMAT": "%s"}, timeout=timeout) as lines:
            out += parse_squeue(lines, cluster or "")
    return out


JOB_FIELDS = ("%i", "%T", "%W", "%V", "%r")
JOB_FORMAT = "|".join(JOB_FIELDS)


class LicenseJob(NamedTuple):
    """A pending or running job with the licenses it holds or waits for (`license_jobs`)."""

    job_id: str
    state: str  # PENDING | RUNNING (squeue's %T)
    licenses: tuple[tuple[str, int], ...]
    submit_epoch: int | None
    reason: str  # pending reason ("None" when running)
    cluster: str = ""  # with several clusters: the cluster whose squeue listed it

    @property
    def counts_as_demand(self) -> bool:
        """Pending and not held: a job the controller must cap before Slurm may start it. Jobs waiting for
        a begin time or a dependency count (their cap must be in place when they become eligible)."""
        return self.state == "PENDING" and not self.reason.startswith("JobHeld")


def parse_job_lines(lines: Iterable[str], cluster: str = "") -> list[LicenseJob]:
    """`squeue -o JOB_FORMAT` output -> jobs tagged with `cluster` (or the cluster of a `CLUSTER: name`
    header above them); blank lines skipped, a malformed line raises SqueueParseError."""
    out: list[LicenseJob] = []
    for line in lines:
        if line.startswith("CLUSTER: "):
            cluster = line[9:].strip()
            continue
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("|")
        if len(parts) != len(JOB_FIELDS):
            raise SqueueParseError(
                f"squeue line has {len(parts)} fields, expected {len(JOB_FIELDS)}: {line[:200]!r}"
            )
        job_id, state, lic, submit, reason = (p.strip() for p in parts)
        out.append(LicenseJob(job_id, state, _cached_licenses(lic), _int_or_none(submit), reason, cluster))
    return out


def license_jobs_argv(
    squeue: str = "squeue", *, clusters: Iterable[str] = (), job_ids: Iterable[str] = ()
) -> list[str]:
    ids = [j for j in job_ids if j]
    argv = [squeue, "-h", "-r"]
    argv += ["-j", ",".join(ids)] if ids else ["-t", "PENDING,RUNNING"]
    argv += ["-o", JOB_FORMAT]
    names = [c for c in clusters if c]
    if names:
        argv += ["-M", ",".join(names)]
    return argv


def license_jobs(
    squeue: str = "squeue",
    *,
    clusters: Iterable[str] = (),
    job_ids: Iterable[str] = (),
    timeout: float | None = 60.0,
) -> list[LicenseJob]:
    """Pending and running jobs (or the given ones, any state) with their licenses. Raises
    ServiceUnavailable when slurmctld cannot be reached. With several clusters, one `squeue -M NAME` per
    cluster and each job tagged with it (Slurm 22.05.8's `squeue -M a,b` does not say whose a job is)."""
    names = [c for c in clusters if c]
    out: list[LicenseJob] = []
    for cluster in names if len(names) > 1 else [None]:
        argv = license_jobs_argv(squeue, clusters=names if cluster is None else [cluster], job_ids=job_ids)
        with stream_slurm(argv, env={"SLURM_TIME_FORMAT": "%s"}, timeout=timeout) as lines:
            out += parse_job_lines(lines, cluster or "")
    return out


def parse_license_totals(text: str) -> dict[str, int]:
    """`scontrol show licenses -o` output -> license name -> total count."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        name = fields.get("LicenseName")
        total = fields.get("Total", "")
        if name and total.isdigit():
            out[name] = int(total)
    return out


def configured_licenses(scontrol: str = "scontrol") -> dict[str, int]:
    """The licenses slurmctld has (slurm.conf `Licenses=`), name -> total."""
    return parse_license_totals(run_slurm([scontrol, "show", "licenses", "-o"]))


__all__ = [
    "JOB_FORMAT",
    "SQUEUE_FORMAT",
    "LicenseJob",
    "PendingJob",
    "SqueueParseError",
    "configured_licenses",
    "license_jobs",
    "license_jobs_argv",
    "parse_job_lines",
    "parse_license_totals",
    "parse_licenses",
    "parse_squeue",
    "parse_squeue_line",
    "parse_time_limit",
    "pending_jobs",
    "squeue_argv",
]
