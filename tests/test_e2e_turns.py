"""Turn-taking through the virtual sound card: barge-in, half duplex, no false turns."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import numpy as np
import pytest

from pipeline.audio import write_wav
from pipeline.skills.clock import say_time
from tests.conftest import words
from tests.live import REC_RATE, LiveAssistant, Recorder, play
from tests.scripted_server import Script, ScriptedServer

pytestmark = [pytest.mark.e2e, pytest.mark.sound]

LONG = ("Here is a long answer about the history of bread. " + " ".join(
    f"In chapter {n} the bakers of the old town made bread with flour, water and salt." for n in range(1, 9)))


def answer_for(messages: list[dict]) -> str:
    q = messages[-1]["content"].lower()
    if {"story", "bread"} & words(q):  # words: "history" (an echo-tainted "what time is it")
        return LONG  # would otherwise ask for a second 40 s answer
    return f"You asked {q.strip().rstrip('?.!')}. The answer is short."


def loud_blocks(audio: np.ndarray, block: int = 160) -> np.ndarray:
    n = audio.size // block * block
    return np.sqrt(np.mean(audio[:n].reshape(-1, block) ** 2, axis=1)) > 0.01


def wait_for_sound(rec: Recorder, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = b"".join(rec.chunks[-20:])
        if raw and np.abs(np.frombuffer(raw, dtype=np.int16)).max() > 1000:
            return
        time.sleep(0.05)
    raise TimeoutError("the assistant never started speaking")


def silence_after(audio: np.ndarray, rec_t0: float, t: float, min_quiet_s: float = 0.3) -> float | None:
    """Wall time at which a quiet stretch of min_quiet_s starts after time t."""
    loud = loud_blocks(audio)
    start = max(0, int((t - rec_t0) * REC_RATE / 160))
    need = int(min_quiet_s * 100)
    run = 0
    for i in range(start, loud.size):
        run = 0 if loud[i] else run + 1
        if run >= need:
            return rec_t0 + (i - need + 1) * 160 / REC_RATE
    return None


def interrupt_a_long_answer(tmp_path, make_speech, said: str = "What time is it?",
                            at_s: float = 2.0, turns: int = 2):
    """Ask for a long answer, say `said` `at_s` into its playback, wait for `turns` turns
    (0: 3 s); returns (turns, requests the server saw, speaker recording, its Recorder,
    time of the interruption, the dataflow's log)."""
    q1 = make_speech(["Tell me a long story about bread."], lead_s=0.2)
    q2 = make_speech([said], lead_s=0.0)
    with ScriptedServer(Script(answer_fn=answer_for, token_delay_s=0.01)) as srv, \
            LiveAssistant(tmp_path, {"OPENAI_BASE_URL": srv.base_url}) as assistant:
        assistant.wait_ready()
        rec = Recorder()
        play(q1)
        wait_for_sound(rec)
        time.sleep(at_s)  # the long answer is playing
        t_interrupt = time.time()
        play(q2)
        if turns:
            found = assistant.wait_turns(turns, timeout=60)
            time.sleep(0.5)
        else:
            time.sleep(3.0)
            found = assistant.turns()
        audio = rec.stop()
        log = assistant.log()
        requests = list(srv.script.requests)
    return found, requests, audio, rec, t_interrupt, log


def test_barge_in_stops_the_answer_and_answers_the_interruption(sound_card, tmp_path, make_speech):
    turns, requests, audio, rec, t_interrupt, _log = interrupt_a_long_answer(tmp_path, make_speech)
    first, second = turns[0], turns[1]
    assert first["interrupted"], first
    assert len(first["answer"].split()) < len(LONG.split()) / 2  # cut well before its end
    assert {"time"} <= words(second["transcript"]) and not second["interrupted"]
    # the interruption is a skill: the clock answers it (the right time), not the LLM
    assert len(requests) == 1, [r["messages"][-1] for r in requests]
    assert any(say_time(datetime.now() - timedelta(minutes=k)) == second["answer"].strip()
               for k in range(3)), second
    assert rec.first_t is not None
    quiet = silence_after(audio, rec.first_t, t_interrupt)
    assert quiet is not None and quiet - t_interrupt < 3.0  # generous; the bench measures it


def test_a_stop_right_after_the_answer_starts_silences_it(sound_card, tmp_path, make_speech):
    """"Stop." 0.3 s into the first answer, on a card without an echo path: echo is assumed
    until it is judged, and the judgement used to take the first second and a third of the
    answer, with the user suppressed meanwhile: the answer played on to its end."""
    _turns, requests, audio, rec, t_stop, log = interrupt_a_long_answer(
        tmp_path, make_speech, "Stop.", at_s=0.3, turns=0)
    assert rec.first_t is not None
    quiet = silence_after(audio, rec.first_t, t_stop)
    assert quiet is not None and quiet - t_stop < 1.5, log[-3000:]
    assert "barge-in: stopped" in log, log[-3000:]
    assert len(requests) == 1, [r["messages"][-1] for r in requests]  # "stop" is no question


def test_half_duplex_ignores_the_microphone_while_speaking(sound_card, tmp_path, make_speech):
    q1 = make_speech(["Tell me a long story about bread."], lead_s=0.2)
    q2 = make_speech(["What time is it?"], lead_s=0.0)
    # a 9 s answer: long enough to talk over, short enough to wait for its end
    with ScriptedServer(Script(answer_fn=medium_answer, token_delay_s=0.01)) as srv, \
            LiveAssistant(tmp_path, {"OPENAI_BASE_URL": srv.base_url, "BARGE_IN": "false"}) as assistant:
        assistant.wait_ready()
        rec = Recorder()
        play(q1)
        wait_for_sound(rec)
        time.sleep(1.0)
        play(q2)  # talks over the assistant: ignored
        turns = assistant.wait_turns(1, timeout=90)
        time.sleep(1.0)
        rec.stop()
        requests = list(srv.script.requests)
    assert not turns[0]["interrupted"]
    assert len(requests) == 1


def _beep_and_noise(path) -> None:
    rate = 16000
    t = np.arange(int(0.15 * rate)) / rate
    beep = 0.5 * np.sin(2 * np.pi * 1000 * t)
    rng = np.random.default_rng(1)
    click = np.zeros(int(0.01 * rate))
    click[:40] = 0.9
    noise = rng.normal(0, 0.3, int(0.08 * rate))
    gap = np.zeros(int(0.6 * rate))
    audio = np.concatenate([gap, beep, gap, noise, gap, click, gap, beep, noise, gap])
    write_wav(path, audio.astype(np.float32), rate)


def test_beeps_clicks_and_noise_do_not_start_turns(sound_card, tmp_path):
    wav = tmp_path / "noises.wav"
    _beep_and_noise(wav)
    with ScriptedServer(Script(answer_fn=answer_for)) as srv, \
            LiveAssistant(tmp_path, {"OPENAI_BASE_URL": srv.base_url}) as assistant:
        assistant.wait_ready()
        play(wav)
        time.sleep(2.0)
        log = assistant.log()
        requests = list(srv.script.requests)
    assert requests == []
    assert "speech started" not in log
    assert assistant.turns() == []


@pytest.fixture
def echo_loop(sound_card):
    """The speaker's sound reaches the microphone (a laptop without headphones)."""
    import subprocess

    mod = subprocess.run(
        ["pactl", "load-module", "module-loopback", "source=speaker.monitor", "sink=uservoice",
         "latency_msec=30"], capture_output=True, text=True, check=True).stdout.strip()
    yield
    subprocess.run(["pactl", "unload-module", mod], check=False)


MEDIUM = ("Bread is one of the oldest foods. People baked it thousands of years ago from wheat "
          "and barley. Today every country has its own kind of bread.")


def medium_answer(messages: list[dict]) -> str:
    q = messages[-1]["content"].lower()
    return MEDIUM if "bread" in q else f"You asked {q.strip().rstrip('?.!')}. The answer is short."


def test_with_echo_the_assistant_does_not_hear_itself(echo_loop, tmp_path, make_speech):
    q1 = make_speech(["Tell me about bread."], lead_s=0.2)
    with ScriptedServer(Script(answer_fn=medium_answer, token_delay_s=0.01)) as srv, \
            LiveAssistant(tmp_path, {"OPENAI_BASE_URL": srv.base_url}) as assistant:
        assistant.wait_ready()
        play(q1)
        turns = assistant.wait_turns(1, timeout=60)
        time.sleep(3.0)  # anything heard from its own voice would have become a turn by now
        requests = list(srv.script.requests)
        turns = assistant.turns()
        log = assistant.log()
    assert len(turns) == 1 and not turns[0]["interrupted"], (turns, log[-2000:])
    assert turns[0]["answer"].split() == MEDIUM.split()  # played to its end
    assert len(requests) == 1, [r["messages"][-1] for r in requests]


def test_with_echo_a_real_user_can_still_interrupt(echo_loop, tmp_path, make_speech):
    turns, _requests, _audio, _rec, _t, _log = interrupt_a_long_answer(tmp_path, make_speech)
    assert turns[0]["interrupted"]
    assert "time" in words(turns[1]["transcript"]), turns[1]
