"""Backchannels through the virtual sound card: "yeah" over an answer pauses it, then lets it
go on to its end (no LLM request); "What is the capital of Spain?" said straight over it (no
short first word, no pause to probe) silences it and is answered.

Latencies (onset to silence, to the answer going on) are measured by
tests/bench_backchannel.py, not asserted.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import words
from tests.live import REC_RATE, LiveAssistant, Recorder, play
from tests.scripted_server import Script, ScriptedServer
from tests.test_e2e_turns import MEDIUM, answer_for, medium_answer, silence_after, wait_for_sound

pytestmark = [pytest.mark.e2e, pytest.mark.sound]


def talk_over_an_answer(tmp_path, ask, said, answer_fn, turns: int, after_s: float = 0.0):
    """Ask, say `said` 1.5 s into the answer; wait for `turns` turns (and `after_s` more):
    (turns, the user messages the LLM was asked, the dataflow's log, the speaker's recording
    from the moment `said` started to play)."""
    with ScriptedServer(Script(answer_fn=answer_fn, token_delay_s=0.01)) as srv, \
            LiveAssistant(tmp_path, {"OPENAI_BASE_URL": srv.base_url}) as assistant:
        assistant.wait_ready()
        rec = Recorder()
        play(ask)
        wait_for_sound(rec)
        time.sleep(1.5)  # the answer is playing
        t_said = time.time()
        play(said)
        assistant.wait_turns(turns, timeout=60)
        time.sleep(after_s)
        audio = rec.stop()
        asked = [r["messages"][-1]["content"] for r in srv.script.requests]
        start = max(0, int((t_said - (rec.first_t or t_said)) * REC_RATE))
        return assistant.turns(), asked, assistant.log(), audio[start:]


def test_a_backchannel_over_the_answer_lets_it_go_on(sound_card, tmp_path, make_speech):
    ask = make_speech(["Tell me about bread."], lead_s=0.2)
    # 1 s after the answer: anything the backchannel started would be a turn by then
    turns, asked, log, _ = talk_over_an_answer(tmp_path, ask, make_speech(["Yeah."], lead_s=0.0),
                                               medium_answer, 1, after_s=1.0)
    assert "a backchannel, the answer goes on" in log, log[-3000:]
    assert "answer paused" in log and "answer resumed" in log, log[-3000:]
    assert len(turns) == 1 and not turns[0]["interrupted"], (turns, log[-3000:])
    assert turns[0]["answer"].split() == MEDIUM.split()  # played to its end
    assert len(asked) == 1, asked


def test_an_interruption_without_a_short_first_word_silences_the_answer_and_is_answered(
        sound_card, tmp_path, make_speech):
    ask = make_speech(["Tell me a long story about bread."], lead_s=0.2)
    said = make_speech(["What is the capital of Spain?"], lead_s=0.0)
    turns, asked, log, audio = talk_over_an_answer(tmp_path, ask, said, answer_for, 2)
    first, second = turns[0], turns[1]
    assert first["interrupted"], (first, log[-3000:])
    assert "answer paused" in log, log[-3000:]
    # the story went silent (before the short answer to the question came)
    assert silence_after(audio, 0.0, 0.0, min_quiet_s=0.5) is not None
    assert "spain" in words(second["transcript"]) and not second["interrupted"], second
    assert len(asked) == 2 and "spain" in asked[1].lower()
