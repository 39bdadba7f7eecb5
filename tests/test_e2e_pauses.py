"""A thinking pause inside a question, through the virtual sound card: "What is the capital
of ... Spain?" (the pause inserted between Piper's words, so the first half keeps the
prosody of an unfinished sentence) is answered once, whole, and nothing is heard in the
pause, although the speculative answer to the half may have been prepared.

With the fixed 500 ms silence of before (TURN_CUES=false, TURN_MODEL=false) both halves
would be turns of their own and the first answer would start in the pause. How often the
policy gets paused and whole questions right, and how long whole ones wait, is measured by
tests/bench_turns.py (offline, six voices) and tests/bench_turns_sound.py (this card).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipeline.audio import write_wav
from tests.bench_turns import piper
from tests.bench_turns_sound import last_sound
from tests.conftest import words
from tests.live import LiveAssistant, Recorder, play
from tests.scripted_server import Script, ScriptedServer
from tests.test_e2e_turns import answer_for

pytestmark = [pytest.mark.e2e, pytest.mark.sound]

RATE = 16000
PAUSED = [("What is the capital of", "Spain?", 1.0, "spain"),
          ("How many legs does a", "spider have?", 1.2, "spider")]
GAP_S = 6.0


def test_a_question_with_a_thinking_pause_is_answered_whole_and_not_in_the_pause(
        sound_card, tmp_path):
    voice = piper("piper joe 1.0", 1.0, 0.667)
    parts, pauses, pos = [np.zeros(RATE // 2, np.float32)], [], 0.5
    for a, b, pause, _ in PAUSED:
        audio, resume = voice.speak_paused(a, b, pause)
        half_end = last_sound(audio[: int((resume - pause) * RATE)])
        pauses.append((pos + half_end, pos + resume))
        parts += [audio.astype(np.float32), np.zeros(int(GAP_S * RATE), np.float32)]
        pos += audio.size / RATE + GAP_S
    wav = tmp_path / "paused.wav"
    write_wav(wav, np.concatenate(parts), RATE)

    with ScriptedServer(Script(answer_fn=answer_for, token_delay_s=0.01)) as srv, \
            LiveAssistant(tmp_path, {"OPENAI_BASE_URL": srv.base_url}) as assistant:
        assistant.wait_ready()
        rec = Recorder()
        rec.wait_started()
        t0 = time.time()
        play(wav)
        turns = assistant.wait_turns(len(PAUSED), timeout=60)
        time.sleep(GAP_S / 2)  # a late turn for a half would show by now
        rec.wait_quiet(quiet_s=1.0, timeout=30)
        audio = rec.stop()
        turns, log = assistant.turns(), assistant.log()

    assert len(turns) == len(PAUSED), ([t["transcript"] for t in turns], log[-3000:])
    for turn, (a, b, _, key) in zip(turns, PAUSED, strict=True):
        assert key in words(turn["transcript"]), (turn["transcript"], a, b)
        assert not turn["interrupted"], turn
        assert turn["answer"], turn
    for half_end, resume in pauses:
        heard = rec.sound_after(audio, t0 + half_end + 0.05)
        assert heard is None or heard > resume - half_end - 0.05, (
            f"an answer was heard {heard:.2f} s into a {resume - half_end:.2f} s pause", log[-3000:])
