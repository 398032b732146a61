"""Where IBMClient sends things: production, staging and single-host endpoints, the regional quantum host
a CRN selects, CRN validation (UnknownCRNError, nothing sent) and the endpoint qrmi is given.

Host names are those of qauvern 0.14's HTTP trace (/work/shared/reference/qauvern-http-trace.txt).
"""

from __future__ import annotations

from datetime import date

import httpx
import pytest

from qauvern_hpc.core.errors import ExitCode
from qauvern_hpc.ibm import Endpoints, IBMClient, InvalidRequestError, UnknownCRNError, parse_crn

US = "crn:v1:bluemix:public:quantum-computing:us-east:a/acct1:inst-us::"
EU = "crn:v1:bluemix:public:quantum-computing:eu-de:a/acct1:inst-eu::"
STAGING_EU = "crn:v1:staging:public:quantum-computing:eu-de:a/acct1:inst-eu::"


def crn_in(region: str) -> str:
    return f"crn:v1:bluemix:public:quantum-computing:{region}:a/acct1:inst::"


def test_production_bases() -> None:
    ep = Endpoints.production()
    assert (ep.iam, ep.resource_controller, ep.quantum) == (
        "https://iam.cloud.ibm.com",
        "https://resource-controller.cloud.ibm.com",
        "https://quantum.cloud.ibm.com/api",
    )
    assert ep.token_url == "https://iam.cloud.ibm.com/identity/token"
    assert ep.regional is True


def test_staging_bases() -> None:
    ep = Endpoints.staging()
    assert (ep.iam, ep.resource_controller, ep.quantum) == (
        "https://iam.test.cloud.ibm.com",
        "https://resource-controller.test.cloud.ibm.com",
        "https://quantum.test.cloud.ibm.com/api",
    )
    assert ep.token_url == "https://iam.test.cloud.ibm.com/identity/token"
    # The trace's `--staging analyze` reaches eu-de instances at eu-de.quantum.test.cloud.ibm.com.
    assert ep.quantum_for(STAGING_EU) == "https://eu-de.quantum.test.cloud.ibm.com/api"
    assert ep.quantum_for(crn_in("us-east")) == "https://quantum.test.cloud.ibm.com/api"


def test_single_serves_everything_from_one_base() -> None:
    ep = Endpoints.single("http://127.0.0.1:8123/")
    assert (ep.iam, ep.resource_controller, ep.quantum) == (
        "http://127.0.0.1:8123",
        "http://127.0.0.1:8123",
        "http://127.0.0.1:8123/api",
    )
    assert ep.token_url == "http://127.0.0.1:8123/identity/token"
    for region in ("us-east", "eu-de", "jp-tok"):
        assert ep.quantum_for(crn_in(region)) == "http://127.0.0.1:8123/api"
    assert ep.qrmi_endpoint(EU) == "http://127.0.0.1:8123/api/v1"


def test_us_east_is_unprefixed_other_regions_are_prefixed() -> None:
    ep = Endpoints.production()
    assert ep.quantum_for(US) == "https://quantum.cloud.ibm.com/api"
    assert ep.quantum_for(EU) == "https://eu-de.quantum.cloud.ibm.com/api"


@pytest.mark.parametrize("region", ["jp-tok", "ca-tor", "us-south", "eu-gb", "ap-north2"])
def test_any_valid_region_gets_its_own_host(region: str) -> None:
    ep = Endpoints.production()
    assert ep.quantum_for(crn_in(region)) == f"https://{region}.quantum.cloud.ibm.com/api"
    assert ep.qrmi_endpoint(crn_in(region)) == f"https://{region}.quantum.cloud.ibm.com/api/v1"


def test_qrmi_endpoint_is_the_regional_base_with_v1() -> None:
    ep = Endpoints.production()
    assert ep.qrmi_endpoint(US) == "https://quantum.cloud.ibm.com/api/v1"
    assert ep.qrmi_endpoint(EU) == "https://eu-de.quantum.cloud.ibm.com/api/v1"


def test_pinned_region_and_prefixing_switched_off() -> None:
    ep = Endpoints.production().with_regions({"eu-de": "https://proxy.example/eu/api/"})
    assert ep.quantum_for(EU) == "https://proxy.example/eu/api"
    assert ep.quantum_for(crn_in("jp-tok")) == "https://jp-tok.quantum.cloud.ibm.com/api"
    flat = Endpoints.production().with_regions(regional=False)
    assert flat.quantum_for(EU) == "https://quantum.cloud.ibm.com/api"


def test_overridden_quantum_base_keeps_its_port_and_is_still_prefixed() -> None:
    ep = Endpoints.production().with_overrides(quantum="http://qapi.local:8443/api")
    assert ep.iam == "https://iam.cloud.ibm.com"
    assert ep.quantum_for(US) == "http://qapi.local:8443/api"
    assert ep.quantum_for(EU) == "http://eu-de.qapi.local:8443/api"


@pytest.mark.parametrize(
    "base", ["quantum.cloud.ibm.com", "ftp://host", "https://", "https://h/api?x=1", "https://h/api#frag"]
)
def test_bad_base_urls_are_refused(base: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        Endpoints.single(base)


def test_parse_crn_parts() -> None:
    crn = parse_crn(EU)
    assert (crn.cloud, crn.service, crn.region, crn.account_id, crn.instance) == (
        "bluemix",
        "quantum-computing",
        "eu-de",
        "acct1",
        "inst-eu",
    )
    assert str(crn) == EU


MALFORMED = {
    "empty": ("", "empty CRN"),
    "not a crn": ("inst-eu", "not a CRN"),
    "too few fields": ("crn:v1:bluemix:public:quantum-computing:eu-de", "not a CRN"),
    "version": ("crn:v2:bluemix:public:quantum-computing:eu-de:a/acct1:inst::", "unsupported CRN version"),
    "service": ("crn:v1:bluemix:public:cloud-object-storage:eu-de:a/acct1:inst::", "is not quantum-"),
    "no region": ("crn:v1:bluemix:public:quantum-computing::a/acct1:inst::", "no region"),
    "upper-case region": ("crn:v1:bluemix:public:quantum-computing:EU-DE:a/acct1:inst::", "bad region"),
    "underscore region": ("crn:v1:bluemix:public:quantum-computing:eu_de:a/acct1:inst::", "bad region"),
    "global region": ("crn:v1:bluemix:public:quantum-computing:global:a/acct1:inst::", "bad region"),
    "no a/ scope": ("crn:v1:bluemix:public:quantum-computing:eu-de:acct1:inst::", "account scope"),
    "empty account": ("crn:v1:bluemix:public:quantum-computing:eu-de:a/:inst::", "account scope"),
    "nested scope": ("crn:v1:bluemix:public:quantum-computing:eu-de:a/x/y:inst::", "account scope"),
    "no instance": ("crn:v1:bluemix:public:quantum-computing:eu-de:a/acct1:::", "no service instance"),
    "space": ("crn:v1:bluemix:public:quantum-computing:eu-de:a/acct1:in st::", "spaces or non-ASCII"),
    "newline": ("crn:v1:bluemix:public:quantum-computing:eu-de:a/acct1:inst::\n", "spaces or non-ASCII"),
    "non-ascii": ("crn:v1:bluemix:public:quantum-computing:eu-dé:a/acct1:inst::", "spaces or non-ASCII"),
}


@pytest.mark.parametrize(("crn", "why"), list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_crns_are_unknown_crn_errors(crn: str, why: str) -> None:
    with pytest.raises(UnknownCRNError) as exc:
        Endpoints.production().quantum_for(crn)
    assert why in str(exc.value)
    assert str(exc.value).startswith("unknown IBM Cloud CRN: ")
    assert "\n" not in str(exc.value)
    assert exc.value.exit_code == ExitCode.CONFIG
    assert exc.value.crn == crn


def test_malformed_crn_sends_nothing() -> None:
    """The CRN is checked before the IAM exchange: a config error never costs a request."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500)

    bad = "crn:v1:bluemix:public:quantum-computing:EU:a/acct1:inst::"
    with IBMClient("k", Endpoints.production(), transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(UnknownCRNError):
            client.instance_usage(bad)
        with pytest.raises(UnknownCRNError):
            client.create_session(bad, "ibm_torino")
        with pytest.raises(UnknownCRNError):
            client.update_instance(bad, allocation_seconds=60, limit_seconds=None)
        with pytest.raises(UnknownCRNError):
            client.daily_usage(bad, account_id="acct1", start=date(2026, 11, 1), end=date(2026, 11, 2))
    assert seen == []


def test_region_with_a_trailing_newline_is_refused() -> None:
    from qauvern_hpc.ibm.crn import valid_region

    assert valid_region("eu-de") is True
    assert valid_region("eu-de\n") is False
    with pytest.raises(ValueError, match="bad region"):
        Endpoints.production().quantum_for_region("eu-de\n")
    never = httpx.MockTransport(lambda r: httpx.Response(500))
    with IBMClient("k", Endpoints.production(), transport=never) as c, pytest.raises(InvalidRequestError):
        c.create_instance("n", target="eu-de\n", resource_group="rg", plan_id="p", allocation_seconds=60)
