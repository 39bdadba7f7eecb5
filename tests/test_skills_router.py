"""Control words and the router: stop / repeat, what reaches the LLM, what does not."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.skills import ReplyKind, Skills, TimerBook
from pipeline.skills.control import Control, control
from pipeline.skills.normalize import normalize

NOON = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


def skills() -> Skills:
    return Skills(clock=lambda: NOON, timers=TimerBook(clock=lambda: 0.0))


@pytest.mark.parametrize(
    "heard",
    [
        "Stop.",
        "stop",
        "Stop!",
        "Stop, please.",
        "Okay, stop.",
        "Stop stop.",
        "Stop talking.",
        "Never mind.",
        "Nevermind.",
        "Cancel.",
        "Cancel that.",
        "Be quiet.",
        "Quiet, please.",
        "Shut up.",
        "Oh, shut up.",
        "That's enough.",
        "Forget it.",
        "Hush.",
        "Please stop.",
        "No, stop.",
    ],
)
def test_stop_phrasings(heard: str) -> None:
    assert control(normalize(heard)) is Control.STOP
    reply = skills().handle(heard)
    assert reply is not None and reply.kind is ReplyKind.STOP and reply.text == ""


@pytest.mark.parametrize(
    "heard",
    [
        "Say that again.",
        "Say that again, please.",
        "Can you say that again?",
        "Could you repeat that?",
        "Repeat that.",
        "Repeat.",
        "What did you say?",
        "What did you just say?",
        "Come again?",
        "Pardon?",
        "Sorry, what?",
        "I didn't catch that.",
        "One more time.",
        "What was that?",
        "Say that again. Say that again.",  # Whisper's doubling of a short command
    ],
)
def test_repeat_phrasings(heard: str) -> None:
    assert control(normalize(heard)) is Control.REPEAT


@pytest.mark.parametrize(
    "heard",
    [
        "Stop the music.",
        "Never mind the weather, what about Spain?",
        "What did you say about Spain?",
        "Can you repeat the capital of France?",
        "Stop sign.",
        "How do I stop a nosebleed?",
        "Why can't I stop coughing?",
        "Cancel the timer.",
        "Be quiet and listen to this story.",
        "Don't stop me now.",
        "Say something funny.",
        "Repeat after me, hello.",
    ],
)
def test_not_control(heard: str) -> None:
    assert control(normalize(heard)) is None


def test_repeat_gives_the_last_answer_as_it_was_said() -> None:
    s = skills()
    first = s.handle("Say that again.")
    assert first is not None and first.kind is ReplyKind.REPEAT
    assert first.text == "I haven't said anything yet."
    s.remember_answer("Paris is the capital of France.")
    again = s.handle("Repeat that.")
    assert again is not None and again.text == "Paris is the capital of France."
    s.handle("What is 14 times 12?")
    again = s.handle("Come again?")
    assert again is not None and (again.kind, again.text) == (ReplyKind.REPEAT, "14 times 12 is 168.")
    s.handle("Stop.")  # says nothing, so there is nothing new to repeat
    again = s.handle("Say that again.")
    assert again is not None and again.text == "14 times 12 is 168."


@pytest.mark.parametrize(
    ("heard", "skill", "text"),
    [
        ("What time is it?", "time", "It's noon."),
        ("What's 14 x 12?", "arithmetic", "14 times 12 is 168."),
        ("Set a timer for five minutes.", "timer", "Timer set for 5 minutes."),
        ("What's the date?", "date", "Today is Thursday, December 3rd."),
        ("Hey, what is twenty-three times four?", "arithmetic", "23 times 4 is 92."),
    ],
)
def test_router_answers(heard: str, skill: str, text: str) -> None:
    reply = skills().handle(heard)
    assert reply is not None
    assert (reply.kind, reply.skill, reply.text) == (ReplyKind.ANSWER, skill, text)


@pytest.mark.parametrize(
    "heard",
    [
        "What time does the sun set in winter?",
        "What is the time complexity of quicksort?",
        "Set the table for dinner.",
        "What is the square of the hypotenuse theorem?",
        "How do I time a boiled egg?",
        "What is the capital of France?",
        "Tell me a joke.",
        "And what about Spain?",
        "",
        "   ",
        "Thank you.",
        "Hello.",
    ],
)
def test_everything_else_goes_to_the_llm(heard: str) -> None:
    assert skills().handle(heard) is None


_WORDS = ["what", "is", "the", "time", "timer", "set", "for", "a", "an", "and", "half", "quarter", "minutes", "hour", "seconds", "cancel", "stop", "pasta", "times", "x", "divided", "by", "plus", "minus", "percent", "of", "square", "root", "to", "power", "14", "1,000", "3.5", "-2", "0", "twenty", "three", "hundred", "million", "point", "again", "say", "that", "how", "much", "left", "all", "%", "?", ",", ".", "-", "/", "^", "1e9"]


@given(st.lists(st.sampled_from(_WORDS), max_size=12), st.text(max_size=30))
def test_handle_never_raises(words: list[str], noise: str) -> None:
    s = skills()
    for text in (" ".join(words), noise, " ".join(words) + noise):
        reply = s.handle(text)
        assert reply is None or isinstance(reply.text, str)
