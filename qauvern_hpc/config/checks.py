"""Checks across sections: what no single model can see, reported as `Issue`s at key paths.

`problems` are errors (duplicate names or CRNs, rules naming unknown instances or resources, a target
without a balance period, a session mode the instance's plan refuses); `warnings` load but are probably
not what the admin meant (deprecated types, rules that can never match, resources no reachable rule
allows, instances without a key); `key_file_issues` looks at the key files on disk. Pure functions of the
validated sections; `Config` (root) and the loader call them, and the loader turns each `Issue` into
``file:line:column: key.path: message``.
"""

from __future__ import annotations

import difflib
from typing import Any

from qauvern_hpc.config.positions import Issue
from qauvern_hpc.config.schema import DEPRECATED_TYPES, ConfigFields, RuleBody
from qauvern_hpc.core.keyfile import check_key_file
from qauvern_hpc.ibm.plans import allows, default_session_mode
from qauvern_hpc.policy import globs
from qauvern_hpc.policy.compiled import MATCH_FIELDS


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def problems(cfg: ConfigFields) -> list[Issue]:
    """Cross-reference errors: duplicates, unknown instances/resources named by rules."""
    out: list[Issue] = []

    def dups(items: list[Any], key: str, what: str, section: str) -> None:
        seen: dict[str, int] = {}
        for n, item in enumerate(items):
            value = getattr(item, key)
            if value in seen:
                first = seen[value]
                if key == "crn":
                    msg = (
                        f"duplicate CRN: instances '{items[first].name}' and '{item.name}' are the same "
                        "IBM instance (it would be counted twice)"
                    )
                else:
                    msg = f"duplicate {what} name '{value}' (first at {section}[{first}])"
                out.append(Issue((section, n, key), msg, first_loc=(section, first, key)))
            else:
                seen[value] = n

    dups(cfg.instances, "name", "instance", "instances")
    dups(cfg.instances, "crn", "instance", "instances")
    dups(cfg.resources, "name", "resource", "resources")
    dups(cfg.rules, "name", "rule", "rules")
    instance_names = [i.name for i in cfg.instances]
    resource_names = [r.name for r in cfg.resources]
    for loc, _name, body, _match in cfg.all_rules():
        if body.deny:
            continue
        if body.instance not in instance_names:
            hint = did_you_mean(body.instance or "", instance_names)
            out.append(
                Issue(
                    (*loc, "instance"),
                    f"unknown instance '{body.instance}'{hint} "
                    f"(known: {', '.join(instance_names) or 'none'})",
                )
            )
        for n, pat in enumerate(body.resources or []):
            err = globs.glob_error(pat)
            if pat.startswith("!"):
                err = "exclusions ('!') are not supported in resources; list what the rule allows"
            if err:
                out.append(Issue((*loc, "resources", n), err))
                continue
            if not any(globs.glob_match(pat, r) for r in resource_names):
                hint = did_you_mean(pat, resource_names)
                out.append(
                    Issue(
                        (*loc, "resources", n),
                        f"unknown resource '{pat}'{hint} (known: {', '.join(resource_names) or 'none'})",
                    )
                )
    for name in cfg.rebalance.slurm.accounts:
        if name not in instance_names:
            hint = did_you_mean(name, instance_names)
            out.append(
                Issue(
                    ("rebalance", "slurm", "accounts", name),
                    f"unknown instance '{name}'{hint} (known: {', '.join(instance_names) or 'none'})",
                )
            )
    out += plan_mode_problems(cfg)
    if cfg.rebalance.balance_period is None:
        for n, inst in enumerate(cfg.instances):
            if inst.target_usage_seconds is not None:
                out.append(
                    Issue(
                        ("instances", n, "target_usage_seconds"),
                        "target_usage_seconds needs rebalance.balance_period (start_date, end_date): "
                        "the period the target counts over",
                    )
                )
    return out


def plan_mode_problems(cfg: ConfigFields) -> list[Issue]:
    """A rule granting a resource on an instance whose plan refuses the resource's session mode (a
    dedicated session on the Open plan): one issue per (resource, instance), at the resource's mode."""
    out: list[Issue] = []
    seen: set[tuple[str, str]] = set()
    known = {i.name for i in cfg.instances}
    for _loc, rule, body, _match in cfg.all_rules():
        if body.deny or body.instance not in known:
            continue
        plan = cfg.plan_of(str(body.instance))
        for name in cfg.expand_resources(body.resources or []):
            n, res = next((n, r) for n, r in enumerate(cfg.resources) if r.name == name)
            mode = res.session_mode or default_session_mode(plan)
            if allows(plan, mode) or (name, str(body.instance)) in seen:
                continue
            seen.add((name, str(body.instance)))
            out.append(
                Issue(
                    ("resources", n, "session_mode"),
                    f"resource '{name}' asks for {mode} sessions, but rule '{rule}' grants it on instance "
                    f"'{body.instance}', which is on the {plan} plan: IBM opens no {mode} session there "
                    "(use session_mode: job or batch, or leave it unset for job mode)",
                )
            )
    return out


def warnings(cfg: ConfigFields) -> list[Issue]:
    """Things that load but are probably not what the admin meant."""
    out: list[Issue] = []
    if cfg.ibm.contract_start is None:
        for n, inst in enumerate(cfg.instances):
            if (inst.plan or cfg.ibm.plan) == "flex":
                out.append(
                    Issue(
                        ("instances", n, "plan") if inst.plan else ("ibm", "plan"),
                        f"instance '{inst.name}' is on the Flex plan and ibm.contract_start is not set: its "
                        "usage period comes only from IBM's usage_period",
                    )
                )
                break
    for n, res in enumerate(cfg.resources):
        if res.type in DEPRECATED_TYPES:
            out.append(
                Issue(
                    ("resources", n, "type"),
                    f"resource type '{res.type}' is deprecated; use '{DEPRECATED_TYPES[res.type]}'",
                )
            )
    catch_all: str | None = None
    reachable: list[RuleBody] = []
    for n, rule in enumerate(cfg.rules):
        if catch_all is None:
            reachable.append(rule)
        if catch_all is not None:
            out.append(
                Issue(
                    ("rules", n, "name"),
                    f"rule '{rule.name}' can never match: rule '{catch_all}' matches every job",
                )
            )
        elif all(getattr(rule.match, f) is None for f in MATCH_FIELDS):
            catch_all = rule.name
    if catch_all is None:
        reachable.append(cfg.default)
    used_instances: set[str] = set()
    granted: set[str] = set()
    for body in reachable:
        if not body.deny and body.instance:
            used_instances.add(body.instance)
            granted.update(cfg.expand_resources(body.resources or []))
    for n, inst in enumerate(cfg.instances):
        if inst.name in used_instances and inst.api_key_file is None and cfg.ibm.api_key_file is None:
            out.append(
                Issue(
                    ("instances", n, "name"),
                    f"instance '{inst.name}' has no api_key_file and ibm.api_key_file is not set: "
                    "the prolog will have no API key for it",
                )
            )
    for n, res in enumerate(cfg.resources):
        if res.name not in granted:
            out.append(Issue(("resources", n, "name"), f"no reachable rule allows resource '{res.name}'"))
    return out


def key_file_issues(cfg: ConfigFields) -> list[Issue]:
    """API key files that are missing or readable by others (they are read only when a job needs them)."""
    out: list[Issue] = []
    if cfg.ibm.api_key_file is not None:
        p = check_key_file(cfg.ibm.api_key_file)
        if p:
            out.append(Issue(("ibm", "api_key_file"), p))
    for n, inst in enumerate(cfg.instances):
        if inst.api_key_file is not None:
            p = check_key_file(inst.api_key_file)
            if p:
                out.append(Issue(("instances", n, "api_key_file"), p))
    return out
