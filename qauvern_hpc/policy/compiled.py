"""The compiled policy: the site config reduced to what the hot paths need, as plain JSON.

`qauvern-hpc render-policy` writes it (from the YAML config, see `qauvern_hpc.config`) as `policy.json` for
the Python hooks and as `qpu_policy.lua` for `job_submit.lua`. This module is standard library only: the Slurm
prolog imports it, so loading a policy costs one `json.load` and never pydantic or YAML.

The policy never holds a secret: instances carry the *path* of their API key file, never the key.

`policy.json` shape (format 1; every key is always present, `null` where noted):

    {
      "format": 1,
      "generated_at": "2025-01-31T12:00:00Z",       # when render-policy ran (UTC)
      "source": "/etc/qauvern-hpc/config.yaml",     # the config it was rendered from, or null
      "source_sha256": "…",                         # sha256 of that file's bytes, or null
      "state_dir": "/var/lib/qauvern-hpc",
      "ibm": {
        "account_id": "abc123",
        "plan_id": "5304b575-…",
        "staging": false,
        "endpoints": {"emulator": null, "iam": null, "resource_controller": null, "quantum": null}
      },                                            # endpoints: null = the default host (staging or
                                                    # production); "emulator" = every service at one base
      "slurm": {"cluster": [], "sacct": "sacct", "squeue": "squeue", "sacctmgr": "sacctmgr",
                "admin_comment": true},
      "instances": {                                # name -> instance, in config order
        "physics": {"name": "physics", "crn": "crn:v1:…", "api_key_file": "/etc/qauvern-hpc/physics.key",
                    "plan": "premium", "session_mode": "batch"}
      },                                            # api_key_file: absolute path, or null (no key configured)
                                                    # session_mode: for resources that name none (job on
                                                    # the Open plan, batch elsewhere); a resource's
                                                    # session_mode "" means that default
      "resources": {                                # name -> QPU resource, in config order
        "ibm_torino": {"name": "ibm_torino", "type": "ibm-quantum-compute-service", "backend": "ibm_torino",
                       "session_mode": "batch", "max_ttl_seconds": 28800, "fail_mode": "closed",
                       "expose_api_key": false, "env": {}, "on_job_end": "close"}
      },
      "rules": [                                    # in order; the first matching rule decides
        {"name": "physics",
         "match": {"users": null, "accounts": ["phys*"], "partitions": null, "qos": null, "clusters": null},
         "deny": false, "message": null, "instance": "physics", "resources": ["ibm_torino", "ibm_fez"]}
      ],                                            # match: null = any value; a list holds globs, "!glob"
                                                    # excludes. resources: concrete names (globs expanded).
                                                    # deny rules: instance null, resources [], message set.
      "default": {"name": "default", "match": {"users": null, "accounts": null, "partitions": null,
                  "qos": null}, "deny": true, "message": "no rule grants QPU access", "instance": null,
                  "resources": []},
      "pair_licenses": {                            # only with admission.enabled (absent = none):
        "physics": {"ibm_torino": "qpu_physics__ibm_torino"}   # instance -> resource -> pair license
      }
    }

`qpu_policy.lua` holds the part `job_submit.lua` needs: `return { format = 1, cluster = "NAME" (the cluster
whose slurmctld reads it, absent when unknown), resources = {names...},
rules = {...}, default = {...}, pair_licenses = {...} }` with the rules in the same shape as above (a nil
match key = any). With `pair_licenses`, job_submit.lua adds `<pair license>:1` per requested resource of the
mapped instance (the admission controller caps each pair; `slurm_license_lines` prints what slurm.conf needs).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qauvern_hpc.core.errors import ConfigError
from qauvern_hpc.core.files import atomic_write
from qauvern_hpc.policy.globs import glob_error, glob_to_regex

POLICY_FORMAT = 1
POLICY_JSON = "policy.json"
POLICY_LUA = "qpu_policy.lua"
MATCH_FIELDS = ("users", "accounts", "partitions", "qos", "clusters")
DEFAULT_SLURM_CONF = "/etc/slurm/slurm.conf"


@dataclass(frozen=True)
class PolicyInstance:
    name: str
    crn: str
    api_key_file: str | None  # absolute path of the key file; never the key itself
    plan: str = ""  # the plan name ("" in a policy rendered before plans per instance)
    session_mode: str = "batch"  # the mode of the resources that name none, on this instance

    def mode_for(self, resource: PolicyResource) -> str:
        """The session mode a job gets for `resource` through this instance."""
        return resource.session_mode or self.session_mode


@dataclass(frozen=True)
class PolicyResource:
    name: str
    type: str
    backend: str
    session_mode: str  # "batch" | "dedicated" | "job" | "" (the instance's default)
    max_ttl_seconds: int
    fail_mode: str  # "open" | "closed"
    expose_api_key: bool
    env: Mapping[str, str] = field(default_factory=dict)
    on_job_end: str = "close"  # "close" | "cancel" (also the running IBM jobs)


@dataclass(frozen=True)
class PolicyMatch:
    """Glob lists per identity field; None means any value."""

    users: tuple[str, ...] | None = None
    accounts: tuple[str, ...] | None = None
    partitions: tuple[str, ...] | None = None
    qos: tuple[str, ...] | None = None
    clusters: tuple[str, ...] | None = None

    def get(self, name: str) -> tuple[str, ...] | None:
        value: tuple[str, ...] | None = getattr(self, name)
        return value


@dataclass(frozen=True)
class PolicyRule:
    name: str
    match: PolicyMatch
    deny: bool
    message: str | None  # set for deny rules
    instance: str | None  # set for allow rules
    resources: tuple[str, ...]  # concrete resource names this rule allows


@dataclass(frozen=True)
class PolicyEndpoints:
    staging: bool = False
    emulator: str | None = None
    iam: str | None = None
    resource_controller: str | None = None
    quantum: str | None = None


@dataclass(frozen=True)
class PolicySlurm:
    cluster: tuple[str, ...] = ()
    sacct: str = "sacct"
    squeue: str = "squeue"
    sacctmgr: str = "sacctmgr"
    admin_comment: bool = True


@dataclass(frozen=True)
class Policy:
    state_dir: str
    instances: Mapping[str, PolicyInstance]
    resources: Mapping[str, PolicyResource]
    rules: tuple[PolicyRule, ...]
    default: PolicyRule
    account_id: str = ""
    plan_id: str = ""
    endpoints: PolicyEndpoints = PolicyEndpoints()
    slurm: PolicySlurm = PolicySlurm()
    source: str | None = None
    source_sha256: str | None = None
    generated_at: str | None = None
    format: int = POLICY_FORMAT
    # admission: instance -> resource -> pair license; empty when the admission controller is off
    pair_licenses: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    # -- JSON ------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "generated_at": self.generated_at,
            "source": self.source,
            "source_sha256": self.source_sha256,
            "state_dir": self.state_dir,
            "ibm": {
                "account_id": self.account_id,
                "plan_id": self.plan_id,
                "staging": self.endpoints.staging,
                "endpoints": {
                    "emulator": self.endpoints.emulator,
                    "iam": self.endpoints.iam,
                    "resource_controller": self.endpoints.resource_controller,
                    "quantum": self.endpoints.quantum,
                },
            },
            "slurm": {
                "cluster": list(self.slurm.cluster),
                "sacct": self.slurm.sacct,
                "squeue": self.slurm.squeue,
                "sacctmgr": self.slurm.sacctmgr,
                "admin_comment": self.slurm.admin_comment,
            },
            "instances": {
                n: {
                    "name": i.name,
                    "crn": i.crn,
                    "api_key_file": i.api_key_file,
                    "plan": i.plan,
                    "session_mode": i.session_mode,
                }
                for n, i in self.instances.items()
            },
            "resources": {
                n: {
                    "name": r.name,
                    "type": r.type,
                    "backend": r.backend,
                    "session_mode": r.session_mode,
                    "max_ttl_seconds": r.max_ttl_seconds,
                    "fail_mode": r.fail_mode,
                    "expose_api_key": r.expose_api_key,
                    "env": dict(r.env),
                    "on_job_end": r.on_job_end,
                }
                for n, r in self.resources.items()
            },
            "rules": [_rule_to_dict(r) for r in self.rules],
            "default": _rule_to_dict(self.default),
        } | (
            {"pair_licenses": {i: dict(m) for i, m in self.pair_licenses.items()}}
            if self.pair_licenses
            else {}
        )

    @classmethod
    def from_dict(cls, data: Any) -> Policy:
        """Build a policy from its JSON form. Raises ValueError naming the offending key."""
        d = _obj(data, "policy")
        fmt = d.get("format")
        if fmt != POLICY_FORMAT:
            raise ValueError(
                f"format: expected {POLICY_FORMAT}, got {fmt!r} (re-run `qauvern-hpc render-policy`)"
            )
        ibm = _obj(d.get("ibm"), "ibm")
        ep = _obj(ibm.get("endpoints"), "ibm.endpoints")
        sl = _obj(d.get("slurm"), "slurm")
        instances: dict[str, PolicyInstance] = {}
        for name, raw in _obj(d.get("instances"), "instances").items():
            i = _obj(raw, f"instances.{name}")
            instances[name] = PolicyInstance(
                name=_str(i.get("name"), f"instances.{name}.name"),
                crn=_str(i.get("crn"), f"instances.{name}.crn"),
                api_key_file=_opt_str(i.get("api_key_file"), f"instances.{name}.api_key_file"),
                plan=_str(i.get("plan", ""), f"instances.{name}.plan"),
                session_mode=_str(i.get("session_mode", "batch"), f"instances.{name}.session_mode"),
            )
        resources: dict[str, PolicyResource] = {}
        for name, raw in _obj(d.get("resources"), "resources").items():
            r = _obj(raw, f"resources.{name}")
            where = f"resources.{name}"
            env = _obj(r.get("env", {}), f"{where}.env")
            resources[name] = PolicyResource(
                name=_str(r.get("name"), f"{where}.name"),
                type=_str(r.get("type"), f"{where}.type"),
                backend=_str(r.get("backend"), f"{where}.backend"),
                session_mode=_str(r.get("session_mode"), f"{where}.session_mode"),
                max_ttl_seconds=_int(r.get("max_ttl_seconds"), f"{where}.max_ttl_seconds"),
                fail_mode=_str(r.get("fail_mode"), f"{where}.fail_mode"),
                expose_api_key=_bool(r.get("expose_api_key"), f"{where}.expose_api_key"),
                env={str(k): _str(v, f"{where}.env.{k}") for k, v in env.items()},
                on_job_end=_str(r.get("on_job_end", "close"), f"{where}.on_job_end"),
            )
        rules_raw = d.get("rules")
        if not isinstance(rules_raw, list):
            raise ValueError("rules: expected a list")
        rules = tuple(_rule_from_dict(r, f"rules[{n}]") for n, r in enumerate(rules_raw))
        default = _rule_from_dict(d.get("default"), "default")
        pair_licenses = {
            str(i): {
                str(r): _str(lic, f"pair_licenses.{i}.{r}")
                for r, lic in _obj(m, f"pair_licenses.{i}").items()
            }
            for i, m in _obj(d.get("pair_licenses", {}), "pair_licenses").items()
        }
        policy = cls(
            state_dir=_str(d.get("state_dir"), "state_dir"),
            instances=instances,
            resources=resources,
            rules=rules,
            default=default,
            account_id=_str(ibm.get("account_id", ""), "ibm.account_id"),
            plan_id=_str(ibm.get("plan_id", ""), "ibm.plan_id"),
            endpoints=PolicyEndpoints(
                staging=_bool(ibm.get("staging", False), "ibm.staging"),
                emulator=_opt_str(ep.get("emulator"), "ibm.endpoints.emulator"),
                iam=_opt_str(ep.get("iam"), "ibm.endpoints.iam"),
                resource_controller=_opt_str(
                    ep.get("resource_controller"), "ibm.endpoints.resource_controller"
                ),
                quantum=_opt_str(ep.get("quantum"), "ibm.endpoints.quantum"),
            ),
            slurm=PolicySlurm(
                cluster=tuple(_str_list(sl.get("cluster", []), "slurm.cluster")),
                sacct=_str(sl.get("sacct", "sacct"), "slurm.sacct"),
                squeue=_str(sl.get("squeue", "squeue"), "slurm.squeue"),
                sacctmgr=_str(sl.get("sacctmgr", "sacctmgr"), "slurm.sacctmgr"),
                admin_comment=_bool(sl.get("admin_comment", True), "slurm.admin_comment"),
            ),
            source=_opt_str(d.get("source"), "source"),
            source_sha256=_opt_str(d.get("source_sha256"), "source_sha256"),
            generated_at=_opt_str(d.get("generated_at"), "generated_at"),
            pair_licenses=pair_licenses,
        )
        policy.check()
        return policy

    def check(self) -> None:
        """Cross-references: every allow rule names a known instance and known resources; globs are valid."""
        for where, rule in [
            *((f"rules[{n}]", r) for n, r in enumerate(self.rules)),
            ("default", self.default),
        ]:
            for fld in MATCH_FIELDS:
                for pattern in rule.match.get(fld) or ():
                    err = glob_error(pattern)
                    if err:
                        raise ValueError(f"{where}.match.{fld}: {err}")
            if rule.deny:
                continue
            if rule.instance not in self.instances:
                raise ValueError(f"{where}.instance: unknown instance {rule.instance!r}")
            for res in rule.resources:
                if res not in self.resources:
                    raise ValueError(f"{where}.resources: unknown resource {res!r}")

    # -- helpers for the hooks -------------------------------------------------------------------------------

    def instance_for(self, name: str) -> PolicyInstance:
        return self.instances[name]


def _rule_to_dict(rule: PolicyRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "match": {k: (list(v) if (v := rule.match.get(k)) is not None else None) for k in MATCH_FIELDS},
        "deny": rule.deny,
        "message": rule.message,
        "instance": rule.instance,
        "resources": list(rule.resources),
    }


def _rule_from_dict(data: Any, where: str) -> PolicyRule:
    r = _obj(data, where)
    m = _obj(r.get("match", {}), f"{where}.match")
    match = PolicyMatch(
        **{
            k: (tuple(_str_list(m[k], f"{where}.match.{k}")) if m.get(k) is not None else None)
            for k in MATCH_FIELDS
        }
    )
    deny = _bool(r.get("deny", False), f"{where}.deny")
    rule = PolicyRule(
        name=_str(r.get("name"), f"{where}.name"),
        match=match,
        deny=deny,
        message=_opt_str(r.get("message"), f"{where}.message"),
        instance=_opt_str(r.get("instance"), f"{where}.instance"),
        resources=tuple(_str_list(r.get("resources", []), f"{where}.resources")),
    )
    if deny and rule.message is None:
        raise ValueError(f"{where}.message: a deny rule needs a message")
    if not deny and rule.instance is None:
        raise ValueError(f"{where}.instance: an allow rule needs an instance")
    return rule


def _obj(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError(f"{where}: expected an object, got {type(v).__name__}")
    return v


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{where}: expected a string, got {v!r}")
    return v


def _opt_str(v: Any, where: str) -> str | None:
    return None if v is None else _str(v, where)


def _int(v: Any, where: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"{where}: expected an integer, got {v!r}")
    return v


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{where}: expected true or false, got {v!r}")
    return v


def _str_list(v: Any, where: str) -> list[str]:
    if not isinstance(v, list):
        raise ValueError(f"{where}: expected a list, got {v!r}")
    return [_str(x, f"{where}[{n}]") for n, x in enumerate(v)]


# -- files ---------------------------------------------------------------------------------------------------


def default_policy_dir() -> Path:
    """Where render-policy writes and the hooks read: beside slurm.conf ($SLURM_CONF, else /etc/slurm).

    job_submit.lua looks for qpu_policy.lua beside itself, and Slurm wants job_submit.lua beside slurm.conf,
    so both rendered files live there by default.
    """
    return Path(os.environ.get("SLURM_CONF") or DEFAULT_SLURM_CONF).parent


def default_policy_path() -> Path:
    """$QAUVERN_HPC_POLICY, else policy.json beside slurm.conf."""
    explicit = os.environ.get("QAUVERN_HPC_POLICY")
    return Path(explicit) if explicit else default_policy_dir() / POLICY_JSON


def load_policy(path: str | os.PathLike[str] | None = None) -> Policy:
    """Read a rendered policy.json (stdlib json only). Raises ConfigError with the file name."""
    p = Path(path) if path is not None else default_policy_path()
    try:
        with open(p, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: policy file not found", hint="run `qauvern-hpc render-policy` after each config change"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: cannot read the policy: {exc}") from None
    try:
        return Policy.from_dict(data)
    except ValueError as exc:
        raise ConfigError(f"{p}: invalid policy: {exc}", hint="re-run `qauvern-hpc render-policy`") from None


def render_json(policy: Policy) -> str:
    return json.dumps(policy.to_dict(), indent=2, sort_keys=False) + "\n"


# -- Lua -----------------------------------------------------------------------------------------------------

_LUA_KEYWORDS = frozenset(
    {
        *("and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in"),
        *("local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while"),
    }
)
_LUA_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def lua_string(s: str) -> str:
    """A Lua 5.1+ string literal for `s` (bytes outside printable ASCII become decimal escapes)."""
    out = ['"']
    for b in s.encode("utf-8"):
        ch = chr(b)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif 32 <= b < 127:
            out.append(ch)
        else:
            out.append(f"\\{b:03d}")
    out.append('"')
    return "".join(out)


def to_lua(value: Any, indent: int = 0) -> str:
    """Serialize None/bool/int/float/str/list/tuple/dict as a Lua expression (dicts keep their order)."""
    pad = "  " * indent
    inner = "  " * (indent + 1)
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list | tuple):
        if not value:
            return "{}"
        if all(isinstance(v, str | int | bool) for v in value):
            return "{ " + ", ".join(to_lua(v) for v in value) + " }"
        return "{\n" + "".join(f"{inner}{to_lua(v, indent + 1)},\n" for v in value) + pad + "}"
    if isinstance(value, dict):
        items = [(k, v) for k, v in value.items() if v is not None]
        if not items:
            return "{}"
        parts = []
        for k, v in items:
            key = str(k)
            lk = key if _LUA_IDENT.match(key) and key not in _LUA_KEYWORDS else f"[{lua_string(key)}]"
            parts.append(f"{inner}{lk} = {to_lua(v, indent + 1)},\n")
        return "{\n" + "".join(parts) + pad + "}"
    raise TypeError(f"cannot render {type(value).__name__} as Lua")


#: What qpu_policy.lua's match lists hold (job_submit.lua refuses a file without it: MATCHERS there).
LUA_MATCHERS = "lua-pattern"


def lua_pattern(glob: str) -> str:
    """The anchored Lua pattern matching what the glob (without its "!") matches (GlobError if invalid).

    The glob's regex uses only literals, `.`, `.*`, `[...]` sets (`^` negation, `a-z` ranges) and
    backslash escapes of punctuation, all of which Lua patterns spell the same way once `\\` is `%`.
    """

    return "^" + re.sub(r"\\(.)", r"%\1", glob_to_regex(glob)) + "$"


def _lua_matcher(pattern: str) -> dict[str, Any]:
    exclude = pattern.startswith("!")
    entry: dict[str, Any] = {"glob": pattern, "pattern": lua_pattern(pattern[1:] if exclude else pattern)}
    if exclude:
        entry["exclude"] = True
    return entry


def _lua_rule(rule: PolicyRule) -> dict[str, Any]:
    d = _rule_to_dict(rule)
    d["match"] = {k: [_lua_matcher(p) for p in v] for k, v in d["match"].items() if v is not None}
    return d


def render_lua(policy: Policy, cluster: str | None = None) -> str:
    """qpu_policy.lua: the submit-time table for job_submit.lua (no secrets, no endpoints), each glob of the
    match lists already compiled to a Lua pattern (`lua_pattern`). `cluster`: the Slurm cluster whose
    slurmctld reads it (job_submit.lua is not told its cluster; rules' `clusters` match this name)."""
    table: dict[str, Any] = {
        "cluster": cluster or None,
        "format": policy.format,
        "matchers": LUA_MATCHERS,
        "generated_at": policy.generated_at,
        "source": policy.source,
        "resources": list(policy.resources),
        "rules": [_lua_rule(r) for r in policy.rules],
        "default": _lua_rule(policy.default),
        "pair_licenses": {i: dict(m) for i, m in policy.pair_licenses.items()} or None,
    }
    header = (
        "-- qauvern-hpc submit-time QPU policy, read by job_submit.lua.\n"
        "-- Generated by `qauvern-hpc render-policy`; do not edit: edit the config and render again.\n"
    )
    return header + "return " + to_lua(table) + "\n"


def write_policy_files(policy: Policy, json_path: Path, lua_path: Path, cluster: str | None = None) -> None:
    """Write policy.json and qpu_policy.lua atomically (mode 0644: they hold no secret)."""
    atomic_write(json_path, render_json(policy), 0o644)
    atomic_write(lua_path, render_lua(policy, cluster), 0o644)


def slurm_cluster_name(slurm_conf: str | os.PathLike[str]) -> str | None:
    """`ClusterName=` of a slurm.conf (None: no such line, or the file cannot be read)."""
    try:
        text = Path(slurm_conf).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        m = re.match(r"\s*ClusterName\s*=\s*([^\s#]+)", line, re.IGNORECASE)
        if m:
            return m.group(1)
    return None


def pair_license_names(policy: Policy) -> list[str]:
    """Every pair license the policy's rules can add, sorted."""
    return sorted({lic for m in policy.pair_licenses.values() for lic in m.values()})


def slurm_license_lines(policy: Policy, *, count: int = 100000) -> list[str]:
    """The slurm.conf lines the pair licenses need (they must exist and be tracked TRES before a job may ask
    for them; a change needs a slurmctld restart): `Licenses=` and `AccountingStorageTRES=` items to add to
    the site's own."""
    names = pair_license_names(policy)
    if not names:
        return []
    return [
        "Licenses=" + ",".join(f"{n}:{count}" for n in names),
        "AccountingStorageTRES=" + ",".join(f"license/{n}" for n in names),
    ]


def names_text(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"
