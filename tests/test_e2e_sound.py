"""The whole dataflow on the PulseAudio virtual sound card: the real microphone and speaker."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipeline.filemode import BUNDLED_QUESTION
from tests.conftest import overlap, transcribe_file, wait_until, words
from tests.live import LiveAssistant, Recorder, play
from tests.pulse import device_index, kill_streams, remove_null_sink, restore_sound_card, streams_of
from tests.scripted_server import Script, ScriptedServer
from tests.soak import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.sound]


def test_spoken_question_answered_through_the_sound_card(sound_card, tmp_path):
    with LiveAssistant(tmp_path) as assistant:
        assistant.wait_ready()
        rec = Recorder()
        play(BUNDLED_QUESTION)
        turns = assistant.wait_turns(1, timeout=60)
        rec.wait_quiet()
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
        rec.wait_quiet()
        audio = rec.stop()
    heard = words(transcribe_file(rec.save(audio, tmp_path / "heard.wav")))
    assert {"kitchen", "lights"} <= heard and {"jazz", "music"} <= heard, heard
    ids = [t["turn_id"] for t in turns]  # a turn id may be skipped: a tentative utterance
    assert len(ids) == 2 and ids == sorted(set(ids))  # abandoned on a pause inside the question


def test_no_input_device_gives_a_clear_error(sound_card, tmp_path):
    with LiveAssistant(tmp_path, {"MIC_DEVICE": "no-such-microphone"}) as assistant:
        code = assistant.proc.wait(90)  # the whole dataflow ends, it does not hang
        log = assistant.log()
    assert code != 0
    assert "MIC_DEVICE" in log and "MIC_FILE" in log


# -- devices that disappear while the assistant runs ---------------------------------------------
def test_microphone_and_speaker_that_disappear_mid_run_come_back(sound_card, tmp_path, make_speech):
    """The microphone's device is removed while the assistant runs, then the speaker's; each
    comes back; a question asked after each comeback is answered and heard.

    PulseAudio (16) moves the stream of a device that disappears to a fallback device and back
    when the device returns and is the default again, so PortAudio never sees the removal. A
    device that vanishes without such a fallback kills the stream: after unloading the null
    sink, the assistant's stream is killed too (`pacmd kill-...`), and the microphone node must
    log it and reopen the device, the speaker node reopen it and still play the audio that
    found the device gone (else that segment is never reported played and the answer stalls).
    """
    from tests.soak import descendants

    q1 = make_speech(["Turn on the kitchen lights."])
    q2 = make_speech(["Play some jazz music."])
    q3 = make_speech(["What time is it?"])

    def answer(messages: list[dict]) -> str:
        return f"You said {messages[-1]['content'].strip().rstrip('.?!')}. Okay."

    started = time.monotonic()
    try:
        with ScriptedServer(Script(answer_fn=answer)) as srv, \
                LiveAssistant(tmp_path, {"OPENAI_BASE_URL": srv.base_url,
                                         "LLM_SERVER_PORT": str(free_port())}) as assistant:
            assistant.wait_ready()
            ours = {assistant.proc.pid, *descendants(assistant.proc.pid)}
            log = assistant.log

            def tail() -> str:
                return log()[-3000:]

            # the microphone's device disappears, then comes back
            remove_null_sink("uservoice")
            kill_streams("source-output", ours)
            wait_until(lambda: "microphone failed" in log(), 15, "the microphone failure in the log", tail)
            wait_until(lambda: "microphone is back" in log(), 15, "the microphone to be reopened", tail)
            restore_sound_card()
            mic = device_index("sources", "uservoice.monitor")
            wait_until(lambda: list(streams_of("source-output", ours).values()) == [mic], 15,
                       "the microphone to record from uservoice.monitor again", tail)
            play(q1)
            turns = assistant.wait_turns(1, timeout=60)

            # the speaker's device disappears (while idle), then comes back before the answer
            remove_null_sink("speaker")
            kill_streams("sink-input", ours)
            restore_sound_card()
            rec = Recorder()
            # the speaker sink was just created again: record only once its monitor delivers,
            # else the recording may start in the middle of the answer
            wait_until(lambda: rec.first_t is not None, 10, "the recorder of speaker.monitor", tail)
            play(q2)
            turns = assistant.wait_turns(2, timeout=60)
            rec.wait_quiet()
            play(q3)  # a second answer on the new device (see the audibility check below)
            turns = assistant.wait_turns(3, timeout=60)
            rec.wait_quiet()
            audio = rec.stop()
            rec_first_t = rec.first_t
            text = log()
    finally:
        restore_sound_card()  # whatever happened, later tests find their devices
    print(f"\n[devices removed and back] {time.monotonic() - started:.0f} s")
    ids = [t["turn_id"] for t in turns]  # ids may skip (see the test above)
    assert len(ids) == 3 and ids == sorted(set(ids)), text[-3000:]
    assert overlap("turn on the kitchen lights", turns[0]["transcript"]) >= 0.6, turns[0]
    assert overlap("play some jazz music", turns[1]["transcript"]) >= 0.6, turns[1]
    # the whole answer, its first segment included (the one that found the speaker gone)
    assert {"said", "jazz", "okay"} <= words(turns[1]["answer"]) and not turns[1]["interrupted"], turns[1]
    # The first answer on the new device is heard whole. Right after a null sink is created
    # again, PulseAudio's ALSA plugin underflows hundreds of times in a row and discards
    # every block written meanwhile: before the speaker wrote silence into those, only
    # 0.1-0.2 s of a 2.5 s tone was heard (docs/faults.md).
    rec.save(audio, tmp_path / "heard.wav")
    spans = sound_spans(audio, 16000)
    # the first answer: what was heard before the second one started (both on the wall clock)
    second_at = turns[2]["times"]["t_first_played"] - rec_first_t
    first = sum(end - start for start, end in spans if start < second_at - 0.2)
    print(f"[devices removed and back] heard {spans}, the second answer from {second_at:.2f} s; "
          f"answers of {turns[1]['times']['tts_audio_s']:.2f} and "
          f"{turns[2]['times']['tts_audio_s']:.2f} s")
    assert first >= turns[1]["times"]["tts_audio_s"] - 0.5, (spans, second_at, turns[1]["times"])
    assert "microphone failed: The microphone stream stopped" in text
    assert "speaker failed: The speaker stream stopped" in text and "speaker is back" in text


def sound_spans(audio: np.ndarray, rate: int, gap_s: float = 0.8) -> list[tuple[float, float]]:
    """(start, end) seconds of the sounds in `audio`, one per answer: 20 ms frames above
    -26 dBFS, joined across the pauses between words and sentences (shorter than `gap_s`)."""
    frame = rate // 50
    x = audio.astype(np.float32) / (32768.0 if audio.dtype == np.int16 else 1.0)
    n = x.size // frame
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1))
    spans: list[tuple[float, float]] = []
    for k in np.flatnonzero(rms > 0.05):
        t = k * frame / rate
        if spans and t - spans[-1][1] < gap_s:
            spans[-1] = (spans[-1][0], t + frame / rate)
        else:
            spans.append((t, t + frame / rate))
    return spans
