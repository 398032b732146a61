"""Endpoints: production/staging/emulator hosts, regional quantum hosts from CRNs, overrides, CRN parsing."""

from __future__ import annotations

import pytest

from qauvern_hpc.core.errors import ExitCode, ServiceUnavailable
from qauvern_hpc.ibm import CRN, Endpoints, IBMError, UnknownCRNError, parse_crn

ACCT = "0123456789abcdef0123456789abcdef"
US = f"crn:v1:bluemix:public:quantum-computing:us-east:a/{ACCT}:11111111-1111-4111-8111-111111111111::"
EU = f"crn:v1:bluemix:public:quantum-computing:eu-de:a/{ACCT}:22222222-2222-4222-8222-222222222222::"
TOK = "crn:v1:bluemix:public:quantum-computing:jp-tok:a/acct:inst-jp::"
STAGING_EU = "crn:v1:staging:public:quantum-computing:eu-de:a/acct:inst-s::"


def test_parse_crn_parts() -> None:
    crn = parse_crn(EU)
    assert crn == CRN(
        text=EU,
        cloud="bluemix",
        service="quantum-computing",
        region="eu-de",
        account_id=ACCT,
        instance="22222222-2222-4222-8222-222222222222",
    )
    assert str(crn) == EU
    assert parse_crn(STAGING_EU).cloud == "staging"


def test_parse_crn_without_trailing_fields() -> None:
    assert parse_crn("crn:v1:bluemix:public:quantum-computing:us-east:a/acct:inst").instance == "inst"


@pytest.mark.parametrize(
    ("crn", "why"),
    [
        ("", "empty CRN"),
        ("not-a-crn", "not a CRN"),
        ("crn:v1:oops", "not a CRN"),
        ("crn:v2:bluemix:public:quantum-computing:us-east:a/acct:inst::", "unsupported CRN version 'v2'"),
        ("crn:v1:bluemix:public:cloud-object-storage:us-east:a/acct:inst::", "is not quantum-computing"),
        ("crn:v1:bluemix:public:quantum-computing::a/acct:inst::", "no region"),
        ("crn:v1:bluemix:public:quantum-computing:global:a/acct:inst::", "bad region 'global'"),
        ("crn:v1:bluemix:public:quantum-computing:US-EAST:a/acct:inst::", "bad region 'US-EAST'"),
        ("crn:v1:bluemix:public:quantum-computing:us-east:acct:inst::", "no account scope"),
        ("crn:v1:bluemix:public:quantum-computing:us-east:a/:inst::", "no account scope"),
        ("crn:v1:bluemix:public:quantum-computing:us-east:a/acct::", "no service instance"),
        ("crn:v1:bluemix:public:quantum-computing:us-east:a/acct:in st::", "spaces or non-ASCII"),
        ("crn:v1:bluemix:public:quantum-computing:us-east:a/acct:insté::", "spaces or non-ASCII"),
    ],
)
def test_malformed_crns_are_refused_with_the_reason(crn: str, why: str) -> None:
    with pytest.raises(UnknownCRNError) as info:
        parse_crn(crn)
    err = info.value
    assert why in str(err)
    assert str(err).startswith("unknown IBM Cloud CRN: ")
    assert "\n" not in str(err)
    assert err.crn == crn
    assert isinstance(err, IBMError) and isinstance(err, ServiceUnavailable)
    assert err.exit_code == ExitCode.CONFIG


def test_production_hosts() -> None:
    ep = Endpoints.production()
    assert ep.token_url == "https://iam.cloud.ibm.com/identity/token"
    assert ep.resource_controller == "https://resource-controller.cloud.ibm.com"
    assert ep.quantum == "https://quantum.cloud.ibm.com/api"
    assert ep.quantum_for(US) == "https://quantum.cloud.ibm.com/api"
    assert ep.quantum_for(EU) == "https://eu-de.quantum.cloud.ibm.com/api"
    assert ep.qrmi_endpoint(EU) == "https://eu-de.quantum.cloud.ibm.com/api/v1"


def test_staging_hosts() -> None:
    ep = Endpoints.staging()
    assert ep.token_url == "https://iam.test.cloud.ibm.com/identity/token"
    assert ep.resource_controller == "https://resource-controller.test.cloud.ibm.com"
    assert ep.quantum_for(US) == "https://quantum.test.cloud.ibm.com/api"
    assert ep.quantum_for(STAGING_EU) == "https://eu-de.quantum.test.cloud.ibm.com/api"


def test_any_valid_region_gets_its_prefixed_host() -> None:
    assert Endpoints.production().quantum_for(TOK) == "https://jp-tok.quantum.cloud.ibm.com/api"
    assert Endpoints.production().quantum_for_region("ca-tor") == "https://ca-tor.quantum.cloud.ibm.com/api"


def test_unknown_crn_in_quantum_for_raises() -> None:
    with pytest.raises(UnknownCRNError, match="bad region"):
        Endpoints.production().quantum_for("crn:v1:bluemix:public:quantum-computing:Mars:a/a:i::")


def test_single_host_serves_every_region() -> None:
    ep = Endpoints.single("http://127.0.0.1:8123/")
    assert ep.token_url == "http://127.0.0.1:8123/identity/token"
    assert ep.resource_controller == "http://127.0.0.1:8123"
    assert ep.quantum == "http://127.0.0.1:8123/api"
    for crn in (US, EU, TOK):
        assert ep.quantum_for(crn) == "http://127.0.0.1:8123/api"
    assert ep.qrmi_endpoint(EU) == "http://127.0.0.1:8123/api/v1"


def test_each_base_can_be_overridden_alone() -> None:
    base = Endpoints.production()
    ep = base.with_overrides(iam="https://iam.example.org/")
    assert ep.token_url == "https://iam.example.org/identity/token"
    assert ep.resource_controller == base.resource_controller and ep.quantum == base.quantum
    ep = base.with_overrides(resource_controller="https://rc.example.org")
    assert ep.resource_controller == "https://rc.example.org" and ep.iam == base.iam
    ep = base.with_overrides(quantum="https://quantum.example.org/api/")
    assert ep.quantum == "https://quantum.example.org/api"
    assert ep.quantum_for(EU) == "https://eu-de.quantum.example.org/api"  # still regional
    assert base.with_overrides(iam=None, quantum="") == base


def test_regions_can_be_pinned_or_prefixing_switched_off() -> None:
    ep = Endpoints.production().with_regions({"eu-de": "https://proxy.example.org/eu/api/"})
    assert ep.quantum_for(EU) == "https://proxy.example.org/eu/api"
    assert ep.quantum_for(TOK) == "https://jp-tok.quantum.cloud.ibm.com/api"
    flat = (
        Endpoints.production()
        .with_overrides(quantum="https://proxy.example.org/api")
        .with_regions(regional=False)
    )
    assert flat.quantum_for(EU) == "https://proxy.example.org/api"
    assert flat.quantum_for(TOK) == "https://proxy.example.org/api"


def test_a_base_already_on_the_regional_host_is_not_prefixed_twice() -> None:
    ep = Endpoints.production().with_overrides(quantum="https://eu-de.quantum.cloud.ibm.com/api")
    assert ep.quantum_for(EU) == "https://eu-de.quantum.cloud.ibm.com/api"


@pytest.mark.parametrize(
    "url",
    ["quantum.cloud.ibm.com/api", "ftp://host/api", "https://", "https://host/api?x=1", "https://host/#f"],
)
def test_bad_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="quantum base URL"):
        Endpoints("https://iam", "https://rc", url)


def test_bad_pinned_region_is_refused() -> None:
    with pytest.raises(ValueError, match="bad region 'EU'"):
        Endpoints.production().with_regions({"EU": "https://x/api"})


def test_endpoints_are_immutable_and_comparable() -> None:
    ep = Endpoints.production()
    with pytest.raises(AttributeError):
        ep.iam = "https://other"  # type: ignore[misc]
    assert ep == Endpoints.production()
    assert ep != Endpoints.staging()
