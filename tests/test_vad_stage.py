"""The vad node's processor (pipeline/stages/vad.py): messages in, messages out.

Most tests use a VAD model that calls a frame speech when it is loud (exact and fast) and a
fake echo canceller that records what it is asked; the wiring tests run the node through
`drive` with real Silero, and the reference tests use the real canceller.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np
import pytest

from pipeline import messages as m
from pipeline.echo import EchoCanceller, EchoStats
from pipeline.runtime import CLOSED, Control, drive
from pipeline.settings import load
from pipeline.stages.vad import WIRING, VadStage, VadStageConfig
from tests.nodekit import RecordingNode, closed, ev

SR = 16000
BLOCK = 320  # the microphone's 20 ms blocks
T0 = 1_700_000_000.0


class LoudIsSpeech:
    """A VAD model: a 32 ms frame is speech when its RMS is above 0.05."""

    def __init__(self) -> None:
        self.resets = 0

    def prob(self, frame: np.ndarray) -> float:
        return 0.9 if float(np.sqrt(np.mean(frame**2))) > 0.05 else 0.01

    def reset(self) -> None:
        self.resets += 1


class FakeCanceller:
    """Records every call (and the thread it came from); `process` scales the audio by `gain`."""

    def __init__(self, gain: float = 1.0, echo: bool | None = False, playing: bool = False,
                 echo_heard: bool = False) -> None:
        self.gain, self.echo, self.playing = gain, echo, playing
        self.echo_heard = echo_heard  # the presence detector's verdict
        self.available = True
        self.stats = EchoStats()
        self.calls: list[tuple[str, Any]] = []
        self.threads: set[int] = set()

    def _called(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        self.threads.add(threading.get_ident())

    def process(self, chunk: np.ndarray, t_capture: float) -> np.ndarray:
        self._called("process", t_capture)
        return (chunk * self.gain).astype(np.float32)

    def vad_threshold(self, t: float, normal: float, playing: float) -> float | None:
        self._called("vad_threshold", t)
        return playing if self.playing else None

    def playing_at(self, t: float, tail_s: float = 0.0) -> bool:
        self._called("playing_at", t)
        return self.playing

    def onset_is_echo(self, n_samples: int) -> bool | None:
        self._called("onset_is_echo", n_samples)
        return self.echo

    def add_reference(self, samples: np.ndarray, t_start: float) -> None:
        self._called("add_reference", t_start)

    def cut_reference(self, t: float) -> None:
        self._called("cut_reference", t)

    def delay_reference(self, t: float, delay_s: float) -> None:
        self._called("delay_reference", t, delay_s)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def speech(lead_s: float = 0.5, voice_s: float = 0.6, tail_s: float = 1.0) -> np.ndarray:
    """Silence, a loud tone (speech to LoudIsSpeech), silence."""
    t = np.arange(int(voice_s * SR)) / SR
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return np.concatenate([np.zeros(int(lead_s * SR), np.float32), tone,
                           np.zeros(int(tail_s * SR), np.float32)])


def blocks(signal: np.ndarray, t0: float = T0, rate: int = SR) -> list[m.MicAudio]:
    return [m.MicAudio(signal[i : i + BLOCK], capture_time=t0 + i / SR, seq=i // BLOCK, sample_rate=rate)
            for i in range(0, signal.size, BLOCK)]


def feed(stage: VadStage, events: list[Any]) -> list[m.Message]:
    out: list[m.Message] = []
    for event in events:
        out.extend(stage.handle(event))
    return out


def kinds(msgs: list[m.Message]) -> list[str]:
    return [type(msg).__name__ for msg in msgs]


def played(event: str, turn: int = m.user_turn(1)) -> m.Played:
    return m.Played(turn_id=turn, event=event, segment_index=0, t=T0)


# --------------------------------------------------------------------------- messages


def test_speech_gives_speech_started_then_the_utterance_as_messages() -> None:
    stage = VadStage(VadStageConfig(), LoudIsSpeech())
    before = m.now()
    out = feed(stage, blocks(speech()))
    assert kinds(out) == ["SpeechStarted", "Utterance"]
    started, utt = out
    assert isinstance(started, m.SpeechStarted) and isinstance(utt, m.Utterance)
    assert started.turn_id == utt.turn_id == m.user_turn(1)
    assert started.t_speech_start == pytest.approx(T0 + 0.5, abs=0.032)
    assert utt.t_speech_end == pytest.approx(T0 + 1.1, abs=0.032)
    assert utt.final and utt.t_utterance >= before
    # what goes on the wire is the contract's: the turn and stamps as metadata
    value, meta = utt.to_dora()
    assert meta["turn_id"] == m.user_turn(1) and "cut" not in meta and len(value) == utt.samples.size


def test_the_second_turn_is_the_next_user_turn() -> None:
    stage = VadStage(VadStageConfig(), LoudIsSpeech())
    out = feed(stage, blocks(np.concatenate([speech(), speech()])))
    assert [msg.turn_id for msg in out] == [m.user_turn(n) for n in (1, 1, 2, 2)]


def test_the_microphone_closing_flushes_the_utterance_in_progress() -> None:
    stage = VadStage(VadStageConfig(), LoudIsSpeech())
    out = feed(stage, blocks(speech(tail_s=0.1)))
    assert kinds(out) == ["SpeechStarted"]  # still in speech when the audio ends
    assert stage.handle(Control(CLOSED, "played")) == []  # another input: nothing
    (utt,) = stage.handle(Control(CLOSED, "audio"))
    assert isinstance(utt, m.Utterance) and utt.final and utt.turn_id == m.user_turn(1)


def test_audio_at_another_rate_is_ignored() -> None:
    stage = VadStage(VadStageConfig(), LoudIsSpeech())
    assert feed(stage, blocks(speech(), rate=8000)) == []
    assert kinds(feed(stage, blocks(speech(), T0 + 10))) == ["SpeechStarted", "Utterance"]


@pytest.mark.parametrize("barge_in", [False, True])
def test_without_barge_in_the_microphone_is_muted_while_an_answer_plays(barge_in: bool) -> None:
    stage = VadStage(VadStageConfig(barge_in=barge_in), LoudIsSpeech())
    assert stage.handle(played(m.STARTED)) == []
    while_playing = feed(stage, blocks(speech()))
    if barge_in:  # the positive control: the same speech is a turn
        assert kinds(while_playing) == ["SpeechStarted", "Utterance"]
        return
    assert while_playing == []
    assert stage.handle(played(m.FINISHED)) == []  # a segment ended, the answer goes on
    assert feed(stage, blocks(speech(), T0 + 10)) == []
    stage.handle(played(m.TURN_END))
    assert kinds(feed(stage, blocks(speech(), T0 + 20))) == ["SpeechStarted", "Utterance"]


def test_speech_cut_by_half_duplex_muting_sends_nothing_more() -> None:
    """The SpeechDiscarded of a muted turn is not a message: it is only logged."""
    stage = VadStage(VadStageConfig(barge_in=False), LoudIsSpeech())
    assert kinds(feed(stage, blocks(speech(tail_s=0.0)))) == ["SpeechStarted"]
    assert stage.handle(played(m.STARTED)) == []
    assert stage.vad.endpointer.muted and not stage.vad.endpointer.in_speech


# --------------------------------------------------------------------------- echo canceller


def test_the_vad_hears_the_cancelled_signal_and_the_utterance_is_the_raw_one() -> None:
    signal = speech()
    quiet = FakeCanceller(gain=0.1)  # the canceller removed it all: echo
    assert feed(VadStage(VadStageConfig(), LoudIsSpeech(), quiet), blocks(signal)) == []
    assert quiet.names().count("process") == len(blocks(signal))
    halved = FakeCanceller(gain=0.5)  # still loud: the user
    out = feed(VadStage(VadStageConfig(), LoudIsSpeech(), halved), blocks(signal))
    utt = out[-1]
    assert isinstance(utt, m.Utterance)
    start = int(round((utt.t_speech_start - T0) * SR)) - 4800  # the 300 ms preroll
    np.testing.assert_array_equal(utt.samples, signal[start : start + utt.samples.size])


def test_while_the_assistant_is_audible_the_threshold_is_the_playing_one() -> None:
    aec = FakeCanceller(playing=True)
    stage = VadStage(VadStageConfig(threshold_playing=0.8), LoudIsSpeech(), aec)
    stage.handle(blocks(speech())[0])
    assert stage.vad.endpointer.threshold == 0.8 and stage.vad.endpointer.assistant_audible
    aec.playing = False
    stage.handle(blocks(speech())[1])
    assert stage.vad.endpointer.threshold == 0.5 and not stage.vad.endpointer.assistant_audible


@pytest.mark.parametrize("echo", [True, False])
def test_the_canceller_vetoes_onsets_that_are_its_own_voice(echo: bool) -> None:
    aec = FakeCanceller(echo=echo, playing=True)
    out = feed(VadStage(VadStageConfig(), LoudIsSpeech(), aec), blocks(speech()))
    assert "onset_is_echo" in aec.names()
    assert kinds(out) == ([] if echo else ["SpeechStarted", "Utterance"])


def test_an_unavailable_canceller_vetoes_nothing() -> None:
    aec = FakeCanceller(echo=True)
    aec.available = False
    out = feed(VadStage(VadStageConfig(), LoudIsSpeech(), aec), blocks(speech()))
    assert "onset_is_echo" not in aec.names() and kinds(out) == ["SpeechStarted", "Utterance"]


def test_reference_messages_play_cut_and_delay_the_real_canceller() -> None:
    aec = EchoCanceller()
    stage = VadStage(VadStageConfig(), LoudIsSpeech(), aec)
    tone = np.full(SR, 0.1, dtype=np.float32)  # 1 s from T0
    assert stage.handle(m.Reference(event=m.PLAY, t_start=T0, samples=tone)) == []
    assert aec.playing_at(T0 + 0.5) and not aec.playing_at(T0 + 1.5)
    stage.handle(m.Reference(event=m.DELAY, t_start=T0 + 0.5, delay_s=1.0))
    assert aec.playing_at(T0 + 1.6) and not aec.playing_at(T0 + 0.7)  # the stall moved it
    stage.handle(m.Reference(event=m.CUT, t_start=T0 + 0.2))
    assert aec.playing_at(T0 + 0.1) and not aec.playing_at(T0 + 0.3) and not aec.playing_at(T0 + 1.6)


def test_a_reference_without_a_canceller_is_ignored() -> None:
    stage = VadStage(VadStageConfig(), LoudIsSpeech())
    assert stage.handle(m.Reference(event=m.PLAY, t_start=T0, samples=np.ones(160, np.float32))) == []
    assert kinds(feed(stage, blocks(speech()))) == ["SpeechStarted", "Utterance"]


# --------------------------------------------------------------------------- through drive


class QueueNode:
    """A dora node whose events other threads put in, as dora delivers them."""

    def __init__(self) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.sent: list[tuple[str, Any, dict[str, Any]]] = []

    def put(self, msg: m.Message, input_id: str) -> None:
        value, meta = msg.to_dora()
        self.events.put(ev(input_id, value, **meta))

    def next(self, timeout: float | None = None) -> dict[str, Any] | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def send_output(self, output_id: str, data: Any, metadata: dict[str, Any] | None = None) -> None:
        self.sent.append((output_id, data, dict(metadata or {})))


def test_events_from_a_microphone_and_a_speaker_thread_reach_the_canceller_on_one_thread() -> None:
    """The microphone and the speaker send from their own threads; the canceller (not
    thread-safe) is only ever called from the thread that drives the stage, and the node
    ends once the microphone closed."""
    node, aec = QueueNode(), FakeCanceller()
    references = [m.Reference(event=m.PLAY, t_start=T0 + k, samples=np.ones(160, np.float32))
                  for k in range(20)]

    def speaker() -> None:
        for ref in references:
            node.put(ref, "reference")
        node.put(played(m.STARTED), "played")

    speaker_thread = threading.Thread(target=speaker)

    def microphone() -> None:
        for block in blocks(speech()):
            node.put(block, "audio")
        speaker_thread.join()
        node.events.put(closed("audio"))

    threads = [speaker_thread, threading.Thread(target=microphone)]
    for thread in threads:
        thread.start()
    drive(node, VadStage(VadStageConfig(), LoudIsSpeech(), aec), WIRING, primary=frozenset({"audio"}))
    for thread in threads:
        thread.join()
    assert aec.threads == {threading.get_ident()}
    assert [args[0] for name, args in aec.calls if name == "add_reference"] == [r.t_start for r in references]
    assert [oid for oid, _v, _meta in node.sent] == ["speech_started", "utterance"]


def test_vad_node_sends_speech_started_then_the_utterance(question_16k: np.ndarray) -> None:
    from nodes import vad as vad_node
    from pipeline.vad import SileroVad

    s = load({})
    audio = np.concatenate([np.zeros(8000, np.float32), question_16k, np.zeros(16000, np.float32)])
    events = [ev("audio", m.audio_array(audio[i:i + 320]), sample_rate=16000, capture_time=100 + i / 16000)
              for i in range(0, audio.size - 320, 320)]
    events.append(ev("audio", m.audio_array(np.zeros(320, np.float32)), sample_rate=8000, capture_time=0.0))
    events.append(closed("audio"))
    node = RecordingNode(events)
    vad_node.run(node, s, SileroVad())
    kinds_sent = [(oid, meta.get("final")) for oid, _v, meta in node.sent]
    assert kinds_sent[0] == ("speech_started", None)
    finals = [meta for oid, _v, meta in node.sent if oid == "utterance" and meta["final"]]
    assert len(finals) == 1 and finals[0]["turn_id"] == m.user_turn(1)
    assert abs(finals[0]["t_speech_end"] - (100 + (8000 + question_16k.size) / 16000)) < 0.15
