"""Speech over the answer pauses it (BACKCHANNEL_HOLD=pause): the playback buffer fades out and
keeps its place, a backchannel resumes it from there, an interruption cuts it; the echo
canceller's reference follows what is really heard; and the backchannel gate drives it.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipeline import messages as m
from pipeline.playback import HOLD, RESUME, PlaybackBuffer
from pipeline.runtime import Tick
from pipeline.stages.speaker import SpeakerConfig, SpeakerStage
from pipeline.stages.vad import VadStage
from tests.test_backchannels import feed_until, gated_stage, pull, rest, tts
from tests.test_playback import RATE, pump, ramp
from tests.test_speaker_stage import RATE as TTS_RATE
from tests.test_speaker_stage import FakeStream
from tests.test_vad_stage import FakeCanceller, blocks, kinds, speech

FADE = round(PlaybackBuffer.HOLD_FADE_S * RATE)  # 20 samples at 1 kHz


def events(buf: PlaybackBuffer) -> list[tuple[str, int]]:
    return [(e.kind, e.segment_index) for e in buf.drain_events()]


# --------------------------------------------------------------------------- the buffer


def test_a_hold_fades_out_keeps_its_place_and_resumes_where_it_stopped() -> None:
    buf = PlaybackBuffer(RATE)
    a = ramp(1, 1000)
    buf.add(1, 0, a, "A.")
    first, t = pump(buf, 1)
    assert buf.hold(True) and not buf.hold(True) and buf.held
    held, t = pump(buf, 2, t)
    gain = held[:FADE] / a[256:256 + FADE]
    assert np.all(np.diff(gain) < 0) and gain[0] <= 1.0 and gain[-1] < 0.1  # a fade, not a step
    assert np.all(held[FADE:] == 0.0)  # then silence
    assert buf.frames_queued == 1000 - 256 - FADE  # nothing dropped, nothing moved
    buf.add(1, 1, ramp(5000, 100), "B.", last=True)  # the tts goes on while paused
    assert events(buf) == [("started", 0), (HOLD, -1)]  # no segment event while paused
    assert buf.hold(False) and not buf.held
    after, t = pump(buf, 4, t)
    assert np.all(np.diff(after[:FADE] / a[256 + FADE:256 + 2 * FADE]) > 0)  # fades in
    rest_of_a = a[256 + 2 * FADE:]
    assert np.array_equal(after[FADE:FADE + rest_of_a.size], rest_of_a)  # from where it stopped
    assert np.array_equal(after[FADE + rest_of_a.size:][:100], ramp(5000, 100))
    assert [k for k, _ in events(buf)] == [RESUME, "finished", "started", "finished", "turn_end"]


def test_hold_and_resume_events_say_when_the_silence_and_the_sound_start() -> None:
    buf = PlaybackBuffer(RATE)
    buf.add(1, 0, ramp(1, 1000), "A.", last=True)
    start = time.time() + 60.0  # (a device clock ahead of now, as a DAC time is)
    _, t = pump(buf, 1, t0=start)
    buf.hold(True)
    _, t = pump(buf, 2, t)
    buf.hold(False, lead_in_s=0.05)
    out, t = pump(buf, 4, t)
    _, hold, resume, *played = buf.drain_events()
    assert hold.kind == HOLD and hold.t == pytest.approx(start + (256 + FADE) / RATE)
    assert resume.kind == RESUME  # after the lead-in:
    assert resume.t == pytest.approx(start + (3 * 256 + 50) / RATE)
    assert resume.samples is not None and resume.samples.size == 1000 - 256 - FADE  # all queued
    assert np.all(out[:50] == 0.0) and np.all(out[51:80] > 0.0)  # the lead-in is silence
    finished = next(e for e in played if e.kind == "finished")
    assert finished.t == pytest.approx(resume.t + resume.samples.size / RATE)  # back to back


def test_a_file_is_never_held() -> None:
    buf = PlaybackBuffer(RATE)
    buf.hold(True)
    buf.add(1, 0, ramp(1, 300), "A.", last=True)
    assert np.array_equal(buf.drain_all(t0=100.0), ramp(1, 300))


# --------------------------------------------------------------------------- the speaker


def speaker(**config: object) -> tuple[FakeStream, SpeakerStage, list[m.Message]]:
    sent: list[m.Message] = []
    sink = FakeStream()
    return sink, SpeakerStage(sink, SpeakerConfig(**config), sent.append), sent  # type: ignore[arg-type]


def test_the_speaker_pauses_the_answer_and_resumes_it_without_losing_a_sample() -> None:
    sink, stage, _ = speaker(aec=False)
    turn = m.user_turn(1)
    stage.handle(m.Transcript(turn, "Tell me a story."))
    stage.handle(tts(turn, 2.0))
    assert sink.buffer is not None
    before = pull(sink.buffer, 0.1)
    stage.handle(m.Duck(m.user_turn(2), True, 0.0))
    paused = pull(sink.buffer, 0.5)
    stage.handle(m.Duck(m.user_turn(2), False, 0.0))
    after = pull(sink.buffer, 0.5)
    fade = round(PlaybackBuffer.HOLD_FADE_S * TTS_RATE)
    assert np.all(before == 1.0)
    assert np.all(np.diff(paused[:fade]) < 0) and np.all(paused[fade:] == 0.0)  # silent
    assert np.all(np.diff(after[:fade]) > 0) and np.all(after[fade:] == 1.0)
    assert sink.buffer.frames_queued == 2 * TTS_RATE - before.size - fade - after.size


def test_the_echo_reference_is_cut_at_the_pause_and_resent_from_the_resume() -> None:
    sink, stage, sent = speaker(aec=True)
    one, two = m.user_turn(1), m.user_turn(2)
    stage.handle(m.Transcript(one, "Tell me a story."))
    first = stage.handle(tts(one, 1.0))
    assert kinds(first) == ["Reference"]  # what will play, before it plays
    assert sink.buffer is not None
    pull(sink.buffer, 0.2)
    stage.handle(m.Duck(two, True, 0.0))
    pull(sink.buffer, 0.3)
    more = m.TtsAudio(one, m.SEGMENT, 1, TTS_RATE, np.ones(TTS_RATE // 2, np.float32), text="On.")
    assert stage.handle(more) == []  # paused: no reference of it yet (nobody knows when it plays)
    queued = sink.buffer.frames_queued
    stage.handle(m.Duck(two, False, 0.0))
    stage.start()
    stage.close()  # every playback event reported
    refs = [r for r in sent if isinstance(r, m.Reference)]
    assert [r.event for r in refs] == [m.CUT, m.CUT, m.PLAY]
    pause, resume, replay = refs
    assert resume.t_start == replay.t_start > pause.t_start
    assert replay.samples.size == round(queued * m.ASR_RATE / TTS_RATE)  # all that is queued


def test_an_interruption_while_paused_cuts_the_answer_and_the_next_one_plays() -> None:
    sink, stage, _ = speaker(aec=False)
    one, two = m.user_turn(1), m.user_turn(2)
    stage.handle(m.Transcript(one, "Tell me a story."))
    stage.handle(tts(one))
    stage.handle(m.Duck(two, True, 0.0))
    assert sink.held
    stage.handle(m.SpeechStarted(two, 0.0))
    assert sink.buffer is not None and sink.buffer.frames_queued == 0 and not sink.held
    stage.handle(m.Transcript(two, "What is the capital of Spain?"))
    stage.handle(tts(two))
    assert np.all(pull(sink.buffer, 0.5)[round(PlaybackBuffer.HOLD_FADE_S * TTS_RATE):] == 1.0)


def test_an_answer_that_comes_before_its_turns_speech_started_still_cuts_the_old_one() -> None:
    """Inputs are not ordered: a new turn's transcript and audio (a skill answers at once)
    may come before its `speech_started`. The paused older answer must not play on first."""
    sink, stage, _ = speaker(aec=False)
    one, two = m.user_turn(1), m.user_turn(2)
    stage.handle(m.Transcript(one, "Tell me a story."))
    stage.handle(tts(one, 5.0))
    stage.handle(m.Duck(two, True, 0.0))
    stage.handle(m.Transcript(two, "What is two plus two?"))
    stage.handle(tts(two, 1.0))
    assert sink.buffer is not None and sink.buffer.frames_queued == TTS_RATE and not sink.held
    stage.handle(m.SpeechStarted(two, 0.0))  # late: nothing more to cut
    assert sink.buffer.frames_queued == TTS_RATE


def test_a_pause_nobody_ends_ends_by_itself() -> None:
    """The vad's `duck` off lost (the vad node restarted): the answer must not stay silent."""
    sink, stage, _ = speaker(aec=False, max_hold_s=0.0)
    stage.handle(m.Transcript(m.user_turn(1), "Tell me a story."))
    stage.handle(tts(m.user_turn(1)))
    stage.handle(m.Duck(m.user_turn(2), True, 0.0))
    assert sink.held
    stage.handle(Tick("tick"))
    assert not sink.held


# --------------------------------------------------------------------------- gate and speaker


def answering() -> tuple[FakeStream, SpeakerStage, VadStage, float]:
    """The user asked (turn 1), the speaker plays a 5 s answer and the vad hears it: (sink,
    speaker, vad, capture time of the next microphone block)."""
    sink, stage, _ = speaker(aec=False)
    vad = gated_stage(playing=False)
    asked = blocks(speech())
    said = rest(vad, asked)
    assert kinds(said)[0] == "SpeechStarted" and said[-1].final  # type: ignore[attr-defined]
    stage.handle(m.Transcript(m.user_turn(1), "Tell me a story."))
    stage.handle(tts(m.user_turn(1), 5.0))
    assert isinstance(vad.aec, FakeCanceller)
    vad.aec.playing = True
    return sink, stage, vad, asked[-1].capture_time + 0.02


def wire(out: list[m.Message], stage: SpeakerStage) -> list[str]:
    """Deliver the vad's messages to the speaker as the dataflow does; their kinds."""
    for msg in out:
        if isinstance(msg, (m.Duck, m.SpeechStarted)):
            stage.handle(msg)
    return kinds(out)


def test_speech_without_a_short_first_word_silences_the_answer_at_its_onset() -> None:
    """"What is the capital of Spain?" straight over the answer: no pause for a probe, the
    turn only starts at the cap (700 ms), but the answer is silent from the onset on."""
    sink, stage, vad, t0 = answering()
    assert sink.buffer is not None
    mic = blocks(speech(voice_s=1.5), t0=t0)
    out, n = feed_until(vad, mic, m.Duck)
    assert wire(out, stage) == ["Duck"]
    assert mic[n - 1].capture_time + 0.02 - (t0 + 0.5) < 0.15  # at the onset (VAD_START_MS)
    assert np.all(pull(sink.buffer, 0.3)[round(PlaybackBuffer.HOLD_FADE_S * TTS_RATE):] == 0.0)
    later, _ = feed_until(vad, mic[n:], m.SpeechStarted)
    assert wire(later, stage) == ["SpeechStarted"]  # at the cap: the answer is cut
    assert sink.buffer.frames_queued == 0


def test_a_backchannel_the_gate_lets_go_resumes_the_answer() -> None:
    sink, stage, vad, t0 = answering()
    assert sink.buffer is not None
    mic = blocks(speech(voice_s=0.4, tail_s=1.0), t0=t0)
    out, n = feed_until(vad, mic, m.Probe)
    assert wire(out, stage) == ["Duck", "Probe"]
    fade = round(PlaybackBuffer.HOLD_FADE_S * TTS_RATE)
    assert np.all(pull(sink.buffer, 0.3)[fade:] == 0.0)
    assert wire(vad.handle(m.ProbeText(out[-1].turn_id, "Mm-hmm.")), stage) == ["Duck"]
    assert np.all(pull(sink.buffer, 0.3)[fade:] == 1.0)  # the answer goes on
    assert wire(rest(vad, mic[n:]), stage) == []  # and no turn
