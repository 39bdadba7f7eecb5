"""Time and date in the local time zone, said the way a person says them.

"what time is it" -> "It's 10:42 PM."; "what's the date" -> "Today is Thursday, December
3rd."; "what day is it" -> "It's Thursday.". The wall clock is injected (a function
returning an aware :class:`~datetime.datetime`) so tests fix the instant.

The requests are whole-utterance patterns over normalised text: "what time does the sun
set" or "what time is it in Tokyo" do not match and go to the LLM.

Spelling for the voice: espeak-ng (Piper's phonemizer) reads "10:05" as "ten zero five",
so minutes under ten are written "10 oh 5"; whole hours are "10 PM" ("ten p m").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

WallClock = Callable[[], datetime]


def local_now() -> datetime:
    """The current time, aware, in the machine's local time zone (honours ``TZ``)."""
    return datetime.now().astimezone()


_NOW = r"(?: (?:right )?now| at the moment| currently)?"
_TIME = re.compile(
    rf"(?:(?:what|what is the) time is it{_NOW}"
    rf"|what time it is{_NOW}"
    rf"|(?:what is )?the (?:current )?time{_NOW}"
    rf"|(?:the )?current time|time check"
    rf"|what is the time{_NOW}"
    rf"|have you got the time|do you have the time|got the time"
    rf"|what hour is it{_NOW})"
)
_DATE = re.compile(
    r"(?:what is (?:the date|today s date|todays date|the date today|today|the date today)"
    r"|what date is it(?: today)?|what date it is(?: today)?|what is the date(?: today)?"
    r"|(?:today s|todays) date|the date|the date today|what is the day and date"
    r"|what day and date is it|what is today s date|what is today)"
)
_DAY = re.compile(
    r"(?:what day is it(?: today)?|what day it is(?: today)?|what day of the week is it(?: today)?"
    r"|what is the day(?: today)?|which day is it(?: today)?|what day is today"
    r"|is it (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)(?: today)?)"
)
_MONTH = re.compile(r"what month is it(?: now)?|which month is it|what is the month")
_YEAR = re.compile(r"what year is it(?: now)?|which year is it|what is the year")


def ordinal(n: int) -> str:
    """1 -> "1st", 2 -> "2nd", 11 -> "11th", 23 -> "23rd"."""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return str(n) + {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def say_time(now: datetime) -> str:
    """"It's 10:42 PM.", "It's 10 oh 5 AM.", "It's 3 PM.", "It's noon.", "It's midnight."."""
    if now.minute == 0 and now.hour in (0, 12):
        return "It's midnight." if now.hour == 0 else "It's noon."
    hour = now.hour % 12 or 12
    half = "AM" if now.hour < 12 else "PM"
    if now.minute == 0:
        return f"It's {hour} {half}."
    if now.minute < 10:
        return f"It's {hour} oh {now.minute} {half}."
    return f"It's {hour}:{now.minute:02d} {half}."


def say_date(now: datetime) -> str:
    """"Today is Thursday, December 3rd."."""
    return f"Today is {now:%A}, {now:%B} {ordinal(now.day)}."


def say_day(now: datetime) -> str:
    """"It's Thursday."."""
    return f"It's {now:%A}."


def answer(text: str, now: datetime) -> tuple[str, str] | None:
    """(skill, spoken answer) for a normalised time/date request, or None."""
    text = text.replace("'", " ")
    if _TIME.fullmatch(text):
        return "time", say_time(now)
    if _DATE.fullmatch(text):
        return "date", say_date(now)
    if m := _DAY.fullmatch(text):
        if m.group(0).startswith("is it"):
            asked = text.split()[2]
            actual = f"{now:%A}"
            if asked == actual.lower():
                return "date", f"Yes, it's {actual}."
            return "date", f"No, it's {actual}."
        return "date", say_day(now)
    if _MONTH.fullmatch(text):
        return "date", f"It's {now:%B}."
    if _YEAR.fullmatch(text):
        return "date", f"It's {now.year}."
    return None
