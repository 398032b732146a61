"""qauvern_hpc.policy.globs: the one glob compiler, imported by both the compiled policy and the mapping."""

from __future__ import annotations

from qauvern_hpc.policy.globs import GlobError, glob_error, glob_match, glob_to_regex
from tests.support.imports import modules_after, top_level


def test_compiled_policy_does_not_import_the_mapping() -> None:
    """No cycle: compiled.py and mapping.py both import globs; compiled never needs mapping."""
    loaded = modules_after(
        "from qauvern_hpc.policy.compiled import Policy, PolicyMatch, PolicyRule\n"
        "rule = PolicyRule('default', PolicyMatch(users=('a*',)), True, 'no', None, ())\n"
        "Policy(state_dir='/tmp', instances={}, resources={}, rules=(), default=rule).check()"
    )
    assert "qauvern_hpc.policy.mapping" not in loaded
    assert not top_level(loaded) & {"pydantic", "yaml", "httpx"}


def test_globs_match_and_explain() -> None:
    assert glob_match("phys-[0-9]*", "phys-42") and not glob_match("phys-[0-9]*", "phys-x")
    assert glob_error("!chem*") is None
    assert (glob_error("a/b") or "").startswith("character '/' not allowed in pattern 'a/b'")
    try:
        glob_to_regex("[z-a]")
    except GlobError as exc:
        assert "bad range z-a" in str(exc)
    else:
        raise AssertionError("a reversed range must be refused")
