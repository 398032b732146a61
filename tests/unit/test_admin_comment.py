import pytest

from qauvern_hpc.admin_comment import (
    PREFIX,
    AdminRecord,
    format_admin_comment,
    merge_admin_comment,
    parse_admin_comment,
)

RECORD = {
    "rule": "physics",
    "instance": "phys-2025",
    "resources": [
        {"resource": "ibm_torino", "session_id": "sess-1"},
        {"resource": "ibm_fez", "session_id": None},
    ],
}


def test_round_trip() -> None:
    text = format_admin_comment(RECORD)
    assert text == f"{PREFIX}rule=physics;inst=phys-2025;res=ibm_torino@sess-1,ibm_fez@-"
    assert parse_admin_comment(text) == AdminRecord(
        "physics", "phys-2025", (("ibm_torino", "sess-1"), ("ibm_fez", None))
    )


def test_separators_in_values_are_encoded() -> None:
    rec = {"rule": "a;b=c", "instance": "x | y", "resources": [{"resource": "r", "session_id": "s@1,2"}]}
    parsed = parse_admin_comment(format_admin_comment(rec))
    assert parsed == AdminRecord("a;b=c", "x | y", (("r", "s@1,2"),))


def test_found_among_other_admin_text_and_replaced_on_merge() -> None:
    old = merge_admin_comment("ticket 42", format_admin_comment(RECORD))
    assert old.startswith("ticket 42 | qauvern:v1;")
    new = merge_admin_comment(old, format_admin_comment({**RECORD, "rule": "chem"}))
    assert new.count(PREFIX) == 1
    parsed = parse_admin_comment(new)
    assert parsed is not None and parsed.rule == "chem"


@pytest.mark.parametrize("text", [None, "", "hello", "qauvern:v1;junk", "qauvern:v1;inst=a;res=@x"])
def test_absent_or_malformed_is_none(text: str | None) -> None:
    assert parse_admin_comment(text) is None


def test_too_long_is_refused() -> None:
    rec = {"rule": "r", "instance": "i", "resources": [{"resource": "x" * 60, "session_id": "s" * 900}] * 2}
    with pytest.raises(ValueError, match="more than 1000"):
        format_admin_comment(rec)
