"""The Resource Controller: list, read, create and update quantum service instances (allocations and limits).

Invariants: a caller sees only its own account's instances (others are 404, as IBM hides them); Σ
`usage_allocation_seconds` of an account's instances on a plan never exceeds the plan's budget (a create or
update that would is refused with 400 and changes nothing); a PATCH of `parameters` replaces them whole (a
missing or null `instance_limit_seconds` removes the limit); integers are accepted as JSON numbers or
decimal strings, as qauvern sends them. Listings are paginated by `page_size` with opaque `start` tokens in
`next_url`. Not thread-safe: call under `EmulatorState`'s lock.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from qauvern_hpc.devtools.emulator import views
from qauvern_hpc.devtools.emulator.errors import bad_request, not_found
from qauvern_hpc.devtools.emulator.iam import Principal
from qauvern_hpc.devtools.emulator.model import QUANTUM_RESOURCE_ID, REGIONS, Instance
from qauvern_hpc.devtools.emulator.seed import make_crn
from qauvern_hpc.devtools.emulator.store import Store


class ResourceController:
    """`/v2/resource_instances` over a `Store`."""

    def __init__(self, store: Store) -> None:
        self._s = store

    def _instance(self, p: Principal, ident: str) -> Instance:
        inst = self._s.instances.get(ident) or self._s.by_guid.get(ident)
        if inst is None or inst.account != p.account:
            raise not_found(f"Instance with ID {ident} was not found", "RC-ResourceNotFound", "rc")
        return inst

    def list(self, p: Principal, query: Mapping[str, str]) -> dict[str, Any]:
        items = [i for i in self._s.m.instances if i.account == p.account]
        rid = query.get("resource_id")
        if rid is not None and rid != QUANTUM_RESOURCE_ID:
            items = []
        if "resource_plan_id" in query:
            items = [i for i in items if i.plan_id == query["resource_plan_id"]]
        if "name" in query:
            items = [i for i in items if i.name == query["name"]]
        if "resource_group_id" in query:
            items = [i for i in items if i.resource_group_id == query["resource_group_id"]]
        if "guid" in query:
            items = [i for i in items if i.guid == query["guid"]]
        limit = self._s.m.page_size
        if "limit" in query:
            lim = _int_param(query["limit"], "limit", allow_null=False)
            assert lim is not None
            if not 1 <= lim <= 100:
                raise bad_request("limit must be between 1 and 100", "RC-QueryInvalid", "rc")
            limit = lim
        offset = _decode_start(query["start"]) if query.get("start") else 0
        page = items[offset : offset + limit]
        next_url = None
        if offset + limit < len(items):
            params = {k: v for k, v in query.items() if k != "start"}
            params["start"] = _encode_start(offset + limit)
            next_url = "/v2/resource_instances?" + urlencode(params)
        return {
            "rows_count": len(page),
            "next_url": next_url,
            "resources": [views.rc_resource(i, self._s.m.resource_units_per_second) for i in page],
        }

    def get(self, p: Principal, ident: str) -> dict[str, Any]:
        return views.rc_resource(self._instance(p, ident), self._s.m.resource_units_per_second)

    def _check_budget(self, inst_account: str, plan_id: str, new_alloc: int, exclude: str | None) -> None:
        acct = self._s.accounts[inst_account]
        quota = next((q for q in acct.plans if q.plan_id == plan_id), None)
        if quota is None:
            raise bad_request(f"account {inst_account} has no plan {plan_id}", "RC-PlanNotFound", "rc")
        others = sum(
            i.usage_allocation_seconds
            for i in self._s.m.instances
            if i.account == inst_account and i.plan_id == plan_id and i.crn != exclude
        )
        if others + new_alloc > quota.usage_allocation_seconds:
            available = quota.usage_allocation_seconds - others
            raise bad_request(
                f"usage_allocation_seconds {new_alloc} exceeds the allocation available to this instance: "
                f"{available} s (plan budget {quota.usage_allocation_seconds} s, {others} s allocated to "
                "other instances)",
                "RC-AllocationExceedsBudget",
                "rc",
            )

    def patch(self, p: Principal, ident: str, body: Any, now: datetime) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object", "RC-BodyInvalid", "rc")
        inst = self._instance(p, ident)
        if "name" in body and (not isinstance(body["name"], str) or not body["name"].strip()):
            raise bad_request("name must be a non-empty string", "RC-ParameterInvalid", "rc")
        params = body.get("parameters")
        if params is not None:
            if not isinstance(params, dict):
                raise bad_request("parameters must be a JSON object", "RC-ParameterInvalid", "rc")
            alloc = inst.usage_allocation_seconds
            if "usage_allocation_seconds" in params:
                got = _int_param(
                    params["usage_allocation_seconds"], "usage_allocation_seconds", allow_null=False
                )
                assert got is not None
                alloc = got
            limit = _int_param(
                params.get("instance_limit_seconds"), "instance_limit_seconds", allow_null=True
            )
            self._check_budget(inst.account, inst.plan_id, alloc, exclude=inst.crn)
            inst.usage_allocation_seconds = alloc
            inst.instance_limit_seconds = limit
            inst.parameters = dict(params)
        if "name" in body:
            inst.name = str(body["name"]).strip()
        inst.updated_at = now
        return views.rc_resource(inst, self._s.m.resource_units_per_second)

    def create(self, p: Principal, body: Any, now: datetime) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object", "RC-BodyInvalid", "rc")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad_request("name is required", "RC-ParameterInvalid", "rc")
        target = body.get("target")
        if target not in REGIONS:
            raise bad_request(
                f"target must be one of {', '.join(REGIONS)}, not {target!r}", "RC-TargetInvalid", "rc"
            )
        plan_id = body.get("resource_plan_id")
        if not isinstance(plan_id, str):
            raise bad_request("resource_plan_id is required", "RC-ParameterInvalid", "rc")
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise bad_request("parameters must be a JSON object", "RC-ParameterInvalid", "rc")
        tags = body.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise bad_request("tags must be a list of strings", "RC-ParameterInvalid", "rc")
        acct = self._s.accounts[p.account]
        if plan_id not in {q.plan_id for q in acct.plans}:
            raise bad_request(f"the account has no plan {plan_id}", "RC-PlanNotFound", "rc")
        alloc = _int_param(
            params.get("usage_allocation_seconds", 0), "usage_allocation_seconds", allow_null=False
        )
        assert alloc is not None
        limit = _int_param(params.get("instance_limit_seconds"), "instance_limit_seconds", allow_null=True)
        self._check_budget(p.account, plan_id, alloc, exclude=None)
        guid = str(uuid.uuid4())
        inst = Instance(
            name=name.strip(),
            crn=make_crn(target, p.account, guid),
            guid=guid,
            account=p.account,
            region=target,
            plan_id=plan_id,
            usage_allocation_seconds=alloc,
            instance_limit_seconds=limit,
            resource_group_id=str(body.get("resource_group") or "default"),
            tags=list(tags),
            parameters=dict(params),
            created_at=now,
            updated_at=now,
        )
        self._s.add_instance(inst)
        return views.rc_resource(inst, self._s.m.resource_units_per_second)


def _int_param(value: Any, field: str, *, allow_null: bool) -> int | None:
    """An integer as qauvern sends it: a JSON number or a decimal string. None only if allowed."""
    if value is None:
        if allow_null:
            return None
        raise bad_request(f"{field} is required", "RC-ParameterInvalid", "rc")
    if isinstance(value, bool):
        raise bad_request(
            f"{field} must be an integer number of seconds, not {value!r}", "RC-ParameterInvalid", "rc"
        )
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            raise bad_request(
                f"{field} must be a non-negative integer number of seconds, not {value!r}",
                "RC-ParameterInvalid",
                "rc",
            )
        value = int(text)
    if not isinstance(value, int):
        raise bad_request(
            f"{field} must be an integer number of seconds, not {value!r}", "RC-ParameterInvalid", "rc"
        )
    if value < 0:
        raise bad_request(f"{field} cannot be negative ({value})", "RC-ParameterInvalid", "rc")
    return value


def _encode_start(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_start(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "offset" or not value.isdigit():
            raise ValueError(raw)
        return int(value)
    except ValueError as exc:
        raise bad_request(f"start={token!r} is not a valid page token", "RC-QueryInvalid", "rc") from exc
