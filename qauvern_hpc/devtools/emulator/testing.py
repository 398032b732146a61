"""Helpers for tests that talk to the emulator over HTTP: a small deterministic seed and a thin httpx client.

The client is deliberately independent of `qauvern_hpc.ibm` (it only adds the IAM token and the
`Service-CRN` / `Account-Id` headers) so that tests exercise the emulator's wire format directly.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

import httpx

ACCOUNT = "acct1"
OTHER_ACCOUNT = "acct2"
API_KEY = "test-api-key-0001"
OTHER_API_KEY = "test-api-key-0002"
START = "2026-11-22T12:00:00+00:00"
PREMIUM_PLAN_ID = "7f666d17-7893-47d8-bf9d-2b2389fc4dfc"
BUDGET = 1_000_000
CRN_ALPHA = f"crn:v1:bluemix:public:quantum-computing:us-east:a/{ACCOUNT}:alpha-0001::"
CRN_BETA = f"crn:v1:bluemix:public:quantum-computing:eu-de:a/{ACCOUNT}:beta-0002::"
CRN_FOREIGN = f"crn:v1:bluemix:public:quantum-computing:us-east:a/{OTHER_ACCOUNT}:foreign-0003::"
APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"

# Daily usage of alpha, index = days before START's date: 1000, 1001, ... 1029 (30 days).
ALPHA_HISTORY = [1000 + i for i in range(30)]

_SEED: dict[str, Any] = {
    "clock": {"start": START, "mode": "manual"},
    "accounts": [
        {
            "id": ACCOUNT,
            "name": "Test centre",
            "plans": [{"plan": "premium", "usage_allocation_seconds": BUDGET}],
        },
        {"id": OTHER_ACCOUNT, "plans": [{"plan": "premium", "usage_allocation_seconds": 10_000}]},
    ],
    "api_keys": [
        {"key": API_KEY, "account": ACCOUNT, "name": "admin"},
        {"key": OTHER_API_KEY, "account": OTHER_ACCOUNT, "name": "other"},
    ],
    "backends": [{"name": "ibm_torino"}, {"name": "ibm_fez", "qubits": 156}],
    "instances": [
        {
            "name": "alpha",
            "crn": CRN_ALPHA,
            "usage_allocation_seconds": 200_000,
            "usage_history": ALPHA_HISTORY,
        },
        {
            "name": "beta",
            "crn": CRN_BETA,
            "usage_allocation_seconds": 500_000,
            "instance_limit_seconds": 600_000,
        },
        {"name": "foreign", "crn": CRN_FOREIGN, "usage_allocation_seconds": 1_000},
    ],
}


def make_seed(**overrides: Any) -> dict[str, Any]:
    """A fresh copy of the standard test seed (manual clock at START); top-level keys may be overridden."""
    seed = copy.deepcopy(_SEED)
    seed.update(copy.deepcopy(overrides))
    return seed


class ApiClient:
    """httpx with an IAM token: `get/post/patch/delete(path, crn=..., account=..., ...)`."""

    def __init__(
        self, base_url: str, api_key: str = API_KEY, *, crn: str | None = None, timeout: float = 10.0
    ):
        self.base_url = base_url
        self.api_key = api_key
        self.crn = crn
        self.http = httpx.Client(base_url=base_url, timeout=timeout)
        self._token: str | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def iam(self, api_key: str | None = None) -> httpx.Response:
        return self.http.post(
            "/identity/token", data={"grant_type": APIKEY_GRANT, "apikey": api_key or self.api_key}
        )

    @property
    def token(self) -> str:
        if self._token is None:
            self.refresh()
        assert self._token is not None
        return self._token

    def refresh(self) -> str:
        r = self.iam()
        r.raise_for_status()
        self._token = str(r.json()["access_token"])
        return self._token

    def request(
        self,
        method: str,
        path: str,
        *,
        crn: str | None = None,
        account: str | None = None,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        h = dict(headers or {})
        if auth:
            h["Authorization"] = f"Bearer {self.token}"
        the_crn = crn if crn is not None else self.crn
        if the_crn:
            h["Service-CRN"] = the_crn
        if account:
            h["Account-Id"] = account
        return self.http.request(method, path, headers=h, **kwargs)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    # conveniences for the compute API -----------------------------------------------------------------

    def open_session(self, backend: str = "ibm_torino", mode: str = "batch", **extra: Any) -> dict[str, Any]:
        r = self.post("/api/v1/sessions", json={"backend": backend, "mode": mode, **extra})
        r.raise_for_status()
        return dict(r.json())

    def submit(
        self,
        backend: str = "ibm_torino",
        *,
        quantum_seconds: float | None = None,
        session_id: str | None = None,
        params: dict[str, Any] | None = None,
        **extra: Any,
    ) -> str:
        body_params = dict(params or {})
        if quantum_seconds is not None:
            body_params.setdefault("emulator", {})["quantum_seconds"] = quantum_seconds
        body: dict[str, Any] = {"program_id": "sampler", "backend": backend, "params": body_params, **extra}
        if session_id is not None:
            body["session_id"] = session_id
        r = self.post("/api/v1/jobs", json=body)
        r.raise_for_status()
        return str(r.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.get(f"/api/v1/jobs/{job_id}")
        r.raise_for_status()
        return dict(r.json())

    def session(self, session_id: str) -> dict[str, Any]:
        r = self.get(f"/api/v1/sessions/{session_id}")
        r.raise_for_status()
        return dict(r.json())

    def usage(self, crn: str | None = None) -> float:
        r = self.get("/api/v1/instances/usage", crn=crn)
        r.raise_for_status()
        return float(r.json()["usage_consumed_seconds"])


def rc_path(crn: str) -> str:
    return "/v2/resource_instances/" + quote(crn, safe="")
