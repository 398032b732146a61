"""Streaming parser of `sacct --parsable2 --noheader --noconvert -o FIELDS` output, and its command line.

Run sacct with `SLURM_TIME_FORMAT=%s` (`sacct_env()`): dates are then epoch seconds, and Slurm prints
`Unknown` for "not set" (0, e.g. End of a running job, Start of a pending one) and `None` for NO_VAL;
both, and empty fields, become `None` here.

What sacct prints (Slurm 22.05.8, src/sacct/print.c and src/common/slurmdb_defs.c, checked here):

* JobID: `123` (plain), `123_4` (array task), `123_[1-3]` / `123_[1,5-7%2]` (array tasks not started
  yet), `123+0` (heterogeneous job component), `123.batch` / `123.0` / `123+0.extern` (steps: skipped;
  `-X` does not print them anyway). JobIDRaw is the job's own numeric id (an array task's or het
  component's own id).
* State: `COMPLETED`, `FAILED`, ..., and `CANCELLED by <uid>` -> state `CANCELLED`, `cancelled_by=uid`.
* ExitCode: `<status>:<signal>`.
* TimelimitRaw: minutes, or `UNLIMITED` / `Partition_Limit` (-> None); ElapsedRaw: seconds.
* `--duplicates` (-D) prints every run of a requeued job: each run is its own accounting record with its
  own Submit time (slurmctld sets a new submit time on requeue, "so the restarted job looks like a new
  job"; the job table's unique key is (id_job, time_submit)). Slurm 22.05 has no field with the requeue
  count: its `--helpformat` (recorded in tests/unit/fixtures/sacct/helpformat_22_05.txt) has no
  `Restarts`, and `-o Restarts` fails with `Invalid field requested: "Restarts"`. `DBIndex` exists but
  is only a row id of one cluster's database. So the ledger derives the run index from the submit
  times of a job's runs. Newer Slurm is said to print `Restarts` (24.11+, not verified here: only the
  22.05 binary is installed); `sacct_fields` adds it for those versions and the parser reads it.
* Checked against the real 22.05.8 binary without any daemon (`sacct --completion` reading a jobcomp
  log, tests/unit/test_sacct_real.py): our argv is accepted, `uts<epoch>` times are read as epoch
  seconds whatever TZ says, `SLURM_TIME_FORMAT=%s` prints epoch seconds and `Unknown` for unset times,
  and the line shape is the one parsed here.
* `--parsable2` does not escape `|` inside values. AdminComment is free text and our own merged record
  uses ` | ` as separator, so AdminComment must be the LAST field: extra `|` are folded back into it.
  A newline inside AdminComment continues the previous record on the next line(s); those lines are
  folded back too.

The hot loop uses `str.split("|")` and precomputed column positions; no regular expressions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from qauvern_hpc.core.errors import QauvernError
from qauvern_hpc.record.admin_comment import PREFIX as _ADMIN_PREFIX
from qauvern_hpc.record.admin_comment import AdminRecord, parse_admin_comment

#: Fields we ask sacct for (Slurm 22.05 names). AdminComment must stay last (see module docstring).
DEFAULT_FIELDS: tuple[str, ...] = (
    "Cluster",
    "JobID",
    "JobIDRaw",
    "User",
    "Account",
    "Partition",
    "QOS",
    "State",
    "ExitCode",
    "Submit",
    "Start",
    "End",
    "ElapsedRaw",
    "TimelimitRaw",
    "NodeList",
    "AdminComment",
)

#: Job states a finished job run can have (sacct -s accepts these names). Checked with the real 22.05.8
#: sacct (tests/unit/test_sacct_real.py): every name is accepted, and `-s REQUEUED` also selects PENDING
#: (`sacct -v` prints "Jobs PENDING,REQUEUED in the time window ..."), so a pull with these states also
#: returns jobs pending in the window; those never started and carry no usage (the ingest skips them).
FINISHED_STATES: tuple[str, ...] = (
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "REQUEUED",
    "TIMEOUT",
)

_ELAPSED_MAX = 1 << 31  # ElapsedRaw at or above this is a wrapped negative number, not a duration
_CACHE_MAX = 4096  # distinct State / ExitCode / Timelimit texts remembered while parsing
_MAX_CONTINUATION = 64 * 1024  # characters folded into one AdminComment before we call it garbage


class SacctParseError(QauvernError):
    """sacct output that does not have the shape we asked for."""


@dataclass(slots=True)
class SacctRecord:
    """One job allocation (one run of it) as sacct printed it."""

    cluster: str
    job_id: str  # as printed: 123, 123_4, 123_[1-3], 123+0
    job_id_raw: int
    array_job_id: int | None
    array_task_id: int | None
    array_tasks: str | None  # pending task range, e.g. "1-3%2", for 123_[1-3%2]
    het_job_id: int | None
    het_offset: int | None
    user: str
    account: str
    partition: str
    qos: str
    state: str  # base state: COMPLETED, CANCELLED, ...
    cancelled_by: int | None  # uid from "CANCELLED by <uid>"
    exit_code: int | None
    exit_signal: int | None
    submit: int | None  # epoch seconds
    start: int | None
    end: int | None
    elapsed: int | None  # seconds
    time_limit: int | None  # seconds; None = unlimited / partition limit / unknown
    node_list: str
    admin_comment: str
    qpu: AdminRecord | None  # our record decoded from AdminComment
    restarts: int | None  # Slurm 24.11+ `Restarts`; None when not asked for

    @property
    def run(self) -> int | None:
        """The requeue index when Slurm printed it (Restarts), else None (the ledger derives it)."""
        return self.restarts


@dataclass(slots=True)
class ParseStats:
    lines: int = 0
    records: int = 0
    steps_skipped: int = 0
    filtered: int = 0  # qpu_only: records without our AdminComment record, not parsed
    bad_lines: int = 0
    first_error: str | None = None


def sacct_env() -> dict[str, str]:
    """Environment for sacct: epoch seconds for every date."""
    return {"SLURM_TIME_FORMAT": "%s"}


def parse_slurm_version(text: str) -> tuple[int, int, int]:
    """`slurm 22.05.8` / `slurm-wlm 22.05.8` (sacct --version) -> (22, 5, 8)."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        raise SacctParseError(f"cannot read a Slurm version from {text.strip()[:80]!r}")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def sacct_fields(version: tuple[int, int, int] | None = None) -> tuple[str, ...]:
    """DEFAULT_FIELDS, plus `Restarts` (before AdminComment) on Slurm 24.11 and later."""
    if version is not None and version[:2] >= (24, 11):
        return (*DEFAULT_FIELDS[:-1], "Restarts", DEFAULT_FIELDS[-1])
    return DEFAULT_FIELDS


def build_sacct_argv(
    start: int,
    end: int | None,
    *,
    clusters: Sequence[str] = (),
    states: Sequence[str] = (),
    fields: Sequence[str] = DEFAULT_FIELDS,
    sacct: str = "sacct",
) -> list[str]:
    """The sacct command line for job allocations (not steps) in [start, end] (epoch seconds).

    `-S` is always given (with only `-j`, sacct starts at 1970). With `-s` finished states and `-S/-E`,
    sacct returns the jobs that ended in the window. `-D` prints every run of requeued jobs. `-a` (all
    users) is explicit so the result does not depend on who runs it. `-M` selects clusters
    (`("all",)` for every cluster in the database). Times are passed as `uts<epoch>`, which Slurm's
    parse_time reads without any time zone.
    """
    if start < 1_000_000:
        raise ValueError(f"start must be epoch seconds, got {start}")
    if end is not None and end < start:
        raise ValueError(f"end {end} is before start {start}")
    names = [f.strip() for f in fields]
    if not names or any(not n or "," in n for n in names):
        raise ValueError(f"bad sacct field list: {fields!r}")
    argv = [
        sacct,
        "--parsable2",
        "--noheader",
        "--noconvert",
        "--allocations",
        "--duplicates",
        "--allusers",
        f"--starttime=uts{int(start)}",
    ]
    if end is not None:
        argv.append(f"--endtime=uts{int(end)}")
    if clusters:
        argv.append("--clusters=" + ",".join(clusters))
    if states:
        argv.append("--state=" + ",".join(states))
    argv.append("--format=" + ",".join(names))
    return argv


def _state(text: str) -> tuple[str, int | None]:
    """`CANCELLED by 1000` -> ("CANCELLED", 1000); `COMPLETED` -> ("COMPLETED", None)."""
    if " " not in text:
        return text, None
    state, _, by = text.partition(" by ")
    return state.strip(), int(by) if by.isdigit() else None


def _exit_code(text: str) -> tuple[int | None, int | None]:
    """`2:0` -> (2, 0); empty -> (None, None)."""
    a, _, b = text.partition(":")
    return (int(a) if a.isdigit() else None, int(b) if b.isdigit() else None)


_RULE, _INST, _RES = "rule=", "inst=", "res="


def _decode_admin(text: str) -> AdminRecord | None:
    """`parse_admin_comment`, with a fast path for the plain shape our prolog writes.

    The fast path takes only text that is exactly `qauvern:v1;rule=..;inst=..;res=..` with nothing to
    percent-decode and no surrounding text (no blank, `|` or line break: one token); for it, it returns
    what `parse_admin_comment` returns (tests/unit/test_sacct.py compares both). Anything else goes to
    `parse_admin_comment`.
    """
    if (
        "%" in text
        or not text.startswith(_ADMIN_PREFIX)
        or " " in text
        or "|" in text
        or "\n" in text
        or "\t" in text
        or "\r" in text
    ):
        return parse_admin_comment(text)
    parts = text[len(_ADMIN_PREFIX) :].split(";")
    if len(parts) != 3:
        return parse_admin_comment(text)
    rule, inst, res = parts
    if not (rule.startswith(_RULE) and inst.startswith(_INST) and res.startswith(_RES)) or "=" in res[4:]:
        return parse_admin_comment(text)
    resources: list[tuple[str, str | None]] = []
    for entry in res[4:].split(","):
        if not entry:
            continue
        name, sep, sess = entry.partition("@")
        if not sep or not name:
            return None
        resources.append((name, None if sess == "-" else sess))
    if "=" in rule[5:] or "=" in inst[5:]:
        return parse_admin_comment(text)
    return AdminRecord(rule[5:], inst[5:], tuple(resources))


def _clock_seconds(text: str) -> int | None:
    """`[D-]HH:MM:SS`, `MM:SS`, `MM` (minutes) -> seconds; anything else -> None."""
    days = 0
    if "-" in text:
        head, _, text = text.partition("-")
        if not head.isdigit():
            return None
        days = int(head)
    parts = text.split(":")
    if not all(p.isdigit() for p in parts):
        return None
    nums = [int(p) for p in parts]
    if len(nums) == 3:
        secs = nums[0] * 3600 + nums[1] * 60 + nums[2]
    elif len(nums) == 2:
        secs = nums[0] * 60 + nums[1]
    elif len(nums) == 1:
        secs = nums[0] * 60
    else:
        return None
    return days * 86400 + secs


class SacctParser:
    """Parse sacct output for a given field list. Iterate `parse(lines)`; counters are in `stats`.

    `strict=True` raises `SacctParseError` at the first malformed line; otherwise malformed lines are
    counted (`stats.bad_lines`, `stats.first_error`) and skipped.

    `qpu_only=True` yields only records whose AdminComment holds our record (QPU jobs): the other lines
    cost a substring test instead of a full parse (`stats.filtered` counts them). Newlines inside an
    AdminComment are still folded back, also when our record only comes after such a newline.
    """

    def __init__(
        self, fields: Sequence[str] = DEFAULT_FIELDS, *, strict: bool = True, qpu_only: bool = False
    ) -> None:
        names = [f.strip() for f in fields]
        self.fields = tuple(names)
        self.strict = strict
        self.qpu_only = qpu_only
        self.stats = ParseStats()
        index = {name.lower(): i for i, name in enumerate(names)}
        if len(index) != len(names):
            raise ValueError(f"duplicate sacct fields in {fields!r}")
        for required in ("jobid", "jobidraw"):
            if required not in index:
                raise ValueError(f"sacct fields must include JobID and JobIDRaw, got {fields!r}")
        n = len(names)
        self._n = n
        self._index = index
        pad = n  # position of the empty column appended to every row for fields not asked for
        self._pad = pad

        def at(*names_: str) -> int:
            for name in names_:
                if name.lower() in index:
                    return index[name.lower()]
            return pad

        self._admin = at("AdminComment")
        self._admin_last = self._admin == n - 1
        self._elapsed_raw = "elapsedraw" in index
        self._limit_raw = "timelimitraw" in index
        self._cols = (
            at("Cluster"),
            index["jobid"],
            index["jobidraw"],
            at("User"),
            at("Account"),
            at("Partition"),
            at("QOS"),
            at("State"),
            at("ExitCode"),
            at("Submit"),
            at("Start"),
            at("End"),
            at("ElapsedRaw", "Elapsed"),
            at("TimelimitRaw", "Timelimit"),
            at("NodeList"),
            self._admin,
            at("Restarts"),
        )

    def _error(self, lineno: int, message: str) -> None:
        text = f"sacct output line {lineno}: {message}"
        if self.strict:
            raise SacctParseError(text)
        self.stats.bad_lines += 1
        if self.stats.first_error is None:
            self.stats.first_error = text

    def parse(self, lines: Iterable[str]) -> Iterator[SacctRecord]:
        """Yield one record per job allocation line; steps are skipped. Memory does not grow with input."""
        n = self._n
        admin_i = self._admin
        admin_last = self._admin_last
        (
            c_cluster,
            c_jobid,
            c_raw,
            c_user,
            c_account,
            c_part,
            c_qos,
            c_state,
            c_exit,
            c_submit,
            c_start,
            c_end,
            c_elapsed,
            c_limit,
            c_nodes,
            c_admin,
            c_restarts,
        ) = self._cols
        elapsed_raw = self._elapsed_raw
        limit_raw = self._limit_raw
        stats = self.stats
        prefix = _ADMIN_PREFIX
        parse_admin = parse_admin_comment
        decode_admin = _decode_admin
        record_cls = SacctRecord
        clock = _clock_seconds
        prev: SacctRecord | None = None
        continued = 0
        lineno = 0
        state_cache: dict[str, tuple[str, int | None]] = {}
        exit_cache: dict[str, tuple[int | None, int | None]] = {}
        limit_cache: dict[str, int | None] = {}
        qpu_only = self.qpu_only
        min_pipes = n - 1
        held: str | None = None  # qpu_only: the last skipped record line, in case continuation lines follow
        held_grew = False
        for lineno, raw in enumerate(lines, 1):
            if qpu_only and prefix not in raw and raw.count("|") >= min_pipes:
                # A whole record without our AdminComment record: not a QPU job, not parsed. Kept as text
                # until the next line shows whether a newline in its AdminComment continues it.
                if prev is not None:
                    stats.records += 1
                    yield prev
                    prev = None
                if held_grew and held is not None and prefix in held:
                    yield from self._reparse(held, lineno - 1)
                held, held_grew, continued = raw, False, 0
                stats.filtered += 1
                continue
            p = raw.split("|")
            if len(p) == n:
                last = p[-1]
                if last[-1:] == "\n":
                    p[-1] = last[:-1]
            else:
                line = raw[:-1] if raw.endswith("\n") else raw
                p = line.split("|")
                if len(p) < n:
                    # A newline inside the last field (AdminComment) of the previous record.
                    if prev is not None and admin_last and continued + len(line) < _MAX_CONTINUATION:
                        continued += len(line) + 1
                        prev.admin_comment += "\n" + line
                        prev.qpu = parse_admin(prev.admin_comment) if prefix in prev.admin_comment else None
                        continue
                    if held is not None and admin_last and continued + len(line) < _MAX_CONTINUATION:
                        continued += len(line) + 1
                        held = (held[:-1] if held.endswith("\n") else held) + "\n" + line
                        held_grew = True
                        continue
                    if not line.strip():
                        continue
                    self._error(lineno, f"{len(p)} fields, expected {n}: {line[:120]!r}")
                    continue
                if not admin_last:
                    self._error(lineno, f"{len(p)} fields, expected {n}: {line[:120]!r}")
                    continue
                p[admin_i:] = ["|".join(p[admin_i:])]
            if prev is not None:
                stats.records += 1
                yield prev
                prev = None
            if held is not None:
                if held_grew and prefix in held:
                    yield from self._reparse(held, lineno - 1)
                held, held_grew = None, False
            continued = 0
            p.append("")
            job_id = p[c_jobid]
            try:
                raw_text = p[c_raw]
                if raw_text.isdigit():
                    job_id_raw = int(raw_text)
                elif "." in raw_text or "." in job_id:
                    stats.steps_skipped += 1
                    continue
                else:
                    raise ValueError(f"JobIDRaw {raw_text!r}")
                array_job_id = array_task_id = het_job_id = het_offset = None
                array_tasks = None
                if not job_id.isdigit():
                    if "." in job_id:
                        stats.steps_skipped += 1
                        continue
                    if "_" in job_id:
                        head, _, tail = job_id.partition("_")
                        array_job_id = int(head)
                        if tail[:1] == "[":
                            if tail[-1:] != "]":
                                raise ValueError(f"JobID {job_id!r}")
                            array_tasks = tail[1:-1]
                        else:
                            array_task_id = int(tail)
                    elif "+" in job_id:
                        head, _, tail = job_id.partition("+")
                        het_job_id = int(head)
                        het_offset = int(tail)
                    else:
                        raise ValueError(f"JobID {job_id!r}")
                v = p[c_state]
                st = state_cache.get(v)
                if st is None:
                    st = _state(v)
                    if len(state_cache) < _CACHE_MAX:
                        state_cache[v] = st
                state, cancelled_by = st
                v = p[c_exit]
                ex = exit_cache.get(v)
                if ex is None:
                    ex = _exit_code(v)
                    if len(exit_cache) < _CACHE_MAX:
                        exit_cache[v] = ex
                exit_code, exit_signal = ex
                # int() straight away is the fast path; "Unknown" / "None" / "" take the except.
                try:
                    submit: int | None = int(p[c_submit])
                except ValueError:
                    submit = None
                try:
                    start: int | None = int(p[c_start])
                except ValueError:
                    start = None
                try:
                    end: int | None = int(p[c_end])
                except ValueError:
                    end = None
                v = p[c_elapsed]
                if v.isdigit():
                    elapsed: int | None = int(v) if elapsed_raw else clock(v)
                    if elapsed is not None and elapsed >= _ELAPSED_MAX:
                        elapsed = None  # a negative difference printed unsigned (seen on 22.05 -c)
                else:
                    elapsed = clock(v) if v else None
                v = p[c_limit]
                if v in limit_cache:
                    limit = limit_cache[v]
                else:
                    if v.isdigit():
                        limit = int(v) * 60 if limit_raw else clock(v)
                    elif v and v[0].isdigit():
                        limit = clock(v)
                    else:
                        limit = None
                    if len(limit_cache) < _CACHE_MAX:
                        limit_cache[v] = limit
                admin = p[c_admin]
                v = p[c_restarts]
                restarts = int(v) if v.isdigit() else None
            except ValueError as exc:
                self._error(lineno, f"{exc}: {raw.rstrip(chr(10))[:120]!r}")
                continue
            prev = record_cls(
                p[c_cluster],
                job_id,
                job_id_raw,
                array_job_id,
                array_task_id,
                array_tasks,
                het_job_id,
                het_offset,
                p[c_user],
                p[c_account],
                p[c_part],
                p[c_qos],
                state,
                cancelled_by,
                exit_code,
                exit_signal,
                submit,
                start,
                end,
                elapsed,
                limit,
                p[c_nodes],
                admin,
                decode_admin(admin) if prefix in admin else None,
                restarts,
            )
        stats.lines += lineno
        if prev is not None:
            stats.records += 1
            yield prev
        if held_grew and held is not None and prefix in held:
            yield from self._reparse(held, lineno)

    def _reparse(self, text: str, lineno: int) -> Iterator[SacctRecord]:
        """Parse one skipped record whose continuation lines brought our AdminComment record in."""
        sub = SacctParser(self.fields, strict=self.strict)
        try:
            for rec in sub.parse([text]):
                self.stats.records += 1
                self.stats.filtered -= 1
                yield rec
        except SacctParseError as exc:
            raise SacctParseError(f"{exc} (record ending at line {lineno})") from exc
        self.stats.bad_lines += sub.stats.bad_lines
        if self.stats.first_error is None and sub.stats.first_error is not None:
            self.stats.first_error = f"{sub.stats.first_error} (record ending at line {lineno})"


def parse_sacct(
    lines: Iterable[str],
    fields: Sequence[str] = DEFAULT_FIELDS,
    *,
    strict: bool = True,
    qpu_only: bool = False,
) -> Iterator[SacctRecord]:
    """Shortcut for `SacctParser(fields, strict=strict, qpu_only=qpu_only).parse(lines)`."""
    return SacctParser(fields, strict=strict, qpu_only=qpu_only).parse(lines)
