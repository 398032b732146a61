"""The config -> the compiled, secret-free `Policy` the hooks and job_submit.lua read (qauvern_hpc.policy).

Rules keep their order; resource globs are expanded to concrete names in config order, so the policy never
needs the config's resource list to decide; every instance gets its API key file path (its own or
ibm.api_key_file), never a key, and its plan with the session mode of the resources that name none
(`qauvern_hpc.ibm.plans.default_session_mode`). Deny rules without a message get a default one. With
`admission.enabled`, every (instance, resource) an allow rule grants gets its pair license
(`policy.licenses.pair_license` of the instance and the resource's backend).
"""

from __future__ import annotations

from qauvern_hpc.config.schema import ConfigFields, MatchConfig, RuleBody
from qauvern_hpc.ibm.plans import default_session_mode
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
from qauvern_hpc.policy.licenses import pair_license

DEFAULT_DENY_MESSAGE = "no rule grants QPU access"
DEFAULT_RULE_DENY_MESSAGE = "QPU access denied"


def _match(match: MatchConfig) -> PolicyMatch:
    return PolicyMatch(
        **{k: (tuple(v) if (v := getattr(match, k)) is not None else None) for k in MATCH_FIELDS}
    )


def to_policy(
    cfg: ConfigFields,
    *,
    source: str | None = None,
    source_sha256: str | None = None,
    generated_at: str | None = None,
) -> Policy:
    """The compiled, secret-free policy (see qauvern_hpc.policy.compiled for the JSON shape)."""

    def rule(name: str, body: RuleBody, match: MatchConfig, is_default: bool) -> PolicyRule:
        if body.deny:
            default_msg = DEFAULT_DENY_MESSAGE if is_default else DEFAULT_RULE_DENY_MESSAGE
            return PolicyRule(
                name=name,
                match=_match(match),
                deny=True,
                message=body.message or default_msg,
                instance=None,
                resources=(),
            )
        return PolicyRule(
            name=name,
            match=_match(match),
            deny=False,
            message=None,
            instance=body.instance,
            resources=tuple(cfg.expand_resources(body.resources or [])),
        )

    instances = {
        i.name: PolicyInstance(
            name=i.name,
            crn=i.crn,
            api_key_file=str(k) if (k := (i.api_key_file or cfg.ibm.api_key_file)) is not None else None,
            plan=cfg.plan_of(i.name),
            session_mode=default_session_mode(cfg.plan_of(i.name)),
        )
        for i in cfg.instances
    }
    resources = {
        r.name: PolicyResource(
            name=r.name,
            type=r.type,
            backend=r.backend_name,
            session_mode=r.session_mode or "",
            max_ttl_seconds=r.max_ttl_seconds,
            fail_mode=r.fail_mode,
            expose_api_key=r.expose_api_key,
            env=dict(r.env),
            on_job_end=r.on_job_end,
        )
        for r in cfg.resources
    }
    rules = tuple(rule(r.name, r, r.match, False) for r in cfg.rules)
    default = rule("default", cfg.default, MatchConfig(), True)
    pairs: dict[str, dict[str, str]] = {}
    if cfg.admission.enabled:
        for r in (*rules, default):
            if r.instance is not None:
                for res in r.resources:
                    lic = pair_license(r.instance, resources[res].backend)
                    pairs.setdefault(r.instance, {})[res] = lic
    ep = cfg.ibm.endpoints
    return Policy(
        state_dir=str(cfg.slurm.state_dir),
        instances=instances,
        resources=resources,
        rules=rules,
        default=default,
        account_id=cfg.ibm.account_id,
        plan_id=cfg.ibm.plan_id,
        endpoints=PolicyEndpoints(
            staging=cfg.ibm.staging,
            emulator=ep.emulator,
            iam=ep.iam,
            resource_controller=ep.resource_controller,
            quantum=ep.quantum,
        ),
        slurm=PolicySlurm(
            cluster=tuple(cfg.slurm.cluster),
            sacct=cfg.slurm.sacct,
            squeue=cfg.slurm.squeue,
            sacctmgr=cfg.slurm.sacctmgr,
            admin_comment=cfg.slurm.admin_comment,
        ),
        source=source,
        source_sha256=source_sha256,
        generated_at=generated_at,
        pair_licenses=pairs,
    )
