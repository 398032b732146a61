"""IBM Cloud IAM, Resource Controller and IBM Quantum API client (see `client`)."""

from qauvern_hpc.ibm.client import IBMClient
from qauvern_hpc.ibm.endpoints import CRN, Endpoints, parse_crn
from qauvern_hpc.ibm.errors import (
    IBMAuthError,
    IBMError,
    IBMNotFound,
    IBMRateLimited,
    IBMResponseError,
    UnknownCRNError,
)
from qauvern_hpc.ibm.retry import RetryPolicy

__all__ = [
    "CRN",
    "Endpoints",
    "IBMAuthError",
    "IBMClient",
    "IBMError",
    "IBMNotFound",
    "IBMRateLimited",
    "IBMResponseError",
    "RetryPolicy",
    "UnknownCRNError",
    "parse_crn",
]
