"""Seeds: conveniences, validation with locations, files."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.devtools.emulator.model import fingerprint
from qauvern_hpc.devtools.emulator.seed import SeedError, SeedUnreadable, clock_settings, normalize, read_seed
from qauvern_hpc.ibm.plans import PLAN_IDS
from tests.support.paths import REPO

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
EXAMPLE = REPO / "qauvern_hpc" / "data" / "emulator-seed.example.yaml"


def base(**instances_extra: Any) -> dict[str, Any]:
    return {
        "accounts": [{"id": "acct1", "plans": [{"plan": "Premium", "usage_allocation_seconds": 1000}]}],
        "api_keys": [{"key": "k1"}],
        "backends": [{"name": "ibm_torino"}],
        "instances": [{"name": "one", "usage_allocation_seconds": 100, **instances_extra}],
    }


def test_conveniences_are_expanded() -> None:
    m = normalize(base(region="eu-de", usage_history=[10, 0, 5.5]), now=NOW)
    plan = m.accounts[0].plans[0]
    assert (plan.plan, plan.plan_id) == ("premium", PLAN_IDS["premium"])
    assert m.api_keys[0].account == "acct1" and m.api_keys[0].fingerprint == fingerprint("k1")
    inst = m.instances[0]
    assert inst.account == "acct1" and inst.plan_id == PLAN_IDS["premium"] and inst.region == "eu-de"
    assert inst.crn == f"crn:v1:bluemix:public:quantum-computing:eu-de:a/acct1:{inst.guid}::"
    assert normalize(base(region="eu-de"), now=NOW).instances[0].crn == inst.crn  # deterministic
    assert inst.usage_history == {date(2026, 11, 22): 10.0, date(2026, 11, 21): 0.0, date(2026, 11, 20): 5.5}
    assert inst.created_at == NOW


def test_history_mapping_with_dates_and_days_ago() -> None:
    m = normalize(base(usage_history={"2026-11-01": 7, 3: 2, "-1": 4, "2026-11-19": 1}), now=NOW)
    assert m.instances[0].usage_history == {
        date(2026, 11, 1): 7.0,
        date(2026, 11, 19): 3.0,
        date(2026, 11, 21): 4.0,
    }


def test_explicit_crn_gives_region_account_and_guid() -> None:
    crn = "crn:v1:bluemix:public:quantum-computing:eu-de:a/acct1:abc-123::"
    inst = normalize(base(crn=crn), now=NOW).instances[0]
    assert (inst.region, inst.account, inst.guid) == ("eu-de", "acct1", "abc-123")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda s: s["accounts"][0]["plans"][0].update(plan="gold"),
            "accounts[0].plans[0]: unknown plan 'gold'",
        ),
        (lambda s: s["instances"][0].update(usage_allocation_seconds=1001), "sum to 1001 s, more than"),
        (lambda s: s["instances"][0].update(backends=["ibm_nowhere"]), "unknown backend 'ibm_nowhere'"),
        (lambda s: s["instances"][0].update(usage_history=[1, -2]), "usage cannot be negative"),
        (lambda s: s["instances"][0].update(usage_history={"soon": 1}), "neither an ISO date nor"),
        (
            lambda s: s["instances"][0].update(usage_history=[1, float("nan")]),
            "usage_history[1] (2026-11-21): nan is not a finite number",
        ),
        (lambda s: s["instances"][0].update(usage_history=[True]), "True is not a number of seconds"),
        (
            lambda s: s["instances"][0].update(usage_allocation_seconds=-1),
            "instances[0].usage_allocation_seconds",
        ),
        (lambda s: s["instances"][0].update(crn="not-a-crn"), "is not a CRN"),
        (lambda s: s["instances"].append(dict(s["instances"][0])), "duplicate instance crn"),
        (lambda s: s["accounts"].append({"id": "acct2"}), "give `account` explicitly"),
        (lambda s: s["api_keys"][0].pop("key"), "needs `key`"),
        (lambda s: s.update(page_size=0), "page_size"),
        (lambda s: s.update(colour="red"), "colour: Extra inputs are not permitted"),
        (lambda s: s.update(instances={"one": 1}), "instances: must be a list"),
    ],
)
def test_problems_are_reported_with_their_location(mutate: Any, message: str) -> None:
    seed = base()
    mutate(seed)
    with pytest.raises(SeedError) as exc:
        normalize(seed, now=NOW)
    assert message in str(exc.value)


def test_fingerprint_only_keys_refer_to_existing_keys() -> None:
    first = normalize(base(), now=NOW)
    dump = first.model_dump(mode="json")
    dump["api_keys"][0]["key"] = None
    again = normalize(dump, now=NOW, existing_keys=first.api_keys)
    assert again.api_keys[0].key == "k1"
    assert normalize(again.model_dump(mode="json"), now=NOW) == again  # the canonical form round-trips


def test_read_seed_files(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps(base()))
    assert read_seed(tmp_path / "s.json")["api_keys"] == [{"key": "k1"}]
    (tmp_path / "s.yaml").write_text("page_size: 2\n")
    assert read_seed(str(tmp_path / "s.yaml")) == {"page_size": 2}
    (tmp_path / "empty.yaml").write_text("")
    assert read_seed(tmp_path / "empty.yaml") == {}
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(SeedError, match="mapping at the top level"):
        read_seed(tmp_path / "list.yaml")
    (tmp_path / "broken.json").write_text('{"a":\n  }')
    with pytest.raises(SeedError, match=r"broken.json:2:3: not valid JSON: Expecting value$"):
        read_seed(tmp_path / "broken.json")
    (tmp_path / "broken.yaml").write_text("a: [1,\nb: 2\n")
    with pytest.raises(SeedError) as exc:
        read_seed(tmp_path / "broken.yaml")
    expected = "broken.yaml:3:1: not valid YAML: while parsing a flow sequence: expected ',' or ']'"
    assert expected in str(exc.value)
    assert "\n" not in str(exc.value)
    (tmp_path / "latin1.yaml").write_bytes("a: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SeedError, match=r"latin1.yaml: not UTF-8 text \(byte 6"):
        read_seed(tmp_path / "latin1.yaml")
    with pytest.raises(SeedUnreadable, match="cannot read seed"):
        read_seed(tmp_path / "missing.yaml")
    assert read_seed(None) == {}


def test_clock_section() -> None:
    assert clock_settings({"clock": {"start": "2026-01-01T00:00:00Z", "mode": "manual"}}) == {
        "start": datetime(2026, 1, 1, tzinfo=UTC),
        "mode": "manual",
    }
    with pytest.raises(SeedError, match="unknown key"):
        clock_settings({"clock": {"speed": 2}})
    with pytest.raises(SeedError, match="not an ISO 8601"):
        clock_settings({"clock": {"start": "noon"}})
    for scale in ("fast", -1, 0, True, float("inf")):
        with pytest.raises(SeedError, match=r"clock\.time_scale: must be a number > 0"):
            clock_settings({"clock": {"time_scale": scale}})
    assert clock_settings({"clock": {"time_scale": 2}}) == {"time_scale": 2}


def test_the_shipped_example_seed_is_valid() -> None:
    raw = read_seed(EXAMPLE)
    m = normalize(raw, now=NOW)
    assert [p.plan for p in m.accounts[0].plans] == ["premium"]
    assert {i.region for i in m.instances} == {"us-east", "eu-de"}
    assert [b.name for b in m.backends] == ["ibm_torino", "ibm_fez"]
    assert sorted(len(i.usage_history) for i in m.instances) == [2, 60, 60, 60]
    assert len(m.api_keys) == 1
