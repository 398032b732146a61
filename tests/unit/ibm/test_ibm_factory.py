"""Where the admin client sends its requests: the site config's endpoint overrides, `emulator`, `ibm.staging`,
the global --staging and $IBMCLOUD_STAGING, down to the URLs an `IBMClient` really requests."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from qauvern_hpc import cli
from qauvern_hpc.config import Config, parse_config
from qauvern_hpc.config.ibm_access import endpoints_from_config
from qauvern_hpc.ibm import IBMClient
from qauvern_hpc.ibm.factory import staging_from_env

ACCOUNT = "acc"
CRN_US = f"crn:v1:bluemix:public:quantum-computing:us-east:a/{ACCOUNT}:g-us::"
CRN_EU = f"crn:v1:bluemix:public:quantum-computing:eu-de:a/{ACCOUNT}:g-eu::"


def config(tmp_path: Path, ibm_extra: str = "") -> Config:
    text = (
        f"ibm:\n  account_id: {ACCOUNT}\n  plan: premium\n{ibm_extra}"
        f'instances:\n  - name: us\n    crn: "{CRN_US}"\n  - name: eu\n    crn: "{CRN_EU}"\n'
    )
    return parse_config(text, tmp_path / "config.yaml", check_key_files=False).config


@pytest.mark.parametrize(
    ("value", "staging"),
    [
        (None, False),
        ("", False),
        ("0", False),
        ("false", False),
        ("False", False),
        ("no", False),
        (" off ", False),
        ("1", True),
        ("True", True),  # qauvern's README: export IBMCLOUD_STAGING=True
        ("yes", True),
    ],
)
def test_ibmcloud_staging_env_is_a_flag(
    monkeypatch: pytest.MonkeyPatch, value: str | None, staging: bool
) -> None:
    if value is None:
        monkeypatch.delenv("IBMCLOUD_STAGING", raising=False)
    else:
        monkeypatch.setenv("IBMCLOUD_STAGING", value)
    assert staging_from_env() is staging
    top, _ = cli._top_parser().parse_known_args(["instances"])
    assert top.staging is staging
    assert cli._top_parser().parse_known_args(["--staging", "instances"])[0].staging is True


def test_staging_hosts_from_the_flag_the_env_or_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = config(tmp_path)
    prod = endpoints_from_config(plain)
    assert (prod.iam, prod.resource_controller, prod.quantum_for(CRN_EU)) == (
        "https://iam.cloud.ibm.com",
        "https://resource-controller.cloud.ibm.com",
        "https://eu-de.quantum.cloud.ibm.com/api",
    )
    monkeypatch.setenv("IBMCLOUD_STAGING", "True")
    args, _ = cli._top_parser().parse_known_args(["instances"])
    for ep in (
        endpoints_from_config(plain, staging=args.staging),
        endpoints_from_config(config(tmp_path, "  staging: true\n")),
    ):
        assert (ep.iam, ep.resource_controller, ep.quantum_for(CRN_US), ep.quantum_for(CRN_EU)) == (
            "https://iam.test.cloud.ibm.com",
            "https://resource-controller.test.cloud.ibm.com",
            "https://quantum.test.cloud.ibm.com/api",
            "https://eu-de.quantum.test.cloud.ibm.com/api",  # as qauvern 0.14 --staging (HTTP trace)
        )


class Recorder:
    """An httpx transport answering every call IBM-style and noting the URL asked for."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url.copy_with(query=None))
        self.urls.append(url)
        if url.endswith("/identity/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        if url.endswith("/v2/resource_instances"):
            return httpx.Response(200, json={"resources": [], "next_url": None})
        if "/v1/accounts/" in url:
            return httpx.Response(
                200,
                json={"plans": [{"usage_allocation_seconds": 1, "unallocated_usage_seconds": 1}]},
            )
        return httpx.Response(200, json={"usage_consumed_seconds": 1})


def calls_to(endpoints: Any) -> list[str]:
    rec = Recorder()
    with IBMClient("k", endpoints, transport=httpx.MockTransport(rec)) as client:
        client.list_instances()
        client.instance_usage(CRN_US)
        client.instance_usage(CRN_EU)
        client.account_plan(ACCOUNT, "p")
    return rec.urls


def test_every_base_url_is_overridden_from_the_config(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "  endpoints:\n    iam: https://iam.example.org/\n    resource_controller: http://rc.example.org:8080\n"
        "    quantum: https://q.example.org/api\n",
    )
    assert calls_to(endpoints_from_config(cfg)) == [
        "https://iam.example.org/identity/token",
        "http://rc.example.org:8080/v2/resource_instances",
        "https://q.example.org/api/v1/instances/usage",
        "https://eu-de.q.example.org/api/v1/instances/usage",  # still regional: the CRN's region prefixes
        "https://q.example.org/api/v1/accounts/acc",
    ]
    only_iam = config(tmp_path, "  endpoints: {iam: 'http://127.0.0.1:9/'}\n")
    assert calls_to(endpoints_from_config(only_iam)) == [
        "http://127.0.0.1:9/identity/token",
        "https://resource-controller.cloud.ibm.com/v2/resource_instances",
        "https://quantum.cloud.ibm.com/api/v1/instances/usage",
        "https://eu-de.quantum.cloud.ibm.com/api/v1/instances/usage",
        "https://quantum.cloud.ibm.com/api/v1/accounts/acc",
    ]


def test_emulator_puts_every_service_and_region_at_one_base(tmp_path: Path) -> None:
    cfg = config(tmp_path, "  staging: true\n  endpoints: {emulator: 'http://127.0.0.1:8790/'}\n")
    assert calls_to(endpoints_from_config(cfg, staging=True)) == [
        "http://127.0.0.1:8790/identity/token",
        "http://127.0.0.1:8790/v2/resource_instances",
        "http://127.0.0.1:8790/api/v1/instances/usage",
        "http://127.0.0.1:8790/api/v1/instances/usage",
        "http://127.0.0.1:8790/api/v1/accounts/acc",
    ]


def test_client_from_config_honours_the_global_staging_option(tmp_path: Path) -> None:
    from qauvern_hpc.config.ibm_access import client_from_config

    key = tmp_path / "k"
    key.write_text("key-1\n")
    key.chmod(0o600)
    args = SimpleNamespace(staging=True, api_key_file=str(key))
    with client_from_config(config(tmp_path), args) as client:
        assert client.endpoints.iam == "https://iam.test.cloud.ibm.com"
    args.staging = False
    with client_from_config(config(tmp_path), args) as client:
        assert client.endpoints.iam == "https://iam.cloud.ibm.com"
