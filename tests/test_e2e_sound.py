"""The whole dataflow on the PulseAudio virtual sound card: the real microphone and speaker."""

from __future__ import annotations

import time

import pytest

from pipeline.filemode import BUNDLED_QUESTION
from tests.conftest import overlap, transcribe_file, words
from tests.live import LiveAssistant, Recorder, play
from tests.scripted_server import Script, ScriptedServer

pytestmark = [pytest.mark.e2e, pytest.mark.sound]


def test_spoken_question_answered_through_the_sound_card(sound_card, tmp_path):
    with LiveAssistant(tmp_path) as assistant:
        assistant.wait_ready()
        rec = Recorder()
        play(BUNDLED_QUESTION)
        turns = assistant.wait_turns(1, timeout=60)
        time.sleep(0.5)
        audio = rec.stop()
    turn = turns[0]
    assert overlap("what is the capital of france", turn["transcript"]) >= 0.8, turn
    heard = transcribe_file(rec.save(audio, tmp_path / "heard.wav"))
    assert overlap(turn["answer"], heard) >= 0.6, (turn["answer"], heard)
    assert "voice_to_voice" in turn["durations"]


def test_two_questions_through_the_sound_card_with_a_scripted_server(sound_card, tmp_path, make_speech):
    def answer(messages: list[dict]) -> str:
        return f"You said {messages[-1]['content'].strip().rstrip('.?!')}. Okay."

    q1 = make_speech(["Turn on the kitchen lights."])
    q2 = make_speech(["Play some jazz music."])
    with ScriptedServer(Script(answer_fn=answer)) as srv, \
            LiveAssistant(tmp_path, {"OPENAI_BASE_URL": srv.base_url}) as assistant:
        assistant.wait_ready()
        rec = Recorder()
        play(q1)
        assistant.wait_turns(1, timeout=60)
        play(q2)
        turns = assistant.wait_turns(2, timeout=60)
        time.sleep(0.5)
        audio = rec.stop()
    heard = words(transcribe_file(rec.save(audio, tmp_path / "heard.wav")))
    assert {"kitchen", "lights"} <= heard and {"jazz", "music"} <= heard, heard
    assert [t["turn_id"] for t in turns] == [1, 2]


def test_no_input_device_gives_a_clear_error(sound_card, tmp_path):
    with LiveAssistant(tmp_path, {"MIC_DEVICE": "no-such-microphone"}) as assistant:
        code = assistant.proc.wait(90)  # the whole dataflow ends, it does not hang
        log = assistant.log()
    assert code != 0
    assert "MIC_DEVICE" in log and "MIC_FILE" in log
