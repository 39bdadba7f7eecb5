"""Timers: request phrasings, the TimerBook with a fake monotonic clock, the waiting API."""

from __future__ import annotations

import threading
from fractions import Fraction

import pytest

from pipeline.skills import Skills, TimerBook
from pipeline.skills.normalize import normalize
from pipeline.skills.timer_requests import (
    CancelTimer,
    SetTimer,
    TimeLeft,
    parse_duration,
    parse_request,
)
from pipeline.skills.timers import say_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def parse(heard: str) -> object:
    return parse_request(normalize(heard))


@pytest.mark.parametrize(
    ("heard", "seconds", "name"),
    [
        ("Set a timer for 10 seconds.", 10, None),
        ("Set a timer for five minutes.", 300, None),
        ("Set a timer for 5 minutes", 300, None),
        ("Set a timer for an hour and a half.", 5400, None),
        ("Set a timer for 90 seconds.", 90, None),
        ("Set a timer for half an hour.", 1800, None),
        ("Set a timer for 1 hour 30 minutes.", 5400, None),
        ("Set a timer for 1 hour and 15 minutes.", 4500, None),
        ("Set a timer for two and a half minutes.", 150, None),
        ("Can you set a timer for a quarter of an hour?", 900, None),
        ("Set a 5 minute timer.", 300, None),
        ("Start a 10-second timer.", 10, None),
        ("Timer for 3 minutes.", 180, None),
        ("Hey, set a timer for twenty minutes, please.", 1200, None),
        ("Put on a timer for 20 mins.", 1200, None),
        ("I need a timer for 4 minutes.", 240, None),
        ("Set a pasta timer for 8 minutes.", 480, "pasta"),
        ("Set a timer for 8 minutes for the pasta.", 480, "pasta"),
        ("Set a timer for eight minutes called pasta.", 480, "pasta"),
        ("Set a 5 minute egg timer.", 300, "egg"),
        ("Set a second timer for 2 minutes.", 120, None),
        ("Start another timer for 1 minute.", 60, None),
        ("Set a timer.", None, None),
        ("Set a timer for pasta.", None, "pasta"),
    ],
)
def test_set_phrasings(heard: str, seconds: int | None, name: str | None) -> None:
    assert parse(heard) == SetTimer(None if seconds is None else Fraction(seconds), name)


@pytest.mark.parametrize(
    ("heard", "wanted"),
    [
        ("How much time is left?", TimeLeft()),
        ("How much time do I have left?", TimeLeft()),
        ("How long is left on my timer?", TimeLeft()),
        ("How long until the timer goes off?", TimeLeft()),
        ("Time left?", TimeLeft()),
        ("Check my timers.", TimeLeft()),
        ("How much time is left on the pasta timer?", TimeLeft("pasta")),
        ("How long until the pasta timer is done?", TimeLeft("pasta")),
        ("How long is left on the five minute timer?", TimeLeft("5 minute")),
        ("Cancel the timer.", CancelTimer()),
        ("Stop the timer.", CancelTimer()),
        ("Cancel my timer, please.", CancelTimer()),
        ("Cancel the pasta timer.", CancelTimer("pasta")),
        ("Delete the pasta timer.", CancelTimer("pasta")),
        ("Cancel the 5 minute timer.", CancelTimer("5 minute")),
        ("Cancel the five-minute timer.", CancelTimer("5 minute")),
        ("Cancel all timers.", CancelTimer(everything=True)),
        ("Cancel all the timers.", CancelTimer(everything=True)),
        ("Cancel both timers.", CancelTimer(everything=True)),
        ("Turn off my timers.", CancelTimer(everything=True)),
    ],
)
def test_left_and_cancel_phrasings(heard: str, wanted: object) -> None:
    assert parse(heard) == wanted


@pytest.mark.parametrize(
    "heard",
    [
        "Set the table for dinner.",
        "How do I time a boiled egg?",
        "How long should I set a timer for eggs?",
        "What is a timer?",
        "What is the best timer app?",
        "How much time is left in the game?",
        "How long until Christmas?",
        "The pasta timer.",
        "Egg timer.",
        "Cancel my subscription.",
        "How long?",
        "Set a timer for the big important family dinner tonight.",
    ],
)
def test_near_misses(heard: str) -> None:
    assert parse(heard) is None


@pytest.mark.parametrize(
    ("words", "seconds"),
    [("10 seconds", 10), ("an hour", 3600), ("a minute and a half", 90), ("1.5 hours", 5400),
     ("3 hours 20 minutes and 5 seconds", 12005), ("pasta", None), ("5", None)],
)  # fmt: skip
def test_parse_duration(words: str, seconds: int | None) -> None:
    expected = None if seconds is None else Fraction(seconds)
    assert parse_duration(words.split()) == expected


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(1, "1 second"), (45, "45 seconds"), (90, "1 minute and 30 seconds"), (480, "8 minutes"),
     (3600, "1 hour"), (5400, "1 hour and 30 minutes"), (3599 + 3600, "2 hours")],
)  # fmt: skip
def test_say_duration(seconds: int, said: str) -> None:
    assert say_duration(seconds) == said


def test_several_timers_named_and_unnamed() -> None:
    clock = FakeClock()
    book = TimerBook(clock)
    assert book.set(480, "pasta") == "Pasta timer set for 8 minutes."
    assert book.set(300) == "Timer set for 5 minutes."
    assert book.next_deadline() == 1300.0
    clock.now += 50.5
    assert book.remaining() == (
        "You have 2 timers: your 5 minute timer has 4 minutes and 10 seconds left"
        " and your pasta timer has 7 minutes and 10 seconds left."
    )
    assert book.remaining("pasta") == "Your pasta timer has 7 minutes and 10 seconds left."
    assert book.remaining("rice") == "You don't have a rice timer."
    assert book.cancel() == (
        "You have 2 timers, the 5 minute timer and the pasta timer. Which one should I cancel?"
    )
    assert book.cancel("5 minute") == "Your 5 minute timer is cancelled."
    assert book.cancel() == "Your pasta timer is cancelled."
    assert book.cancel() == "You don't have any timers."
    assert book.next_deadline() is None


def test_due_announces_each_ended_timer_once_in_order() -> None:
    clock = FakeClock()
    book = TimerBook(clock)
    book.set(10)
    book.set(480, "pasta")
    book.set(5, "eggs")
    assert book.due() == []
    clock.now += 10
    assert book.due() == ["Your eggs timer is done.", "Your 10 second timer is done."]
    assert book.due() == []
    assert book.due(now=clock.now + 470) == ["Your pasta timer is done."]
    assert book.timers() == []


def test_limits_and_replacing_a_namesake() -> None:
    book = TimerBook(FakeClock())
    assert book.set(0) == "A timer needs some time on it."
    assert book.set(25 * 3600) == "I can only set timers for up to 24 hours."
    book.set(60, "tea")
    assert book.set(120, "tea") == "Tea timer restarted for 2 minutes."
    assert [(t.name, left) for t, left in book.timers()] == [("tea", 120)]
    assert book.cancel_all() == "Your timer is cancelled."
    for _ in range(20):
        book.set(60)
    assert book.set(60) == "You already have 20 timers; cancel one first."
    assert book.cancel_all() == "All 20 timers are cancelled."


def test_wait_for_change_wakes_on_a_new_timer_and_on_close() -> None:
    book = TimerBook(FakeClock())
    version = book.version
    woke: list[int] = []
    waiter = threading.Thread(target=lambda: woke.append(book.wait_for_change(version, None)))
    waiter.start()
    book.set(30)
    waiter.join(timeout=10)
    assert woke and woke[0] > version
    closer = threading.Thread(target=lambda: woke.append(book.wait_for_change(woke[0], None)))
    closer.start()
    book.close()
    closer.join(timeout=10)
    assert not closer.is_alive() and book.closed


def test_wait_for_change_returns_at_once_when_already_changed() -> None:
    book = TimerBook(FakeClock())
    version = book.version
    book.set(5)
    assert book.wait_for_change(version, timeout=None) == version + 1


def test_skills_set_then_announce_through_the_router() -> None:
    clock = FakeClock()
    skills = Skills(timers=TimerBook(clock))
    reply = skills.handle("Set a pasta timer for 8 minutes.")
    assert reply is not None and (reply.skill, reply.text) == ("timer", "Pasta timer set for 8 minutes.")
    ask = skills.handle("Set a timer.")
    assert ask is not None and ask.text == "How long should the timer be?"
    done = skills.handle("Ten seconds.")
    assert done is not None and done.text == "Timer set for 10 seconds."
    assert skills.handle("Ten seconds.") is None  # the question was answered once
    clock.now += 10
    assert skills.timers.due() == ["Your 10 second timer is done."]
    left = skills.handle("How much time is left?")
    assert left is not None and left.text == "Your pasta timer has 7 minutes and 50 seconds left."
    cancel = skills.handle("Cancel all timers.")
    assert cancel is not None and cancel.text == "Your timer is cancelled."


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ("The pasta one.", "Your pasta timer is cancelled."),
        ("Pasta.", "Your pasta timer is cancelled."),
        ("The five minute timer.", "Your 5 minute timer is cancelled."),
        ("Both.", "All 2 timers are cancelled."),
        ("All of them.", "All 2 timers are cancelled."),
    ],
)
def test_which_timer_to_cancel_is_answered_by_the_next_utterance(answer: str, said: str) -> None:
    skills = Skills(timers=TimerBook(FakeClock()))
    skills.handle("Set a pasta timer for 8 minutes.")
    skills.handle("Set a timer for 5 minutes.")
    question = skills.handle("Cancel the timer.")
    assert question is not None and question.text.endswith("Which one should I cancel?")
    reply = skills.handle(answer)
    assert reply is not None and reply.text == said


def test_a_choice_counts_only_right_after_the_question() -> None:
    skills = Skills(timers=TimerBook(FakeClock()))
    skills.handle("Set a pasta timer for 8 minutes.")
    skills.handle("Set a timer for 5 minutes.")
    skills.handle("Cancel the timer.")
    assert skills.handle("The rice one.") is None  # no such timer: the LLM hears it
    assert skills.handle("Pasta.") is None  # the question is no longer open
    assert skills.timers.has("pasta")
