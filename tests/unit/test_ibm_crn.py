"""qauvern_hpc.ibm.crn: the one CRN parser, cheap to import, and the consumers that rely on it agreeing."""

from __future__ import annotations

from typing import Any

import pytest

from qauvern_hpc.ibm.crn import CRN, crn_or_none, parse_crn
from qauvern_hpc.ibm.errors import UnknownCRNError
from tests.support.imports import modules_after, top_level

GOOD = "crn:v1:bluemix:public:quantum-computing:eu-de:a/acct1:inst-1::"
COS = "crn:v1:bluemix:public:cloud-object-storage:global:a/abc::"
MALFORMED = "crn:v1:bluemix:public:quantum-computing:eu-de:acct1"


def test_importing_crn_pulls_in_no_client() -> None:
    loaded = modules_after("import qauvern_hpc.ibm.crn")
    assert not top_level(loaded) & {"httpx", "pydantic", "yaml"}
    assert not loaded & {"qauvern_hpc.ibm.client", "qauvern_hpc.ibm.models"}


def test_parse_and_crn_or_none_agree() -> None:
    assert parse_crn(GOOD) == CRN(GOOD, "bluemix", "quantum-computing", "eu-de", "acct1", "inst-1")
    assert crn_or_none(GOOD) == parse_crn(GOOD)
    cases = ((COS, "service 'cloud-object-storage' is not quantum-computing"), (MALFORMED, "not a CRN"))
    for bad, why in cases:
        with pytest.raises(UnknownCRNError, match=why):
            parse_crn(bad)
        assert crn_or_none(bad) is None


def test_reports_read_only_quantum_crns() -> None:
    from qauvern_hpc.ibm.crn import crn_account
    from qauvern_hpc.ops.account import _region

    assert (crn_account(GOOD), _region(GOOD)) == ("acct1", "eu-de")
    assert (crn_account(COS), _region(COS)) == (None, "?")


def test_configure_skips_an_instance_whose_crn_is_not_a_quantum_one() -> None:
    from qauvern_hpc.commands.configure import build
    from qauvern_hpc.ibm.models import Instance

    def inst(name: str, crn: str) -> Any:
        return Instance.model_validate(
            {
                "id": crn,
                "name": name,
                "extensions": {"usage_allocation_seconds": 100, "instance_limit_seconds": None},
            }
        )

    doc = build(
        [inst("good", GOOD), inst("cos", COS)],
        plan="premium",
        account_id="acct1",
        region=None,
        resources=[],
        emulator=None,
        staging=False,
        key_file="/k",
    )
    assert [i["name"] for i in doc["instances"]] == ["good"]
    assert doc["skipped"] == [{"name": "cos", "crn": COS, "reason": "not an IBM Quantum instance CRN"}]


def test_emulator_seed_takes_its_instance_fields_from_the_parser() -> None:
    from datetime import UTC, datetime

    from qauvern_hpc.devtools.emulator.seed import SeedError, normalize

    def seed(crn: str) -> dict[str, Any]:
        return {
            "accounts": [{"id": "acct1", "plans": [{"plan": "premium", "usage_allocation_seconds": 10}]}],
            "api_keys": [{"key": "k1"}],
            "instances": [{"name": "one", "crn": crn, "usage_allocation_seconds": 5}],
        }

    now = datetime(2026, 11, 22, tzinfo=UTC)
    inst = normalize(seed(GOOD), now=now).instances[0]
    assert (inst.account, inst.region, inst.guid) == ("acct1", "eu-de", "inst-1")
    with pytest.raises(SeedError, match=r"is not a CRN \(service 'cloud-object-storage'"):
        normalize(seed(COS), now=now)
