"""Where IBM's services are: production, staging, per-region quantum hosts, or one emulator base URL.

`Endpoints` holds three base URLs (no trailing slash):

- `iam`: IAM; the token URL is ``{iam}/identity/token``;
- `resource_controller`: the Resource Controller; paths ``/v2/resource_instances...`` are appended;
- `quantum`: the IBM Quantum platform API *including* ``/api``; paths ``/v1/...`` are appended. This is the
  us-east (non-regional) host. Account and plan-wide analytics calls always go there.

Instance-scoped calls go to `Endpoints.quantum_for(crn)`: the region is the CRN's 6th field (parsed by
`qauvern_hpc.ibm.crn`); ``us-east`` uses `quantum` as is, any other region R puts ``R.`` in front of its host
(``https://eu-de.quantum.cloud.ibm.com/api``).
Any syntactically valid region is accepted (IBM may open more). `Endpoints.single(base)` (the emulator) serves
every region from the same base; ``quantum_regions`` pins chosen regions to explicit bases, and
``regional=False`` turns the host prefixing off (e.g. for a proxy that serves every region at one URL).

Every base can be overridden on its own with `Endpoints.with_overrides` (the site config does that);
`Endpoints.with_regions` pins regions or switches the prefixing off.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from qauvern_hpc.ibm.crn import parse_crn, valid_region

US_EAST = "us-east"


def _base(url: str, what: str) -> str:
    if not isinstance(url, str):
        raise ValueError(f"{what} base URL must be a string, got {type(url).__name__}")
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{what} base URL must be http(s)://host[:port][/path], got {url!r}")
    if parsed.query or parsed.fragment:
        raise ValueError(f"{what} base URL must not carry a query or fragment, got {url!r}")
    return url.strip().rstrip("/")


@dataclass(frozen=True)
class Endpoints:
    """Base URLs of IAM, the Resource Controller and the IBM Quantum API (see the module docstring)."""

    iam: str
    resource_controller: str
    quantum: str
    regional: bool = True
    quantum_regions: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "iam", _base(self.iam, "iam"))
        object.__setattr__(
            self, "resource_controller", _base(self.resource_controller, "resource_controller")
        )
        object.__setattr__(self, "quantum", _base(self.quantum, "quantum"))
        pinned = {}
        for region, url in dict(self.quantum_regions).items():
            if not valid_region(region):
                raise ValueError(f"quantum_regions: bad region {region!r}")
            pinned[region] = _base(url, f"quantum_regions[{region}]")
        object.__setattr__(self, "quantum_regions", MappingProxyType(pinned))

    @classmethod
    def production(cls) -> Endpoints:
        return cls(
            "https://iam.cloud.ibm.com",
            "https://resource-controller.cloud.ibm.com",
            "https://quantum.cloud.ibm.com/api",
        )

    @classmethod
    def staging(cls) -> Endpoints:
        return cls(
            "https://iam.test.cloud.ibm.com",
            "https://resource-controller.test.cloud.ibm.com",
            "https://quantum.test.cloud.ibm.com/api",
        )

    @classmethod
    def single(cls, base_url: str) -> Endpoints:
        """Everything on one host (the emulator): IAM at ``{base}/identity/token``, RC at ``{base}/v2/...``,
        the quantum API at ``{base}/api/v1/...``, for every region."""
        base = _base(base_url, "emulator")
        return cls(base, base, f"{base}/api", regional=False)

    def with_overrides(
        self, *, iam: str | None = None, resource_controller: str | None = None, quantum: str | None = None
    ) -> Endpoints:
        """A copy with the given bases replaced (None or "" keeps the current one).

        An overridden `quantum` base is still made regional by host prefix; see `with_regions`.
        """
        return replace(
            self,
            iam=iam or self.iam,
            resource_controller=resource_controller or self.resource_controller,
            quantum=quantum or self.quantum,
        )

    def with_regions(
        self, quantum_regions: Mapping[str, str] | None = None, *, regional: bool | None = None
    ) -> Endpoints:
        """A copy with regions pinned to explicit quantum bases, and/or host prefixing switched on or off."""
        return replace(
            self,
            quantum_regions={**self.quantum_regions, **(quantum_regions or {})},
            regional=self.regional if regional is None else regional,
        )

    @property
    def token_url(self) -> str:
        return f"{self.iam}/identity/token"

    def quantum_for(self, crn: str) -> str:
        """The quantum API base (…/api) serving the CRN's region. Raises `UnknownCRNError`."""
        region = parse_crn(crn).region
        return self.quantum_for_region(region)

    def quantum_for_region(self, region: str) -> str:
        pinned = self.quantum_regions.get(region)
        if pinned:
            return pinned
        if not valid_region(region):
            raise ValueError(f"bad region {region!r}")
        if not self.regional or region == US_EAST:
            return self.quantum
        parsed = urllib.parse.urlsplit(self.quantum)
        host = parsed.netloc
        if host.startswith(f"{region}."):
            return self.quantum
        return urllib.parse.urlunsplit(parsed._replace(netloc=f"{region}.{host}"))

    def qrmi_endpoint(self, crn: str) -> str:
        """What qrmi's ``<name>_QRMI_IBM_QCS_ENDPOINT`` wants: the regional API base with ``/v1``."""
        return f"{self.quantum_for(crn)}/v1"
