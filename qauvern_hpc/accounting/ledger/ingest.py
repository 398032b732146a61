"""From sacct records to ledger rows, and a streaming sacct -> ledger ingest."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from qauvern_hpc.accounting.ledger.base import Ledger, UpsertStats
from qauvern_hpc.accounting.ledger.models import JOB_MODE, PENDING, SESSION_MODE, RunRow
from qauvern_hpc.record.admin_comment import JOB_MODE_SESSION, AdminRecord
from qauvern_hpc.slurm.sacct import DEFAULT_FIELDS, ParseStats, SacctParser, SacctRecord


def runs_from_record(rec: SacctRecord, qpu: AdminRecord | None = None) -> list[RunRow]:
    """One pending row per QPU resource the job used (from its AdminComment record, or `qpu`).

    A job without a record used no QPU: no rows. Neither did a run that never started (Start `Unknown`):
    a requeued job waiting for its next run is such a record, and its AdminComment is still the previous
    run's (session ids included), so taking it would count that session twice. Quantum seconds are
    unknown until IBM reports them. A resource the record marks as used in job mode (`name@!job`) gets
    no session id and mode `job`.
    """
    record = qpu if qpu is not None else rec.qpu
    if record is None or not record.resources or rec.start is None:
        return []
    return [
        RunRow(
            rec.cluster,
            rec.job_id,
            rec.job_id_raw,
            rec.array_job_id,
            rec.array_task_id,
            rec.het_job_id,
            rec.het_offset,
            rec.restarts,
            rec.user,
            rec.account,
            rec.partition,
            rec.qos,
            resource,
            record.instance or None,
            None if session == JOB_MODE_SESSION else session,
            record.rule or None,
            rec.submit or 0,
            rec.start,
            rec.end,
            rec.elapsed,
            None,
            PENDING,
            rec.state,
            JOB_MODE if session == JOB_MODE_SESSION else SESSION_MODE,
        )
        for resource, session in record.resources
    ]


@dataclass(slots=True)
class IngestStats:
    parse: ParseStats
    store: UpsertStats
    qpu_records: int = 0
    not_started: int = 0  # QPU records of runs that never started (pending): no rows
    max_end: int | None = None  # latest End among the QPU records


def ingest_sacct(
    ledger: Ledger,
    lines: Iterable[str],
    fields: Sequence[str] = DEFAULT_FIELDS,
    *,
    strict: bool = False,
) -> IngestStats:
    """Parse sacct output line by line and upsert the QPU jobs' rows, in one transaction.

    Only records carrying our AdminComment record are parsed in full (`SacctParser(qpu_only=True)`);
    `max_end` is the latest End among them. The collector's high-water mark is the end of the window it
    asked sacct for, not this.
    """
    parser = SacctParser(fields, strict=strict, qpu_only=True)
    stats = IngestStats(parse=parser.stats, store=UpsertStats())

    def rows() -> Iterator[RunRow]:
        max_end = None
        qpu = not_started = 0
        for rec in parser.parse(lines):
            end = rec.end
            if end is not None and (max_end is None or end > max_end):
                max_end = end
            qpu += 1
            if rec.start is None:
                not_started += 1
                continue
            yield from runs_from_record(rec)
        stats.qpu_records = qpu
        stats.not_started = not_started
        stats.max_end = max_end

    stats.store = ledger.upsert_runs(rows())
    return stats
