import pytest

from qauvern_hpc.core.units import QAU_SECONDS, format_seconds, parse_seconds, to_qau


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        (3600, 3600),
        ("90s", 90),
        ("15m", 900),
        ("10h", 36000),
        ("2.5d", 216000),
        ("1qau", 96000),
        ("0.5 QAU", 48000),
        ("1w", 604800),
        (" 7 ", 7),
    ],
)
def test_parse_seconds_accepts_admin_forms(text: str | int, seconds: int) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("bad", ["", "ten", "5y", "-3h", "1.2.3h", float("nan"), -1, True])
def test_parse_seconds_rejects_garbage_with_a_message(bad: object) -> None:
    with pytest.raises(ValueError, match=r"duration|unit"):
        parse_seconds(bad)  # type: ignore[arg-type]


def test_qau_is_1600_minutes() -> None:
    assert QAU_SECONDS == 96_000
    assert to_qau(48_000) == 0.5


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "-"), (59, "59s"), (3600, "1.0h"), (-5400, "1.5h"), (86400 * 3, "3.0d")]
)
def test_format_seconds(seconds: int | None, text: str) -> None:
    assert format_seconds(seconds) == text
