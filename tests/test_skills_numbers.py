"""Numbers as Whisper writes them, and said back for the voice; the text normaliser."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pipeline.skills.normalize import normalize
from pipeline.skills.numbers import Num, numberize, parse_number, say_number


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("14", 14),
        ("1,000", 1000),
        ("1,000,000", 1_000_000),
        ("3.5", Fraction(7, 2)),
        ("-4", -4),
        ("twenty-three", 23),
        ("twenty three", 23),
        ("one hundred and five", 105),
        ("one hundred five", 105),
        ("a hundred", 100),
        ("a thousand", 1000),
        ("two thousand and twenty six", 2026),
        ("nineteen hundred", 1900),
        ("five hundred thousand", 500_000),
        ("three million four hundred thousand", 3_400_000),
        ("half", Fraction(1, 2)),
        ("a quarter", Fraction(1, 4)),
        ("three quarters", Fraction(3, 4)),
        ("two thirds", Fraction(2, 3)),
        ("two and a half", Fraction(5, 2)),
        ("2 million", 2_000_000),
        ("1.5 billion", 1_500_000_000),
        ("3 hundred", 300),
        ("minus 5", -5),
        ("negative twelve", -12),
        ("three point one four", Fraction(314, 100)),
        ("zero", 0),
        ("a dozen", 12),
    ],
)
def test_parse_number(text: str, value: Fraction) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize(
    "text", ["one two", "twenty thirty", "hundred", "the", "five apples", "", "a", "1.2.3"]
)
def test_not_one_number(text: str) -> None:
    assert parse_number(text) is None


def test_numberize_keeps_other_words_and_splits_adjacent_numbers() -> None:
    tokens = numberize(["what", "is", "twenty", "three", "times", "four"])
    assert tokens[:2] == ["what", "is"]
    assert [t.value for t in tokens if isinstance(t, Num)] == [23, 4]
    assert tokens[3] == "times"


@pytest.mark.parametrize(
    ("value", "text", "approximate"),
    [
        (Fraction(168), "168", False),
        (Fraction(12, 5), "2.4", False),
        (Fraction(1, 8), "0.125", False),
        (Fraction(1, 3), "0.33", True),
        (Fraction(2, 3), "0.67", True),
        (Fraction(22, 7), "3.14", True),
        (Fraction(1, 300), "0.0033", True),
        (Fraction(-7), "-7", False),
        (Fraction(0), "0", False),
        (Fraction(2_000_000), "2000000", False),
        (Fraction(10**16), "1 times 10 to the power of 16", True),
        (2**0.5, "1.41", True),
    ],
)
def test_say_number(value: Fraction | float, text: str, approximate: bool) -> None:
    spoken = say_number(value)
    assert (spoken.text, spoken.approximate) == (text, approximate)


@pytest.mark.parametrize(
    ("heard", "normal"),
    [
        ("Hey, what's 14 x 12, please?", "what is 14 x 12"),
        ("What is twenty-three times four?", "what is twenty three times four"),
        ("15% of 80.", "15 percent of 80"),
        ("Set a 10-second timer.", "set a 10 second timer"),
        ("7-3", "7 minus 3"),
        ("12 - 5", "12 minus 5"),
        ("3 + 4 = ?", "3 plus 4"),
        ("Okay, can you tell me what time it is?", "what time it is"),
        ("What time is it? Thank you.", "what time is it"),
        ("What is 3.5 times 1,000?", "what is 3.5 times 1,000"),
        ("So, um, stop.", "stop"),
        ("What’s the date?", "what is the date"),
    ],
)
def test_normalize(heard: str, normal: str) -> None:
    assert normalize(heard) == normal
