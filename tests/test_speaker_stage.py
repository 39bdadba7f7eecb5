"""The speaker: SpeakerStage with fake sinks (events from another thread), and the node
through `drive` with dora.testing.MockNode."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import numpy as np
import pytest

from pipeline import messages as m
from pipeline.audio_io import DeviceError, Speaker, SpeakerFile
from pipeline.echo.guard import EchoGuard
from pipeline.metrics import TurnMetrics
from pipeline.playback import PlaybackBuffer
from pipeline.settings import load
from pipeline.stages.speaker import SpeakerConfig, SpeakerStage
from tests.nodekit import RecordingNode, closed

RATE = 22050
TONE = np.full(2205, 0.1, dtype=np.float32)  # 0.1 s


def msg_ev(msg: m.Message) -> dict[str, Any]:
    """The dora event that carries `msg` on the speaker input of the same name."""
    value, meta = msg.to_dora()
    return {"type": "INPUT", "id": msg.OUTPUT, "value": value, "metadata": meta}


def audio(turn: int, i: int, text: str = "", event: str = m.SEGMENT, samples=TONE,
          end_of_segment: bool = True, chunk: int = 0) -> m.TtsAudio:
    return m.TtsAudio(turn_id=turn, event=event, segment_index=i, sample_rate=RATE,
                      samples=samples if event == m.SEGMENT else samples[:0], text=text,
                      end_of_segment=end_of_segment, chunk_index=chunk)


def final(turn: int, text: str = "hi") -> m.Transcript:
    return m.Transcript(turn_id=turn, text=text, final=True)


def speech(turn: int) -> m.SpeechStarted:
    return m.SpeechStarted(turn_id=turn, t_speech_start=time.time())


def played(node: RecordingNode) -> list[m.Played]:
    return [m.Played.from_dora(v, meta) for v, meta in node.of("played")]


def kinds(msgs: list[m.Played]) -> list[tuple[str, int]]:
    return [(p.event, p.segment_index) for p in msgs]


def run_speaker(tmp_path, msgs: list[m.Message], sink: Speaker | None = None, **env: str):
    from nodes import speaker as speaker_node

    s = load({"SPEAKER_FILE": str(tmp_path / "o.wav"), **env})
    sink = sink or SpeakerFile(s.speaker_file).start()
    node = RecordingNode([msg_ev(x) for x in msgs] + [closed("audio")])
    speaker_node.run(node, s, sink)
    return node


# --------------------------------------------------------------------------- the node (drive)


def test_speaker_node_in_file_mode_reports_played_segments(tmp_path):
    from pipeline.audio import read_wav

    tone = (0.2 * np.sin(np.arange(RATE) / RATE * 2 * np.pi * 440)).astype(np.float32)
    node = run_speaker(tmp_path, [final(1000), audio(1000, 0, "A.", samples=tone),
                                  audio(1000, 1, "B.", samples=tone), audio(1000, 2, event=m.END)])
    events = kinds(played(node))
    assert ("started", 0) in events and ("finished", 1) in events and events[-1][0] == "turn_end"
    assert played(node)[-1].times["t_first_played"] > 0  # the turn's history goes along
    wav, rate = read_wav(tmp_path / "o.wav")
    assert rate == RATE and wav.size == 2 * RATE
    assert node.of("reference") == []  # nobody hears a file: no echo reference


def test_speaker_holds_a_speculative_answer_until_the_turn_is_confirmed(tmp_path):
    node = run_speaker(tmp_path, [audio(1000, 0, "Old."), speech(2000), audio(2000, 0, "New."),
                                  final(2000, "the whole question")])
    assert [p.text for p in played(node) if p.event == m.STARTED] == ["New."]


def test_a_turn_the_assistant_started_plays_at_once_without_a_transcript(tmp_path):
    """A timer's announcement has no transcript to confirm it: it must not be held."""
    ring = m.assistant_turn(1000)
    node = run_speaker(tmp_path, [final(1000), audio(1000, 0, "Set."), audio(1000, 1, event=m.END),
                                  audio(ring, 0, "Your timer is done."), audio(ring, 1, event=m.END)])
    assert [(p.turn_id, p.text) for p in played(node) if p.event == m.STARTED and p.text] == [
        (1000, "Set."), (ring, "Your timer is done.")]
    assert (ring, m.TURN_END) in [(p.turn_id, p.event) for p in played(node)]


def test_a_segment_piper_makes_no_sound_of_is_still_played_so_backpressure_moves_on(tmp_path):
    """Piper returns no audio for some texts ("..."); without a `played` event for such a
    segment the segmenter's window would never free its place and the answer would stall."""
    from nodes import tts as tts_node
    from pipeline.tts import Synthesizer, TtsConfig

    synth = Synthesizer(TtsConfig())
    assert synth.synthesize_segment("...").size == 0
    tts = RecordingNode([
        msg_ev(m.Segment(turn_id=1000, event=m.SEGMENT, segment_index=0, text="...")),
        msg_ev(m.Segment(turn_id=1000, event=m.SEGMENT, segment_index=1,
                         text="Hello there, how are you?")),
        closed("segment"),
    ])
    tts_node.run(tts, load({}), synth)
    sent = [m.TtsAudio.from_dora(v, meta) for v, meta in tts.of("audio")]
    assert [(a.segment_index, a.samples.size > 0) for a in sent if a.end_of_segment] == [
        (0, False), (1, True)]
    node = run_speaker(tmp_path, [final(1000), *sent])
    events = kinds(played(node))
    assert ("finished", 0) in events and ("finished", 1) in events
    # segment 1 came in chunks and is still one segment to the listener and the segmenter
    assert len([a for a in sent if a.segment_index == 1]) >= 2
    assert events.count(("started", 1)) == 1 and events.count(("finished", 1)) == 1


class Unplugged(SpeakerFile):
    """A file sink that fails like a device that was unplugged, `failures` times."""

    def __init__(self, path, failures: int) -> None:
        super().__init__(path)
        self.failures, self.reopened = failures, 0

    def add(self, *args, **kw):
        if self.failures:
            self.failures -= 1
            raise DeviceError("The speaker stream stopped (SPEAKER_DEVICE='')")
        return super().add(*args, **kw)

    def reopen(self):
        self.reopened += 1
        return self


def test_speaker_reopens_a_device_that_died_and_still_plays_that_audio(tmp_path):
    """The device was gone when the audio came: reopened, and that audio is played (and
    reported) all the same, or the segmenter would wait for its `finished` forever."""
    sink = Unplugged(tmp_path / "o.wav", failures=1)
    node = run_speaker(tmp_path, [final(1000), audio(1000, 0, "A."), audio(1000, 1, event=m.END)],
                       sink=sink)
    events = kinds(played(node))
    assert sink.reopened == 1
    assert ("finished", 0) in events and events[-1][0] == "turn_end"
    # the live view is told: failed, then back
    faults = node.messages("fault", m.DeviceFault)
    assert [(f.device, f.active) for f in faults] == [("speaker", True), ("speaker", False)]


def test_a_speaker_that_never_failed_reports_no_fault(tmp_path):
    node = run_speaker(tmp_path, [final(1000), audio(1000, 0, "A."), audio(1000, 1, event=m.END)])
    assert kinds(played(node))[-1][0] == "turn_end" and node.messages("fault", m.DeviceFault) == []


def test_audio_a_device_still_refuses_after_reopening_is_reported_so_the_answer_ends(tmp_path):
    """Issue #13 §3: a second DeviceError returned without a word: the segmenter then waited
    for that segment's `finished` (and the answer's `turn_end`) forever."""
    sink = Unplugged(tmp_path / "o.wav", failures=4)  # segment 0 and the end are lost
    node = run_speaker(tmp_path, [final(1000), audio(1000, 0, "A."), audio(1000, 1, event=m.END)],
                       sink=sink)
    got = played(node)
    assert kinds(got) == [("finished", 0), ("finished", 1), ("turn_end", 1)]
    assert [p.text for p in got] == ["", "", ""]  # nobody heard it: not in the llm's history
    assert sink.reopened == 2


class _Gated(queue.SimpleQueue):
    """An event queue whose reader waits until `gate` opens: a report thread that is busy."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def get(self, block: bool = True, timeout: float | None = None):
        if not self.gate.wait(timeout):
            raise queue.Empty
        return super().get(block, timeout)


def test_an_interrupted_segment_is_never_reported_before_its_start(tmp_path):
    """Issue #13 §3, the barge-in race: the segment's `started` is recorded before the cut,
    but the thread that reports it is slower than the barge-in. Reported out of order, the
    echo guard kept the segment open for good and took later questions for echo."""
    sink = SpeakerFile(tmp_path / "o.wav").start()
    gated = _Gated()
    sink._events = gated  # the reporting side is held until the barge-in was handled
    msgs = [final(1000), audio(1000, 0, "Paris is the capital of France.", end_of_segment=False),
            speech(2000)]
    from nodes import speaker as speaker_node

    class Node(RecordingNode):
        def next(self, timeout=None):
            event = super().next(timeout)
            if event is not None and event.get("type") == "INPUT_CLOSED":
                gated.gate.set()  # every input before it was handled
            return event

    node = Node([msg_ev(x) for x in msgs] + [closed("audio")])
    speaker_node.run(node, load({"SPEAKER_FILE": str(tmp_path / "o.wav")}), sink)
    got = played(node)
    assert kinds(got) == [("started", 0), ("interrupted", 0)]
    guard = EchoGuard()
    for p in got:
        guard.played(p.turn_id, p.segment_index, p.event, p.text, p.t)
    later = got[-1].t + 5.0
    assert not guard.is_echo("What is the capital of France?", later, later + 2.0)


# --------------------------------------------------------------------------- the stage


class FakeStream(Speaker):
    """A device without PortAudio: a thread pulls blocks from the buffer as a callback
    would, on a virtual clock, so playback events come from another thread."""

    echoes = True

    def __init__(self, block: int = 256) -> None:
        super().__init__(RATE)
        self.latency = 0.02
        self._use_rate(RATE)
        self.block = block
        self.t = 1000.0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._device, daemon=True)

    def start(self) -> FakeStream:
        self.thread.start()
        return self

    def _device(self) -> None:
        out = np.zeros(self.block, dtype=np.float32)
        assert self.buffer is not None
        while not self._stop.is_set():
            self.buffer.fill(out, self.t)
            self.t += self.block / RATE
            time.sleep(0)  # let the producer in, as a device's wait would

    def close(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join()


def stage_with(sink: Speaker, **config: Any) -> tuple[SpeakerStage, list[m.Message]]:
    sent: list[m.Message] = []
    lock = threading.Lock()

    def emit(msg: m.Message) -> None:
        with lock:
            sent.append(msg)

    stage = SpeakerStage(sink, SpeakerConfig(**config), emit, TurnMetrics())
    stage.start()
    return stage, sent


def wait_idle(stage: SpeakerStage, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while not stage.idle():
        assert time.monotonic() < end, "the stage never became idle"
        time.sleep(0.001)


def test_barge_ins_while_a_device_thread_plays_keep_every_segment_in_order():
    sink = FakeStream().start()
    stage, sent = stage_with(sink)
    for k in range(1, 30):
        turn = m.user_turn(k)
        stage.handle(final(turn))
        for i in range(3):
            for msg in stage.handle(audio(turn, i, f"Segment {i} of turn {k}.")):
                sent.append(msg)
        stage.handle(speech(m.user_turn(k + 1)))  # cut wherever the device is
    last = m.user_turn(30)
    stage.handle(final(last))
    stage.handle(audio(last, 0, "The end."))
    stage.handle(audio(last, 1, event=m.END))
    wait_idle(stage)
    stage.close()
    plays = [p for p in sent if isinstance(p, m.Played)]
    seen: dict[tuple[int, int], list[str]] = {}
    for p in plays:
        seen.setdefault((p.turn_id, p.segment_index), []).append(p.event)
    for key, events in seen.items():
        assert events[0] == m.STARTED, (key, events)
        assert events[1:] in ([], [m.FINISHED], [m.INTERRUPTED], [m.FINISHED, m.TURN_END]), (key, events)
    assert any(m.INTERRUPTED in e for e in seen.values())  # the cuts did cut something
    assert seen[(last, 1)] == [m.STARTED, m.FINISHED, m.TURN_END]
    guard = EchoGuard()
    for p in plays:
        guard.played(p.turn_id, p.segment_index, p.event, p.text, p.t)
    assert guard._open == {}  # nothing stays "playing"
    refs = [r for r in sent if isinstance(r, m.Reference)]
    assert [r.event for r in refs].count(m.CUT) == 29
    assert all(r.t_start > 0 for r in refs if r.event == m.PLAY)
    assert stage.reporter.turn_times == {} and stage.reporter.metrics.turns == {}


def test_a_device_stall_moves_the_echo_reference_and_a_file_never_stalls(tmp_path):
    stream = FakeStream()
    stage, sent = stage_with(stream)
    stage.handle(final(1000))
    sent.extend(stage.handle(audio(1000, 0, "A.")))  # its reference goes out at once
    assert stream.buffer is not None
    out = np.zeros(256, dtype=np.float32)
    stream.buffer.fill(out, 10.0)
    stream.buffer.fill(out, 10.0 + 256 / RATE + 0.15)  # the callback came 150 ms late
    stage.handle(speech(2000))
    stage.close()
    refs = [r for r in sent if isinstance(r, m.Reference)]
    assert [r.event for r in refs] == [m.PLAY, m.DELAY, m.CUT]
    assert refs[1].delay_s == pytest.approx(0.15) and refs[1].t_start == pytest.approx(10 + 256 / RATE)

    file_stage, file_sent = stage_with(SpeakerFile(tmp_path / "o.wav").start())
    file_stage.handle(final(1000))
    file_stage.handle(audio(1000, 0, "A."))
    file_stage.close()
    assert [x.event for x in file_sent] == [m.STARTED, m.FINISHED]  # no reference at all


def test_speculative_turns_dropped_before_their_endpoint_leave_no_records(tmp_path):
    """Issue #13 §3: a turn answered speculatively and then dropped (the user went on
    talking) kept its timestamps and its metrics record for good."""
    stage, sent = stage_with(SpeakerFile(tmp_path / "o.wav").start())
    for k in range(1, 6):  # five pauses, each answered speculatively, none confirmed
        turn = m.user_turn(k)
        stage.handle(m.Transcript(turn_id=turn, text="what is the", final=False))
        stage.handle(audio(turn, 0, "An answer to half a question."))
        stage.handle(speech(m.user_turn(k + 1)))
    confirmed = m.user_turn(6)
    stage.handle(final(confirmed))  # confirmed, but cut before its audio came
    stage.handle(speech(m.user_turn(7)))
    stage.close()
    assert not any(isinstance(x, m.Played) for x in sent)  # none of it was ever heard
    assert stage.reporter.turn_times == {}
    assert set(stage.reporter.metrics.turns) == set()
    # the confirmed one was logged as interrupted, the speculative ones were not logged
    assert [(r.turn_id, r.interrupted) for r in stage.reporter.metrics.finished] == [(confirmed, True)]


def test_without_barge_in_an_old_answer_plays_on_and_keeps_its_record(tmp_path):
    stage, sent = stage_with(SpeakerFile(tmp_path / "o.wav").start(), barge_in=False)
    stage.handle(final(1000))
    stage.handle(audio(1000, 0, "A.", end_of_segment=False))
    stage.handle(speech(2000))
    assert 1000 in stage.reporter.metrics.turns  # still playing: not forgotten
    stage.close()
    assert [x.event for x in sent if isinstance(x, m.Played)] == [m.STARTED]


def test_playback_buffer_cut_events_come_after_the_segments_they_cut():
    buf = PlaybackBuffer(RATE)
    buf.add(1, 0, TONE, "A.")
    buf.fill(np.zeros(256, dtype=np.float32), 1.0)
    cut = buf.clear(turn_id_below=2)
    events = buf.drain_events()
    assert [e.kind for e in events] == [m.STARTED, m.CUT] and events[1].cut == tuple(cut)
