"""Speech over the answer, decided sooner: the first voiced frame already pauses the answer
(and voice that is not speech lets it go on), a pause is probed after one silent frame,
speech that goes on is transcribed so far and interrupts as soon as its words cannot begin a
backchannel, and a released turn goes on as any other (its probed tentative utterance).

Same scripted VAD and canceller as tests/test_backchannels.py; times are capture times.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import messages as m
from pipeline.asr import SpeculativeAsr
from pipeline.asr import Transcript as Heard
from pipeline.echo import reference_lead_in_s
from pipeline.settings import load
from pipeline.stages.asr import AsrStage
from pipeline.stages.speaker import SpeakerConfig, SpeakerStage
from pipeline.stages.vad import VadStage, VadStageConfig
from pipeline.turn.backchannel import GateConfig, could_become_backchannel
from pipeline.vad import EndpointConfig, Endpointer, Utterance, VoiceGone, VoiceOnset
from tests.test_backchannels import ONSET, feed_until, gated_stage, pull, rest, tts
from tests.test_speaker_stage import RATE, FakeStream
from tests.test_vad_stage import SR, FakeCanceller, LoudIsSpeech, blocks, kinds, speech

EARLY = VadStageConfig(endpoint=EndpointConfig(speculate_ms=64, early_onset_ms=32),
                       backchannels=GateConfig(max_ms=700, probe_ms=0))
PARTIAL = VadStageConfig(endpoint=EndpointConfig(speculate_ms=64),
                         backchannels=GateConfig(max_ms=700, probe_ms=300))


def first_block_with(stage: VadStage, mic: list[m.MicAudio], kind: type[m.Message]) -> float:
    """Capture time of the end of the block that gave the first message of `kind`."""
    _, n = feed_until(stage, mic, kind)
    return mic[n - 1].capture_time + mic[n - 1].samples.size / SR


# --------------------------------------------------------------------------- early pause


def test_the_endpointer_announces_voice_before_it_is_speech_and_its_end() -> None:
    ep = Endpointer(EndpointConfig(start_ms=96, early_onset_ms=32))
    frame = np.zeros(512, np.float32)
    assert ep.process(frame, 0.9, 1.0) == [VoiceOnset(1.0)]  # the first voiced frame
    assert ep.process(frame, 0.9, 1.032) == []
    assert ep.process(frame, 0.01, 1.064) == [VoiceGone()]  # two frames: not speech
    # off by default: nothing but the usual events
    plain = Endpointer(EndpointConfig(start_ms=96))
    assert plain.process(frame, 0.9, 1.0) == [] and plain.process(frame, 0.01, 1.032) == []


def test_the_first_voiced_frame_over_the_answer_pauses_it() -> None:
    mic = blocks(speech(voice_s=0.4))
    early = first_block_with(gated_stage(config=EARLY), mic, m.Duck)
    late = first_block_with(gated_stage(), mic, m.Duck)  # at VAD_START_MS (96 ms)
    assert early - ONSET <= 0.032 + 0.02 + 1e-6  # one frame, one block
    assert late - early >= 0.04  # two frames sooner (to a 20 ms block)


def test_voice_that_is_not_speech_pauses_and_resumes_without_a_turn() -> None:
    stage = gated_stage(config=EARLY)
    out = rest(stage, blocks(speech(voice_s=0.03)))  # two frames: under VAD_START_MS
    assert kinds(out) == ["Duck", "Duck"] and out[0].on and not out[1].on


def test_voice_the_canceller_finds_to_be_echo_resumes_the_answer_once() -> None:
    """A run of echo onsets (a loopback that started late) pauses the answer once, not on
    every one of them: after one, the next voice pauses it only once it is speech."""
    stage = VadStage(EARLY, LoudIsSpeech(), FakeCanceller(playing=True, echo=True))
    out = rest(stage, blocks(speech(voice_s=0.4)))
    assert kinds(out) == ["Duck", "Duck"] and not out[1].on  # vetoed at VAD_START_MS


def test_while_an_echo_may_be_heard_the_answer_pauses_only_at_the_onset() -> None:
    mic = blocks(speech(voice_s=0.4))
    canceller = FakeCanceller(playing=True, echo_heard=True)
    t_duck = first_block_with(VadStage(EARLY, LoudIsSpeech(), canceller), mic, m.Duck)
    assert t_duck == first_block_with(gated_stage(), mic, m.Duck)  # at VAD_START_MS
    echo = VadStage(EARLY, LoudIsSpeech(), FakeCanceller(playing=True, echo=True, echo_heard=True))
    assert rest(echo, mic) == []  # its own echo, vetoed: never paused


def test_a_paused_onset_is_held_even_if_the_answer_ended_meanwhile() -> None:
    """Paused on the first frame, the answer's end must not let the speech through ungated
    (the speaker would stay paused with no verdict to come)."""
    canceller = FakeCanceller(playing=True)
    stage = VadStage(EARLY, LoudIsSpeech(), canceller)
    mic = blocks(speech(voice_s=0.4))
    out, n = feed_until(stage, mic, m.Duck)
    canceller.playing = False
    out += rest(stage, mic[n:])
    assert kinds(out) == ["Duck", "Probe"]


def test_settings_turn_the_early_pause_on_with_the_gate_only() -> None:
    assert VadStageConfig.from_settings(load({})).endpoint.early_onset_ms == 32
    assert VadStageConfig.from_settings(load({"BACKCHANNEL_PAUSE_MS": "0"})).endpoint.early_onset_ms == 0
    assert VadStageConfig.from_settings(load({"BACKCHANNELS": "false"})).endpoint.early_onset_ms == 0


# --------------------------------------------------------------------------- sooner verdicts


def test_a_pause_over_the_answer_is_probed_after_one_silent_frame() -> None:
    mic = blocks(speech(voice_s=0.4))
    slow = VadStageConfig(endpoint=EndpointConfig(speculate_ms=64),
                          backchannels=GateConfig(max_ms=700, probe_ms=0, probe_silence_ms=64))
    t_fast = first_block_with(gated_stage(), mic, m.Probe)  # probe_silence_ms=32, the default
    t_slow = first_block_with(gated_stage(config=slow), mic, m.Probe)
    assert t_slow - t_fast >= 0.032 - 1e-6


def test_the_shorter_probe_pause_is_sent_once_and_only_while_a_turn_is_held() -> None:
    ep = Endpointer(EndpointConfig(start_ms=32, min_speech_ms=32, speculate_ms=96))
    frame = np.zeros(512, np.float32)
    ep.process(frame, 0.9, 1.0)
    ep.set_speculate_ms(32)
    assert [type(e) for e in ep.process(frame, 0.01, 1.032)] == [Utterance]
    ep.set_speculate_ms(None)  # let go: no second tentative utterance in the same pause
    assert ep.process(frame, 0.01, 1.064) == [] and ep.process(frame, 0.01, 1.096) == []


@pytest.mark.parametrize(("text", "could"), [
    ("What is the", False), ("No, I meant", False), ("Stop. What is", False), ("Tell me a-", False),
    ("Yeah", True), ("Mm-hmm", True), ("I", True), ("I said", True), ("Ray", True),
    ("in a", True), ("What is", True),  # two words may be made up for a cut-off sound
    ("Yeah, yeah, ok", True), ("oh I s", True), ("", True),
])
def test_words_so_far_that_cannot_begin_a_backchannel(text: str, could: bool) -> None:
    assert could_become_backchannel(text) is could


def test_speech_that_goes_on_is_transcribed_so_far_and_interrupts_before_the_cap() -> None:
    stage = gated_stage(config=PARTIAL)
    mic = blocks(speech(voice_s=1.5))
    out, n = feed_until(stage, mic, m.Probe)
    probe = out[-1]
    assert kinds(out) == ["Duck", "Probe"] and probe.partial
    t_block = mic[n - 1].capture_time + 0.02
    assert 0.3 - 1e-6 <= t_block - ONSET < 0.7  # before the cap
    assert probe.samples.size >= 0.3 * SR
    released = stage.handle(m.ProbeText(probe.turn_id, "What is the", partial=True))
    assert kinds(released) == ["SpeechStarted"]
    assert released[0].t_speech_start == pytest.approx(ONSET, abs=0.04)
    assert "SpeechStarted" not in kinds(rest(stage, mic[n:]))  # once


def test_words_so_far_that_may_still_be_a_backchannel_change_nothing() -> None:
    stage = gated_stage(config=PARTIAL)
    mic = blocks(speech(voice_s=1.5))
    out, n = feed_until(stage, mic, m.Probe)
    assert stage.handle(m.ProbeText(out[-1].turn_id, "I said", partial=True)) == []
    later, k = feed_until(stage, mic[n:], m.SpeechStarted)  # the cap still decides
    assert "Probe" not in kinds(later)  # one partial probe per onset
    t_block = mic[n + k - 1].capture_time + 0.02
    assert t_block - later[-1].t_speech_start >= 0.7 - 1e-6


# --------------------------------------------------------------------------- the asr


def test_the_asr_reuses_a_probe_for_the_released_tentative_but_never_a_partial_one() -> None:
    calls: list[int] = []

    def transcribe(audio: np.ndarray) -> Heard:
        calls.append(audio.size)
        return Heard(text=f"said {len(calls)}", audio_s=audio.size / SR, elapsed_s=0.1)

    stage = AsrStage(SpeculativeAsr(transcribe))
    turn, audio = m.user_turn(4), np.full(8000, 0.1, np.float32)
    stage.handle(m.SpeechStarted(turn, 1.0))
    assert stage.handle(m.Probe(turn, audio, 1.0, 1.5))[0].text == "said 1"
    tentative = stage.handle(m.Utterance(turn, audio, 1.0, 1.5, 1.6, final=False,
                                         same_as_tentative=True))
    assert [(x.text, x.final) for x in tentative] == [("said 1", False)] and len(calls) == 1
    final = stage.handle(m.Utterance(turn, audio, 1.0, 1.5, 1.7, final=True, same_as_tentative=True))
    assert [x.text for x in final] == ["said 1"] and len(calls) == 1
    # a partial probe is only a look: it answers as partial and is never reused
    nxt = m.user_turn(5)
    stage.handle(m.SpeechStarted(nxt, 2.0))
    got = stage.handle(m.Probe(nxt, audio, 2.0, 2.5, partial=True))
    assert got[0].partial and got[0].text == "said 2"
    again = stage.handle(m.Utterance(nxt, audio, 2.0, 2.5, 2.6, final=True, same_as_tentative=True))
    assert [x.text for x in again] == ["said 3"] and len(calls) == 3


# --------------------------------------------------------------------------- the resume


@pytest.mark.parametrize("echo_heard", [True, False])
def test_the_resume_says_whether_an_echo_may_be_heard(echo_heard: bool) -> None:
    stage = VadStage(EARLY, LoudIsSpeech(), FakeCanceller(playing=True, echo_heard=echo_heard))
    out, _ = feed_until(stage, blocks(speech(voice_s=0.4, tail_s=1.0)), m.Probe)
    resume = stage.handle(m.ProbeText(out[-1].turn_id, "Yeah."))
    assert kinds(resume) == ["Duck"] and not resume[0].on and resume[0].echo is echo_heard


@pytest.mark.parametrize("echo", [True, False])
def test_without_an_echo_the_answer_resumes_without_the_references_lead_in(echo: bool) -> None:
    """The lead-in lets the echo canceller's reference arrive before the sound: with no echo
    path (the vad's verdict) it is only silence added to the backchannel's pause."""
    sink = FakeStream()
    stage = SpeakerStage(sink, SpeakerConfig(aec=True), lambda msg: None)
    one, two = m.user_turn(1), m.user_turn(2)
    stage.handle(m.Transcript(one, "Tell me a story."))
    stage.handle(tts(one, 2.0))
    assert sink.buffer is not None
    pull(sink.buffer, 0.2)
    stage.handle(m.Duck(two, True, 0.0))
    pull(sink.buffer, 0.1)  # faded out: silent
    stage.handle(m.Duck(two, False, 0.0, echo=echo))
    after = pull(sink.buffer, 0.1)
    lead_in = round(reference_lead_in_s(sink.latency, SpeakerConfig().mic_block_s) * RATE)
    assert lead_in > 0
    silent = int(np.argmax(after > 0))  # samples before the sound comes back
    assert silent >= lead_in if echo else silent <= 1
