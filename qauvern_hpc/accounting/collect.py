"""One `collect` run: every cluster's sacct pull, IBM usage for pending rows, optionally the reconciliation.

Invariants:
- One collector at a time (`collect_lock`: a flock in slurm.state_dir, and with a PostgreSQL ledger the
  database's advisory lock, so also across hosts); each cluster's pull is its own transaction,
  so a cluster whose pull fails (slurmdbd unreachable, or sacct failing for its `-M`) stores nothing and
  keeps its high-water mark, the others and IBM go on, and the next run catches it up.
- A dry run does all of it in one ledger transaction that is rolled back at the end (`batch(commit=False)`).
- The result is a value: the report, and the error that decides the exit status (a failed sacct pull, then
  IBM sessions that could not be read, then runs the config cannot attribute); the command raises it after
  showing the report.
- One IBM client per API key file; the account-level key is asked for only when an instance has none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from qauvern_hpc.accounting import collector
from qauvern_hpc.core.errors import ConfigError, QauvernError, ServiceUnavailable
from qauvern_hpc.ibm.factory import ClientPool
from qauvern_hpc.slurm.run import SlurmCommandError

if TYPE_CHECKING:
    from qauvern_hpc.config import Config
    from qauvern_hpc.ibm import Endpoints, IBMClient


class InstanceClients:
    """instance name -> (IBMClient, CRN), one client per API key; `admin_key()` gives the account's key."""

    def __init__(self, cfg: Config, endpoints: Endpoints, admin_key: Callable[[], str]) -> None:
        self.cfg = cfg
        self.endpoints = endpoints
        self._admin_key = admin_key
        self._pool = ClientPool(ru_per_second=cfg.ibm.resource_units_per_second)
        self._instances = {i.name: i for i in cfg.instances}

    def _client(self, key_file: str | None) -> IBMClient:
        return self._pool.get(key_file, self.endpoints, None if key_file else self._admin_key)

    def __call__(self, instance: str) -> tuple[IBMClient, str]:
        inst = self._instances.get(instance)
        if inst is None:
            raise KeyError(f"instance {instance!r} is not in the config (renamed or removed?)")
        key_file = inst.api_key_file or self.cfg.ibm.api_key_file
        return self._client(str(key_file) if key_file else None), inst.crn

    def backend_of(self, resource: str) -> str | None:
        """The IBM backend of a configured resource (None: the config does not know it)."""
        for r in self.cfg.resources:
            if r.name == resource:
                return r.backend_name
        return None

    def analytics(self, instance: str, start: datetime, end: datetime) -> int:
        _client, crn = self(instance)  # KeyError for an instance the config does not know
        admin = self._client(None)
        return int(
            admin.analytics_usage(instance=crn, account_id=self.cfg.ibm.account_id, start=start, end=end)
        )

    def close(self) -> None:
        self._pool.close()


@dataclass(frozen=True)
class CollectOptions:
    clusters: tuple[str, ...]
    now: float
    overlap: int = collector.DEFAULT_OVERLAP_SECONDS
    window: int = collector.DEFAULT_FIRST_LOOKBACK_SECONDS  # --reconcile, ending `now`
    since: int | None = None  # re-read from here; no high-water mark moves
    ibm: bool = True
    reconcile: bool = False
    dry_run: bool = False


@dataclass
class CollectResult:
    report: collector.CollectReport
    error: QauvernError | None = None  # decides the exit status; None: 0


def outcome_error(report: collector.CollectReport, pull_error: QauvernError | None) -> QauvernError | None:
    """What a run's report means for its exit status (see the module docstring for the order)."""
    if pull_error is not None:
        return pull_error
    if report.errors:
        return ServiceUnavailable(
            f"{len(report.errors)} IBM session(s) could not be read; their runs stay pending for next time",
            hint=report.errors[0],
        )
    if report.unresolved:
        return ConfigError(
            f"{len(report.unresolved)} session(s) cannot be attributed with this config; "
            "their runs stay pending",
            hint=report.unresolved[0],
        )
    return None


def collect(
    cfg: Config,
    options: CollectOptions,
    clients: InstanceClients,
    *,
    progress: collector.Progress = collector.quiet,
) -> CollectResult:
    """Pull, resolve, reconcile (see `collector` for each step); the clients are closed at the end."""
    from qauvern_hpc.accounting.ledger import open_ledger

    report = collector.CollectReport(dry_run=options.dry_run)
    pull_error: QauvernError | None = None
    now = int(options.now)
    try:
        with (
            collector.collect_lock(cfg.slurm.state_dir, cfg.ledger.url),
            open_ledger(cfg.ledger.url) as ledger,
            ledger.batch(commit=False) if options.dry_run else contextlib.nullcontext(),
        ):
            for cluster in options.clusters:
                try:
                    report.pulls.append(
                        collector.pull_cluster(
                            ledger,
                            cluster,
                            now=now,
                            sacct=cfg.slurm.sacct,
                            overlap=options.overlap,
                            since=options.since,
                            progress=progress,
                        )
                    )
                except (ServiceUnavailable, SlurmCommandError) as exc:
                    # This cluster's pull stored nothing (its own transaction); the others and IBM go on.
                    pull_error = pull_error or exc
                    report.pull_errors.append(f"{cluster or '(default)'}: {exc.message}")
            if options.ibm:
                collector.resolve_usage(
                    ledger, clients, report=report, progress=progress, backend_of=clients.backend_of, now=now
                )
            else:
                report.still_pending = len(ledger.pending_usage())
            if options.reconcile:
                progress("reconciling with IBM's instance usage")
                report.reconciliation = collector.reconcile(
                    ledger,
                    clients.analytics,
                    [i.name for i in cfg.instances],
                    since=int(options.now - options.window),
                    until=now,
                )
    finally:
        clients.close()
    return CollectResult(report, outcome_error(report, pull_error))
