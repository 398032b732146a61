"""The compute API's backend calls: list, status, configuration and properties.

Invariants: with a `Service-CRN` a caller sees only the backends its instance may use (others are 404);
the queue length shown is the seeded display-only `queue_length` plus the jobs queued in the emulator (ours
and other customers'); `wait_time_seconds` is added to the device list only when asked for with
`fields=wait_time_seconds` (as IBM does). Not thread-safe: call under `EmulatorState`'s lock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from qauvern_hpc.devtools.emulator import views
from qauvern_hpc.devtools.emulator.external import OtherCustomers
from qauvern_hpc.devtools.emulator.iam import Principal
from qauvern_hpc.devtools.emulator.store import Store


class Backends:
    """`/backends[/{name}/...]` over a `Store`."""

    def __init__(self, store: Store, others: OtherCustomers) -> None:
        self._s = store
        self._others = others

    def devices(self, p: Principal, crn: str | None, fields: str, now: datetime) -> dict[str, Any]:
        s = self._s
        names = s.allowed_backends(s.service_instance(p.account, crn)) if crn else list(s.backends)
        with_wait = "wait_time_seconds" in [f.strip() for f in fields.split(",")]
        devices = []
        for n in names:
            b = s.backends[n]
            wait = self._others.wait_time(b, now) if with_wait else None
            devices.append(views.backend_device(b, s.queue_length(b), wait))
        return {"devices": devices}

    def status(self, p: Principal, crn: str | None, name: str) -> dict[str, Any]:
        b = self._s.backend(p.account, crn, name)
        return views.backend_status(b, self._s.queue_length(b))

    def configuration(self, p: Principal, crn: str | None, name: str) -> dict[str, Any]:
        return views.backend_configuration(self._s.backend(p.account, crn, name))

    def properties(self, p: Principal, crn: str | None, name: str, now: datetime) -> dict[str, Any]:
        return views.backend_properties(self._s.backend(p.account, crn, name), now)
