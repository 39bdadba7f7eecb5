"""Backchannels at stage level: speech over the answer ducks it, a probe of its first words
tells "yeah" (the answer goes on, no turn) from "stop" (the turn starts as before).

The vad tests use the loud-is-speech model and the fake canceller of tests/test_vad_stage.py
(its `playing` says the assistant is audible); times are the microphone's capture times.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import messages as m
from pipeline.playback import Ducking, PlaybackBuffer
from pipeline.settings import load
from pipeline.stages.speaker import SpeakerConfig, SpeakerStage
from pipeline.stages.vad import VadStage, VadStageConfig
from pipeline.turn.backchannel import GateConfig
from pipeline.vad import EndpointConfig
from tests.test_speaker_stage import RATE, FakeStream
from tests.test_stages import Collected, llm_stage
from tests.test_vad_stage import SR, T0, FakeCanceller, LoudIsSpeech, blocks, kinds, played, speech

GATED = VadStageConfig(endpoint=EndpointConfig(speculate_ms=64),
                       backchannels=GateConfig(max_ms=700, probe_ms=0))  # no partial probe
ONSET = T0 + 0.5  # speech() starts its voice 0.5 s in


def gated_stage(playing: bool = True, config: VadStageConfig = GATED) -> VadStage:
    return VadStage(config, LoudIsSpeech(), FakeCanceller(playing=playing))


def feed_until(stage: VadStage, mic: list[m.MicAudio], kind: type[m.Message]) -> tuple[list[m.Message], int]:
    """Feed blocks until one gives a message of `kind`: (messages so far, blocks fed)."""
    out: list[m.Message] = []
    for i, block in enumerate(mic):
        out += stage.handle(block)
        if any(isinstance(x, kind) for x in out):
            return out, i + 1
    raise AssertionError(f"no {kind.__name__} in {kinds(out)}")


def rest(stage: VadStage, mic: list[m.MicAudio]) -> list[m.Message]:
    return [x for block in mic for x in stage.handle(block)]


# --------------------------------------------------------------------------- the vad


def test_speech_over_the_answer_ducks_and_sends_a_probe_not_speech_started() -> None:
    stage = gated_stage()
    out, _ = feed_until(stage, blocks(speech(voice_s=0.4)), m.Probe)
    assert kinds(out) == ["Duck", "Probe"]
    duck, probe = out
    assert isinstance(duck, m.Duck) and duck.on and isinstance(probe, m.Probe)
    assert probe.turn_id == duck.turn_id == m.user_turn(1)
    assert probe.samples.size >= 0.4 * SR  # the whole "yeah", onset included
    assert probe.t_speech_start == pytest.approx(ONSET, abs=0.04)


@pytest.mark.parametrize("said", ["Yeah.", "Mm-hmm.", "okay, okay", ""])
def test_a_backchannel_unducks_and_never_starts_a_turn(said: str) -> None:
    stage = gated_stage()
    mic = blocks(speech(voice_s=0.4, tail_s=2.0))
    out, n = feed_until(stage, mic, m.Probe)
    probe = out[-1]
    answer = stage.handle(m.ProbeText(probe.turn_id, said))
    assert kinds(answer) == ["Duck"] and not answer[0].on
    assert rest(stage, mic[n:]) == []  # no speech_started, no utterance: no turn
    # the next question over the answer is gated again (and gets the next turn)
    again, _ = feed_until(stage, blocks(speech(voice_s=0.4), t0=mic[-1].capture_time + 0.02), m.Probe)
    assert kinds(again) == ["Duck", "Probe"] and again[-1].turn_id == m.user_turn(2)


def test_an_interruption_starts_the_turn_with_the_speech_since_the_onset() -> None:
    stage = gated_stage()
    mic = blocks(speech(voice_s=0.4, tail_s=2.0))
    out, n = feed_until(stage, mic, m.Probe)
    started = stage.handle(m.ProbeText(out[-1].turn_id, "Stop."))
    # the turn goes on as any other: its probed tentative utterance goes out too (the LLM may
    # start on it, its transcript is the end-of-turn cue), marked for the ASR to reuse the probe's
    assert kinds(started) == ["SpeechStarted", "Utterance"]
    assert started[0].turn_id == started[1].turn_id == m.user_turn(1)
    assert started[0].t_speech_start == pytest.approx(ONSET, abs=0.04)
    assert not started[1].final and started[1].same_as_tentative
    assert started[1].samples is out[-1].samples  # the probe's audio
    later = rest(stage, mic[n:])
    assert kinds(later) == ["Utterance"] and later[0].final
    assert later[0].samples.size >= 0.4 * SR and later[0].t_speech_start == started[0].t_speech_start


def test_speech_that_goes_on_after_an_interruption_is_not_gated_again() -> None:
    """"Stop. What is the capital of Spain?": the probe hears "Stop.", the turn starts; the
    rest of the sentence is the same utterance, not a new onset to duck for."""
    stage = gated_stage()
    voice = speech(voice_s=0.4, tail_s=0.0)
    mic = blocks(np.concatenate([voice, speech(lead_s=0.3, voice_s=1.0)]))
    out, n = feed_until(stage, mic, m.Probe)
    assert kinds(stage.handle(m.ProbeText(out[-1].turn_id, "Stop."))) == ["SpeechStarted", "Utterance"]
    later = rest(stage, mic[n:])
    assert "Duck" not in kinds(later) and "Probe" not in kinds(later)
    assert [x.final for x in later if isinstance(x, m.Utterance)][-1]
    assert later[-1].samples.size >= 1.4 * SR  # "Stop." and the question, one utterance


def test_an_answer_after_the_end_of_the_utterance_releases_both() -> None:
    """Without speculation the probe is the final utterance, held until the verdict."""
    config = VadStageConfig(backchannels=GateConfig(max_ms=700, probe_ms=0))
    stage = gated_stage(config=config)
    out = rest(stage, blocks(speech(voice_s=0.4)))
    assert kinds(out) == ["Duck", "Probe"]
    released = stage.handle(m.ProbeText(out[-1].turn_id, "What is the time?"))
    assert kinds(released) == ["SpeechStarted", "Utterance"]


def test_speech_past_the_cap_starts_the_turn_without_waiting_for_words() -> None:
    stage = gated_stage()
    mic = blocks(speech(voice_s=1.5))
    out, n = feed_until(stage, mic, m.SpeechStarted)
    assert kinds(out) == ["Duck", "SpeechStarted"]  # no probe: it is too long to be one
    t_block = mic[n - 1].capture_time + 0.02
    assert out[1].t_speech_start == pytest.approx(ONSET, abs=0.04)
    assert 0.7 <= t_block - out[1].t_speech_start <= 0.7 + 0.06  # at the cap (a frame, a block)
    after = [x for x in rest(stage, mic[n:]) if x.final]  # (after a tentative one)
    assert kinds(after) == ["Utterance"] and after[0].samples.size >= 1.5 * SR


def test_a_stale_or_lost_probe_answer() -> None:
    stage = gated_stage()
    mic = blocks(speech(voice_s=0.4, tail_s=4.0))
    out, n = feed_until(stage, mic, m.Probe)
    assert stage.handle(m.ProbeText(out[-1].turn_id - 1000, "Yeah.")) == []  # not this probe
    later = rest(stage, mic[n:])  # no answer for 3 s: the asr is gone, the turn starts
    assert kinds(later) == ["SpeechStarted", "Utterance"]


def test_when_the_assistant_is_silent_speech_starts_a_turn_at_once() -> None:
    out = rest(gated_stage(playing=False), blocks(speech(voice_s=0.4)))
    assert kinds(out) == ["SpeechStarted", "Utterance", "Utterance"]  # tentative, final


@pytest.mark.parametrize("env", [{"BACKCHANNELS": "false"}, {}])
def test_without_backchannels_speech_over_the_answer_interrupts_at_once(env: dict[str, str]) -> None:
    config = VadStageConfig.from_settings(load({"TURN_MODEL": "false", **env}))
    out = rest(gated_stage(config=config), blocks(speech(voice_s=0.4)))
    assert kinds(out)[:2] == (["SpeechStarted", "Utterance"] if env else ["Duck", "Probe"])


def test_half_duplex_has_no_gate() -> None:
    assert VadStageConfig.from_settings(load({"BARGE_IN": "false"})).backchannels is None
    assert VadStageConfig.from_settings(load({})).backchannels is not None


def test_without_a_canceller_the_played_messages_say_the_assistant_is_audible() -> None:
    stage = VadStage(GATED, LoudIsSpeech())
    stage.handle(played(m.STARTED))
    out = rest(stage, blocks(speech(voice_s=0.4)))
    assert kinds(out) == ["Duck", "Probe"]
    stage.handle(m.ProbeText(out[-1].turn_id, "Uh-huh."))
    stage.handle(played(m.TURN_END))
    out = rest(stage, blocks(speech(voice_s=0.4), t0=T0 + 10))
    assert kinds(out) == ["SpeechStarted", "Utterance", "Utterance"]  # tentative, final


# --------------------------------------------------------------------------- the asr


def test_the_asr_answers_a_probe_with_probe_text_and_reuses_it_for_the_turn() -> None:
    from pipeline.asr import SpeculativeAsr
    from pipeline.asr import Transcript as Heard
    from pipeline.stages.asr import AsrStage

    calls: list[int] = []

    def transcribe(audio: np.ndarray) -> Heard:
        calls.append(audio.size)
        return Heard(text="Stop.", audio_s=audio.size / SR, elapsed_s=0.1)

    stage = AsrStage(SpeculativeAsr(transcribe))
    turn, audio = m.user_turn(3), np.full(8000, 0.1, np.float32)
    out = stage.handle(m.Probe(turn, audio, 1.0, 1.5))
    assert out == [m.ProbeText(turn, "Stop.", out[0].t_probe, 0.1)]  # not a Transcript
    final = stage.handle(m.Utterance(turn, audio, 1.0, 1.5, 1.6, final=True, same_as_tentative=True))
    assert [(type(x), x.text) for x in final] == [(m.Transcript, "Stop.")] and len(calls) == 1


def test_a_probe_of_the_assistants_own_words_is_nothing() -> None:
    from pipeline.asr import SpeculativeAsr
    from pipeline.asr import Transcript as Heard
    from pipeline.stages.asr import AsrStage

    stage = AsrStage(SpeculativeAsr(lambda audio: Heard(text="lovely", audio_s=0.5, elapsed_s=0.1)))
    stage.handle(m.Played(1000, m.STARTED, 0, t=10.0, text="Paris is lovely."))
    assert stage.handle(m.Probe(2000, np.zeros(8000, np.float32), 10.5, 11.0))[0].text == ""


# --------------------------------------------------------------------------- llm and speaker


def test_the_llm_never_answers_probe_text() -> None:
    from tests.scripted_server import ScriptedServer

    emit = Collected()
    with ScriptedServer() as srv:
        stage = llm_stage(srv.base_url, emit, embedded=False)
        stage.start()
        stage.handle(m.ProbeText(m.user_turn(1), "Yeah. And what is the capital of Spain?"))
        stage.handle(m.Transcript(m.user_turn(2), "What is the capital of Spain?"))  # control
        assert emit.wait_for(lambda items: getattr(items[-1], "event", "") == m.END)
        stage.finish()
        asked = [r["messages"][-1]["content"] for r in srv.script.requests]
    assert asked == ["What is the capital of Spain?"]


def tts(turn: int, seconds: float = 1.0) -> m.TtsAudio:
    return m.TtsAudio(turn, m.SEGMENT, 0, RATE, np.ones(int(seconds * RATE), np.float32), text="Hi.")


def test_the_speaker_never_takes_probe_text_for_a_transcript() -> None:
    """Audio of a speculative answer waits for its turn's final transcript: probe text with
    the same turn id does not release it; the transcript does."""
    sink = FakeStream()
    stage = SpeakerStage(sink, SpeakerConfig(aec=False), lambda msg: None)
    turn = m.user_turn(1)
    stage.handle(tts(turn))
    stage.handle(m.ProbeText(turn, "What time is it?"))
    assert sink.buffer is not None and sink.buffer.frames_queued == 0
    stage.handle(m.Transcript(turn, "What time is it?"))  # control
    assert sink.buffer.frames_queued == RATE


def pull(buffer: PlaybackBuffer, seconds: float, block: int = 256) -> np.ndarray:
    out, got = np.zeros(block, np.float32), []
    for _ in range(int(seconds * buffer.sample_rate) // block):
        buffer.fill(out, 1000.0)
        got.append(out.copy())
    return np.concatenate(got)


def test_the_speaker_ducks_with_a_ramp_drops_nothing_and_resumes() -> None:
    """BACKCHANNEL_HOLD=duck: the answer plays on, quieter."""
    sink = FakeStream()
    stage = SpeakerStage(sink, SpeakerConfig(aec=False, hold="duck", duck_db=-20.0),
                         lambda msg: None)
    turn = m.user_turn(1)
    stage.handle(m.Transcript(turn, "Tell me a story."))
    stage.handle(tts(turn, 2.0))
    assert sink.buffer is not None
    before = pull(sink.buffer, 0.1)
    stage.handle(m.Duck(m.user_turn(2), True, 0.0))
    ducked = pull(sink.buffer, 0.5)
    stage.handle(m.Duck(m.user_turn(2), False, 0.0))
    after = pull(sink.buffer, 0.5)
    assert np.all(before == 1.0)
    ramp = int(0.02 * RATE)
    assert np.all(np.diff(ducked[:ramp]) < 0)  # down in 20 ms, not a step
    assert np.allclose(ducked[ramp:], 0.1, atol=1e-6)  # -20 dB
    assert np.all(np.diff(after[:ramp]) > 0) and np.allclose(after[ramp:], 1.0)
    # nothing was dropped: 0.1 + 0.5 + 0.5 s of the 2 s have gone out, the rest is queued
    assert sink.buffer.frames_queued == 2 * RATE - before.size - ducked.size - after.size


def test_an_interruption_cuts_the_held_answer_and_the_next_plays_at_full_volume() -> None:
    sink = FakeStream()
    stage = SpeakerStage(sink, SpeakerConfig(aec=False), lambda msg: None)
    one, two = m.user_turn(1), m.user_turn(2)
    stage.handle(m.Transcript(one, "Tell me a story."))
    stage.handle(tts(one))
    stage.handle(m.Duck(two, True, 0.0))
    stage.handle(m.SpeechStarted(two, 0.0))
    assert sink.buffer is not None and sink.buffer.frames_queued == 0  # cut
    stage.handle(m.Transcript(two, "Stop. What is the capital of Spain?"))
    stage.handle(tts(two))
    assert np.allclose(pull(sink.buffer, 0.5), 1.0)


def test_a_duck_undone_mid_ramp_turns_back_from_where_it_was() -> None:
    duck = Ducking(RATE)
    block = np.ones(100, np.float32)
    duck.set(True)
    duck.apply(block)
    reached = float(block[-1])
    duck.set(False)
    block[:] = 1.0
    duck.apply(block)
    assert 0.1 < reached < 1.0 and abs(float(block[0]) - reached) < 0.01  # no jump
