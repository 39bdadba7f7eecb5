"""Backchannels through the virtual sound card: "yeah" over an answer lets it go on (no LLM
request), "Stop. What is the capital of Spain?" stops it and is answered.

Latencies (onset to duck, to stop) are measured by tests/bench_backchannel.py, not asserted.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import words
from tests.live import LiveAssistant, Recorder, play
from tests.scripted_server import Script, ScriptedServer
from tests.test_e2e_turns import MEDIUM, answer_for, medium_answer, wait_for_sound

pytestmark = [pytest.mark.e2e, pytest.mark.sound]


def test_a_backchannel_over_the_answer_lets_it_go_on(sound_card, tmp_path, make_speech):
    q1 = make_speech(["Tell me about bread."], lead_s=0.2)
    yeah = make_speech(["Yeah."], lead_s=0.0)
    with ScriptedServer(Script(answer_fn=medium_answer, token_delay_s=0.01)) as srv, \
            LiveAssistant(tmp_path, {"OPENAI_BASE_URL": srv.base_url}) as assistant:
        assistant.wait_ready()
        rec = Recorder()
        play(q1)
        wait_for_sound(rec)
        time.sleep(1.5)  # the answer is playing
        play(yeah)
        turns = assistant.wait_turns(1, timeout=60)
        time.sleep(1.0)  # anything the backchannel started would be a turn by now
        rec.stop()
        turns = assistant.turns()
        requests = list(srv.script.requests)
        log = assistant.log()
    assert "a backchannel, the answer goes on" in log, log[-3000:]
    assert len(turns) == 1 and not turns[0]["interrupted"], (turns, log[-3000:])
    assert turns[0]["answer"].split() == MEDIUM.split()  # played to its end
    assert len(requests) == 1, [r["messages"][-1] for r in requests]


def test_a_real_interruption_stops_the_answer_and_is_answered(sound_card, tmp_path, make_speech):
    q1 = make_speech(["Tell me a long story about bread."], lead_s=0.2)
    q2 = make_speech(["Stop. What is the capital of Spain?"], lead_s=0.0)
    with ScriptedServer(Script(answer_fn=answer_for, token_delay_s=0.01)) as srv, \
            LiveAssistant(tmp_path, {"OPENAI_BASE_URL": srv.base_url}) as assistant:
        assistant.wait_ready()
        rec = Recorder()
        play(q1)
        wait_for_sound(rec)
        time.sleep(2.0)
        play(q2)
        turns = assistant.wait_turns(2, timeout=60)
        rec.stop()
        requests = list(srv.script.requests)
        log = assistant.log()
    first, second = turns[0], turns[1]
    assert first["interrupted"], (first, log[-3000:])
    assert "spain" in words(second["transcript"]) and not second["interrupted"], second
    assert len(requests) == 2 and "spain" in requests[1]["messages"][-1]["content"].lower()
