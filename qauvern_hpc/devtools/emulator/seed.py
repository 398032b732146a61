"""Seed files: what the emulator starts with.

A seed is a mapping (YAML/JSON file, or a dict). It is the canonical `StateModel` dump plus a few
conveniences, expanded here:

- `clock: {start: ISO, mode: real|manual, time_scale: X}`: used when the emulator starts (ignored on PUT).
- `accounts[].plans[]`: give `plan` (internal|premium|open|flex|paygo) or `plan_id`; the other is derived.
  A Flex plan may give `contract_start` / `contract_end` (its subscription: the usage period).
- `api_keys[]`: `account` may be omitted when there is one account. In a state dump keys appear only as a
  `fingerprint`; such an entry on PUT keeps the existing key with that fingerprint.
- `instances[]`: `crn` is generated when omitted (from `region`, `account` and a `guid` derived from the
  name), `region` is read from the CRN, `account` and `plan`/`plan_id` default to the only account / plan.
- `instances[].usage_history`: seeded daily usage in seconds, either a list (index 0 = today,
  1 = yesterday, ... relative to the clock start) or a mapping whose keys are ISO dates or integers (days
  ago).

- `backends[]`: `status: maintenance` (older seeds) means paused with message "maintenance";
  `schedule[]` entries give `after_seconds` (from the load) instead of an absolute `at`; `flap` and
  `wait_spike` (a mapping or a list, each with optional `after_seconds`) become `schedule` entries and
  `wait_spikes` (see `status`).

See `qauvern_hpc/data/emulator-seed.example.yaml` for a documented example.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from qauvern_hpc.devtools.emulator import status as backend_status
from qauvern_hpc.devtools.emulator.clock import as_utc
from qauvern_hpc.devtools.emulator.model import (
    ApiKey,
    StateModel,
    fingerprint,
    maintenance_is_paused,
)
from qauvern_hpc.ibm.crn import parse_crn
from qauvern_hpc.ibm.errors import UnknownCRNError
from qauvern_hpc.ibm.plans import PLAN_IDS, PLAN_NAMES

SeedSource = Mapping[str, Any] | str | Path | None


class SeedError(ValueError):
    """A seed (file or dict) is malformed or inconsistent; the message (one line) names the location."""


class SeedUnreadable(SeedError):
    """The seed file cannot be read at all (missing, a directory, no permission)."""


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def read_seed(source: SeedSource) -> dict[str, Any]:
    """Return the seed as a plain dict (a deep-ish copy for mappings)."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return json.loads(json.dumps(dict(source), default=str))  # type: ignore[no-any-return]
    path = Path(source)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SeedUnreadable(f"cannot read seed {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SeedError(
            f"{path}: not UTF-8 text (byte {exc.start}: {raw[exc.start : exc.start + 1]!r})"
        ) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SeedError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        why = f"{context}: {problem}" if context else problem
        raise SeedError(f"{where}: not valid YAML: {_one_line(why)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SeedError(f"{path}: the seed must be a mapping at the top level, not {type(data).__name__}")
    return json.loads(json.dumps(data, default=str))  # type: ignore[no-any-return]


def clock_settings(seed: Mapping[str, Any]) -> dict[str, Any]:
    """The `clock` section of a seed (may be empty)."""
    raw = seed.get("clock") or {}
    if not isinstance(raw, Mapping):
        raise SeedError("clock: must be a mapping with start/mode/time_scale")
    unknown = set(raw) - {"start", "mode", "time_scale", "now"}
    if unknown:
        raise SeedError(
            f"clock: unknown key(s) {', '.join(sorted(unknown))} (known: start, mode, time_scale)"
        )
    out = dict(raw)
    if "start" in out and out["start"] is not None:
        try:
            out["start"] = as_utc(datetime.fromisoformat(str(out["start"])))
        except ValueError as exc:
            raise SeedError(f"clock.start: not an ISO 8601 timestamp: {out['start']!r}") from exc
    scale = out.get("time_scale")
    if scale is not None and (
        isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < float("inf")
    ):
        raise SeedError(f"clock.time_scale: must be a number > 0, not {scale!r}")
    return out


def _days_ago_key(key: Any, today: date, where: str) -> date:
    if isinstance(key, int) and not isinstance(key, bool):
        return today - timedelta(days=key)
    text = str(key).strip()
    if text.lstrip("-").isdigit():
        return today - timedelta(days=abs(int(text)))
    try:
        return date.fromisoformat(text[:10])
    except ValueError as exc:
        raise SeedError(f"{where}: key {key!r} is neither an ISO date nor a number of days ago") from exc


def _history(raw: Any, today: date, where: str) -> dict[str, float]:
    out: dict[date, float] = {}
    items: list[tuple[str, date, Any]]
    if raw is None:
        return {}
    if isinstance(raw, list):
        items = [(f"[{i}]", today - timedelta(days=i), v) for i, v in enumerate(raw)]
    elif isinstance(raw, Mapping):
        items = [(f"[{k!r}]", _days_ago_key(k, today, where), v) for k, v in raw.items()]
    else:
        raise SeedError(
            f"{where}: must be a list (index = days ago) or a mapping (date or days ago -> seconds)"
        )
    for label, day, value in items:
        if value is None:
            continue
        here = f"{where}{label} ({day.isoformat()})"
        if isinstance(value, bool):
            raise SeedError(f"{here}: {value!r} is not a number of seconds")
        try:
            seconds = float(value)
        except (TypeError, ValueError) as exc:
            raise SeedError(f"{here}: {value!r} is not a number of seconds") from exc
        if not seconds < float("inf"):  # inf and NaN
            raise SeedError(f"{here}: {value!r} is not a finite number of seconds")
        if seconds < 0:
            raise SeedError(f"{here}: usage cannot be negative ({value!r})")
        out[day] = out.get(day, 0.0) + seconds
    return {d.isoformat(): v for d, v in sorted(out.items())}


def _only(items: list[Any], what: str, where: str) -> Any:
    if len(items) == 1:
        return items[0]
    raise SeedError(f"{where}: give `{what}` explicitly (there are {len(items)} to choose from)")


def make_crn(region: str, account: str, guid: str) -> str:
    return f"crn:v1:bluemix:public:quantum-computing:{region}:a/{account}:{guid}::"


def normalize(
    seed: Mapping[str, Any], *, now: datetime, existing_keys: list[ApiKey] | None = None
) -> StateModel:
    """Expand the conveniences and validate; raise SeedError with a location on any problem."""
    data = {k: v for k, v in seed.items() if k not in ("clock", "now", "summary")}
    today = as_utc(now).date()
    for section in ("accounts", "api_keys", "backends", "instances", "usage_events", "sessions", "jobs"):
        if section in data and data[section] is None:
            data[section] = []
        if section in data and not isinstance(data[section], list):
            raise SeedError(f"{section}: must be a list")

    accounts = data.get("accounts", [])
    for i, acct in enumerate(accounts):
        if not isinstance(acct, dict):
            raise SeedError(f"accounts[{i}]: must be a mapping")
        for j, plan in enumerate(acct.get("plans") or []):
            where = f"accounts[{i}].plans[{j}]"
            if not isinstance(plan, dict):
                raise SeedError(f"{where}: must be a mapping")
            name = plan.get("plan")
            if "plan_id" not in plan:
                if not name or str(name).lower() not in PLAN_IDS:
                    raise SeedError(
                        f"{where}: unknown plan {name!r}; give plan_id or one of {', '.join(PLAN_IDS)}"
                    )
                plan["plan_id"] = PLAN_IDS[str(name).lower()]
            if not name:
                plan["plan"] = PLAN_NAMES.get(str(plan["plan_id"]), "custom")
            else:
                plan["plan"] = str(name).lower()
    account_ids = [str(a.get("id")) for a in accounts]

    keys_by_fp = {k.fingerprint or "": k.key for k in (existing_keys or []) if k.key}
    for i, key in enumerate(data.get("api_keys", [])):
        where = f"api_keys[{i}]"
        if not isinstance(key, dict):
            raise SeedError(f"{where}: must be a mapping with key and account")
        if "account" not in key:
            key["account"] = _only(account_ids, "account", where)
        if key.get("key"):
            key["fingerprint"] = fingerprint(str(key["key"]))
        elif key.get("fingerprint") in keys_by_fp:
            key["key"] = keys_by_fp[key["fingerprint"]]
        else:
            raise SeedError(
                f"{where}: needs `key` (a fingerprint alone only refers to a key the emulator already has)"
            )

    data["backends"] = [_backend(b, now, f"backends[{i}]") for i, b in enumerate(data.get("backends", []))]

    for i, inst in enumerate(data.get("instances", [])):
        where = f"instances[{i}]"
        if not isinstance(inst, dict):
            raise SeedError(f"{where}: must be a mapping")
        crn = inst.get("crn")
        parsed = None
        if crn is not None:
            try:
                parsed = parse_crn(crn)
            except UnknownCRNError as exc:
                raise SeedError(f"{where}.crn: {crn!r} is not a CRN ({exc.ibm_message})") from None
        if "account" not in inst:
            acct_from_crn = parsed.account_id if parsed else ""
            inst["account"] = (
                acct_from_crn if acct_from_crn in account_ids else _only(account_ids, "account", where)
            )
        if "region" not in inst:
            inst["region"] = parsed.region if parsed else "us-east"
        if "guid" not in inst:
            guid = parsed.instance if parsed else ""
            inst["guid"] = guid or str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"{inst['account']}/{inst.get('name', i)}")
            )
        if crn is None:
            inst["crn"] = make_crn(str(inst["region"]), str(inst["account"]), str(inst["guid"]))
        acct = next((a for a in accounts if str(a.get("id")) == str(inst["account"])), None)
        plans = list((acct or {}).get("plans") or [])
        plan_name = inst.pop("plan", None)
        if "plan_id" not in inst:
            if plan_name is not None:
                match = [
                    p
                    for p in plans
                    if p.get("plan") == str(plan_name).lower() or p.get("plan_id") == plan_name
                ]
                if not match:
                    raise SeedError(f"{where}.plan: account {inst['account']!r} has no plan {plan_name!r}")
                inst["plan_id"] = match[0]["plan_id"]
            else:
                inst["plan_id"] = _only(plans, "plan", where).get("plan_id") if plans else None
                if inst["plan_id"] is None:
                    raise SeedError(
                        f"{where}: account {inst['account']!r} has no plan; add one under accounts[].plans"
                    )
        inst.setdefault("created_at", now.isoformat())
        inst.setdefault("updated_at", inst["created_at"])
        inst["usage_history"] = _history(inst.get("usage_history"), today, f"{where}.usage_history")

    try:
        model = StateModel.model_validate(data)
    except ValidationError as exc:
        raise SeedError(_pydantic_message(exc)) from exc
    _cross_check(model)
    return model


def _listed(raw: Any, where: str) -> list[dict[str, Any]]:
    items = [raw] if isinstance(raw, Mapping) else raw if isinstance(raw, list) else None
    if items is None or not all(isinstance(x, Mapping) for x in items):
        raise SeedError(f"{where}: must be a mapping or a list of mappings")
    return [dict(x) for x in items]


def _backend(raw: Any, now: datetime, where: str) -> Any:
    """Expand a backend's `schedule[].after_seconds`, `flap` and `wait_spike` (see the module docstring)."""
    if not isinstance(raw, dict):
        return raw
    b = maintenance_is_paused(raw)
    try:
        schedule = [
            backend_status.change(maintenance_is_paused(c), now, f"{where}.schedule[{k}]")
            for k, c in enumerate(_listed(b.get("schedule") or [], f"{where}.schedule"))
        ]
        base = (str(b.get("status", "online")), b.get("message"))
        for k, f in enumerate(_listed(b.pop("flap", None) or [], f"{where}.flap")):
            schedule += backend_status.flap(base, f, now, f"{where}.flap[{k}]")
        spikes = [
            backend_status.wait_spike(w, now, f"{where}.wait_spike[{k}]")
            for k, w in enumerate(_listed(b.pop("wait_spike", None) or [], f"{where}.wait_spike"))
        ]
    except ValidationError as exc:
        raise SeedError(f"{where}: {_pydantic_message(exc)}") from exc
    except ValueError as exc:
        raise SeedError(str(exc)) from exc
    b["schedule"] = [c.model_dump(mode="json") for c in schedule]
    b["wait_spikes"] = list(b.get("wait_spikes") or []) + [w.model_dump(mode="json") for w in spikes]
    return b


def _pydantic_message(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        lines.append(f"{loc or '(top)'}: {err['msg']}")
    return "invalid emulator state: " + "; ".join(lines)


def _dupes(values: list[str]) -> list[str]:
    seen: set[str] = set()
    return sorted({v for v in values if v in seen or seen.add(v)})  # type: ignore[func-returns-value]


def _cross_check(m: StateModel) -> None:
    problems: list[str] = []
    for what, values in (
        ("account id", [a.id for a in m.accounts]),
        ("backend name", [b.name for b in m.backends]),
        ("instance crn", [i.crn for i in m.instances]),
        ("api key", [k.key or "" for k in m.api_keys]),
        ("session id", [s.id for s in m.sessions]),
        ("job id", [j.id for j in m.jobs]),
    ):
        for dup in _dupes(values):
            problems.append(f"duplicate {what} {dup if what != 'api key' else '(redacted)'}")
    accounts = {a.id: a for a in m.accounts}
    backends = {b.name for b in m.backends}
    crns = {i.crn for i in m.instances}
    for i, key in enumerate(m.api_keys):
        if key.account not in accounts:
            problems.append(f"api_keys[{i}].account: unknown account {key.account!r}")
    for i, inst in enumerate(m.instances):
        acct = accounts.get(inst.account)
        if acct is None:
            problems.append(f"instances[{i}].account: unknown account {inst.account!r}")
        elif inst.plan_id not in {p.plan_id for p in acct.plans}:
            problems.append(f"instances[{i}].plan_id: account {inst.account!r} has no plan {inst.plan_id}")
        for b in inst.backends or []:
            if b not in backends:
                problems.append(f"instances[{i}].backends: unknown backend {b!r}")
    for acct in m.accounts:
        for plan in acct.plans:
            total = sum(
                i.usage_allocation_seconds
                for i in m.instances
                if i.account == acct.id and i.plan_id == plan.plan_id
            )
            if total > plan.usage_allocation_seconds:
                problems.append(
                    f"account {acct.id!r} plan {plan.plan}: instance allocations sum to {total} s, "
                    f"more than the plan's usage_allocation_seconds {plan.usage_allocation_seconds} s"
                )
    for i, ev in enumerate(m.usage_events):
        if ev.instance not in crns:
            problems.append(f"usage_events[{i}].instance: unknown instance {ev.instance!r}")
    sessions = {s.id for s in m.sessions}
    for i, s in enumerate(m.sessions):
        if s.instance not in crns:
            problems.append(f"sessions[{i}].instance: unknown instance {s.instance!r}")
        if s.backend not in backends:
            problems.append(f"sessions[{i}].backend: unknown backend {s.backend!r}")
    for i, j in enumerate(m.jobs):
        if j.instance not in crns:
            problems.append(f"jobs[{i}].instance: unknown instance {j.instance!r}")
        if j.backend not in backends:
            problems.append(f"jobs[{i}].backend: unknown backend {j.backend!r}")
        if j.session_id is not None and j.session_id not in sessions:
            problems.append(f"jobs[{i}].session_id: unknown session {j.session_id!r}")
    if problems:
        raise SeedError("inconsistent emulator state: " + "; ".join(problems))
