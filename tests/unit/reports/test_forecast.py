"""The limit forecast projects IBM's rolling 28-day window day by day at the last 7 days' pace."""

from __future__ import annotations

import pytest

from qauvern_hpc.reports.forecast import forecast_limit, forecast_no_rolloff, pace

H = 3600.0


def test_old_usage_leaving_the_window_delays_the_date_a_straight_line_would_give() -> None:
    daily = [1 * H] * 21 + [3 * H] * 7  # 42 h in the window, 3 h/day lately
    f = forecast_limit(daily, 50 * H)
    # each coming day: 1 h leaves, 3 h come in -> 42 + 2d >= 50 at d = 4 (a straight line says 3)
    assert (f.status, f.days, f.used_seconds, f.pace_seconds_per_day) == ("on_pace", 4, 42 * H, 3 * H)


def test_a_steady_pace_below_the_limit_never_reaches_it() -> None:
    f = forecast_limit([1 * H] * 28, 40 * H)  # the window holds 28 h for ever
    assert (f.status, f.days) == ("never", None)


def test_no_pace_is_never_and_no_usage_at_all_says_so() -> None:
    assert forecast_limit([2 * H] * 21 + [0.0] * 7, 60 * H).status == "never"
    assert forecast_limit([0.0] * 28, 60 * H).status == "no_usage"
    assert forecast_limit([], 60 * H).status == "no_usage"


def test_reached_and_no_limit() -> None:
    assert forecast_limit([2 * H] * 28, 56 * H).status == "reached"
    assert forecast_limit([2 * H] * 28, None).status == "no_limit"


def test_a_short_history_counts_the_missing_days_as_nothing() -> None:
    f = forecast_limit([5 * H] * 3, 100 * H)  # 15 h so far, 15/7 h per day over the last 7 days
    assert f.pace_seconds_per_day == pytest.approx(15 * H / 7)
    # nothing leaves the window for 25 days: 15 + 15/7 d >= 100 at d = 40 > 28, then 3 x 5 h leave: never
    assert f.status == "never"
    g = forecast_limit([5 * H] * 3, 40 * H)  # 15 + 15/7 d >= 40 at d = 11.67 -> day 12
    assert (g.status, g.days) == ("on_pace", 12)


def test_days_older_than_the_window_are_ignored() -> None:
    assert forecast_limit([100 * H] * 10 + [1 * H] * 28, 30 * H).used_seconds == 28 * H


def test_pace_needs_a_positive_span() -> None:
    with pytest.raises(ValueError):
        pace([1.0], 0)


# --------------------------------------------------------------------- Flex and Pay-As-You-Go: no roll-off


def test_without_roll_off_old_usage_stays_and_a_straight_line_reaches_the_limit() -> None:
    daily = [1 * H] * 21 + [3 * H] * 7  # 42 h, 3 h/day lately
    assert forecast_limit(daily, 60 * H).days == 9  # rolling: 1 h leaves a day, 42 + 2d >= 60
    f = forecast_no_rolloff(42 * H, daily, 60 * H, days_left=None, period="contract 2026-01-01 .. open-ended")
    # nothing leaves a Flex contract: 42 + 3d >= 60 at d = 6
    assert (f.status, f.days, f.used_seconds, f.pace_seconds_per_day) == ("on_pace", 6, 42 * H, 3 * H)
    assert f.to_dict()["period"] == "contract 2026-01-01 .. open-ended"
    g = forecast_no_rolloff(100 * H, daily, 130 * H, days_left=None, period="since creation")
    assert (g.status, g.days) == ("on_pace", 10)  # usage older than 28 days counts too


def test_a_flex_contract_ending_first_means_never() -> None:
    daily = [2 * H] * 7
    assert forecast_no_rolloff(10 * H, daily, 30 * H, days_left=10, period="p").days == 10
    assert forecast_no_rolloff(10 * H, daily, 30 * H, days_left=9, period="p").status == "never"
    assert forecast_no_rolloff(10 * H, daily, 30 * H, days_left=0, period="p").status == "never"


def test_paygo_cost_limit_reached_no_limit_no_usage_and_no_pace() -> None:
    assert forecast_no_rolloff(50 * H, [1 * H], 50 * H, days_left=None, period="p").status == "reached"
    assert forecast_no_rolloff(50 * H, [1 * H], None, days_left=None, period="p").status == "no_limit"
    assert forecast_no_rolloff(0.0, [0.0] * 7, 9 * H, days_left=None, period="p").status == "no_usage"
    assert forecast_no_rolloff(5 * H, [0.0] * 7, 9 * H, days_left=None, period="p").status == "never"
    assert forecast_limit([1 * H] * 28, 40 * H).to_dict().get("period") is None  # rolling: as it was
