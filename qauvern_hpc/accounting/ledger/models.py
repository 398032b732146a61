"""Rows the usage ledger stores and returns. Plain tuples: cheap to build and to hand to executemany."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

UsageState = Literal["pending", "final"]
PENDING: UsageState = "pending"
FINAL: UsageState = "final"

RunMode = Literal["session", "job"]
SESSION_MODE: RunMode = "session"
"""The run used its resource through an IBM session (`session_id`), or opened none (`session_id` NULL)."""
JOB_MODE: RunMode = "job"
"""The run used its resource in job mode (the Open plan): its IBM jobs ran outside any session, so
`session_id` is NULL and the collector charges the instance's jobs created on the backend while it ran."""

#: Dimensions `usage_by` can group on (column names of the runs table).
DIMENSIONS: tuple[str, ...] = ("user", "account", "partition", "instance", "resource", "qos", "cluster")


class RunKey(NamedTuple):
    """Primary key of a ledger row: one run of one job on one resource."""

    cluster: str
    job_id_raw: int
    run: int
    resource: str


class RunRow(NamedTuple):
    """One job run on one QPU resource, as written by the collector.

    `run` is the requeue index. None means "derive it": the ledger numbers a job's runs 0, 1, ... in the
    order of their submit times (Slurm gives every requeued run a new submit time), stably across pulls.
    """

    cluster: str
    job_id: str  # as Slurm prints it: 123, 123_4, 123+0
    job_id_raw: int
    array_job_id: int | None
    array_task_id: int | None
    het_job_id: int | None
    het_offset: int | None
    run: int | None
    user: str
    account: str
    partition: str
    qos: str
    resource: str
    instance: str | None
    session_id: str | None
    rule: str | None
    submit: int  # epoch seconds; identifies the run
    start: int | None
    end: int | None
    wall_seconds: int | None
    quantum_seconds: float | None  # None: IBM has not reported it yet
    usage_state: UsageState
    slurm_state: str
    mode: RunMode = SESSION_MODE

    @property
    def key(self) -> RunKey:
        if self.run is None:
            raise ValueError(f"job {self.cluster}/{self.job_id_raw}: run index not derived yet")
        return RunKey(self.cluster, self.job_id_raw, self.run, self.resource)


class StoredRun(NamedTuple):
    """A ledger row as read back (a RunRow with a known run index and the time it last changed)."""

    cluster: str
    job_id: str
    job_id_raw: int
    array_job_id: int | None
    array_task_id: int | None
    het_job_id: int | None
    het_offset: int | None
    run: int
    user: str
    account: str
    partition: str
    qos: str
    resource: str
    instance: str | None
    session_id: str | None
    rule: str | None
    submit: int
    start: int | None
    end: int | None
    wall_seconds: int | None
    quantum_seconds: float | None
    usage_state: UsageState
    slurm_state: str
    updated_at: float
    resource_units: float | None = None  # IBM's charge in RUs, where it reported one (set by the collector)
    mode: RunMode = SESSION_MODE

    @property
    def key(self) -> RunKey:
        return RunKey(self.cluster, self.job_id_raw, self.run, self.resource)


RUN_COLUMNS: tuple[str, ...] = RunRow._fields
STORED_COLUMNS: tuple[str, ...] = StoredRun._fields


class UsageRow(NamedTuple):
    """Usage grouped on one dimension. `jobs` counts job runs; seconds of unreported runs count as 0."""

    key: str
    jobs: int
    quantum_seconds: float
    wall_seconds: int
    resource_units: float | None = None  # IBM's RUs of the group's runs; None unless every run has RUs
    runs_without_ru: int = 0  # runs of the group with no RUs (not reported in RUs, dedicated sessions)


class InstanceUsage(NamedTuple):
    """Per-instance quantum seconds: reported final, reported so far for pending runs, runs awaiting IBM."""

    instance: str
    final_seconds: float
    pending_seconds: float
    pending_runs: int
    runs: int

    @property
    def quantum_seconds(self) -> float:
        return self.final_seconds + self.pending_seconds


class RevisitEntry(NamedTuple):
    """A job the collector must look at again. `attempts` counts how often it was (re)added."""

    cluster: str
    job_id_raw: int
    reason: str
    first_seen: float
    last_seen: float
    attempts: int


class AuditEntry(NamedTuple):
    id: int
    run_id: str
    actor: str
    at: float
    action: str
    before: Any
    after: Any
    reason: str | None
