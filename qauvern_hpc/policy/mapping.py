"""Which IBM Quantum instance (if any) a job may use for the QPU resources it asks for.

Pure and standard library only: the Slurm prolog imports this on its hot path (no pydantic, no YAML, no I/O).
`slurm-conf/job_submit.lua` implements the same decision at submit time; `tests/unit/test_mapping_cases.py`
holds one table of cases that both implementations must pass, messages included.

Semantics
---------
* Rules are tried in order; the **first rule whose `match` fits the job decides** (no fall-through). If none
  matches, the `default` rule decides.
* `match` has up to five glob lists: users, accounts, partitions, qos, clusters. A missing list matches any
  value. A value fits a list when it matches at least one plain glob (or the list has only exclusions) and
  no `!glob`. The cluster is SLURM_CLUSTER_NAME in the prolog; job_submit.lua is not told its cluster, so it
  takes the one its qpu_policy.lua was rendered for (`render-policy --cluster`, default slurm.conf's).
* Globs are a safe subset of fnmatch, identical in Lua: `*`, `?`, `[abc]`, `[a-z0-9]`, `[!abc]` and the
  literal characters ``A-Z a-z 0-9 _ . @ + -``. Matching is case-sensitive. Config validation refuses others.
* An unknown identity value (Slurm did not tell) is the empty string: `*` matches it, `alice` does not.
* A deny rule refuses with its message. An allow rule refuses a request that names a resource it does not
  list (naming the rule); it never falls through to a later rule.
* **Several partitions** (`sbatch -p a,b`): the job may start in any of them, and the prolog will decide
  with the one it got. So each partition is decided on its own and all must agree (same outcome, same rule,
  same instance); otherwise the job is refused with `partition_mismatch`, telling which partition maps where.
* Request checks come before any rule: empty list, more than 8 names, a name outside ``[A-Za-z0-9_.-]`` or
  longer than 64 characters, a duplicate, an unknown resource (all unknown names listed with the known ones).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from qauvern_hpc.policy.compiled import MATCH_FIELDS, Policy, PolicyRule
from qauvern_hpc.policy.globs import glob_match

MAX_RESOURCES = 8
MAX_NAME_LENGTH = 64
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_BLANKS = " \t\n\r\f\v"  # what Lua's %s strips (ASCII only, as in job_submit.lua)

# Decision codes (stable: tests, JSON output and job_submit.lua use them).
OK = "ok"
EMPTY_REQUEST = "empty_request"
TOO_MANY = "too_many"
BAD_NAME = "bad_name"
DUPLICATE = "duplicate_resource"
UNKNOWN = "unknown_resource"
NOT_ALLOWED = "resource_not_allowed"
DENY_RULE = "deny_rule"
DEFAULT_DENY = "default_deny"
PARTITION_MISMATCH = "partition_mismatch"

_FIELD_LABEL = {
    "users": "user",
    "accounts": "account",
    "partitions": "partition",
    "qos": "qos",
    "clusters": "cluster",
}
_IDENTITY_ATTR = _FIELD_LABEL


@dataclass(frozen=True)
class JobIdentity:
    """Who runs the job, as Slurm sees it. `partition` may be a comma list; "" means unknown."""

    user: str
    account: str
    partition: str
    qos: str = ""
    cluster: str = ""  # the Slurm cluster (SLURM_CLUSTER_NAME in the prolog; the rendered policy's at submit)

    def partitions(self) -> list[str]:
        parts = [p.strip(_BLANKS) for p in self.partition.split(",")]
        parts = [p for p in parts if p]
        return parts or [""]

    def describe(self) -> str:
        return (
            f"user={self.user or '-'} account={self.account or '-'} "
            f"partition={self.partition or '-'} qos={self.qos or '-'}"
            + (f" cluster={self.cluster}" if self.cluster else "")
        )


@dataclass(frozen=True)
class ResourceGrant:
    """One requested resource, resolved: what the prolog needs to open its session."""

    resource: str
    instance: str
    crn: str
    api_key_file: str | None
    type: str
    backend: str
    session_mode: str
    max_ttl_seconds: int
    fail_mode: str
    expose_api_key: bool
    env: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "instance": self.instance,
            "crn": self.crn,
            "api_key_file": self.api_key_file,
            "type": self.type,
            "backend": self.backend,
            "session_mode": self.session_mode,
            "max_ttl_seconds": self.max_ttl_seconds,
            "fail_mode": self.fail_mode,
            "expose_api_key": self.expose_api_key,
            "env": dict(self.env),
        }


@dataclass(frozen=True)
class Decision:
    allowed: bool
    code: str  # one of the codes above
    message: str  # one line for the user (a refusal reason, or what was granted)
    rule: str | None = None  # the rule that decided ("default" for the default rule)
    instance: str | None = None  # the IBM Quantum instance, when allowed
    requested: tuple[str, ...] = ()
    resources: tuple[ResourceGrant, ...] = ()  # one per requested resource, when allowed
    reasons: tuple[str, ...] = ()  # each rule tried and why it did or did not match

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "code": self.code,
            "message": self.message,
            "rule": self.rule,
            "instance": self.instance,
            "requested": list(self.requested),
            "resources": [r.to_dict() for r in self.resources],
            "reasons": list(self.reasons),
        }


def parse_request(text: str) -> list[str]:
    """`--qpu` text -> names: split on commas, strip blanks. "" -> [] (an empty request)."""
    if not text.strip(_BLANKS):
        return []
    return [part.strip(_BLANKS) for part in text.split(",")]


def list_match(patterns: Sequence[str] | None, value: str) -> tuple[bool, str]:
    """Does `value` fit the glob list? Returns (fits, why) for explanations."""
    if patterns is None:
        return True, "any"
    shown = value if value else "''"
    positives = [p for p in patterns if not p.startswith("!")]
    for p in patterns:
        if p.startswith("!") and glob_match(p[1:], value):
            return False, f"{shown} is excluded by '{p}'"
    if not positives:
        return True, f"{shown} (not excluded)"
    for p in positives:
        if glob_match(p, value):
            return True, f"{shown} ~ '{p}'"
    return False, f"{shown} matches none of " + ", ".join(f"'{p}'" for p in positives)


def rule_matches(rule: PolicyRule, identity: JobIdentity) -> tuple[bool, str]:
    """Does the rule's match fit a job (single partition)? Returns (fits, explanation)."""
    parts = []
    for fld in MATCH_FIELDS:
        value = getattr(identity, _IDENTITY_ATTR[fld])
        ok, why = list_match(rule.match.get(fld), value)
        if not ok:
            return False, f"{_FIELD_LABEL[fld]} {why}"
        parts.append(f"{_FIELD_LABEL[fld]} {why}")
    return True, ", ".join(parts)


# -- the decision --------------------------------------------------------------------------------------------


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _resource_word(n: int) -> str:
    return "QPU resource" if n == 1 else "QPU resources"


def check_request(policy: Policy, requested: Sequence[str]) -> tuple[str, str] | None:
    """Checks that need no rule: returns (code, message) for a bad request, None when it is well formed."""
    if not requested:
        return EMPTY_REQUEST, "no QPU resource requested (use --qpu=NAME[,NAME...])"
    if len(requested) > MAX_RESOURCES:
        return TOO_MANY, f"too many QPU resources requested ({len(requested)}, at most {MAX_RESOURCES})"
    for name in requested:
        if not NAME_RE.fullmatch(name):
            return (
                BAD_NAME,
                f"invalid QPU resource name '{name}' (letters, digits, '_', '.', '-'; 1 to 64 characters)",
            )
    seen: set[str] = set()
    for name in requested:
        if name in seen:
            return DUPLICATE, f"QPU resource '{name}' requested twice"
        seen.add(name)
    unknown = [n for n in requested if n not in policy.resources]
    if unknown:
        known = ", ".join(policy.resources) or "none"
        return UNKNOWN, f"unknown {_resource_word(len(unknown))} {_quoted(unknown)} (known: {known})"
    return None


def _apply(
    policy: Policy, rule: PolicyRule, is_default: bool, requested: tuple[str, ...], who: str
) -> tuple[bool, str, str, tuple[ResourceGrant, ...]]:
    if rule.deny:
        code = DEFAULT_DENY if is_default else DENY_RULE
        return False, code, f"rule '{rule.name}' denies {who}: {rule.message}", ()
    refused = [n for n in requested if n not in rule.resources]
    if refused:
        allowed = ", ".join(rule.resources) or "none"
        return (
            False,
            NOT_ALLOWED,
            f"rule '{rule.name}' does not allow {_resource_word(len(refused))} {_quoted(refused)} "
            f"for {who} (allowed: {allowed})",
            (),
        )
    assert rule.instance is not None
    inst = policy.instances[rule.instance]
    grants = []
    for name in requested:
        r = policy.resources[name]
        grants.append(
            ResourceGrant(
                resource=name,
                instance=inst.name,
                crn=inst.crn,
                api_key_file=inst.api_key_file,
                type=r.type,
                backend=r.backend,
                session_mode=inst.mode_for(r),
                max_ttl_seconds=r.max_ttl_seconds,
                fail_mode=r.fail_mode,
                expose_api_key=r.expose_api_key,
                env=dict(r.env),
            )
        )
    msg = f"rule '{rule.name}' allows {_quoted(requested)} for {who} on instance '{inst.name}'"
    return True, OK, msg, tuple(grants)


def _decide_one(policy: Policy, identity: JobIdentity, requested: tuple[str, ...], who: str) -> Decision:
    reasons: list[str] = []
    chosen: PolicyRule | None = None
    for n, rule in enumerate(policy.rules, 1):
        ok, why = rule_matches(rule, identity)
        if ok:
            reasons.append(f"rule #{n} '{rule.name}': matches ({why})")
            chosen = rule
            break
        reasons.append(f"rule #{n} '{rule.name}': no match: {why}")
    is_default = chosen is None
    rule = policy.default if chosen is None else chosen
    if is_default:
        reasons.append("no rule matched: the default rule decides")
    allowed, code, message, grants = _apply(policy, rule, is_default, requested, who)
    reasons.append(message)
    return Decision(
        allowed=allowed,
        code=code,
        message=message,
        rule=rule.name,
        instance=rule.instance if allowed else None,
        requested=requested,
        resources=grants,
        reasons=tuple(reasons),
    )


def _summary(partition: str, d: Decision) -> str:
    outcome = f"instance {d.instance}" if d.allowed else "denied"
    return f"{partition or '-'} -> rule '{d.rule}' ({outcome})"


def decide(policy: Policy, identity: JobIdentity, requested: Sequence[str]) -> Decision:
    """Map a job to an instance for the resources it requested. Pure; never raises for bad input."""
    req = tuple(requested)
    bad = check_request(policy, req)
    if bad is not None:
        code, message = bad
        return Decision(allowed=False, code=code, message=message, requested=req, reasons=(message,))
    who = identity.describe()
    parts = identity.partitions()
    results = [_decide_one(policy, replace(identity, partition=p), req, who) for p in parts]
    first = results[0]
    if len(results) == 1:
        return first
    reasons = tuple(
        f"partition {p or '-'}: {r}" for p, d in zip(parts, results, strict=True) for r in d.reasons
    )
    if all(
        (d.allowed, d.code, d.rule, d.instance) == (first.allowed, first.code, first.rule, first.instance)
        for d in results
    ):
        return replace(first, reasons=reasons)
    summary = "; ".join(_summary(p, d) for p, d in zip(parts, results, strict=True))
    joined = ",".join(parts)
    message = f"partitions {joined} map to different QPU decisions: {summary}; submit to a single partition"
    return Decision(
        allowed=False, code=PARTITION_MISMATCH, message=message, requested=req, reasons=(*reasons, message)
    )
