"""`make bench` in file mode leaves out the turns whose answer waited behind an earlier one.

The records below have the shape of session 7's run (METRICS_FILE lines, times in s): a
12.9 s answer (turn 4) still "played" on the file speaker's virtual clock when the next
question (turn 5, a skill) started; its answer, ready in 0.3 s, was stamped as heard 4.9 s
later, after the end of turn 4's.
"""

from __future__ import annotations

import pytest

from tests.bench import queued_behind_an_answer


def record(turn: int, start: float, end: float, audio: float | None, first: float | None,
           done: float | None) -> dict:
    times = {"t_speech_start": start, "t_speech_end": end}
    for key, value in (("t_first_audio", audio), ("t_first_played", first), ("t_answer_done", done)):
        if value is not None:
            times[key] = value
    return {"turn_id": turn, "times": times}


SESSION_7 = [
    record(3000, 35.0, 36.5, 37.0, 37.0, 40.0),
    record(4000, 43.5, 45.0, 45.6, 45.6, 58.6),  # a 13 s answer
    record(5000, 52.3, 53.6, 53.7, 58.6, 59.9),  # asked over it, ready at 53.7, heard at 58.6
    record(6000, 60.9, 62.3, 63.0, 63.0, 66.0),  # asked after the end: not queued
]


def test_a_turn_whose_answer_waited_for_the_end_of_an_earlier_one_is_found() -> None:
    queued = queued_behind_an_answer(SESSION_7)
    assert list(queued) == [5000]
    assert queued[5000].asked_before_end_s == pytest.approx(6.3)
    assert queued[5000].waited_s == pytest.approx(4.9)


def test_a_turn_asked_over_an_answer_but_ready_after_its_end_did_not_wait() -> None:
    """The question started 0.5 s before the end of the earlier answer, its own answer was
    ready 1 s after that end: its latency is the pipeline's, it stays in the medians."""
    turns = [record(1000, 0.0, 1.0, 1.5, 1.5, 9.0), record(2000, 8.5, 9.5, 10.0, 10.0, 12.0)]
    assert queued_behind_an_answer(turns) == {}


def test_an_interrupted_answer_ends_where_its_last_sound_was_stamped() -> None:
    """A turn cut by a barge-in has no end of answer: only its first sound moves the playhead,
    and the records come in the order the turns finished, not in which they were asked."""
    turns = [record(2000, 8.0, 9.0, 9.2, 9.2, 10.0), record(1000, 0.0, 1.0, 5.0, 5.0, None)]
    assert queued_behind_an_answer(turns) == {}
    late = [record(2000, 4.0, 4.5, 4.6, 6.0, 7.0), record(1000, 0.0, 1.0, 6.0, 6.0, None)]
    assert queued_behind_an_answer(late)[2000].waited_s == pytest.approx(1.4)
