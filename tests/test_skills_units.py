"""Unit conversions: phrasings as Whisper writes them, exact answers said naturally, and
near-misses that must stay with the LLM."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pipeline.skills import Skills
from pipeline.skills.normalize import normalize
from pipeline.skills.units import answer, convert, unit_key


def ask(heard: str) -> str | None:
    return answer(normalize(heard))


@pytest.mark.parametrize(
    ("heard", "said"),
    [
        ("How many centimeters are in a meter?", "There are 100 centimeters in a meter."),
        ("How many centimetres are there in a metre?", "There are 100 centimeters in a meter."),
        ("how many cm in a meter", "There are 100 centimeters in a meter."),
        ("How many grams in a kilogram?", "There are 1000 grams in a kilogram."),
        ("How many grams in a kilo?", "There are 1000 grams in a kilogram."),
        ("How many minutes are in an hour?", "There are 60 minutes in an hour."),
        ("How many days are there in a week?", "There are 7 days in a week."),
        ("How many days make a week?", "There are 7 days in a week."),
        ("How many months are in a year?", "There are 12 months in a year."),
        ("How many weeks are there in a year?", "A year has 52 weeks and 1 day; a leap year, 52 weeks and 2 days."),
        ("How many days in a year?", "There are 365 days in a year, 366 in a leap year."),
        ("How many hours in a week?", "There are 168 hours in a week."),
        ("How many seconds are in a day?", "There are 86400 seconds in a day."),
        ("How many years in a century?", "There are 100 years in a century."),
        ("Convert 5 miles to kilometers.", "5 miles is about 8.05 kilometers."),
        ("Convert five miles into kilometres.", "5 miles is about 8.05 kilometers."),
        ("5 miles in km", "5 miles is about 8.05 kilometers."),
        ("How many kilometers is 5 miles?", "5 miles is about 8.05 kilometers."),
        ("What is 100 Fahrenheit in Celsius?", "100 degrees Fahrenheit is about 37.78 degrees Celsius."),
        ("What's 100°F in °C?", "100 degrees Fahrenheit is about 37.78 degrees Celsius."),
        ("Convert 30 degrees Celsius to Fahrenheit.", "30 degrees Celsius is 86 degrees Fahrenheit."),
        ("What is minus 40 Celsius in Fahrenheit?", "-40 degrees Celsius is -40 degrees Fahrenheit."),
        ("How many ounces in a pound?", "There are 16 ounces in a pound."),
        ("How many feet in a mile?", "There are 5280 feet in a mile."),
        ("How many feet are in three miles?", "There are 15840 feet in 3 miles."),
        ("How many inches does a foot have?", "There are 12 inches in a foot."),
        ("How many inches are in a yard?", "There are 36 inches in a yard."),
        ("What is 10 kg in pounds?", "10 kilograms is about 22.05 pounds."),
        ("How many pounds is 10 kilos?", "10 kilograms is about 22.05 pounds."),
        ("What's 2 litres in gallons?", "2 liters is about 0.53 gallons."),
        ("How many cups are in a gallon?", "There are 16 cups in a gallon."),
        ("How many mL in a teaspoon?", "There are about 4.93 milliliters in a teaspoon."),
        ("What is five feet in centimetres?", "5 feet is 152.4 centimeters."),
        ("Hey, how many meters are in a mile, please?", "There are 1609.344 meters in a mile."),
        ("How many meters in one kilometer?", "There are 1000 meters in a kilometer."),
        ("Convert 1 kilometer to meters.", "1 kilometer is 1000 meters."),
    ],
)
def test_conversions(heard: str, said: str) -> None:
    assert ask(heard) == said


@pytest.mark.parametrize(
    "heard",
    [
        "How many people live in a city?",
        "How many legs does a spider have?",
        "How many sides does a triangle have?",
        "How many grams are in a meter?",  # different kinds: not a conversion
        "How many stars are in the sky?",
        "How many calories are in an apple?",
        "How many cups of coffee a day is too much?",
        "What is a meter?",
        "How long is a mile?",
        "How many miles to the moon?",
        "How many meters are in a mile of road in London?",
        "Convert this to kilometers.",
        "What is the temperature in Celsius?",
        "What is 5 miles?",
        "How many feet does a snake have?",
        "How many days until Christmas?",
    ],
)
def test_near_misses_go_to_the_llm(heard: str) -> None:
    assert ask(heard) is None


def test_factors_are_exact() -> None:
    assert convert(Fraction(1), "mile", "foot") == 5280
    assert convert(Fraction(1), "pound", "ounce") == 16
    assert convert(Fraction(1), "gallon", "pint") == 8
    assert convert(Fraction(212), "degree fahrenheit", "degree celsius") == 100
    assert convert(Fraction(0), "degree celsius", "kelvin") == Fraction("273.15")
    assert convert(Fraction(1), "meter", "second") is None


def test_unit_names_as_a_model_writes_them() -> None:
    assert unit_key("Miles") == "mile"
    assert unit_key("km") == "kilometer"
    assert unit_key("°F") == "degree fahrenheit"
    assert unit_key("furlong") is None


def test_the_router_answers_conversions_and_claims_them() -> None:
    skills = Skills()
    reply = skills.handle("How many centimeters are in a meter?")
    assert reply is not None and reply.skill == "units"
    assert reply.text == "There are 100 centimeters in a meter."
    assert skills.claims("Convert 5 miles to kilometers")
    assert skills.handle("How many legs does a spider have?") is None
