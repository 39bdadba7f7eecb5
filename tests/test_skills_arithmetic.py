"""Spoken arithmetic: many phrasings, Whisper's spellings, exact answers, near-misses."""

from __future__ import annotations

import pytest

from pipeline.skills.arithmetic import answer
from pipeline.skills.normalize import normalize


def ask(heard: str) -> str | None:
    return answer(normalize(heard))


@pytest.mark.parametrize(
    ("heard", "said"),
    [
        ("What is 14 times 12?", "14 times 12 is 168."),
        ("What's 14 x 12?", "14 times 12 is 168."),
        ("14x12", "14 times 12 is 168."),
        ("14 × 12", "14 times 12 is 168."),
        ("What is fourteen times twelve?", "14 times 12 is 168."),
        ("What is twenty-three times four?", "23 times 4 is 92."),
        ("Calculate 6 multiplied by 7.", "6 times 7 is 42."),
        ("Multiply 6 by 7.", "6 times 7 is 42."),
        ("What's 7 plus 8?", "7 plus 8 is 15."),
        ("What does 7 plus 8 equal?", "7 plus 8 is 15."),
        ("Add 5 to 7.", "5 plus 7 is 12."),
        ("What is the sum of 3 and 4?", "3 plus 4 is 7."),
        ("What is 10 minus 15?", "10 minus 15 is -5."),
        ("What is 9 - 4?", "9 minus 4 is 5."),
        ("5 subtracted from 12", "12 minus 5 is 7."),
        ("Subtract 3 from 10.", "10 minus 3 is 7."),
        ("12 divided by 5", "12 divided by 5 is 2.4."),
        ("What is 1 divided by 3?", "1 divided by 3 is about 0.33."),
        ("What is 10 / 4?", "10 divided by 4 is 2.5."),
        ("15 percent of 80", "15 percent of 80 is 12."),
        ("15% of 80", "15 percent of 80 is 12."),
        ("How much is 20 percent of 50?", "20 percent of 50 is 10."),
        ("What is 17.5% of 200?", "17.5 percent of 200 is 35."),
        ("Square root of 144.", "The square root of 144 is 12."),
        ("What is the square root of 2?", "The square root of 2 is about 1.41."),
        ("What's the square root of a quarter?", "The square root of 0.25 is 0.5."),
        ("What is the cube root of 27?", "The cube root of 27 is 3."),
        ("2 to the power of 10", "2 to the power of 10 is 1024."),
        ("What is 2 to the 10th power?", "2 to the power of 10 is 1024."),
        ("What is 10 to the power of minus 2?", "10 to the power of minus 2 is 0.01."),
        ("What is 7 squared?", "7 squared is 49."),
        ("What is 3 cubed?", "3 cubed is 27."),
        ("What is half of 30?", "Half of 30 is 15."),
        ("What is a third of 90?", "A third of 90 is 30."),
        ("What is 0.1 plus 0.2?", "0.1 plus 0.2 is 0.3."),
        ("What is 2 plus 3 times 4?", "2 plus 3 times 4 is 14."),
        ("What is one hundred and five minus five?", "105 minus 5 is 100."),
        ("What is 2 million times 3?", "2000000 times 3 is 6000000."),
        ("What is 1,000 times 1,000?", "1000 times 1000 is 1000000."),
        ("What is negative 5 times 3?", "Minus 5 times 3 is -15."),
    ],
)
def test_answers(heard: str, said: str) -> None:
    assert ask(heard) == said


@pytest.mark.parametrize(
    ("heard", "said"),
    [
        ("What is 1 divided by 0?", "Dividing by zero has no answer, so I can't work that out."),
        ("What is 5 over zero?", "Dividing by zero has no answer, so I can't work that out."),
        ("What's 0 to the power of -1?", "Dividing by zero has no answer, so I can't work that out."),
        ("Square root of minus 4", "The square root of a negative number isn't a real number."),
        ("What is 10 to the power of 100000?", "That number is too big for me to say."),
        ("What is 99 to the power of 9999?", "That number is too big for me to say."),
    ],
)
def test_questions_without_an_answer_are_answered_politely(heard: str, said: str) -> None:
    assert ask(heard) == said


@pytest.mark.parametrize(
    "heard",
    [
        "What is the time complexity of quicksort?",
        "What is the square of the hypotenuse theorem?",
        "What is 14?",
        "What is 2 plus 2 in binary?",
        "What is 80 plus 15%?",  # 92 or 80.15? not ours
        "What is a prime number?",
        "What is the square root?",
        "Times 12",
        "What is 5 plus?",
        "Is 7 plus 8 equal to 15?",
        "What are 3 things to do in Paris?",
        "How much is a ticket to London?",
        "What is half of the moon made of?",
        "What is __import__('os').system('ls')",
        "What is two times the speed of light?",
    ],
)
def test_near_misses_are_not_arithmetic(heard: str) -> None:
    assert ask(heard) is None
