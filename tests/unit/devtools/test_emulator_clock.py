"""The emulator's clock and timestamp helpers."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from qauvern_hpc.devtools.emulator.clock import Clock, iso, parse_iso

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_manual_clock_stands_still_until_advanced() -> None:
    clock = Clock("manual", start=T0)
    time.sleep(0.02)
    assert clock.now() == T0
    assert clock.advance(90.5) == T0 + timedelta(seconds=90.5)
    assert clock.now() == T0 + timedelta(seconds=90.5)
    with pytest.raises(ValueError, match="negative"):
        clock.advance(-1)


def test_real_clock_runs_scaled_and_can_jump() -> None:
    clock = Clock("real", start=T0, time_scale=100)
    time.sleep(0.05)
    elapsed = (clock.now() - T0).total_seconds()
    assert 5 <= elapsed < 60
    before = clock.now()
    after = clock.advance(3600)
    assert (after - before).total_seconds() >= 3600
    assert clock.describe()["mode"] == "real" and clock.describe()["time_scale"] == 100


def test_real_clock_defaults_to_now() -> None:
    clock = Clock()
    assert abs((clock.now() - datetime.now(tz=UTC)).total_seconds()) < 1


def test_naive_start_is_utc_and_bad_arguments() -> None:
    assert Clock("manual", start=datetime(2026, 1, 1)).now() == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="clock mode"):
        Clock("sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time_scale"):
        Clock("real", time_scale=0)


def test_iso_is_ibm_style() -> None:
    assert iso(datetime(2026, 11, 22, 12, 0, 1, 234567, tzinfo=UTC)) == "2026-11-22T12:00:01.234Z"
    cet = timezone(timedelta(hours=1))
    assert iso(datetime(2026, 11, 22, 13, 0, tzinfo=cet)) == "2026-11-22T12:00:00.000Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T00:00:00+00:00", datetime(2026, 11, 22, tzinfo=UTC)),
        ("2026-11-22T00:00:00 00:00", datetime(2026, 11, 22, tzinfo=UTC)),  # '+' decoded as a space
        ("2026-11-22T10:16:23.838202 00:00", datetime(2026, 11, 22, 10, 16, 23, 838202, tzinfo=UTC)),
        ("2026-11-22T01:00:00Z", datetime(2026, 11, 22, 1, tzinfo=UTC)),
        ("2026-11-22T01:00:00+02:00", datetime(2026, 11, 21, 23, tzinfo=UTC)),
        ("2026-11-22", datetime(2026, 11, 22, tzinfo=UTC)),
        ("2026-11-22T05:00:00", datetime(2026, 11, 22, 5, tzinfo=UTC)),
    ],
)
def test_parse_iso(text: str, expected: datetime) -> None:
    assert parse_iso(text) == expected


def test_parse_iso_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_iso("yesterday")
