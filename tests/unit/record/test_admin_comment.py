import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qauvern_hpc.record.admin_comment import (
    MAX_LENGTH,
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
PARSED = AdminRecord("physics", "phys-2025", (("ibm_torino", "sess-1"), ("ibm_fez", None)))


def test_round_trip() -> None:
    text = format_admin_comment(RECORD)
    assert text == f"{PREFIX}rule=physics;inst=phys-2025;res=ibm_torino@sess-1,ibm_fez@-"
    assert parse_admin_comment(text) == PARSED


def test_separators_in_values_are_encoded() -> None:
    rec = {
        "rule": "a;b=c",
        "instance": "x | y\nz",
        "resources": [{"resource": "r,é", "session_id": "s@1,2%"}],
    }
    text = format_admin_comment(rec)
    assert not any(c in text for c in " |\n") and text.isascii()
    assert text == f"{PREFIX}rule=a%3Bb%3Dc;inst=x%20%7C%20y%0Az;res=r%2C%C3%A9@s%401%2C2%25"
    assert parse_admin_comment(text) == AdminRecord("a;b=c", "x | y\nz", (("r,é", "s@1,2%"),))


def test_no_resources_and_missing_rule() -> None:
    text = format_admin_comment({"instance": "i", "resources": []})
    assert text == f"{PREFIX}rule=;inst=i;res="
    assert parse_admin_comment(text) == AdminRecord("", "i", ())
    with pytest.raises(ValueError, match="without a name"):
        format_admin_comment({"instance": "i", "resources": [{"resource": "", "session_id": "s"}]})


def test_found_among_other_admin_text_and_replaced_on_merge() -> None:
    old = merge_admin_comment("ticket 42", format_admin_comment(RECORD))
    assert old == "ticket 42 | qauvern:v1;rule=physics;inst=phys-2025;res=ibm_torino@sess-1,ibm_fez@-"
    new = merge_admin_comment(old, format_admin_comment({**RECORD, "rule": "chem"}))
    assert new.count(PREFIX) == 1 and new.startswith("ticket 42 | ")
    parsed = parse_admin_comment(new)
    assert parsed is not None and parsed.rule == "chem"
    assert merge_admin_comment(None, "qauvern:v1;rule=;inst=i;res=") == "qauvern:v1;rule=;inst=i;res="
    assert merge_admin_comment("", "qauvern:v1;rule=;inst=i;res=") == "qauvern:v1;rule=;inst=i;res="


@pytest.mark.parametrize(
    "text",
    [
        "note|qauvern:v1;rule=physics;inst=phys-2025;res=ibm_torino@sess-1,ibm_fez@-",
        "moved from\nqauvern:v1;rule=physics;inst=phys-2025;res=ibm_torino@sess-1,ibm_fez@-\nby hand",
        "qauvern:v1;rule=physics;inst=phys-2025;res=ibm_torino@sess-1,ibm_fez@- see ticket 9",
        "a | qauvern:v1;rule=physics;inst=phys-2025;res=ibm_torino@sess-1,ibm_fez@- | b",
        "\tqauvern:v1;rule=physics;inst=phys-2025;res=ibm_torino@sess-1,ibm_fez@-\r\n",
        # key order does not matter; unknown keys are ignored
        "qauvern:v1;res=ibm_torino@sess-1,ibm_fez@-;future=1;inst=phys-2025;rule=physics",
    ],
)
def test_tolerant_of_surrounding_text(text: str) -> None:
    assert parse_admin_comment(text) == PARSED


def test_last_well_formed_record_wins_and_prefix_inside_a_word_is_not_ours() -> None:
    two = "qauvern:v1;rule=a;inst=i;res=x@1 | qauvern:v1;rule=b;inst=i;res=x@2 | qauvern:v1;junk"
    parsed = parse_admin_comment(two)
    assert parsed is not None and parsed.rule == "b"
    assert parse_admin_comment("xqauvern:v1;rule=a;inst=i;res=x@1") is None
    assert parse_admin_comment("see:qauvern:v1;rule=a;inst=i;res=x@1") is None
    merged = merge_admin_comment(two, "qauvern:v1;rule=c;inst=i;res=y@3")
    assert merged == "qauvern:v1;rule=c;inst=i;res=y@3"  # every older record (and its seams) is gone


def test_merge_keeps_foreign_text_around_an_old_record() -> None:
    old = "reboot asked | qauvern:v1;rule=a;inst=i;res=x@1 | owner: ops\nsecond line"
    merged = merge_admin_comment(old, "qauvern:v1;rule=b;inst=i;res=x@2")
    assert merged == "reboot asked | owner: ops\nsecond line | qauvern:v1;rule=b;inst=i;res=x@2"
    assert parse_admin_comment(merged) == AdminRecord("b", "i", (("x", "2"),))
    with pytest.raises(ValueError, match="not an AdminComment record"):
        merge_admin_comment(old, "hello")
    with pytest.raises(ValueError, match="not an AdminComment record"):
        merge_admin_comment(old, "qauvern:v1;rule=b;inst=i;res=x@2 | more")


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "hello",
        "qauvern:v1;junk",
        "qauvern:v1;inst=a;res=@x",
        "qauvern:v1;inst=a;res=x",
        "qauvern:v1;rule=a;res=x@s",  # no inst
        "qauvern:v1;rule=a;inst=b",  # no res
        "qauvern:v2;rule=a;inst=b;res=x@s",  # another version
        "QAUVERN:V1;rule=a;inst=b;res=x@s",
    ],
)
def test_absent_or_malformed_is_none(text: str | None) -> None:
    assert parse_admin_comment(text) is None


def test_too_long_is_refused() -> None:
    rec = {"rule": "r", "instance": "i", "resources": [{"resource": "x" * 60, "session_id": "s" * 900}] * 2}
    with pytest.raises(ValueError, match=f"more than {MAX_LENGTH}"):
        format_admin_comment(rec)

    def one(session_length: int) -> dict[str, object]:
        return {
            "rule": "",
            "instance": "",
            "resources": [{"resource": "x", "session_id": "s" * session_length}],
        }

    assert len(format_admin_comment(one(971))) == MAX_LENGTH  # 29 characters of syntax + 971
    with pytest.raises(ValueError, match="1001 characters"):
        format_admin_comment(one(972))


_names = st.text(min_size=1, max_size=20)
_sessions = st.one_of(st.none(), st.text(min_size=1, max_size=20))


@settings(max_examples=300, deadline=None)
@given(
    rule=st.text(max_size=20),
    instance=st.text(max_size=20),
    resources=st.lists(st.tuples(_names, _sessions), max_size=4),
    before=st.text(max_size=40),
)
def test_any_record_round_trips_through_merge(
    rule: str, instance: str, resources: list[tuple[str, str | None]], before: str
) -> None:
    record = {
        "rule": rule,
        "instance": instance,
        "resources": [{"resource": r, "session_id": s} for r, s in resources],
    }
    text = format_admin_comment(record)
    expected = AdminRecord(rule, instance, tuple((r, s or None) for r, s in resources))
    assert parse_admin_comment(text) == expected
    merged = merge_admin_comment(before, text)
    assert merged.endswith(text)
    assert parse_admin_comment(merged) == expected
    # merging again (a requeued run's prolog) keeps exactly one record
    again = merge_admin_comment(merged, text)
    assert parse_admin_comment(again) == expected
    assert again.count(PREFIX) == merged.count(PREFIX)
