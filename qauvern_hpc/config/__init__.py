"""The site config: one YAML file mapping HPC users, accounts, partitions and QOS onto IBM Quantum instances.

    from qauvern_hpc.config import load_config, load_api_key
    cfg = load_config("/etc/qauvern-hpc/config.yaml")    # raises ConfigError("file:line:col: key.path: ...")
    policy = cfg.to_policy()                             # compiled, secret-free (qauvern_hpc.policy.compiled)
    key = load_api_key(cfg.api_key_file_for("physics"))  # SecretStr, read only when asked

Every model forbids unknown keys. Keys that qauvern removed or that we renamed get a message of their own,
and a close misspelling gets a "did you mean". Errors name file:line:column and the key path.
`qauvern_hpc/data/config.example.yaml` is the commented reference; `Config.json_schema()` feeds the docs.

API keys never live in the config: only paths of key files (mode 0600 or stricter), read lazily by
`load_api_key()`, which returns a pydantic `SecretStr` so the key never shows in a repr or a dump.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import os
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from qauvern_hpc.core import paths
from qauvern_hpc.core.errors import ConfigError
from qauvern_hpc.core.keyfile import check_key_file, read_key_file
from qauvern_hpc.core.units import parse_seconds
from qauvern_hpc.policy import globs
from qauvern_hpc.policy.compiled import (
    MATCH_FIELDS,
    Policy,
    PolicyEndpoints,
    PolicyInstance,
    PolicyMatch,
    PolicyResource,
    PolicyRule,
    PolicySlurm,
)

DEFAULT_CONFIG_PATH = Path("/etc/qauvern-hpc/config.yaml")

PLAN_IDS: dict[str, str] = {
    "internal": "91b2c828-2952-4f05-aed8-bedf92c6c480",
    "premium": "7f666d17-7893-47d8-bf9d-2b2389fc4dfc",
    "paygo": "5304b575-3cff-4455-90dc-ae4367762093",
}
GRANT_DEFAULT_DAYS = 28
DEFAULT_DENY_MESSAGE = "no rule grants QPU access"
DEFAULT_RULE_DENY_MESSAGE = "QPU access denied"
RESOURCE_TYPES = ("ibm-quantum-compute-service", "ibm-quantum-system", "qiskit-runtime-service")
DEPRECATED_TYPES = {"qiskit-runtime-service": "ibm-quantum-compute-service"}

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL_RE = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
_RESERVED_ENV_PREFIXES = ("QAUVERN_HPC_", "SLURM_", "SPANK_")
_RESERVED_ENV_NAMES = ("IBMCLOUD_API_KEY", "QISKIT_IBM_TOKEN")


# -- value types ---------------------------------------------------------------------------------------------


def _seconds(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(
            f"not a duration: {value!r} (use seconds or a number with a unit, e.g. 10h, 2.5d, 1qau)"
        )
    return parse_seconds(value)


_SECONDS_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?|\.\d+)\s*([sSmMhHdDwW]|[qQ][aA][uU])?\s*$"},
    ],
    "description": "seconds, or a number with a unit: 90s, 15m, 10h, 2.5d, 1w, 1qau (1 QAU = 96000 s)",
}
Seconds = Annotated[int, BeforeValidator(_seconds), WithJsonSchema(_SECONDS_SCHEMA)]


def _utc_datetime(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"not a date: {value!r} (use YYYY-MM-DD or an ISO 8601 time such as 2025-03-01T00:00:00Z)"
            ) from None
        return _utc_datetime(parsed)
    raise ValueError(f"not a date: {value!r} (use YYYY-MM-DD or an ISO 8601 time)")


UtcDateTime = Annotated[
    dt.datetime,
    BeforeValidator(_utc_datetime),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "a date (YYYY-MM-DD, midnight UTC) or an ISO 8601 time; no offset means UTC",
        }
    ),
]


def _name(kind: str) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, str) and not _NAME_RE.fullmatch(value):
            raise ValueError(f"invalid {kind} name {value!r}: use 1 to 64 letters, digits, '_', '.' or '-'")
        return value

    return BeforeValidator(check)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _path(value: Any, info: ValidationInfo) -> Any:
    """Expand ~ and make a relative path relative to the config file's directory."""
    if isinstance(value, str | os.PathLike):
        p = Path(os.path.expanduser(os.fspath(value)))
        base = (info.context or {}).get("base_dir")
        if not p.is_absolute() and base is not None:
            p = Path(base) / p
        return p
    return value


def _url(value: Any) -> Any:
    if isinstance(value, str):
        if not _URL_RE.fullmatch(value.strip()):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value.strip().rstrip("/")
    return value


Url = Annotated[str, BeforeValidator(_url)]


def _int_to_str(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- sections ------------------------------------------------------------------------------------------------


class EndpointsConfig(_Model):
    """Override IBM hosts. Either any of iam/resource_controller/quantum, or `emulator` alone."""

    iam: Url | None = Field(None, description="IAM base URL (token endpoint base)")
    resource_controller: Url | None = Field(None, description="IBM Cloud Resource Controller base URL")
    quantum: Url | None = Field(None, description="IBM Quantum Platform API base URL")
    emulator: Url | None = Field(
        None, description="every service at one base URL (the `qauvern-hpc emulator`); excludes the others"
    )

    @model_validator(mode="after")
    def _emulator_alone(self) -> EndpointsConfig:
        if self.emulator and (self.iam or self.resource_controller or self.quantum):
            raise ValueError(
                "`emulator` puts every service at one base URL: drop iam/resource_controller/quantum, "
                "or drop emulator"
            )
        return self


class IBMConfig(_Model):
    account_id: Annotated[str, BeforeValidator(_int_to_str)] = Field(
        ..., min_length=1, description="IBM Cloud account id"
    )
    plan: str = Field(..., description="internal, premium or paygo (or the plan id)")
    staging: bool = Field(False, description="use IBM's staging hosts")
    endpoints: EndpointsConfig = Field(default_factory=EndpointsConfig)
    api_key_file: Annotated[Path, BeforeValidator(_path)] | None = Field(
        None, description="default API key file (mode 0600) for instances without their own"
    )

    @field_validator("plan", mode="before")
    @classmethod
    def _plan(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        v = value.strip().lower()
        if v in PLAN_IDS:
            return v
        for name, pid in PLAN_IDS.items():
            if v == pid:
                return name
        raise ValueError(f"unknown plan {value!r} (use internal, premium or paygo, or their plan id)")

    @property
    def plan_id(self) -> str:
        return PLAN_IDS[self.plan]


class NetGrant(_Model):
    """Extra seconds for a period, on top of limit_seconds (qauvern's net grants)."""

    start_date: UtcDateTime
    end_date: UtcDateTime | None = Field(None, description=f"default: start_date + {GRANT_DEFAULT_DAYS} days")
    net_grant_seconds: Seconds

    @field_validator("net_grant_seconds")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("net_grant_seconds must be greater than 0")
        return value

    @property
    def end(self) -> dt.datetime:
        return self.end_date or self.start_date + dt.timedelta(days=GRANT_DEFAULT_DAYS)

    @model_validator(mode="after")
    def _order(self) -> NetGrant:
        if self.end <= self.start_date:
            raise ValueError(
                f"end_date ({self.end.date().isoformat()}) must be after start_date "
                f"({self.start_date.date().isoformat()})"
            )
        return self


def _crn(value: Any) -> Any:
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) < 8 or parts[0] != "crn" or not parts[5] or not parts[7]:
            raise ValueError(
                f"not an instance CRN: {value!r} (expected crn:v1:bluemix:public:quantum-computing:REGION:"
                "a/ACCOUNT:INSTANCE::)"
            )
    return value


class InstanceConfig(_Model):
    name: Annotated[str, _name("instance")]
    crn: Annotated[str, BeforeValidator(_crn)]
    api_key_file: Annotated[Path, BeforeValidator(_path)] | None = Field(
        None, description="API key file (mode 0600) for this instance; default: ibm.api_key_file"
    )
    limit_seconds: Seconds | None = Field(None, description="the instance's 28-day usage limit")
    target_usage_seconds: Seconds | None = Field(
        None, description="opt-in: usage this instance should reach over the balance period"
    )
    net_grants: list[NetGrant] = Field(default_factory=list)
    project_limit_seconds: Seconds | None = Field(None, description="per-project limit inside this instance")

    @model_validator(mode="after")
    def _limits(self) -> InstanceConfig:
        if self.net_grants and self.limit_seconds is None:
            raise ValueError("net_grants need limit_seconds (the base the grants add to)")
        if (
            self.target_usage_seconds is not None
            and self.limit_seconds is not None
            and not self.net_grants
            and self.target_usage_seconds > self.limit_seconds
        ):
            raise ValueError(
                f"target_usage_seconds ({self.target_usage_seconds}) is above "
                f"limit_seconds ({self.limit_seconds})"
            )
        return self

    @property
    def region(self) -> str:
        return self.crn.split(":")[5]


def _env(value: Any) -> Any:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or not _ENV_NAME_RE.fullmatch(k):
                raise ValueError(f"invalid environment variable name {k!r}")
            if k.startswith(_RESERVED_ENV_PREFIXES) or k in _RESERVED_ENV_NAMES:
                raise ValueError(
                    f"{k} is reserved: qauvern-hpc sets names starting with QAUVERN_HPC_, SLURM_ or SPANK_ "
                    "and the API key variables itself (use expose_api_key for the key)"
                )
            if not isinstance(v, str):
                raise ValueError(f'{k}: the value must be a string (quote it: {k}: "{v}")')
    return value


class ResourceConfig(_Model):
    """A QPU resource that `--qpu` may name."""

    name: Annotated[str, _name("resource")]
    type: Literal["ibm-quantum-compute-service", "ibm-quantum-system", "qiskit-runtime-service"] = Field(
        "ibm-quantum-compute-service", description="QRMI resource type (qiskit-runtime-service is deprecated)"
    )
    backend: str | None = Field(
        None, min_length=1, description="IBM backend name; default: the resource name"
    )
    session_mode: Literal["batch", "dedicated"] = "batch"
    max_ttl_seconds: Seconds = Field(8 * 3600, description="session max TTL (default 8h)")
    fail_mode: Literal["open", "closed"] = Field(
        "closed",
        description="when IBM or the config fails: closed fails the job's tasks, open runs them without it",
    )
    expose_api_key: bool = Field(False, description="put the instance API key into the job environment")
    on_job_end: Literal["close", "cancel"] = Field(
        "close",
        description="when the Slurm job ends: close the session (IBM cancels its queued jobs but lets a "
        "running one finish, and charges it), or cancel also the running ones (a cancelled or timed-out "
        "Slurm job stops spending quantum time; its results are lost)",
    )
    env: Annotated[dict[str, str], BeforeValidator(_env)] = Field(
        default_factory=dict, description="extra environment variables for the job (no secrets)"
    )

    @field_validator("max_ttl_seconds")
    @classmethod
    def _ttl(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("max_ttl_seconds must be greater than 0")
        return value

    @property
    def backend_name(self) -> str:
        return self.backend or self.name


def _globs(value: Any) -> Any:
    value = _as_list(value)
    if isinstance(value, list):
        if not value:
            raise ValueError("an empty list matches nothing: remove the key to match any value")
        for p in value:
            if isinstance(p, str):
                err = globs.glob_error(p)
                if err:
                    raise ValueError(err)
    return value


GlobList = Annotated[list[str], BeforeValidator(_globs)]


class MatchConfig(_Model):
    """fnmatch globs per field; a missing field matches any value; `!glob` excludes."""

    users: GlobList | None = None
    accounts: GlobList | None = None
    partitions: GlobList | None = None
    qos: GlobList | None = None

    def to_policy(self) -> PolicyMatch:
        return PolicyMatch(
            **{k: (tuple(v) if (v := getattr(self, k)) is not None else None) for k in MATCH_FIELDS}
        )


class _RuleBody(_Model):
    instance: str | None = Field(None, description="the IBM Quantum instance (allow rules)")
    resources: Annotated[list[str], BeforeValidator(_as_list)] | None = Field(
        None, description="resource names or globs this rule allows; '*' = all (allow rules)"
    )
    deny: bool = Field(False, description="refuse matching jobs with `message`")
    message: str | None = Field(None, description="the refusal message (deny rules)")

    @model_validator(mode="after")
    def _shape(self) -> _RuleBody:
        if self.deny:
            extra = [k for k in ("instance", "resources") if getattr(self, k) is not None]
            if extra:
                raise ValueError(f"a deny rule takes no {' or '.join(extra)}")
        else:
            if self.message is not None:
                raise ValueError("`message` is only for deny rules (set deny: true)")
            if self.instance is None:
                raise ValueError("an allow rule needs `instance` (or set deny: true)")
            if not self.resources:
                raise ValueError("an allow rule needs `resources` (a list of names or globs; ['*'] for all)")
        return self


class RuleConfig(_RuleBody):
    name: Annotated[str, _name("rule")]
    match: MatchConfig = Field(default_factory=MatchConfig)

    @field_validator("name")
    @classmethod
    def _not_default(cls, value: str) -> str:
        if value == "default":
            raise ValueError("'default' is the name of the default rule; pick another name")
        return value


def _default_rule(value: Any) -> Any:
    if isinstance(value, str):
        if value.strip() == "deny":
            return {"deny": True}
        raise ValueError("default must be `deny` or a rule body (instance + resources, or deny + message)")
    return value


class DefaultRuleConfig(_RuleBody):
    """What happens when no rule matches: `deny`, or a rule body without name and match."""


class SlurmConfig(_Model):
    state_dir: Annotated[Path, BeforeValidator(_path)] = Field(
        Path("/var/lib/qauvern-hpc"), description="shared between the controller and the compute nodes"
    )
    cluster: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        default_factory=list, description="Slurm cluster name(s) this config serves"
    )
    sacct: str = "sacct"
    squeue: str = "squeue"
    sacctmgr: str = "sacctmgr"
    admin_comment: bool = Field(
        True,
        description="merge our record (qauvern:v1;rule=R;inst=I;res=RESOURCE@SESSION,...) into the job's "
        "AdminComment, keeping any other text there; the collector reads it back from sacct",
    )


class LedgerConfig(_Model):
    """Usage ledger (coming in a later release)."""

    url: str = "sqlite:////var/lib/qauvern-hpc/ledger.db"


class DemandConfig(_Model):
    """How Slurm's queue and the ledger raise an instance's activity score (`qauvern-hpc rebalance`).

    Points are on the scale of IBM's usage score, where one second used in the last 24 h is worth 32.
    An instance's demand score is
    `(queued_seconds_weight * queued seconds + pending_job_weight * pending jobs) * age factor
    + recent_seconds_weight * max(0, ledger seconds in recent_window - IBM's 24 h figure)`, with
    age factor `1 + age_boost_per_day * min(oldest pending age in days, age_boost_max_days)`.
    """

    enabled: bool = Field(True, description="use Slurm's pending QPU jobs and the ledger at all")
    queued_seconds_weight: float = Field(32.0, ge=0, description="points per requested second, pending job")
    pending_job_weight: float = Field(
        1920.0, ge=0, description="points per pending job (1920 = 60 s at 24 h)"
    )
    age_boost_per_day: float = Field(1.0, ge=0, description="queue points grow by this factor per day waited")
    age_boost_max_days: float = Field(7.0, ge=0, description="the age boost stops growing after this")
    recent_seconds_weight: float = Field(
        32.0, ge=0, description="points per ledger second IBM's 24 h usage does not show yet"
    )
    recent_window: Seconds = Field(86400, description="how far back the ledger's finished usage counts")
    max_job_seconds: Seconds = Field(
        3600, description="a pending job's requested time counts at most this much (its QPU time is unknown)"
    )
    count_held: bool = Field(False, description="count held jobs (priority 0, JobHeld*) as demand")
    when_over_budget: bool = Field(
        True,
        description="use the demand also while the account's 28-day usage is at or above its budget; "
        "false: IBM usage alone picks who gets the (usage-capped) allocations then, which protects small "
        "projects' tail wait but gates fewer failing jobs (docs/simulation.md)",
    )

    @field_validator("recent_window", "max_job_seconds")
    @classmethod
    def _positive_window(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value


class RebalanceSlurmConfig(_Model):
    """How the rebalancer enforces its plan in Slurm (sacctmgr -i, idempotent)."""

    license_prefix: str | None = Field(
        "qpu_",
        description="per-instance license `<prefix><instance>` that job_submit.lua adds to QPU jobs "
        "(QAUVERN_HPC_QPU_INSTANCE_LICENSE); null: no demand from squeue and no gating",
    )
    gate: bool = Field(
        True,
        description="set GrpTRES=license/<prefix><instance>=0 on the root association while the instance's "
        "limit is reached (its jobs pend with reason AssocGrpLicense); -1 again when usage rolls off",
    )
    fairshare: bool = Field(True, description="mirror instance shares onto the mapped accounts' Fairshare")
    fairshare_scale: int = Field(100, ge=1, description="Fairshare points the whole account budget is worth")
    accounts: dict[str, list[str]] = Field(
        default_factory=dict,
        description="instance -> Slurm accounts whose Fairshare mirrors it (default: the accounts the "
        "rules name for it)",
    )

    @field_validator("license_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", value):
            raise ValueError(f"license_prefix {value!r}: use a letter, then letters, digits or '_'")
        return value


class BalancePeriodConfig(_Model):
    start_date: UtcDateTime
    end_date: UtcDateTime


class RebalanceConfig(_Model):
    """Periodic rebalancing of instance allocations (`qauvern-hpc rebalance`)."""

    enabled: bool = False
    interval: Seconds = Field(3600, description="how often to rebalance")
    min_change_seconds: Seconds = Field(
        0, description="hysteresis: allocation changes smaller than this are not written"
    )
    retired_grants_keep_paying: bool = Field(
        False, description="fix qauvern 0.14's quirk that can lower a limit when a short grant retires"
    )
    balance_period: BalancePeriodConfig | None = Field(
        None, description="the period instances[].target_usage_seconds counts over (opt-in)"
    )
    demand: DemandConfig = Field(default_factory=DemandConfig)
    slurm: RebalanceSlurmConfig = Field(default_factory=RebalanceSlurmConfig)
    state_dir: Annotated[Path, BeforeValidator(_path)] | None = Field(
        None, description="journal and lock directory (default: slurm.state_dir/rebalance)"
    )


class MetricsConfig(_Model):
    """Prometheus metrics (coming in a later release)."""

    enabled: bool = False
    listen: str = "127.0.0.1:9877"
    textfile: Annotated[Path, BeforeValidator(_path)] | None = None


class Config(_Model):
    ibm: IBMConfig
    minimum_allocation_seconds: Seconds = Field(60, description="no instance's allocation goes below this")
    allocation_reserve_percent: float = Field(
        0.0, ge=0, lt=100, description="share of the account budget kept out of rebalancing"
    )
    instances: list[InstanceConfig] = Field(default_factory=list)
    resources: list[ResourceConfig] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(
        default_factory=list, description="tried in order; the first match decides"
    )
    default: Annotated[DefaultRuleConfig, BeforeValidator(_default_rule)] = Field(
        default_factory=lambda: DefaultRuleConfig(deny=True),
        description="`deny` (the default) or a rule body, used when no rule matches",
    )
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    rebalance: RebalanceConfig = Field(default_factory=RebalanceConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @model_validator(mode="after")
    def _cross_references(self, info: ValidationInfo) -> Config:
        if (info.context or {}).get("defer_cross_checks"):
            return self
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(f"{format_loc(p.loc)}: {p.message}" for p in problems))
        return self

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON schema of the config file (the docs' config reference is generated from it)."""
        return cls.model_json_schema(mode="validation")

    # -- lookups ---------------------------------------------------------------------------------------------

    def instance(self, name: str) -> InstanceConfig:
        for inst in self.instances:
            if inst.name == name:
                return inst
        raise KeyError(name)

    def resource(self, name: str) -> ResourceConfig:
        for res in self.resources:
            if res.name == name:
                return res
        raise KeyError(name)

    def api_key_file_for(self, instance: str) -> Path | None:
        return self.instance(instance).api_key_file or self.ibm.api_key_file

    def expand_resources(self, patterns: list[str]) -> list[str]:
        """Resource names (config order) that the rule's names/globs select."""
        chosen = {n for p in patterns for n in (r.name for r in self.resources) if globs.glob_match(p, n)}
        return [r.name for r in self.resources if r.name in chosen]

    def all_rules(self) -> Iterator[tuple[Loc, str, _RuleBody, MatchConfig]]:
        for n, rule in enumerate(self.rules):
            yield ("rules", n), rule.name, rule, rule.match
        yield ("default",), "default", self.default, MatchConfig()

    # -- checks ----------------------------------------------------------------------------------------------

    def problems(self) -> list[Issue]:
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

        dups(self.instances, "name", "instance", "instances")
        dups(self.instances, "crn", "instance", "instances")
        dups(self.resources, "name", "resource", "resources")
        dups(self.rules, "name", "rule", "rules")
        instance_names = [i.name for i in self.instances]
        resource_names = [r.name for r in self.resources]
        for loc, _name, body, _match in self.all_rules():
            if body.deny:
                continue
            if body.instance not in instance_names:
                hint = _did_you_mean(body.instance or "", instance_names)
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
                    hint = _did_you_mean(pat, resource_names)
                    out.append(
                        Issue(
                            (*loc, "resources", n),
                            f"unknown resource '{pat}'{hint} (known: {', '.join(resource_names) or 'none'})",
                        )
                    )
        for name in self.rebalance.slurm.accounts:
            if name not in instance_names:
                hint = _did_you_mean(name, instance_names)
                out.append(
                    Issue(
                        ("rebalance", "slurm", "accounts", name),
                        f"unknown instance '{name}'{hint} (known: {', '.join(instance_names) or 'none'})",
                    )
                )
        if self.rebalance.balance_period is None:
            for n, inst in enumerate(self.instances):
                if inst.target_usage_seconds is not None:
                    out.append(
                        Issue(
                            ("instances", n, "target_usage_seconds"),
                            "target_usage_seconds needs rebalance.balance_period (start_date, end_date): "
                            "the period the target counts over",
                        )
                    )
        return out

    def warnings(self) -> list[Issue]:
        """Things that load but are probably not what the admin meant."""
        out: list[Issue] = []
        for n, res in enumerate(self.resources):
            if res.type in DEPRECATED_TYPES:
                out.append(
                    Issue(
                        ("resources", n, "type"),
                        f"resource type '{res.type}' is deprecated; use '{DEPRECATED_TYPES[res.type]}'",
                    )
                )
        catch_all: str | None = None
        reachable: list[_RuleBody] = []
        for n, rule in enumerate(self.rules):
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
            reachable.append(self.default)
        used_instances: set[str] = set()
        granted: set[str] = set()
        for body in reachable:
            if not body.deny and body.instance:
                used_instances.add(body.instance)
                granted.update(self.expand_resources(body.resources or []))
        for n, inst in enumerate(self.instances):
            if inst.name in used_instances and inst.api_key_file is None and self.ibm.api_key_file is None:
                out.append(
                    Issue(
                        ("instances", n, "name"),
                        f"instance '{inst.name}' has no api_key_file and ibm.api_key_file is not set: "
                        "the prolog will have no API key for it",
                    )
                )
        for n, res in enumerate(self.resources):
            if res.name not in granted:
                out.append(Issue(("resources", n, "name"), f"no reachable rule allows resource '{res.name}'"))
        return out

    # -- compilation -----------------------------------------------------------------------------------------

    def to_policy(
        self, *, source: str | None = None, source_sha256: str | None = None, generated_at: str | None = None
    ) -> Policy:
        """The compiled, secret-free policy (see qauvern_hpc.policy.compiled for the JSON shape)."""

        def rule(name: str, body: _RuleBody, match: MatchConfig, is_default: bool) -> PolicyRule:
            if body.deny:
                default_msg = DEFAULT_DENY_MESSAGE if is_default else DEFAULT_RULE_DENY_MESSAGE
                return PolicyRule(
                    name=name,
                    match=match.to_policy(),
                    deny=True,
                    message=body.message or default_msg,
                    instance=None,
                    resources=(),
                )
            return PolicyRule(
                name=name,
                match=match.to_policy(),
                deny=False,
                message=None,
                instance=body.instance,
                resources=tuple(self.expand_resources(body.resources or [])),
            )

        instances = {
            i.name: PolicyInstance(
                name=i.name,
                crn=i.crn,
                api_key_file=str(k) if (k := (i.api_key_file or self.ibm.api_key_file)) is not None else None,
            )
            for i in self.instances
        }
        resources = {
            r.name: PolicyResource(
                name=r.name,
                type=r.type,
                backend=r.backend_name,
                session_mode=r.session_mode,
                max_ttl_seconds=r.max_ttl_seconds,
                fail_mode=r.fail_mode,
                expose_api_key=r.expose_api_key,
                env=dict(r.env),
                on_job_end=r.on_job_end,
            )
            for r in self.resources
        }
        ep = self.ibm.endpoints
        return Policy(
            state_dir=str(self.slurm.state_dir),
            instances=instances,
            resources=resources,
            rules=tuple(rule(r.name, r, r.match, False) for r in self.rules),
            default=rule("default", self.default, MatchConfig(), True),
            account_id=self.ibm.account_id,
            plan_id=self.ibm.plan_id,
            endpoints=PolicyEndpoints(
                staging=self.ibm.staging,
                emulator=ep.emulator,
                iam=ep.iam,
                resource_controller=ep.resource_controller,
                quantum=ep.quantum,
            ),
            slurm=PolicySlurm(
                cluster=tuple(self.slurm.cluster),
                sacct=self.slurm.sacct,
                squeue=self.slurm.squeue,
                sacctmgr=self.slurm.sacctmgr,
                admin_comment=self.slurm.admin_comment,
            ),
            source=source,
            source_sha256=source_sha256,
            generated_at=generated_at,
        )


# -- issues and positions ------------------------------------------------------------------------------------

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    loc: Loc
    message: str
    first_loc: Loc | None = None  # for duplicates: where the first one is


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


class _Loader(yaml.SafeLoader):
    pass


@dataclass
class _Document:
    data: Any
    values: dict[Loc, Mark]  # where each value starts
    keys: dict[Loc, Mark]  # where each mapping key is written


def _mark(m: yaml.Mark) -> Mark:
    return Mark(m.line + 1, m.column + 1)


def _parse_yaml(text: str, filename: str) -> _Document:
    loader = _Loader(text)
    values: dict[Loc, Mark] = {}
    keys: dict[Loc, Mark] = {}
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{filename}: the config is empty")

        def build(n: yaml.Node, path: Loc, depth: int) -> Any:
            if depth > 64:
                raise ConfigError(f"{filename}:{_mark(n.start_mark).line}: nesting too deep")
            values.setdefault(path, _mark(n.start_mark))
            if isinstance(n, yaml.MappingNode):
                seen: dict[Any, yaml.Node] = {}
                for knode, _v in n.value:
                    if knode.tag == "tag:yaml.org,2002:merge":
                        continue
                    k = loader.construct_object(knode, deep=True)
                    if isinstance(k, list | dict):
                        m = _mark(knode.start_mark)
                        raise ConfigError(
                            f"{filename}:{m.line}:{m.column}: {format_loc(path)}: a key must be a scalar"
                        )
                    if k in seen:
                        m, first = _mark(knode.start_mark), _mark(seen[k].start_mark)
                        raise ConfigError(
                            f"{filename}:{m.line}:{m.column}: {format_loc((*path, k))}: duplicate key "
                            f"(first at line {first.line})"
                        )
                    seen[k] = knode
                loader.flatten_mapping(n)
                out: dict[Any, Any] = {}
                for knode, vnode in n.value:
                    k = loader.construct_object(knode, deep=True)
                    keys.setdefault((*path, k), _mark(knode.start_mark))
                    out[k] = build(vnode, (*path, k), depth + 1)
                return out
            if isinstance(n, yaml.SequenceNode):
                return [build(v, (*path, i), depth + 1) for i, v in enumerate(n.value)]
            return loader.construct_object(n, deep=True)

        data = build(node, (), 0)
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark or exc.context_mark
        where = f"{filename}:{m.line + 1}:{m.column + 1}" if m else filename
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{filename}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return _Document(data, values, keys)


# -- removed, renamed and misspelt keys ----------------------------------------------------------------------

_API_KEY_MSG = (
    "API keys are never written in the config: put the key in a file readable only by root "
    "(chmod 600) and set `api_key_file`"
)
_REMOVED: dict[tuple[str, str], str] = {
    ("Config", "balance_period"): (
        "`balance_period` was removed (qauvern 0.10 dropped it: it only changed reports); for a usage target "
        "per instance set `instances[].target_usage_seconds`"
    ),
    ("Config", "enforce_usage_floor"): (
        "`enforce_usage_floor` was removed (qauvern 0.14): accounts over their allocation budget are handled "
        "automatically; delete the key"
    ),
    ("Config", "usage_floor_relax_above_percent"): (
        "`usage_floor_relax_above_percent` was removed (qauvern 0.14): accounts over their allocation budget "
        "are handled automatically; delete the key"
    ),
    ("Config", "account_id"): "`account_id` moved under `ibm:` (ibm.account_id)",
    ("Config", "plan"): "`plan` moved under `ibm:` (ibm.plan)",
    ("Config", "staging"): "`staging` moved under `ibm:` (ibm.staging)",
    ("Config", "api_key"): _API_KEY_MSG,
    ("Config", "api_key_file"): "`api_key_file` moved under `ibm:` (ibm.api_key_file) or goes per instance",
    ("Config", "state_dir"): "`state_dir` moved under `slurm:` (slurm.state_dir)",
    ("Config", "qpus"): "QPU resources are listed under `resources:`",
    ("Config", "backends"): "QPU resources are listed under `resources:` (each with an optional `backend`)",
    ("Config", "default_rule"): "use `default:` (`deny`, or a rule body)",
    ("IBMConfig", "api_key"): _API_KEY_MSG,
    ("IBMConfig", "region"): "regions come from each instance's CRN; there is no ibm.region",
    ("InstanceConfig", "api_key"): _API_KEY_MSG,
    ("InstanceConfig", "start_date"): (
        "per-instance balance period dates were removed with `balance_period`; for extra time over a period "
        "use `net_grants`"
    ),
    ("InstanceConfig", "end_date"): (
        "per-instance balance period dates were removed with `balance_period`; for extra time over a period "
        "use `net_grants`"
    ),
    ("InstanceConfig", "target_limit_seconds"): "use `limit_seconds`",
    ("InstanceConfig", "limit"): "use `limit_seconds` (a duration: seconds or 10h, 2.5d, 1qau)",
    (
        "InstanceConfig",
        "resources",
    ): "instances do not list resources: rules map jobs to an instance and resources",
    ("ResourceConfig", "environment"): (
        "`environment` (qrmi_config.json) is `env` here, and holds no credentials: the instance's "
        "api_key_file is used (see expose_api_key)"
    ),
    ("ResourceConfig", "mode"): "use `session_mode` (batch or dedicated)",
    ("ResourceConfig", "instance"): "resources are not tied to an instance: rules map jobs to an instance",
    ("ResourceConfig", "api_key"): _API_KEY_MSG,
    ("ResourceConfig", "ttl"): "use `max_ttl_seconds`",
    ("RuleConfig", "users"): "put `users` under `match:`",
    ("RuleConfig", "accounts"): "put `accounts` under `match:`",
    ("RuleConfig", "partitions"): "put `partitions` under `match:`",
    ("RuleConfig", "qos"): "put `qos` under `match:`",
    ("RuleConfig", "action"): "use `deny: true` for a deny rule, or `instance:` + `resources:` to allow",
    ("RuleConfig", "allow"): "a rule allows by naming `instance:` + `resources:`; `deny: true` refuses",
    ("RuleConfig", "qpus"): "use `resources:`",
    ("MatchConfig", "user"): "use `users` (a list of globs)",
    ("MatchConfig", "account"): "use `accounts` (a list of globs)",
    ("MatchConfig", "partition"): "use `partitions` (a list of globs)",
    ("MatchConfig", "qoses"): "use `qos` (a list of globs)",
    ("RebalanceConfig", "weights"): (
        "`rebalance.weights` was a placeholder: the Slurm demand weighting is `rebalance.demand` "
        "(queued_seconds_weight, pending_job_weight, age_boost_per_day, ...)"
    ),
}


def _unwrap(tp: Any) -> Any:
    """Strip Annotated/Optional to the interesting type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            tp = models[0] if models else args[0]
        else:
            return tp


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` (None if it is not a model)."""
    tp: Any = Config
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if not isinstance(part, str) or part not in tp.model_fields:
                return None
            tp = tp.model_fields[part].annotation
        elif typing.get_origin(tp) is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unknown_key_message(parent: Loc, key: Any) -> str:
    model = _model_at(parent)
    if model is None:
        return f"unknown key '{key}'"
    special = _REMOVED.get((model.__name__, str(key)))
    if special:
        return special
    fields = list(model.model_fields)
    return f"unknown key '{key}'{_did_you_mean(str(key), fields)}; known keys: {', '.join(fields)}"


# -- loading -------------------------------------------------------------------------------------------------


def _position(doc: _Document, loc: Loc, *, key: bool = False) -> Mark | None:
    if key and loc in doc.keys:
        return doc.keys[loc]
    for n in range(len(loc), -1, -1):
        prefix = loc[:n]
        if prefix in doc.values:
            return doc.values[prefix]
    return None


def _where(filename: str, mark: Mark | None) -> str:
    return f"{filename}:{mark.line}:{mark.column}" if mark else filename


def _clean_loc(loc: tuple[Any, ...], doc: _Document) -> Loc:
    """Drop pydantic's internal loc parts (validator tags) that are not keys of the document."""
    out: list[str | int] = []
    for part in loc:
        cand = (*out, part)
        if (
            isinstance(part, int)
            or cand in doc.values
            or cand in doc.keys
            or _model_at(tuple(out)) is not None
        ):
            out.append(part)
    return tuple(out)


def _pydantic_messages(exc: ValidationError, doc: _Document, filename: str) -> list[tuple[Mark | None, str]]:
    out: list[tuple[Mark | None, str]] = []
    for err in exc.errors(include_url=False):
        loc = _clean_loc(tuple(err["loc"]), doc)
        kind = err["type"]
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if kind == "extra_forbidden":
            mark = _position(doc, loc, key=True)
            msg = _unknown_key_message(loc[:-1], loc[-1] if loc else "?")
        elif kind == "missing":
            mark = _position(doc, loc[:-1])
            msg = f"required key '{loc[-1]}' is missing" if loc else "required key missing"
        elif kind == "model_type" and (model := _model_at(loc)) is not None:
            mark = _position(doc, loc)
            value = err.get("input")
            msg = f"expected a mapping with keys {', '.join(model.model_fields)}"
            if isinstance(value, str) and "name" in model.model_fields:
                msg += f" (got '{value}': write `- name: {value}`)"
            elif isinstance(value, str | int | float | bool | list):
                msg += f" (got {value!r})"
        else:
            mark = _position(doc, loc)
            value = err.get("input")
            if isinstance(value, str | int | float | bool):
                shown = repr(value)
                if shown not in msg and kind not in ("value_error", "assertion_error"):
                    msg = f"{msg} (got {shown})"
        out.append((mark, f"{_where(filename, mark)}: {format_loc(loc)}: {msg}"))
    return out


def load_api_key(path: str | os.PathLike[str]) -> SecretStr:
    """Read an API key file (must be mode 0600 or stricter). The key stays wrapped in a SecretStr."""
    return SecretStr(read_key_file(path))


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    path: Path
    sha256: str
    warnings: tuple[str, ...]  # "file:line:col: key.path: message"


def _key_file_issues(cfg: Config) -> list[Issue]:
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


def load_config_full(
    path: str | os.PathLike[str] | None = None, *, check_key_files: bool = True
) -> LoadedConfig:
    """Load and validate the config; also return its warnings and digest. Raises ConfigError."""
    p = Path(path) if path is not None else Path(os.environ.get("QAUVERN_HPC_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: config file not found",
            hint=f"start from the commented example: qauvern-hpc check-config --example > {p}",
        ) from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config: {exc.strerror or exc}") from None
    return parse_config(raw, p, check_key_files=check_key_files)


def parse_config(
    raw: bytes | str, path: str | os.PathLike[str], *, check_key_files: bool = True
) -> LoadedConfig:
    """Validate config text as if read from `path` (relative key paths resolve beside it)."""
    p = Path(path)
    filename = str(p)
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{filename}: not UTF-8 text ({exc})") from None
    doc = _parse_yaml(text, filename)
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{filename}:1:1: the config must be a mapping of keys (ibm:, instances:, ...)")
    context = {"base_dir": p.parent.resolve(), "defer_cross_checks": True}
    try:
        cfg = Config.model_validate(doc.data, context=context)
    except ValidationError as exc:
        msgs = _pydantic_messages(exc, doc, filename)
        msgs.sort(key=lambda m: (m[0].line, m[0].column) if m[0] else (0, 0))
        raise ConfigError("invalid config:\n" + "\n".join(m for _, m in msgs)) from None

    def fmt(issue: Issue) -> tuple[Mark | None, str]:
        mark = _position(doc, issue.loc)
        msg = issue.message
        if issue.first_loc is not None:
            first = _position(doc, issue.first_loc)
            if first:
                msg += f" [first at line {first.line}]"
        return mark, f"{_where(filename, mark)}: {format_loc(issue.loc)}: {msg}"

    issues = cfg.problems()
    if check_key_files:
        issues += _key_file_issues(cfg)
    if issues:
        msgs = sorted((fmt(i) for i in issues), key=lambda m: (m[0].line, m[0].column) if m[0] else (0, 0))
        raise ConfigError("invalid config:\n" + "\n".join(m for _, m in msgs))
    warns = tuple(
        m for _, m in sorted((fmt(w) for w in cfg.warnings()), key=lambda m: m[0].line if m[0] else 0)
    )
    return LoadedConfig(cfg, p, hashlib.sha256(raw).hexdigest(), warns)


def load_config(path: str | os.PathLike[str] | None = None, *, check_key_files: bool = True) -> Config:
    """Load and validate the site config (default: $QAUVERN_HPC_CONFIG or /etc/qauvern-hpc/config.yaml)."""
    return load_config_full(path, check_key_files=check_key_files).config


def compile_policy(loaded: LoadedConfig) -> Policy:
    """The policy rendered from a loaded config, stamped with its source and time."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return loaded.config.to_policy(
        source=str(loaded.path.resolve()), source_sha256=loaded.sha256, generated_at=now
    )


def example_config_text() -> str:
    """The commented example config shipped with the package."""
    return (paths.DATA_DIR / "config.example.yaml").read_text(encoding="utf-8")
