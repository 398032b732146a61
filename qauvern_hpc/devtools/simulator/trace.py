"""Workload traces for the simulator: one CSV row per QPU job. Pure (parsing and formatting text).

Format (UTF-8 CSV, a header row with exactly these columns, in any order)::

    submit_time,user,account,partition,qos,qpu,quantum_seconds,wall_limit_seconds
    2026-01-05T09:12:00Z,alice,physics,quantum,normal,ibm_torino,1800,7200

* `submit_time`: ISO 8601 with a UTC offset (`Z` or `+02:00`); a time without an offset is UTC.
* `user`, `account`, `partition`, `qos`: the Slurm identity the mapping rules match (`qos` may be empty).
* `qpu`: the `--qpu` resource name the job asks for (one name).
* `quantum_seconds`: the quantum time the job's work needs on the QPU (> 0).
* `wall_limit_seconds`: the job's Slurm time limit (> 0): it ends (TIMEOUT) when that runs out.

Durations take whole seconds or a number with a unit (`90s`, `2h`). Rows must be in submit order (ties
allowed). Every error names the line: `trace.csv:12: quantum_seconds: ...`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from qauvern_hpc.core.errors import UsageError
from qauvern_hpc.core.units import parse_seconds

COLUMNS: tuple[str, ...] = (
    "submit_time",
    "user",
    "account",
    "partition",
    "qos",
    "qpu",
    "quantum_seconds",
    "wall_limit_seconds",
)


class TraceError(UsageError):
    """A trace file is malformed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One QPU job of a trace."""

    submit_time: datetime  # aware, UTC
    user: str
    account: str
    partition: str
    qos: str
    qpu: str
    quantum_seconds: int
    wall_limit_seconds: int
    line: int = 0  # where it came from (0 = built in code)


def _parse_time(text: str) -> datetime:
    value = text.strip()
    if not value:
        raise ValueError("empty (expected an ISO 8601 time such as 2026-01-05T09:12:00Z)")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time (e.g. 2026-01-05T09:12:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _parse_positive(text: str) -> int:
    value = parse_seconds(text.strip())
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {text.strip()!r}")
    return value


def parse_trace(text: str, name: str = "trace") -> list[TraceJob]:
    """Parse trace text (see the module docstring). Raises TraceError naming `name:line`."""
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise TraceError(f"{name}:1: empty trace (expected the header row: {','.join(COLUMNS)})") from None
    except csv.Error as exc:
        raise TraceError(f"{name}:1: {exc}") from None
    cols = [h.strip() for h in header]
    missing = [c for c in COLUMNS if c not in cols]
    unknown = [c for c in cols if c not in COLUMNS]
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    if missing or unknown or dupes:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(repr(u) for u in unknown)}")
        if dupes:
            parts.append(f"duplicate column(s) {', '.join(dupes)}")
        raise TraceError(f"{name}:1: bad header: {'; '.join(parts)} (expected: {','.join(COLUMNS)})")
    index = {c: cols.index(c) for c in COLUMNS}
    jobs: list[TraceJob] = []
    previous: datetime | None = None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise TraceError(f"{name}:{reader.line_num}: {exc}") from None
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue  # blank line
        if len(row) != len(cols):
            raise TraceError(f"{name}:{line}: {len(row)} field(s), the header has {len(cols)}")

        def cell(col: str, row: Sequence[str] = row) -> str:
            return row[index[col]]

        try:
            submit = _parse_time(cell("submit_time"))
        except ValueError as exc:
            raise TraceError(f"{name}:{line}: submit_time: {exc}") from None
        values: dict[str, int] = {}
        for col in ("quantum_seconds", "wall_limit_seconds"):
            try:
                values[col] = _parse_positive(cell(col))
            except ValueError as exc:
                raise TraceError(f"{name}:{line}: {col}: {exc}") from None
        for col in ("user", "account", "partition", "qpu"):
            if not cell(col).strip():
                raise TraceError(f"{name}:{line}: {col}: empty")
        if previous is not None and submit < previous:
            raise TraceError(
                f"{name}:{line}: submit_time {submit.isoformat()} is before the previous row's "
                f"{previous.isoformat()} (rows must be in submit order)"
            )
        previous = submit
        jobs.append(
            TraceJob(
                submit_time=submit,
                user=cell("user").strip(),
                account=cell("account").strip(),
                partition=cell("partition").strip(),
                qos=cell("qos").strip(),
                qpu=cell("qpu").strip(),
                quantum_seconds=values["quantum_seconds"],
                wall_limit_seconds=values["wall_limit_seconds"],
                line=line,
            )
        )
    if not jobs:
        raise TraceError(f"{name}: the trace has a header but no jobs")
    return jobs


def load_trace(path: str | Path) -> list[TraceJob]:
    """Read and parse a trace file. Raises TraceError (exit code 2) for a missing or malformed file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(f"{p}: trace file not found") from None
    except UnicodeDecodeError as exc:
        raise TraceError(f"{p}: not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise TraceError(f"{p}: cannot read the trace: {exc.strerror or exc}") from None
    return parse_trace(text, str(p))


def _time_text(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def format_trace(jobs: Iterable[TraceJob]) -> str:
    """The CSV text of `jobs` (header first; the order given)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for j in jobs:
        writer.writerow(
            [
                _time_text(j.submit_time),
                j.user,
                j.account,
                j.partition,
                j.qos,
                j.qpu,
                j.quantum_seconds,
                j.wall_limit_seconds,
            ]
        )
    return out.getvalue()


__all__ = ["COLUMNS", "TraceError", "TraceJob", "format_trace", "load_trace", "parse_trace"]
