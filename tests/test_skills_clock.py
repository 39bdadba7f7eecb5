"""Time and date: phrasings, how they are said, near-misses that belong to the LLM."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipeline.skills import Skills, TimerBook
from pipeline.skills.clock import local_now, ordinal, say_date, say_time

# Thursday 3 December 2026, 22:42 at UTC-5: a zone that is not the machine's (UTC).
EVENING = datetime(2026, 12, 3, 22, 42, tzinfo=timezone(timedelta(hours=-5)))


def skills(now: datetime = EVENING) -> Skills:
    return Skills(clock=lambda: now, timers=TimerBook(clock=lambda: 0.0))


@pytest.mark.parametrize(
    "heard",
    [
        "What time is it?",
        "what time is it",
        "What's the time?",
        "What is the time now?",
        "Hey, what time is it?",
        "Okay, what time is it right now?",
        "Can you tell me what time it is?",
        "Do you know what time it is?",
        "Tell me the time, please.",
        "What's the current time?",
        "The time?",
        "Do you have the time?",
        "What time is it now, please?",
    ],
)
def test_time_phrasings(heard: str) -> None:
    reply = skills().handle(heard)
    assert reply is not None and reply.skill == "time"
    assert reply.text == "It's 10:42 PM."


@pytest.mark.parametrize(
    "heard",
    [
        "What's the date?",
        "What's the date today?",
        "What is today's date?",
        "What date is it?",
        "What date is it today?",
        "Hey, what's today's date?",
        "Can you tell me the date?",
        "Today's date?",
        "What's today?",
        "What is the date today, please?",
    ],
)
def test_date_phrasings(heard: str) -> None:
    reply = skills().handle(heard)
    assert reply is not None and reply.skill == "date"
    assert reply.text == "Today is Thursday, December 3rd."


@pytest.mark.parametrize(
    "heard", ["What day is it?", "What day is it today?", "What day of the week is it?", "Which day is it?"]
)
def test_day_phrasings(heard: str) -> None:
    reply = skills().handle(heard)
    assert reply is not None and reply.text == "It's Thursday."


@pytest.mark.parametrize(
    ("heard", "said"),
    [
        ("Is it Thursday today?", "Yes, it's Thursday."),
        ("Is it Friday?", "No, it's Thursday."),
        ("What month is it?", "It's December."),
        ("What year is it?", "It's 2026."),
    ],
)
def test_other_calendar_questions(heard: str, said: str) -> None:
    reply = skills().handle(heard)
    assert reply is not None and reply.text == said


@pytest.mark.parametrize(
    ("hour", "minute", "said"),
    [
        (22, 42, "It's 10:42 PM."),
        (9, 5, "It's 9 oh 5 AM."),
        (15, 0, "It's 3 PM."),
        (0, 0, "It's midnight."),
        (12, 0, "It's noon."),
        (0, 30, "It's 12:30 AM."),
        (12, 15, "It's 12:15 PM."),
    ],
)
def test_say_time(hour: int, minute: int, said: str) -> None:
    assert say_time(EVENING.replace(hour=hour, minute=minute)) == said


def test_say_date_and_ordinals() -> None:
    assert say_date(datetime(2027, 1, 1)) == "Today is Friday, January 1st."
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st",
    ]  # fmt: skip


def test_local_now_is_aware() -> None:
    assert local_now().tzinfo is not None


@pytest.mark.parametrize(
    "heard",
    [
        "What time does the sun set in winter?",
        "What time is it in Tokyo?",
        "What time does the store open?",
        "How do I time a boiled egg?",
        "What is the time complexity of quicksort?",
        "What day is Christmas?",
        "What date is Easter next year?",
        "Is it going to rain today?",
        "What is the date of the French Revolution?",
        "What time zone is London in?",
        "Time flies like an arrow.",
        "What is time?",
    ],
)
def test_near_misses_go_to_the_llm(heard: str) -> None:
    assert skills().handle(heard) is None
