"""Where IBM's services are: production, staging, per-region quantum hosts, or one emulator base URL."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from qauvern_hpc.ibm.errors import UnknownCRNError

_REGION = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")


@dataclass(frozen=True)
class CRN:
    text: str
    cloud: str
    service: str
    region: str
    account_id: str
    instance: str


def parse_crn(crn: str) -> CRN:
    """`crn:v1:bluemix:public:quantum-computing:us-east:a/ACCOUNT:INSTANCE::` -> its parts."""
    parts = crn.split(":")
    if len(parts) < 8 or parts[0] != "crn" or parts[1] != "v1":
        raise UnknownCRNError(crn, "not an IBM Cloud CRN")
    region, scope = parts[5], parts[6]
    if not _REGION.match(region):
        raise UnknownCRNError(crn, f"bad region {region[:30]!r} in CRN")
    if not scope.startswith("a/") or len(scope) < 3:
        raise UnknownCRNError(crn, "CRN has no account scope (a/ACCOUNT)")
    if not parts[7]:
        raise UnknownCRNError(crn, "CRN has no service instance")
    return CRN(crn, parts[2], parts[4], region, scope[2:], parts[7])


@dataclass(frozen=True)
class Endpoints:
    """Base URLs. `quantum` includes `/api`. `one_host` = every service and region on one host (emulator)."""

    iam: str
    resource_controller: str
    quantum: str
    one_host: bool = False

    @classmethod
    def production(cls) -> Endpoints:
        return cls(
            "https://iam.cloud.ibm.com",
            "https://resource-controller.cloud.ibm.com",
            "https://quantum.cloud.ibm.com/api",
        )

    @classmethod
    def staging_hosts(cls) -> Endpoints:
        return cls(
            "https://iam.test.cloud.ibm.com",
            "https://resource-controller.test.cloud.ibm.com",
            "https://quantum.test.cloud.ibm.com/api",
        )

    @classmethod
    def staging(cls) -> Endpoints:  # alias kept short for callers
        return cls.staging_hosts()

    @classmethod
    def single_host(cls, base_url: str) -> Endpoints:
        base = base_url.rstrip("/")
        return cls(base, base, f"{base}/api", one_host=True)

    @classmethod
    def single(cls, base_url: str) -> Endpoints:
        return cls.single_host(base_url)

    def with_overrides(
        self, *, iam: str | None = None, resource_controller: str | None = None, quantum: str | None = None
    ) -> Endpoints:
        return replace(
            self,
            iam=(iam or self.iam).rstrip("/"),
            resource_controller=(resource_controller or self.resource_controller).rstrip("/"),
            quantum=(quantum or self.quantum).rstrip("/"),
        )

    @property
    def token_url(self) -> str:
        return f"{self.iam}/identity/token"

    def quantum_for(self, crn: str) -> str:
        """The quantum API base (…/api) serving the CRN's region; us-east is the unprefixed host."""
        region = parse_crn(crn).region
        if self.one_host or region == "us-east":
            return self.quantum
        scheme, sep, rest = self.quantum.partition("://")
        if rest.startswith(f"{region}."):
            return self.quantum
        return f"{scheme}{sep}{region}.{rest}"

    def qrmi_endpoint(self, crn: str) -> str:
        """What qrmi's `<name>_QRMI_IBM_QCS_ENDPOINT` wants: the regional API base with `/v1`."""
        return f"{self.quantum_for(crn)}/v1"
