"""Reading the config file: YAML with positions, validation, and errors that name file:line:column.

`parse_config` validates the shapes first (all pydantic errors together); once they are right it runs the
cross-section checks (`checks`) and the key file checks, again all together. Each problem is one line,
sorted by position: ``file:line:column: key.path: message``. Pydantic's messages are rewritten for admins:
an unknown key names the known ones (or says why a key that qauvern removed or we renamed is gone), a
missing key names itself.
Warnings never fail a load; they travel in `LoadedConfig.warnings`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, SecretStr, ValidationError

from qauvern_hpc.config.checks import did_you_mean, key_file_issues
from qauvern_hpc.config.positions import Document, Issue, Loc, Mark, format_loc, parse_yaml, position, where
from qauvern_hpc.config.root import Config
from qauvern_hpc.core import paths
from qauvern_hpc.core.errors import ConfigError
from qauvern_hpc.core.keyfile import read_key_file
from qauvern_hpc.policy.compiled import Policy

DEFAULT_CONFIG_PATH = Path("/etc/qauvern-hpc/config.yaml")


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
    ("ResourceConfig", "mode"): "use `session_mode` (batch, dedicated or job)",
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


def _unknown_key_message(parent: Loc, key: Any) -> str:
    model = _model_at(parent)
    if model is None:
        return f"unknown key '{key}'"
    special = _REMOVED.get((model.__name__, str(key)))
    if special:
        return special
    fields = list(model.model_fields)
    return f"unknown key '{key}'{did_you_mean(str(key), fields)}; known keys: {', '.join(fields)}"


# -- loading -------------------------------------------------------------------------------------------------


def _clean_loc(loc: tuple[Any, ...], doc: Document) -> Loc:
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


def _pydantic_messages(exc: ValidationError, doc: Document, filename: str) -> list[tuple[Mark | None, str]]:
    out: list[tuple[Mark | None, str]] = []
    for err in exc.errors(include_url=False):
        loc = _clean_loc(tuple(err["loc"]), doc)
        kind = err["type"]
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if kind == "extra_forbidden":
            mark = position(doc, loc, key=True)
            msg = _unknown_key_message(loc[:-1], loc[-1] if loc else "?")
        elif kind == "missing":
            mark = position(doc, loc[:-1])
            msg = f"required key '{loc[-1]}' is missing" if loc else "required key missing"
        elif kind == "model_type" and (model := _model_at(loc)) is not None:
            mark = position(doc, loc)
            value = err.get("input")
            msg = f"expected a mapping with keys {', '.join(model.model_fields)}"
            if isinstance(value, str) and "name" in model.model_fields:
                msg += f" (got '{value}': write `- name: {value}`)"
            elif isinstance(value, str | int | float | bool | list):
                msg += f" (got {value!r})"
        else:
            mark = position(doc, loc)
            value = err.get("input")
            if isinstance(value, str | int | float | bool):
                shown = repr(value)
                if shown not in msg and kind not in ("value_error", "assertion_error"):
                    msg = f"{msg} (got {shown})"
        out.append((mark, f"{where(filename, mark)}: {format_loc(loc)}: {msg}"))
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
    doc = parse_yaml(text, filename)
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
        mark = position(doc, issue.loc)
        msg = issue.message
        if issue.first_loc is not None:
            first = position(doc, issue.first_loc)
            if first:
                msg += f" [first at line {first.line}]"
        return mark, f"{where(filename, mark)}: {format_loc(issue.loc)}: {msg}"

    issues = cfg.problems()
    if check_key_files:
        issues += key_file_issues(cfg)
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
