"""IBM Cloud IAM, Resource Controller and IBM Quantum API client.

Public surface::

    from qauvern_hpc.ibm import IBMClient, Endpoints, RetryPolicy
    with IBMClient(api_key, Endpoints.production(), timeout=30, retry=RetryPolicy()) as ibm:
        ibm.list_instances(plan_id) / instance_usage(crn) / analytics_usage(...) / daily_usage(...)
        ibm.account_plan(account, plan_id) / update_instance(crn, ...) / create_instance(...)
        ibm.create_session(crn, backend, ...) / get_session / close_session / session_jobs / backend_status

Errors (`qauvern_hpc.ibm.errors`): `IBMError` and its subclasses; models: `qauvern_hpc.ibm.models`.

Importing this package is cheap: errors, CRNs (`qauvern_hpc.ibm.crn`, the one CRN parser), endpoints and the
retry policy are stdlib-only; the client and the models (httpx, pydantic) are imported on first use of their
names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qauvern_hpc.ibm.crn import CRN, parse_crn
from qauvern_hpc.ibm.endpoints import Endpoints
from qauvern_hpc.ibm.errors import (
    IBMAuthError,
    IBMError,
    IBMNotFound,
    IBMRateLimited,
    IBMResponseError,
    InvalidRequestError,
    UnknownCRNError,
)
from qauvern_hpc.ibm.retry import RetryPolicy

if TYPE_CHECKING:
    from qauvern_hpc.ibm.client import API_VERSION, IBMClient
    from qauvern_hpc.ibm.models import (
        AccountPlan,
        BackendStatus,
        CreatedInstance,
        Instance,
        InstanceUsage,
        JobUsage,
        RuntimeJob,
        Session,
    )

__all__ = [
    "API_VERSION",
    "CRN",
    "AccountPlan",
    "BackendStatus",
    "CreatedInstance",
    "Endpoints",
    "IBMAuthError",
    "IBMClient",
    "IBMError",
    "IBMNotFound",
    "IBMRateLimited",
    "IBMResponseError",
    "Instance",
    "InstanceUsage",
    "InvalidRequestError",
    "JobUsage",
    "RetryPolicy",
    "RuntimeJob",
    "Session",
    "UnknownCRNError",
    "parse_crn",
]

_LAZY = {
    "IBMClient": "qauvern_hpc.ibm.client",
    "API_VERSION": "qauvern_hpc.ibm.client",
    "AccountPlan": "qauvern_hpc.ibm.models",
    "BackendStatus": "qauvern_hpc.ibm.models",
    "CreatedInstance": "qauvern_hpc.ibm.models",
    "Instance": "qauvern_hpc.ibm.models",
    "InstanceUsage": "qauvern_hpc.ibm.models",
    "JobUsage": "qauvern_hpc.ibm.models",
    "RuntimeJob": "qauvern_hpc.ibm.models",
    "Session": "qauvern_hpc.ibm.models",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qauvern_hpc.ibm' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
