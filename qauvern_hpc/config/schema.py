"""The config file's keys: one frozen pydantic model per section, each forbidding unknown keys.

Value types accept what admins write (durations with units, dates, globs, relative key-file paths) and
normalise it; a model checks only what it can see alone (a field, or fields of the same section). Checks
across sections (rules naming instances and resources, duplicates) are in `checks`; the root model `Config`
(in `root`) runs them. Instance CRNs must be IBM Quantum ones (`qauvern_hpc.ibm.crn.parse_crn`, the one CRN
parser): a config that loads names only instances the prolog can route. `docs.py` renders these models as
the config reference, so descriptions here are user-facing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from qauvern_hpc.config.positions import Loc
from qauvern_hpc.config.values import Seconds, Url, UtcDateTime, as_list, config_path, int_to_str, name_of
from qauvern_hpc.core.report_units import ReportUnit
from qauvern_hpc.ibm.crn import parse_crn
from qauvern_hpc.ibm.errors import UnknownCRNError
from qauvern_hpc.ibm.plans import PLAN_IDS, plan_name
from qauvern_hpc.policy import globs

GRANT_DEFAULT_DAYS = 28
RESOURCE_TYPES = ("ibm-quantum-compute-service", "ibm-quantum-system", "qiskit-runtime-service")
DEPRECATED_TYPES = {"qiskit-runtime-service": "ibm-quantum-compute-service"}

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_ENV_PREFIXES = ("QAUVERN_HPC_", "SLURM_", "SPANK_")
_RESERVED_ENV_NAMES = ("IBMCLOUD_API_KEY", "QISKIT_IBM_TOKEN")


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


PLAN_HELP = "internal, premium, open, flex or paygo (or the plan id)"


def _plan(value: Any) -> Any:
    return plan_name(value) if isinstance(value, str) else value


class IBMConfig(_Model):
    account_id: Annotated[str, BeforeValidator(int_to_str)] = Field(
        ..., min_length=1, description="IBM Cloud account id"
    )
    plan: Annotated[str, BeforeValidator(_plan)] = Field(..., description=PLAN_HELP)
    staging: bool = Field(False, description="use IBM's staging hosts")
    endpoints: EndpointsConfig = Field(default_factory=EndpointsConfig)
    api_key_file: Annotated[Path, BeforeValidator(config_path)] | None = Field(
        None, description="default API key file (mode 0600) for instances without their own"
    )
    resource_units_per_second: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="RUs per second of QPU usage, used only when IBM sends RUs without seconds and an "
        "instance's Resource Controller entry shows no allocation or limit in both units (from which its "
        "own rate is read)",
    )
    contract_start: UtcDateTime | None = Field(
        None,
        description="Flex plan: the subscription's start; usage counts from here when IBM reports no "
        "usage_period",
    )
    contract_end: UtcDateTime | None = Field(None, description="Flex plan: the subscription's end")

    @model_validator(mode="after")
    def _contract(self) -> IBMConfig:
        if self.contract_end is not None and self.contract_start is None:
            raise ValueError("contract_end needs contract_start")
        if self.contract_start and self.contract_end and self.contract_end <= self.contract_start:
            raise ValueError(
                f"contract_end ({self.contract_end.date().isoformat()}) must be after contract_start "
                f"({self.contract_start.date().isoformat()})"
            )
        return self

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


class InstanceConfig(_Model):
    name: Annotated[str, name_of("instance")]
    crn: str
    api_key_file: Annotated[Path, BeforeValidator(config_path)] | None = Field(
        None, description="API key file (mode 0600) for this instance; default: ibm.api_key_file"
    )
    limit_seconds: Seconds | None = Field(
        None, description="the instance's usage limit, over its plan's period (28 days on Premium)"
    )
    target_usage_seconds: Seconds | None = Field(
        None, description="opt-in: usage this instance should reach over the balance period"
    )
    net_grants: list[NetGrant] = Field(default_factory=list)
    project_limit_seconds: Seconds | None = Field(None, description="per-project limit inside this instance")
    plan: Annotated[str, BeforeValidator(_plan)] | None = Field(
        None,
        description=f"the instance's plan: {PLAN_HELP}; default: ibm.plan. On the Open plan IBM opens no "
        "dedicated session: resources default to session_mode job there",
    )

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

    @field_validator("crn")
    @classmethod
    def _quantum_crn(cls, value: str, info: ValidationInfo) -> str:
        try:
            parse_crn(value)
        except UnknownCRNError as exc:
            name = info.data.get("name")
            of = f" for instance '{name}'" if isinstance(name, str) else ""
            raise ValueError(
                f"not an instance CRN{of}: {exc.ibm_message} "
                "(expected crn:v1:bluemix:public:quantum-computing:REGION:a/ACCOUNT:INSTANCE::)"
            ) from None
        return value

    @property
    def region(self) -> str:
        return parse_crn(self.crn).region


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

    name: Annotated[str, name_of("resource")]
    type: Literal["ibm-quantum-compute-service", "ibm-quantum-system", "qiskit-runtime-service"] = Field(
        "ibm-quantum-compute-service", description="QRMI resource type (qiskit-runtime-service is deprecated)"
    )
    backend: str | None = Field(
        None, min_length=1, description="IBM backend name; default: the resource name"
    )
    session_mode: Literal["batch", "dedicated", "job"] | None = Field(
        None,
        description="batch or dedicated: the prolog opens an IBM session of that mode for the job; job: "
        "no session, the job's IBM jobs run in job mode. Default: job on an Open-plan instance, batch "
        "elsewhere (the instance is the one the job's rule maps it to)",
    )
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
    value = as_list(value)
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
    clusters: GlobList | None = Field(
        None,
        description="Slurm cluster names (ClusterName); the prolog reads SLURM_CLUSTER_NAME, job_submit.lua "
        "the cluster `render-policy` rendered its policy for",
    )


class RuleBody(_Model):
    instance: str | None = Field(None, description="the IBM Quantum instance (allow rules)")
    resources: Annotated[list[str], BeforeValidator(as_list)] | None = Field(
        None, description="resource names or globs this rule allows; '*' = all (allow rules)"
    )
    deny: bool = Field(False, description="refuse matching jobs with `message`")
    message: str | None = Field(None, description="the refusal message (deny rules)")

    @model_validator(mode="after")
    def _shape(self) -> RuleBody:
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


class RuleConfig(RuleBody):
    name: Annotated[str, name_of("rule")]
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


class DefaultRuleConfig(RuleBody):
    """What happens when no rule matches: `deny`, or a rule body without name and match."""


class SlurmConfig(_Model):
    state_dir: Annotated[Path, BeforeValidator(config_path)] = Field(
        Path("/var/lib/qauvern-hpc"), description="shared between the controller and the compute nodes"
    )
    cluster: Annotated[list[str], BeforeValidator(as_list)] = Field(
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
    The fair demand signal weighs an instance's need (Slurm-pending + in-flight QPU seconds) against its
    entitlement (its share of the budget): under budget its demand score is
    `queued_seconds_weight * min(need, limit headroom, entitlement) * fairness * age factor
    + pending_job_weight (any need) + recent_seconds_weight * max(0, ledger seconds in recent_window - IBM's
    24 h figure)`, with fairness `clamp(1 / max(usage / entitlement, fairness_min_ratio), fairness_min,
    fairness_max)` and age factor `1 + age_boost_per_day * min(oldest wait in days, age_boost_max_days)`;
    over budget only `pending_job_weight * fairness * age factor`.
    """

    enabled: bool = Field(True, description="use Slurm's pending QPU jobs and the ledger at all")
    queued_seconds_weight: float = Field(32.0, ge=0, description="points per requested second, pending job")
    pending_job_weight: float = Field(
        1920.0, ge=0, description="points for an instance with any need, not per job (1920 = 60 s at 24 h)"
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
    fairness_min_ratio: float = Field(
        0.25, ge=0, description="usage/entitlement below this counts as this (bounds the fairness boost)"
    )
    fairness_min: float = Field(0.25, gt=0, description="the fairness factor's lower bound")
    fairness_max: float = Field(4.0, gt=0, description="the fairness factor's upper bound")
    when_over_budget: bool = Field(
        True,
        description="use the demand (presence and position only, no volume) also while the account's "
        "28-day usage is at or above its budget; false: IBM usage alone picks who gets the (usage-capped) "
        "allocations then (docs/simulation.md)",
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
    state_dir: Annotated[Path, BeforeValidator(config_path)] | None = Field(
        None, description="journal and lock directory (default: slurm.state_dir/rebalance)"
    )


class MetricsConfig(_Model):
    """Prometheus metrics (coming in a later release)."""

    enabled: bool = False
    listen: str = "127.0.0.1:9877"
    textfile: Annotated[Path, BeforeValidator(config_path)] | None = None


class ReportConfig(_Model):
    """How the reports (`usage`, `show`, `instances`, `analyze`, `rebalance`) show figures."""

    unit: ReportUnit | None = Field(
        None,
        description="default unit of the reports' figures: ru (resource units, as IBM bills them), qau "
        "(1600 min), hours or seconds; unset: ru when IBM reports the account in RUs, else hours; "
        "--unit overrides it",
    )


class AdmissionConfig(_Model):
    """The admission controller (`qauvern-hpc admit run`): per instance and backend, how many QPU jobs may
    hold Slurm resources now, from what IBM reports (backend status, queue, usage limits). While enabled it
    is the only writer of the `license/qpu_*` caps on the root associations (the rebalancer stops gating)."""

    enabled: bool = Field(False, description="run the controller; job_submit.lua adds the pair licenses")
    period: Seconds = Field(30, description="how often the controller reads IBM and Slurm and decides")
    hold_for: Seconds = Field(
        600, description="keep the last decision this long while IBM cannot be read, then apply fail modes"
    )
    max_ibm_wait: Seconds = Field(600, description="admit only what IBM should start within this")
    burst: int = Field(2, ge=1, description="admitted jobs per pair with demand, at most, per backend budget")
    probe: bool = Field(
        True, description="an open pair with pending jobs and nothing in flight may always start one job"
    )
    min_dwell: Seconds = Field(60, description="soft cap changes of a pair at most this often")
    default_job_seconds: Seconds = Field(
        300, description="quantum seconds per job assumed before any job has been measured"
    )
    open_below: float = Field(
        0.5,
        gt=0,
        le=1,
        description="a backend whose estimated wait is below this fraction of max_ibm_wait needs no cap; "
        "above it every pair keeps a standing cap, so a burst between two periods starts only what IBM "
        "should serve in time",
    )
    cap_slack: int = Field(
        1, ge=0, description="a standing cap is not rewritten while it is off by at most this (fewer writes)"
    )
    lost_backoff_max: Seconds = Field(
        14400,
        description="a pair whose job left IBM's queue unstarted after waiting max_ibm_wait or more admits "
        "nothing new for that wait, doubled on each further loss, at most this long",
    )

    @field_validator("period", "hold_for", "default_job_seconds", "lost_backoff_max")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value


class ConfigFields(_Model):
    """The root keys of the config and lookups over them; `Config` adds the cross-checks and compilation."""

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
    report: ReportConfig = Field(default_factory=ReportConfig)
    admission: AdmissionConfig = Field(default_factory=AdmissionConfig)

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

    def plan_of(self, instance: str) -> str:
        """The instance's plan name (its own, else ibm.plan)."""
        return self.instance(instance).plan or self.ibm.plan

    def api_key_file_for(self, instance: str) -> Path | None:
        return self.instance(instance).api_key_file or self.ibm.api_key_file

    def expand_resources(self, patterns: list[str]) -> list[str]:
        """Resource names (config order) that the rule's names/globs select."""
        chosen = {n for p in patterns for n in (r.name for r in self.resources) if globs.glob_match(p, n)}
        return [r.name for r in self.resources if r.name in chosen]

    def all_rules(self) -> Iterator[tuple[Loc, str, RuleBody, MatchConfig]]:
        for n, rule in enumerate(self.rules):
            yield ("rules", n), rule.name, rule, rule.match
        yield ("default",), "default", self.default, MatchConfig()
