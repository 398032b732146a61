"""qauvern_hpc.policy.mapping: the shared case table, plus what only the Python side has (reasons, grants,
globs)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from qauvern_hpc.policy import mapping
from qauvern_hpc.policy.compiled import Policy
from qauvern_hpc.policy.globs import glob_error, glob_match
from qauvern_hpc.policy.mapping import JobIdentity, decide, list_match, parse_request
from tests.support.mapping_cases import CASES, Case, policy

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)


def run_case(case: Case) -> mapping.Decision:
    identity = JobIdentity(case.user, case.account, case.partition, case.qos)
    return decide(policy(case.config), identity, parse_request(case.qpu))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_table(case: Case) -> None:
    d = run_case(case)
    assert (d.allowed, d.code, d.rule, d.instance) == (case.allowed, case.code, case.rule, case.instance), (
        d.message
    )
    if case.message is not None:
        assert d.message == case.message
    assert d.reasons, "every decision explains itself"
    if d.allowed:
        assert [g.resource for g in d.resources] == parse_request(case.qpu)
    else:
        assert d.resources == ()


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


def test_every_code_is_covered_by_the_table() -> None:
    codes = {
        mapping.OK,
        mapping.EMPTY_REQUEST,
        mapping.TOO_MANY,
        mapping.BAD_NAME,
        mapping.DUPLICATE,
        mapping.UNKNOWN,
        mapping.NOT_ALLOWED,
        mapping.DENY_RULE,
        mapping.DEFAULT_DENY,
        mapping.PARTITION_MISMATCH,
    }
    assert codes == {c.code for c in CASES}


def test_grants_carry_what_the_prolog_needs() -> None:
    d = decide(
        policy("main"), JobIdentity("bob", "chemistry", "quantum", "normal"), ["test.sim-1", "ibm_fez"]
    )
    assert d.allowed and d.instance == "chem"
    sim, fez = d.resources
    assert sim.resource == "test.sim-1" and sim.backend == "fake_sim" and fez.backend == "ibm_fez"
    assert sim.instance == "chem" and sim.crn.endswith(":g-chem::")
    assert sim.session_mode == "batch" and sim.fail_mode == "closed" and sim.max_ttl_seconds == 8 * 3600
    assert sim.expose_api_key is False and sim.api_key_file is None
    assert d.to_dict()["resources"][0]["backend"] == "fake_sim"


def test_reasons_explain_each_rule_tried() -> None:
    d = decide(policy("main"), JobIdentity("carol", "course7", "cpu", "normal"), ["ibm_marrakesh"])
    assert d.rule == "courses"
    assert d.reasons[0] == "rule #1 'no-students': no match: qos normal matches none of 'student'"
    assert (
        d.reasons[1] == "rule #2 'physics': no match: account course7 matches none of 'physics', 'physics-*'"
    )
    assert d.reasons[2] == "rule #3 'chemistry': no match: account course7 matches none of 'chemistry'"
    assert (
        d.reasons[3].startswith("rule #4 'courses': matches (") and "course7 ~ 'course[0-9]*'" in d.reasons[3]
    )
    assert len(d.reasons) == 5  # no later rule is tried


def test_reasons_name_the_exclusion_and_the_default() -> None:
    d = decide(policy("main"), JobIdentity("guest", "physics", "cpu", "normal"), ["ibm_torino"])
    assert "rule #2 'physics': no match: user guest is excluded by '!guest'" in d.reasons
    assert "no rule matched: the default rule decides" in d.reasons


def test_multi_partition_reasons_are_per_partition() -> None:
    d = decide(policy("main"), JobIdentity("bob", "chemistry", "cpu,quantum", "normal"), ["ibm_fez"])
    assert d.code == "partition_mismatch"
    assert any(r.startswith("partition cpu: ") for r in d.reasons)
    assert any(r.startswith("partition quantum: rule #3 'chemistry': matches") for r in d.reasons)


def test_decision_json_round_trip() -> None:
    import json

    d = decide(policy("main"), JobIdentity("alice", "physics", "cpu", "normal"), ["ibm_torino"])
    data = json.loads(json.dumps(d.to_dict()))
    assert data["allowed"] is True and data["rule"] == "physics" and data["instance"] == "phys"
    assert data["requested"] == ["ibm_torino"] and data["resources"][0]["crn"].endswith(":g-phys::")


@pytest.mark.parametrize(
    ("text", "names"),
    [("", []), ("  ", []), ("a", ["a"]), ("a,b", ["a", "b"]), (" a , b ", ["a", "b"]),
     ("a,,b", ["a", "", "b"]), ("a,", ["a", ""])],
)  # fmt: skip
def test_parse_request(text: str, names: list[str]) -> None:
    assert parse_request(text) == names


@pytest.mark.parametrize(
    ("glob", "value", "expected"),
    [
        ("*", "", True),
        ("*", "anything", True),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("[a-c]x", "bx", True),
        ("[a-c]x", "dx", False),
        ("[!a-c]x", "dx", True),
        ("[!a-c]x", "ax", False),
        ("[0-9][0-9]", "42", True),
        ("a.b", "a.b", True),
        ("a.b", "axb", False),
        ("a+b", "a+b", True),
        ("x-*", "x-1", True),
        ("ab", "abc", False),
        ("ab", "ab\n", False),
        ("[_.]x", "_x", True),
    ],
)
def test_glob_match(glob: str, value: str, expected: bool) -> None:
    assert glob_error(glob) is None
    assert glob_match(glob, value) is expected


@pytest.mark.parametrize(
    ("glob", "fragment"),
    [
        ("", "empty pattern"),
        ("!", "empty pattern"),
        ("a[b", "unclosed '['"),
        ("a[]", "empty [...]"),
        ("a[!]", "empty [...]"),
        ("[z-a]", "bad range z-a"),
        ("[a-Z]", "bad range a-Z"),
        ("[a-]", "character '-' not allowed inside"),
        ("a b", "character ' ' not allowed"),
        ("a%b", "character '%' not allowed"),
        ("a]b", "character ']' not allowed"),
        ("a\\b", "not allowed"),
        ("!!a", "character '!' not allowed"),
    ],
)
def test_glob_errors(glob: str, fragment: str) -> None:
    err = glob_error(glob)
    assert err is not None and fragment in err


def test_list_match_semantics() -> None:
    assert list_match(None, "x") == (True, "any")
    assert list_match(["a*", "!ab"], "ac")[0] is True
    assert list_match(["a*", "!ab"], "ab")[0] is False
    assert list_match(["!ab"], "zz")[0] is True  # only exclusions: everything else fits
    assert list_match(["!ab"], "ab")[0] is False
    assert list_match(["a"], "b") == (False, "b matches none of 'a'")
    assert list_match(["a"], "")[1] == "'' matches none of 'a'"


def test_empty_policy_refuses_everything_by_default() -> None:
    from qauvern_hpc.policy.compiled import PolicyMatch, PolicyRule

    empty = Policy(
        state_dir="/tmp",
        instances={},
        resources={},
        rules=(),
        default=PolicyRule("default", PolicyMatch(), True, "no rule grants QPU access", None, ()),
    )
    d = decide(empty, JobIdentity("a", "b", "c"), ["x"])
    assert d.code == "unknown_resource" and d.message == "unknown QPU resource 'x' (known: none)"


def test_mapping_imports_only_the_standard_library() -> None:
    code = (
        "import sys, qauvern_hpc.policy.mapping, qauvern_hpc.policy.compiled;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pydantic', 'yaml', 'rich', 'httpx')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
