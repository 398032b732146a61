"""IBM Cloud CRNs of IBM Quantum instances: the package's one CRN parser.

    crn:v1:<cloud>:<type>:quantum-computing:<region>:a/<account>:<instance>:[<resource-type>:<resource>]

`parse_crn` accepts exactly the CRNs of IBM Quantum service instances and raises `UnknownCRNError` (exit code
3, a config problem) naming what is wrong otherwise; `crn_or_none` is the same check for callers that show or
skip foreign CRNs instead of failing. The config, the endpoint choice, the client and the reports all go
through it, so a CRN the config accepts is one every other part can route.

Standard library only, and importing it is cheap: `qauvern_hpc.ibm` itself loads only stdlib modules eagerly
(errors, endpoints, retry) and the httpx/pydantic client on first use, so the config and the planner can use
this module without pulling in the IBM client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qauvern_hpc.ibm.errors import UnknownCRNError

QUANTUM_SERVICE = "quantum-computing"
_REGION = re.compile(r"^[a-z]{2,}(?:-[a-z0-9]+)+\Z")
_CRN_CHARS = re.compile(r"^[\x21-\x7e]+\Z")  # printable ASCII, no spaces: it travels in a header


def valid_region(region: str) -> bool:
    """A syntactically valid IBM Cloud region name (``us-east``, ``eu-de``, ``jp-tok``, ...)."""
    return isinstance(region, str) and _REGION.match(region) is not None


@dataclass(frozen=True)
class CRN:
    """The parts of an instance CRN that matter here."""

    text: str
    cloud: str  # bluemix, staging, ...
    service: str  # quantum-computing
    region: str  # us-east, eu-de, ...
    account_id: str  # from the a/<account> scope
    instance: str  # the service instance (GUID)

    def __str__(self) -> str:
        return self.text


def parse_crn(crn: str) -> CRN:
    """``crn:v1:bluemix:public:quantum-computing:us-east:a/ACCOUNT:INSTANCE::`` -> its parts.

    Raises `UnknownCRNError` (naming the problem) for anything that is not an IBM Quantum instance CRN.
    """
    if not isinstance(crn, str) or not crn:
        raise UnknownCRNError(str(crn), "empty CRN")
    if not _CRN_CHARS.match(crn):
        raise UnknownCRNError(crn, "spaces or non-ASCII characters")
    parts = crn.split(":")
    if parts[0] != "crn" or len(parts) < 8:
        raise UnknownCRNError(crn, "not a CRN (expected crn:v1:...:REGION:a/ACCOUNT:INSTANCE::)")
    if parts[1] != "v1":
        raise UnknownCRNError(crn, f"unsupported CRN version {parts[1][:20]!r}")
    service, region, scope, instance = parts[4], parts[5], parts[6], parts[7]
    if service != QUANTUM_SERVICE:
        raise UnknownCRNError(crn, f"service {service[:40]!r} is not {QUANTUM_SERVICE}")
    if not region:
        raise UnknownCRNError(crn, "no region (6th field)")
    if not _REGION.match(region):
        raise UnknownCRNError(crn, f"bad region {region[:30]!r}")
    if not scope.startswith("a/") or len(scope) < 3 or "/" in scope[2:]:
        raise UnknownCRNError(crn, "no account scope a/ACCOUNT (7th field)")
    if not instance:
        raise UnknownCRNError(crn, "no service instance (8th field)")
    return CRN(crn, parts[2], service, region, scope[2:], instance)


def crn_or_none(crn: str) -> CRN | None:
    """`parse_crn`, but None for anything it refuses (for listings that show or skip foreign CRNs)."""
    try:
        return parse_crn(crn)
    except UnknownCRNError:
        return None


def crn_account(crn: str) -> str | None:
    """The account id of an IBM Quantum instance CRN (its `a/ACCOUNT` scope), or None for any other text."""
    parsed = crn_or_none(crn)
    return parsed.account_id if parsed else None
