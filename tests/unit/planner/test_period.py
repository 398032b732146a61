"""Over which period an instance's usage counts, per plan, and IBM's usage_period overriding the rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from qauvern_hpc.planner.period import PeriodUnknown, account_window, usage_window

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CONTRACT_START = datetime(2026, 3, 1, tzinfo=UTC)
CONTRACT_END = datetime(2027, 3, 1, tzinfo=UTC)
CREATED = datetime(2026, 9, 15, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize("plan", ["premium", "open", "internal"])
def test_rolling_plans_count_the_last_28_days(plan: str) -> None:
    w = usage_window(plan, now=NOW, contract_start=CONTRACT_START, created_at=CREATED)
    assert (w.kind, w.start, w.end, w.source) == ("rolling", NOW - timedelta(days=28), NOW, "plan")
    assert w.rolling and w.label == "rolling 28 days"


def test_flex_counts_the_contract_period() -> None:
    w = usage_window("flex", now=NOW, contract_start=CONTRACT_START, contract_end=CONTRACT_END)
    assert (w.kind, w.start, w.end, w.source) == ("contract", CONTRACT_START, CONTRACT_END, "plan")
    assert not w.rolling
    assert w.label == "contract 2026-03-01 .. 2027-03-01"
    assert w.counted_until(NOW) == NOW
    assert w.counted_until(CONTRACT_END + timedelta(days=3)) == CONTRACT_END


def test_flex_without_an_end_is_open_ended() -> None:
    w = usage_window("flex", now=NOW, contract_start=CONTRACT_START)
    assert w.end is None and w.label == "contract 2026-03-01 .. open-ended"


def test_paygo_counts_since_creation() -> None:
    w = usage_window("paygo", now=NOW, created_at=CREATED, contract_start=CONTRACT_START)
    assert (w.kind, w.start, w.end, w.source) == ("since_creation", CREATED, None, "plan")
    assert w.label == "since creation 2026-09-15"
    assert w.counted_until(NOW) == NOW


def test_ibm_usage_period_wins_over_the_plan_rule() -> None:
    ibm_start, ibm_end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC)
    w = usage_window("flex", now=NOW, ibm_start=ibm_start, ibm_end=ibm_end, contract_start=CONTRACT_START)
    assert (w.start, w.end, w.source, w.kind) == (ibm_start, ibm_end, "ibm", "contract")
    # a Premium instance whose IBM period is not 28 days long shows IBM's length
    p = usage_window("premium", now=NOW, ibm_start=NOW - timedelta(days=30), ibm_end=NOW)
    assert p.source == "ibm" and p.label == "rolling 30 days"
    # Pay-As-You-Go: IBM's end is "now", the period itself has no end
    g = usage_window("paygo", now=NOW, ibm_start=CREATED, ibm_end=NOW)
    assert (g.start, g.end, g.source) == (CREATED, None, "ibm")


def test_naive_times_are_utc() -> None:
    w = usage_window("paygo", now=NOW, created_at=datetime(2026, 9, 15))
    assert w.start == datetime(2026, 9, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("plan", "kwargs", "message"),
    [
        ("flex", {}, "ibm.contract_start"),
        ("paygo", {}, "creation time"),
        ("flex", {"contract_start": CONTRACT_END, "contract_end": CONTRACT_START}, "ends"),
        ("gold", {}, "unknown plan 'gold'"),
    ],
)
def test_missing_facts_are_clear_errors(plan: str, kwargs: dict[str, datetime], message: str) -> None:
    with pytest.raises(PeriodUnknown, match=message):
        usage_window(plan, now=NOW, who="instance physics", **kwargs)


def test_account_window() -> None:
    assert account_window("premium", now=NOW).start == NOW - timedelta(days=28)
    flex = account_window("flex", now=NOW, contract_start=CONTRACT_START, contract_end=CONTRACT_END)
    assert (flex.start, flex.end) == (CONTRACT_START, CONTRACT_END)
    assert account_window("paygo", now=NOW).kind == "rolling"
    with pytest.raises(PeriodUnknown):
        account_window("flex", now=NOW)


def test_to_dict_carries_the_label() -> None:
    d = usage_window("paygo", now=NOW, created_at=CREATED).to_dict()
    assert d == {
        "plan": "paygo",
        "kind": "since_creation",
        "start": CREATED.isoformat(),
        "end": None,
        "source": "plan",
        "label": "since creation 2026-09-15",
    }


# -- the planner with IBM's usage_limit_reached --------------------------------------------------------------


def test_ibm_limit_reached_gives_nothing_new_and_says_why() -> None:
    from qauvern_hpc.planner.model import AccountSnapshot, InstanceSettings, InstanceSnapshot
    from qauvern_hpc.planner.optimizer import plan_allocations

    window = usage_window("paygo", now=NOW, created_at=CREATED)
    # our seconds say 10,000 of a 50,000 limit; IBM (whose cost limit is in dollars) says it is reached
    paygo = InstanceSnapshot(
        "crn-a", "a", 20_000, 50_000, 10_000, 500, 200, 100, 50, window=window, ibm_limit_reached=True
    )
    other = InstanceSnapshot("crn-b", "b", 20_000, None, 10_000, 500, 200, 100, 50)
    account = AccountSnapshot(100_000, 60_000, 20_000, (paygo, other))
    plan = plan_allocations(
        account, [InstanceSettings("crn-a", "a"), InstanceSettings("crn-b", "b")], today=NOW.date()
    )
    a, b = plan.instances
    assert a.limit_reached and not a.active and a.new_allocation_seconds == 10_000  # pinned at its usage
    assert a.reason.startswith(
        "Limit reached (IBM reports usage_limit_reached over since creation 2026-09-15)"
    )
    assert a.window == window
    assert b.active and b.new_allocation_seconds > 20_000  # the pool goes to the instance that can run
    # the same snapshot without IBM's flag: the instance is planned like any other
    free = InstanceSnapshot("crn-a", "a", 20_000, 50_000, 10_000, 500, 200, 100, 50, window=window)
    again = plan_allocations(
        AccountSnapshot(100_000, 60_000, 20_000, (free, other)),
        [InstanceSettings("crn-a", "a"), InstanceSettings("crn-b", "b")],
        today=NOW.date(),
    )
    assert not again.instances[0].limit_reached and again.instances[0].active
