"""Unit conversions, answered exactly: "how many centimeters are in a meter", "convert 5
miles to kilometers", "what is 100 Fahrenheit in Celsius", "how many weeks are in a year".

Why a table and not `pint`: pint (0.25) took 0.4 s to import and build its registry and
27.7 MB of memory in the llm node's Python (measured on this machine), for the few dozen
everyday units people ask a speaker about; and its calendar units are astronomical (a
"month" is 1/12 of a Julian year, so it says a year has 52.18 weeks), while people expect
"52 weeks and a day". So: exact factors (international yard and pound, US customary
volumes), as Fractions, and the calendar said the way people count it.

Matching is conservative, like every skill: the whole utterance must be one conversion
between two known units of the same kind ("how many people live in a city", "how many
legs does a spider have", "how many grams in a meter" go to the LLM).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from .numbers import Num, numberize, say_number


@dataclass(frozen=True)
class Unit:
    singular: str
    plural: str
    kind: str  # length, mass, volume, time, temperature
    factor: Fraction  # in the kind's base unit (m, g, l, s); temperature: see _to_kelvin


def _u(singular: str, plural: str, kind: str, factor: str | int) -> Unit:
    return Unit(singular, plural, kind, Fraction(factor))


_DAY = 86400
UNITS: dict[str, Unit] = {u.singular: u for u in (
    _u("millimeter", "millimeters", "length", "0.001"),
    _u("centimeter", "centimeters", "length", "0.01"),
    _u("meter", "meters", "length", 1),
    _u("kilometer", "kilometers", "length", 1000),
    _u("inch", "inches", "length", "0.0254"),
    _u("foot", "feet", "length", "0.3048"),
    _u("yard", "yards", "length", "0.9144"),
    _u("mile", "miles", "length", "1609.344"),
    _u("milligram", "milligrams", "mass", "0.001"),
    _u("gram", "grams", "mass", 1),
    _u("kilogram", "kilograms", "mass", 1000),
    _u("tonne", "tonnes", "mass", 1_000_000),
    _u("ounce", "ounces", "mass", "28.349523125"),
    _u("pound", "pounds", "mass", "453.59237"),
    _u("stone", "stone", "mass", "6350.29318"),
    _u("milliliter", "milliliters", "volume", "0.001"),
    _u("liter", "liters", "volume", 1),
    _u("teaspoon", "teaspoons", "volume", "0.00492892159375"),
    _u("tablespoon", "tablespoons", "volume", "0.01478676478125"),
    _u("fluid ounce", "fluid ounces", "volume", "0.0295735295625"),
    _u("cup", "cups", "volume", "0.2365882365"),
    _u("pint", "pints", "volume", "0.473176473"),
    _u("quart", "quarts", "volume", "0.946352946"),
    _u("gallon", "gallons", "volume", "3.785411784"),
    _u("second", "seconds", "time", 1),
    _u("minute", "minutes", "time", 60),
    _u("hour", "hours", "time", 3600),
    _u("day", "days", "time", _DAY),
    _u("week", "weeks", "time", 7 * _DAY),
    _u("year", "years", "time", 365 * _DAY),
    _u("decade", "decades", "time", 3650 * _DAY),
    _u("century", "centuries", "time", 36500 * _DAY),
    _u("kelvin", "kelvin", "temperature", 1),
)}  # fmt: skip
# Keyed in lower case like the others, said with the capital.
UNITS["degree celsius"] = Unit("degree Celsius", "degrees Celsius", "temperature", Fraction(1))
UNITS["degree fahrenheit"] = Unit("degree Fahrenheit", "degrees Fahrenheit", "temperature", Fraction(1))
_MONTH = Unit("month", "months", "calendar", Fraction(1))

# How Whisper writes them (British spellings, abbreviations, plurals) -> the table's key.
_ALIASES: dict[tuple[str, ...], str] = {}
for _key, _unit in UNITS.items():
    for _name in {_key, _unit.plural.lower()}:
        _ALIASES[tuple(_name.split())] = _key
        if "meter" in _name or "liter" in _name:
            _ALIASES[tuple(_name.replace("meter", "metre").replace("liter", "litre").split())] = _key
for _words, _key in {
    "mm": "millimeter", "cm": "centimeter", "km": "kilometer", "kms": "kilometer",
    "kilo": "kilogram", "kilos": "kilogram", "kg": "kilogram", "kgs": "kilogram",
    "g": "gram", "mg": "milligram", "lb": "pound", "lbs": "pound", "oz": "ounce",
    "ft": "foot", "ton": "tonne", "tons": "tonne", "metric ton": "tonne", "metric tons": "tonne",
    "ml": "milliliter", "fl oz": "fluid ounce", "mins": "minute", "min": "minute",
    "secs": "second", "sec": "second", "hrs": "hour", "hr": "hour",
    "celsius": "degree celsius", "centigrade": "degree celsius", "c": "degree celsius",
    "degrees centigrade": "degree celsius", "fahrenheit": "degree fahrenheit",
    "f": "degree fahrenheit", "degrees c": "degree celsius", "degrees f": "degree fahrenheit",
    "kelvins": "kelvin", "degrees kelvin": "kelvin",
}.items():  # fmt: skip
    _ALIASES[tuple(_words.split())] = _key
_LONGEST = max(len(k) for k in _ALIASES)

# The calendar, counted the way people count it (a year is not a whole number of weeks).
_CALENDAR = {
    ("month", "year"): "There are 12 months in a year.",
    ("week", "year"): "A year has 52 weeks and 1 day; a leap year, 52 weeks and 2 days.",
    ("day", "year"): "There are 365 days in a year, 366 in a leap year.",
    ("day", "month"): "A month has 28 to 31 days: 30 or 31 in most months, 28 in February, 29 in a leap year.",
    ("week", "month"): "A month has 4 weeks and a few days: about 4.3 weeks.",
    ("month", "decade"): "There are 120 months in a decade.",
    ("month", "century"): "There are 1200 months in a century.",
}
_VOWEL_SOUND = ("a", "e", "i", "o", "u", "hour")


def _unit_at(tokens: list[str | Num], i: int) -> tuple[str, int] | None:
    """The unit named at tokens[i] (longest alias first) and where it ends."""
    for size in range(_LONGEST, 0, -1):
        words = tokens[i : i + size]
        if len(words) == size and all(isinstance(w, str) for w in words):
            key = _ALIASES.get(tuple(words))  # type: ignore[arg-type]
            if key is not None:
                return key, i + size
            if tuple(words) in (("month",), ("months",)):
                return "month", i + size
    return None


def _quantity(tokens: list[str | Num], i: int) -> tuple[Fraction, str, int] | None:
    """`a meter`, `one meter`, `5 miles`, `100 degrees fahrenheit`: value, unit, end."""
    value = Fraction(1)
    sign = 1
    if tokens[i : i + 1] in (["minus"], ["negative"]) and i + 1 < len(tokens) and isinstance(tokens[i + 1], Num):
        sign, i = -1, i + 1
    if i < len(tokens) and isinstance(tokens[i], Num):
        value = tokens[i].value  # type: ignore[union-attr]
        i += 1
    elif i < len(tokens) and tokens[i] in ("a", "an", "one", "per"):
        i += 1
    found = _unit_at(tokens, i)
    if found is None:
        return None
    return sign * value, found[0], found[1]


@dataclass(frozen=True)
class Request:
    value: Fraction
    source: str  # the unit the value is in
    target: str
    how_many: bool  # "how many X in a Y" (said back as "There are ...")


def _expect(tokens: list[str | Num], i: int, *options: tuple[str, ...]) -> int:
    """Skip one of the optional phrases at tokens[i]; the new position."""
    for phrase in sorted(options, key=len, reverse=True):
        if tuple(tokens[i : i + len(phrase)]) == phrase:
            return i + len(phrase)
    return i


def parse(text: str) -> Request | None:
    """The conversion a normalised utterance asks for, or None when it is not (only) one."""
    tokens = numberize(text.split())
    if tokens[:2] == ["how", "many"]:
        return _parse_how_many(tokens)
    i = _expect(tokens, 0, ("convert",), ("what", "is"), ("how", "much", "is"), ("what", "are"))
    if i < len(tokens) and tokens[i] == "the":
        return None
    if i == 0 and not (tokens and isinstance(tokens[0], Num)):
        return None  # "meters in a mile" alone is too vague to be a request
    found = _quantity(tokens, i)
    if found is None or not isinstance(tokens[i + (tokens[i] in ("minus", "negative"))], Num):
        return None
    value, source, i = found
    j = _expect(tokens, i, ("in",), ("to",), ("into",), ("in", "to"), ("as",))
    if j == i:
        return None
    target = _unit_at(tokens, j)
    if target is None or target[1] != len(tokens):
        return None
    return Request(value, source, target[0], how_many=False)


def _parse_how_many(tokens: list[str | Num]) -> Request | None:
    """`how many X (are) (there) in|make|per (a|N) Y`, `how many X is|are N Y`,
    `how many X does a Y have`."""
    target = _unit_at(tokens, 2)
    if target is None:
        return None
    i = target[1]
    if tokens[i : i + 1] == ["does"]:
        found = _quantity(tokens, i + 1)
        if found is None or tokens[found[2] :] != ["have"]:
            return None
        return Request(found[0], found[1], target[0], how_many=True)
    if tokens[i : i + 1] in (["is"], ["are"]) and i + 1 < len(tokens) and isinstance(tokens[i + 1], Num):
        found = _quantity(tokens, i + 1)  # "how many kilometers is 5 miles": said as a conversion
        if found is None or found[2] != len(tokens):
            return None
        return Request(found[0], found[1], target[0], how_many=False)
    i = _expect(tokens, i, ("are", "there", "in"), ("are", "in"), ("is", "in"), ("in",), ("make",),
                ("make", "up"), ("are", "there", "per"), ("per",), ("to",), ("go", "into"),
                ("are", "there", "to"), ("are", "in", "one"), ("is",), ("are",), ("equal",),
                ("make", "a"), ("there", "are", "in"), ("fit", "in"), ("in", "one"))
    found = _quantity(tokens, i)
    if found is None or found[2] != len(tokens):
        return None
    return Request(found[0], found[1], target[0], how_many=True)


def _to_kelvin(value: Fraction, unit: str) -> Fraction:
    if unit == "degree celsius":
        return value + Fraction("273.15")
    if unit == "degree fahrenheit":
        return (value - 32) * Fraction(5, 9) + Fraction("273.15")
    return value


def _from_kelvin(value: Fraction, unit: str) -> Fraction:
    if unit == "degree celsius":
        return value - Fraction("273.15")
    if unit == "degree fahrenheit":
        return (value - Fraction("273.15")) * Fraction(9, 5) + 32
    return value


def convert(value: Fraction, source: str, target: str) -> Fraction | None:
    """`value` in `source` units, in `target` units; None when the kinds differ."""
    a, b = UNITS.get(source), UNITS.get(target)
    if a is None or b is None or a.kind != b.kind:
        return None
    if a.kind == "temperature":
        return _from_kelvin(_to_kelvin(value, source), target)
    return value * a.factor / b.factor


def _name(key: str, value: Fraction, approximate: bool = False) -> str:
    unit = UNITS.get(key, _MONTH)
    return unit.singular if value == 1 and not approximate else unit.plural


def _article(key: str) -> str:
    name = _name(key, Fraction(1))
    return "an" if name.lower().startswith(_VOWEL_SOUND) else "a"


def unit_key(name: str) -> str | None:
    """The table's unit for a name as a person or a model writes it ("km", "Miles", "°F")."""
    words = tuple(name.lower().replace("°", " ").replace("-", " ").split())
    key = _ALIASES.get(words)
    return key if key in UNITS else None


def unit_names() -> list[str]:
    """Every unit the skill knows, by its singular name (offered to a model as the tool's enum)."""
    return sorted(UNITS)


def say_conversion(value: Fraction, source: str, target: str) -> str | None:
    """ "5 miles is about 8.05 kilometers." for table units; None across kinds."""
    result = convert(value, source, target)
    if result is None:
        return None
    spoken = say_number(result)
    about = "about " if spoken.approximate else ""
    said = f"{say_number(value).text} {_name(source, value)}"
    return f"{said} is {about}{spoken.text} {_name(target, result, spoken.approximate)}."


def answer(text: str) -> str | None:
    """The spoken answer to a normalised conversion request, or None if it is not one."""
    request = parse(text)
    if request is None or request.source == request.target:
        return None
    if request.value == 1 and (said := _CALENDAR.get((request.target, request.source))):
        return said
    if not request.how_many:
        return say_conversion(request.value, request.source, request.target)
    result = convert(request.value, request.source, request.target)
    if result is None:
        return None
    spoken = say_number(result)
    about = "about " if spoken.approximate else ""
    target = _name(request.target, result, spoken.approximate)
    where = (f"{_article(request.source)} {_name(request.source, Fraction(1))}" if request.value == 1
             else f"{say_number(request.value).text} {_name(request.source, request.value)}")
    verb = "is" if result == 1 and not spoken.approximate else "are"
    return f"There {verb} {about}{spoken.text} {target} in {where}."
