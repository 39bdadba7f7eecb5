"""Numbers as Whisper writes them, and numbers said back so a TTS voice reads them well.

Reading: Whisper writes small numbers in words or digits unpredictably ("five minutes",
"5 minutes", "twenty-three", "23", "1,000", "3.5", "15%", "2 million").
:func:`numberize` turns a list of words into a list where every number phrase is one
:class:`Num` (an exact :class:`~fractions.Fraction`) and every other word is kept as is.

Why not a library: ``word2number`` (last release 2017) raises on anything that is not a
pure number phrase and knows neither "a hundred" nor "half"; ``text2num``'s
``alpha2digit`` leaves small numbers and "a hundred" alone by design and gives back text
that must be parsed again. What a skill needs - number phrases *inside* a request, exact
fractions, "a quarter", "an hour and a half" - is a small grammar, so it is written here.

Saying: Piper phonemizes through espeak-ng, which reads digits well ("168" -> "one hundred
sixty-eight", "1,024", "2000000" -> "two million", "2.4" -> "two point four", "-7" ->
"minus seven") but says "1/3" as "one slash three" and every digit of a long decimal.
:func:`say_number` therefore gives digits, decimals rounded for the ear, and marks a
rounded value with ``approximate`` so the sentence can say "about".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
# "a half", "three quarters", "two thirds": the denominator words.
FRACTION_WORDS = {
    "half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4,
}  # fmt: skip

_DIGITS = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")
# Largest magnitude said in plain digits; espeak reads up to trillions, beyond that is noise.
_PLAIN_LIMIT = 10**15


@dataclass(frozen=True)
class Num:
    """A number phrase found in a request: its exact value and the words it came from."""

    value: Fraction
    text: str
    fraction_word: bool = False  # "half", "a quarter": may be followed by "of"


def parse_digits(word: str) -> Fraction | None:
    """``"1,000"`` -> 1000, ``"3.5"`` -> 7/2, ``"-4"`` -> -4; None for anything else."""
    if not _DIGITS.fullmatch(word):
        return None
    return Fraction(word.replace(",", ""))


def _integer_words(words: list[str], i: int) -> tuple[int | None, int]:
    """Read "one hundred and five", "twenty three", "a thousand", "2 million" from words[i].

    ``group`` is the part below the last scale word ("three hundred and five" of
    "two million three hundred and five"); each word is taken only where English puts it,
    so "one two" is two numbers and "twenty thirty" stops after "twenty".
    Returns (value, index after the phrase); (None, i) when no number starts there.
    """
    total, group, last_scale = 0, 0, 10**18
    j = end = i
    while j < len(words):
        w = words[j]
        nxt = words[j + 1] if j + 1 < len(words) else ""
        multiplier = 100 if nxt == "hundred" else SCALES.get(nxt)
        if j == i and w in ("a", "an") and multiplier:
            group = 1
        elif j == i and multiplier and (digits := parse_digits(w)) is not None:
            value = digits * multiplier  # "2 million", "1.5 billion", "3 hundred"
            if value.denominator != 1 or value <= 0:
                break
            j += 1
            if multiplier == 100:
                group = int(value)
            else:
                total, last_scale = int(value), multiplier
        elif w == "zero" and j == i:
            return 0, j + 1
        elif w in UNITS and w != "zero" and (group % 100 == 0 or (group % 100 >= 20 and group % 10 == 0)):
            group += UNITS[w]
        elif w in TENS and group % 100 == 0:
            group += TENS[w]
        elif w == "hundred" and 0 < group < 100:
            group *= 100
        elif w in SCALES and 0 < group < 1000 and SCALES[w] < last_scale:
            total, group, last_scale = total + group * SCALES[w], 0, SCALES[w]
        elif w == "and" and end > i and group % 100 == 0 and (nxt in UNITS or nxt in TENS):
            j += 1
            continue
        else:
            break
        j += 1
        end = j
    if end == i:
        return None, i
    return total + group, end


def read_number(words: list[str], i: int) -> tuple[Num | None, int]:
    """The number phrase starting at words[i] (digits, words, mixed, fractions, decimals)."""
    w = words[i]
    if w == "a" and i + 1 < len(words) and words[i + 1] == "dozen":
        return Num(Fraction(12), "a dozen"), i + 2
    # "half", "a half", "a quarter", "one third", "three quarters"
    if w == "half":
        return Num(Fraction(1, 2), w, True), i + 1
    if w in ("a", "an", "one") and i + 1 < len(words) and words[i + 1] in FRACTION_WORDS:
        d = FRACTION_WORDS[words[i + 1]]
        return Num(Fraction(1, d), f"{w} {words[i + 1]}", True), i + 2
    digits = parse_digits(w)
    scaled = i + 1 < len(words) and (words[i + 1] == "hundred" or words[i + 1] in SCALES)
    if digits is not None and not scaled:
        end = i + 1
        value = digits
    else:
        whole, end = _integer_words(words, i)
        if whole is None:
            return None, i
        value = Fraction(whole)
    # "three point one four"
    if end + 1 < len(words) and words[end] == "point" and words[end + 1] in UNITS:
        k = end + 1
        decimals = ""
        while k < len(words) and words[k] in UNITS and UNITS[words[k]] < 10:
            decimals += str(UNITS[words[k]])
            k += 1
        if decimals:
            value = Fraction(f"{int(value)}.{decimals}")
            end = k
    # "two and a half", "1 and a quarter"
    if words[end : end + 2] == ["and", "a"] and end + 2 < len(words):
        denominator = {"half": 2, "quarter": 4}.get(words[end + 2])
        if denominator and value.denominator == 1:
            value += Fraction(1, denominator)
            return Num(value, " ".join(words[i : end + 3])), end + 3
    # "two thirds", "3 quarters"
    plural = end < len(words) and words[end] in ("halves", "thirds", "quarters")
    if plural and value.denominator == 1 and value > 1:
        value = value / FRACTION_WORDS[words[end]]
        return Num(value, " ".join(words[i : end + 1]), True), end + 1
    return Num(value, " ".join(words[i:end])), end


def numberize(words: list[str]) -> list[str | Num]:
    """Replace every number phrase in ``words`` (already lower-case) by a :class:`Num`."""
    out: list[str | Num] = []
    i = 0
    while i < len(words):
        num, end = read_number(words, i)
        if num is None:
            out.append(words[i])
            i += 1
        else:
            out.append(num)
            i = end
    return out


def parse_number(text: str) -> Fraction | None:
    """The value of a text that is one number phrase and nothing else, else None."""
    words = text.lower().replace("-", " ").split()
    if text.strip().startswith("-") and parse_digits(text.strip()) is not None:
        return parse_digits(text.strip())
    negative = bool(words) and words[0] in ("minus", "negative")
    tokens = numberize(words[1:] if negative else words)
    if len(tokens) != 1 or not isinstance(tokens[0], Num):
        return None
    return -tokens[0].value if negative else tokens[0].value


@dataclass(frozen=True)
class Spoken:
    """A number written for the ear; ``approximate`` when it was rounded."""

    text: str
    approximate: bool


def say_number(value: Fraction | float, exact: bool = True) -> Spoken:
    """Write ``value`` for a TTS voice: ``168``, ``2.4``, ``0.33`` (rounded), ``2.5 million``.

    Exact values with at most three decimals are said as they are. Anything else is rounded
    to two decimals, or to two significant digits when smaller than 0.1, and flagged
    approximate. Magnitudes past the trillions are said as "N times 10 to the power of E".
    """
    if isinstance(value, float):
        value, exact = Fraction(value), False
    if value == 0:
        return Spoken("0", not exact)
    magnitude = abs(value)
    if magnitude >= _PLAIN_LIMIT:
        exponent = len(str(int(magnitude))) - 1
        mantissa = _decimal(value / Fraction(10) ** exponent, 2)
        return Spoken(f"{mantissa} times 10 to the power of {exponent}", True)
    if value.denominator == 1:
        return Spoken(str(value.numerator), not exact)
    if exact and (Fraction(10**3) * value).denominator == 1:
        return Spoken(_decimal(value, 3), False)
    if magnitude >= Fraction(1, 10):
        places = 2
    else:
        places = 1
        while magnitude * 10**places < 10 and places < 12:
            places += 1
    text = _decimal(value, places)
    if Decimal(text) == 0:
        return Spoken(f"less than {_decimal(Fraction(1, 10**places), places)}", True)
    return Spoken(text, True)


def _decimal(value: Fraction, places: int) -> str:
    """``value`` rounded half-up to ``places`` decimals, trailing zeros dropped."""
    d = Decimal(value.numerator) / Decimal(value.denominator)
    q = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = format(q.normalize(), "f")
    return "0" if text in ("-0", "") else text
