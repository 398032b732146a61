"""The emulator's `GET /v1/instances/usage` per plan: Premium the rolling 28 days, Flex the subscription,
Pay-As-You-Go since creation with `usage_limit_reached` once the usage reaches the cost limit (and jobs then
refused)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.message import Message
from typing import Any

from qauvern_hpc.devtools.emulator.clock import Clock
from qauvern_hpc.devtools.emulator.routing import Request
from qauvern_hpc.devtools.emulator.server import EmulatorApp
from qauvern_hpc.devtools.emulator.state import EmulatorState
from qauvern_hpc.devtools.emulator.testing import (
    ACCOUNT,
    ALPHA_HISTORY,
    API_KEY,
    APIKEY_GRANT,
    CRN_ALPHA,
    make_seed,
)

START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CONTRACT_START = datetime(2026, 11, 12, tzinfo=UTC)  # 10 days before START's date
CREATED = datetime(2026, 11, 19, 6, 0, tzinfo=UTC)


def app_on(plan: str, **plan_extra: Any) -> EmulatorApp:
    seed = make_seed(
        accounts=[
            {"id": ACCOUNT, "plans": [{"plan": plan, "usage_allocation_seconds": 1_000_000, **plan_extra}]}
        ],
        api_keys=[{"key": API_KEY, "account": ACCOUNT}],
        instances=[
            {
                "name": "alpha",
                "crn": CRN_ALPHA,
                "usage_allocation_seconds": 200_000,
                "instance_limit_seconds": 40_000,
                "usage_history": ALPHA_HISTORY,
                "created_at": CREATED.isoformat(),
            }
        ],
    )
    return EmulatorApp(EmulatorState.from_seed(seed, Clock("manual", start=START)))


def call(app: EmulatorApp, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = Message()
    token = app.state.issue_token({"grant_type": APIKEY_GRANT, "apikey": API_KEY})["access_token"]
    headers["Authorization"] = f"Bearer {token}"
    headers["Service-CRN"] = CRN_ALPHA
    raw = b"" if body is None else json.dumps(body).encode()
    reply = app.handle(Request(method, path, {}, headers, raw))
    return reply.status, reply.body


def usage(app: EmulatorApp) -> dict[str, Any]:
    status, body = call(app, "GET", "/api/v1/instances/usage")
    assert status == 200, body
    return dict(body)


def test_premium_counts_the_rolling_28_days() -> None:
    u = usage(app_on("premium"))
    period = u["usage_period"]
    assert period == {"start_time": "2026-10-25T12:00:00.000Z", "end_time": "2026-11-22T12:00:00.000Z"}
    # history day i sits at midnight i days before START's date: days 0..27 are inside (t - 28 d, t]
    assert u["usage_consumed_seconds"] == sum(ALPHA_HISTORY[:28])


def test_flex_counts_the_subscription() -> None:
    app = app_on("flex", contract_start=CONTRACT_START.isoformat(), contract_end="2027-11-12T00:00:00")
    u = usage(app)
    period = u["usage_period"]
    assert period == {"start_time": "2026-11-12T00:00:00.000Z", "end_time": "2027-11-12T00:00:00.000Z"}
    assert u["usage_consumed_seconds"] == sum(ALPHA_HISTORY[:11])  # days 0..10 are in the contract
    # 40 days on, the rolling 28 days would have forgotten all of it; the contract has not
    app.state.advance(40 * 86400)
    assert usage(app)["usage_consumed_seconds"] == sum(ALPHA_HISTORY[:11])


def test_flex_without_contract_dates_counts_from_the_instance_creation() -> None:
    u = usage(app_on("flex"))
    assert u["usage_period"]["start_time"] == "2026-11-19T06:00:00.000Z"
    # days 0, 1, 2: the midnights after 06:00 on the 19th
    assert u["usage_consumed_seconds"] == sum(ALPHA_HISTORY[:3])


def test_paygo_counts_since_creation_and_reaches_its_cost_limit() -> None:
    app = app_on("paygo")
    u = usage(app)
    total = sum(ALPHA_HISTORY)  # seeded history counts as since creation: the period starts at its first day
    assert u["usage_consumed_seconds"] == total
    assert u["usage_period"]["start_time"] == "2026-10-24T00:00:00.000Z"  # 29 days before START's date
    assert u["usage_period"]["end_time"] == "2026-11-22T12:00:00.000Z"
    assert u["usage_limit_reached"] is False  # 31,935 < 40,000
    app.state.add_usage("alpha", 40_000 - total)
    u = usage(app)
    assert u["usage_consumed_seconds"] == 40_000 and u["usage_limit_reached"] is True
    status, body = call(app, "POST", "/api/v1/jobs", {"program_id": "sampler", "backend": "ibm_torino"})
    assert status == 403 and "usage limit" in json.dumps(body)
    # months later nothing has rolled off: the limit stays reached
    app.state.advance(90 * 86400)
    assert usage(app)["usage_limit_reached"] is True
