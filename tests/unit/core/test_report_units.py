"""The one formatting path of the reports: conversion of seconds into ru | qau | hours | seconds, IBM's own
RU figure preferred, n/a without a rate (never a guess), the default unit and the account-wide rate."""

from __future__ import annotations

import pytest

from qauvern_hpc.core.report_units import (
    Units,
    common_rate,
    convert,
    default_unit,
    number,
    parse_unit,
)


def test_conversions_of_a_seconds_figure() -> None:
    assert convert(96_000, "qau") == pytest.approx(1.0)
    assert convert(5400, "hours") == pytest.approx(1.5)
    assert convert(42, "seconds") == 42.0
    assert convert(1000, "ru", rate=2.5) == pytest.approx(2500.0)


def test_ibm_ru_figure_wins_over_the_rate_and_only_for_ru() -> None:
    assert convert(1000, "ru", rate=2.5, ru=2600.0) == 2600.0  # IBM's billed figure, not our product
    assert convert(None, "ru", ru=7.0) == 7.0
    assert convert(3600, "hours", rate=2.5, ru=1.0) == pytest.approx(1.0)  # hours ignore RUs


@pytest.mark.parametrize("rate", [None, 0.0, -1.0, float("nan"), float("inf")])
def test_no_usable_rate_gives_no_ru_figure(rate: float | None) -> None:
    assert convert(1000, "ru", rate=rate) is None
    units = Units("ru", {"a": rate})
    assert units.text(1000, "a") == "n/a"
    assert units.value(1000, "a") is None


def test_unknown_figure_is_a_dash_not_n_a() -> None:
    units = Units("ru", {"a": 2.5})
    assert units.text(None, "a") == "-"
    assert units.value(None, "a") is None
    assert Units("hours").text(None) == "-"


def test_text_and_json_values() -> None:
    units = Units("ru", {"a": 2.5, "b": None})
    assert units.text(400_000, "a") == "1,000,000 RU"
    assert units.value(400_000, "a") == 1_000_000.0
    assert units.text(400_000, "b") == "n/a"
    assert Units("qau").text(48_000) == "0.500 QAU"
    assert Units("hours").text(45) == "0.0125 h"
    assert Units("seconds").text(3600) == "3,600 s"
    assert Units("hours").signed(-5400) == "-1.50 h"
    assert Units("qau").value(1, None) == pytest.approx(1 / 96_000, abs=1e-6)


def test_number_formatting() -> None:
    assert number(0) == "0"
    assert number(12.5) == "12.50"
    assert number(123.45) == "123.5"
    assert number(0.04567) == "0.0457"
    assert number(1234567.8) == "1,234,568"


def test_account_rate_only_when_every_instance_shares_it() -> None:
    assert common_rate([2.5, 2.5, 2.5]) == 2.5
    assert common_rate([2.5, 3.0]) is None
    assert common_rate([2.5, None]) is None
    assert common_rate([]) is None
    assert Units("ru", {"a": 2.5, "b": 2.5}).text(100) == "250.0 RU"
    assert Units("ru", {"a": 2.5, "b": 3.0}).text(100) == "n/a"


def test_default_unit_follows_config_then_ibm() -> None:
    assert default_unit(None, ["seconds", "ru"]) == "ru"
    assert default_unit(None, ["seconds", None]) == "hours"
    assert default_unit(None, []) == "hours"
    assert default_unit("qau", ["ru"]) == "qau"


def test_bad_unit_is_refused_with_the_choices() -> None:
    assert parse_unit(" RU ") == "ru"
    with pytest.raises(ValueError, match="ru, qau, hours, seconds"):
        parse_unit("minutes")


def test_to_dict_names_the_unit_and_rates_only_for_ru() -> None:
    assert Units("ru", {"a": 2.5}).to_dict() == {"unit": "ru", "ru_per_second": {"a": 2.5}}
    assert Units("hours", {"a": 2.5}).to_dict() == {"unit": "hours", "ru_per_second": None}
