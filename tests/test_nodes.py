"""Each node's event loop driven by dora.testing.MockNode (no daemon), with the real models."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline import messages as m
from pipeline.settings import load
from tests.nodekit import RecordingNode, closed, ev


def test_vad_node_sends_speech_started_then_the_utterance(question_16k):
    from nodes import vad as vad_node
    from pipeline.vad import VadPipeline

    s = load({})
    audio = np.concatenate([np.zeros(8000, np.float32), question_16k, np.zeros(16000, np.float32)])
    events = [ev("audio", m.audio_array(audio[i:i + 320]), sample_rate=16000, capture_time=100 + i / 16000)
              for i in range(0, audio.size - 320, 320)]
    events.append(ev("audio", m.audio_array(np.zeros(320, np.float32)), sample_rate=8000, capture_time=0.0))
    events.append(closed("audio"))
    node = RecordingNode(events)
    vad_node.run(node, s, VadPipeline(vad_node.endpoint_config(s)))
    kinds = [(oid, meta.get("final")) for oid, _v, meta in node.sent]
    assert kinds[0] == ("speech_started", None)
    finals = [meta for oid, _v, meta in node.sent if oid == "utterance" and meta["final"]]
    assert len(finals) == 1 and finals[0]["turn_id"] == 1
    assert abs(finals[0]["t_speech_end"] - (100 + (8000 + question_16k.size) / 16000)) < 0.15


def test_asr_node_transcribes_and_drops_stale_turns(question_16k):
    from nodes import asr as asr_node
    from pipeline.asr import Transcriber

    s = load({})
    tr = Transcriber(asr_node.asr_config(s))
    audio = np.asarray(question_16k, dtype=np.float32)

    def utterance(n, samples):
        return m.Utterance(m.user_turn(n), samples, t_speech_start=1.0, t_speech_end=5.0, t_utterance=5.1)

    node = RecordingNode([
        ev("utterance", utterance(1, audio)),
        ev("speech_started", m.SpeechStarted(m.user_turn(3), t_speech_start=9.0)),
        ev("utterance", utterance(2, audio)),  # stale: dropped
        ev("utterance", utterance(3, np.zeros(16000, np.float32))),
        closed("utterance"),
    ])
    asr_node.run(node, s, tr)
    sent = node.messages("transcript", m.Transcript)
    assert len(sent) == 1  # silence of turn 3 gives no transcript at all
    assert "capital" in sent[0].text.lower() and sent[0].final
    assert sent[0].turn_id == m.user_turn(1) and sent[0].times["t_speech_end"] == 5.0
    assert {"t_transcript", "asr_s", "asr_audio_s", "t_utterance"} <= set(sent[0].times)


def test_tts_node_synthesizes_segments_and_forwards_the_end():
    from nodes import tts as tts_node
    from pipeline.tts import Synthesizer, TtsConfig

    synth = Synthesizer(TtsConfig())
    one, two = m.user_turn(1), m.user_turn(2)
    node = RecordingNode([
        ev("segment", m.Segment(one, m.SEGMENT, 0, "Hello there, how are you?", times={"t_speech_end": 1.0})),
        ev("speech_started", m.SpeechStarted(two, t_speech_start=2.0)),
        ev("segment", m.Segment(one, m.SEGMENT, 1, "Stale words.")),
        ev("segment", m.Segment(two, m.SEGMENT, 0, "Fresh words.")),
        ev("segment", m.Segment(two, m.END, 1)),
        closed("segment"),
    ])
    tts_node.run(node, load({}), synth)
    sent = node.messages("audio", m.TtsAudio)
    segments = [(a.turn_id, a.event) for a in sent if a.end_of_segment]
    assert segments == [(one, m.SEGMENT), (two, m.SEGMENT), (two, m.END)]
    assert "t_tts_done" in sent[-1].times and sent[-1].samples.size == 0
    hello = [a for a in sent if a.turn_id == one]
    # streamed: the segment comes in chunks, numbered, the last one marked and timed
    assert len(hello) >= 2
    assert [a.chunk_index for a in hello] == list(range(len(hello)))
    assert [a.end_of_segment for a in hello] == [False] * (len(hello) - 1) + [True]
    assert "tts_s" in hello[-1].times and "tts_s" not in hello[0].times
    assert hello[-1].times["tts_audio_s"] == pytest.approx(sum(a.samples.size for a in hello) / 22050, abs=1e-3)
    assert all(a.times["t_speech_end"] == 1.0 for a in hello)
    first = hello[0]
    assert first.sample_rate == 22050 and first.samples.size == 32 * 256  # FIRST_CHUNK_FRAMES
    assert sum(a.samples.size for a in hello) > 22050 * 0.6
    assert first.text == "Hello there, how are you?" and "t_first_audio" in first.times


def test_a_segment_piper_makes_no_sound_of_is_still_played_so_backpressure_moves_on(tmp_path):
    """Piper returns no audio for some texts ("..."); without a `played` event for such a
    segment the segmenter's window would never free its place and the answer would stall."""
    from nodes import speaker as speaker_node
    from nodes import tts as tts_node
    from pipeline.audio_io import SpeakerFile
    from pipeline.tts import Synthesizer, TtsConfig

    synth = Synthesizer(TtsConfig())
    assert synth.synthesize_segment("...").size == 0
    tts = RecordingNode([
        ev("segment", m.Segment(1, m.SEGMENT, 0, "...")),
        ev("segment", m.Segment(1, m.SEGMENT, 1, "Hello there, how are you?")),
        closed("segment"),
    ])
    tts_node.run(tts, load({}), synth)
    sent = tts.of("audio")
    assert [(meta["segment_index"], len(v) > 0) for v, meta in sent if meta["end_of_segment"]] == [(0, False), (1, True)]
    s = load({"SPEAKER_FILE": str(tmp_path / "o.wav")})
    speaker = RecordingNode([ev("transcript", m.text_array("hi"), turn_id=1, final=True)]
                            + [ev("audio", v, **meta) for v, meta in sent] + [closed("audio")])
    sink = SpeakerFile(s.speaker_file)
    sink.start()
    speaker_node.run(speaker, s, sink)
    events = [(meta["event"], meta["segment_index"]) for _v, meta in speaker.of("played")]
    assert ("finished", 0) in events and ("finished", 1) in events
    # segment 1 came in chunks and is still one segment to the listener and the segmenter
    assert len([v for v, meta in sent if meta["segment_index"] == 1]) >= 2
    assert events.count(("started", 1)) == 1 and events.count(("finished", 1)) == 1


def test_speaker_node_in_file_mode_reports_played_segments(tmp_path):
    from nodes import speaker as speaker_node
    from pipeline.audio import read_wav
    from pipeline.audio_io import SpeakerFile

    s = load({"SPEAKER_FILE": str(tmp_path / "o.wav")})
    tone = (0.2 * np.sin(np.arange(22050) / 22050 * 2 * np.pi * 440)).astype(np.float32)
    node = RecordingNode([
        ev("transcript", m.text_array("hi"), turn_id=1, final=True),
        ev("audio", m.audio_array(tone), turn_id=1, segment_index=0, sample_rate=22050, text="A.", event=m.SEGMENT),
        ev("audio", m.audio_array(tone), turn_id=1, segment_index=1, sample_rate=22050, text="B.", event=m.SEGMENT),
        ev("audio", m.audio_array(np.zeros(0, np.float32)), turn_id=1, segment_index=2, sample_rate=22050, event=m.END),
        closed("audio"),
    ])
    sink = SpeakerFile(s.speaker_file)
    sink.start()
    speaker_node.run(node, s, sink)
    events = [(meta["event"], meta["segment_index"]) for _v, meta in node.of("played")]
    assert ("started", 0) in events and ("finished", 1) in events and events[-1][0] == "turn_end"
    audio, rate = read_wav(tmp_path / "o.wav")
    assert rate == 22050 and audio.size == 2 * 22050


def test_speaker_holds_a_speculative_answer_until_the_turn_is_confirmed(tmp_path):
    from nodes import speaker as speaker_node
    from pipeline.audio_io import SpeakerFile

    s = load({"SPEAKER_FILE": str(tmp_path / "o.wav")})
    tone = np.full(2205, 0.1, dtype=np.float32)
    node = RecordingNode([
        ev("audio", m.audio_array(tone), turn_id=1, segment_index=0, sample_rate=22050, text="Old.", event=m.SEGMENT),
        ev("speech_started", m.int_array(2), turn_id=2),  # the user went on talking
        ev("audio", m.audio_array(tone), turn_id=2, segment_index=0, sample_rate=22050, text="New.", event=m.SEGMENT),
        ev("transcript", m.text_array("the whole question"), turn_id=2, final=True),
        closed("audio"),
    ])
    sink = SpeakerFile(s.speaker_file)
    sink.start()
    speaker_node.run(node, s, sink)
    texts = [meta["text"] for _v, meta in node.of("played") if meta["event"] == "started"]
    assert texts == ["New."]


def test_llm_node_streams_and_apologises(tmp_path):
    from nodes import llm as llm_node
    from tests.scripted_server import Script, ScriptedServer

    script = Script(token_delay_s=0.0)
    with ScriptedServer(script) as srv:
        s = load({"OPENAI_BASE_URL": srv.base_url, "LLM_RETRIES": "0"})
        turn = m.user_turn(1)
        node = RecordingNode([
            ev("speech_started", m.SpeechStarted(turn, t_speech_start=1.0)),
            ev("transcript", m.Transcript(turn, "Where is Paris?", times={"t_speech_end": 2.0})),
            closed("transcript"),
        ])
        llm_node.run(node, s)
    texts = node.messages("text", m.LlmText)
    assert "".join(x.text for x in texts if x.event == m.DELTA) == script.answer
    assert texts[-1].event == m.END and texts[-1].reason == m.REASON_STOP
    assert {x.turn_id for x in texts} == {turn} and all(x.times["t_speech_end"] == 2.0 for x in texts)
    assert node.messages("ready", m.LlmReady) == [m.LlmReady(srv.base_url)]  # external: ready at once


def test_microphone_node_plays_a_file_after_ready(tmp_path):
    import threading

    from nodes import microphone as mic_node
    from pipeline.audio import write_wav
    from pipeline.audio_io import MicFile

    path = tmp_path / "q.wav"
    write_wav(path, np.full(16000, 0.1, dtype=np.float32), 16000)
    s = load({"MIC_FILE": str(path), "MIC_FILE_REALTIME": "false", "MIC_FILE_TAIL_S": "0.2"})
    source = MicFile(path, realtime=False, tail_s=0.2)

    class PlayedThrough(RecordingNode):
        """Hands out a tick only once the file has been sent (the pump thread is done)."""

        def next(self, timeout=None):
            if self.taken and self.taken[-1]["id"] == "llm_ready":
                for worker in [t for t in threading.enumerate() if t.name == "mic"]:
                    worker.join(10)
            return super().next(timeout)

    tick = {"type": "INPUT", "id": "tick", "value": pa.array([0]), "metadata": {}}
    node = PlayedThrough([tick, ev("llm_ready", m.LlmReady("embedded")), tick, tick, tick])
    mic_node.run(node, s, source)
    chunks = node.messages("audio", m.MicAudio)
    assert sum(c.samples.size for c in chunks) == 16000 + 3200
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert all(c.sample_rate == 16000 for c in chunks)
    assert len(node.taken) == 3  # the first tick after the end of the file ended the node


@pytest.mark.parametrize("bad", [{"LLM_TEMPERATURE": "hot"}, {"SEGMENTS_AHEAD": "0"}])
def test_every_node_refuses_bad_settings(bad, monkeypatch):
    from pipeline.runtime import start

    for k, v in bad.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit):
        start("any")


def test_speaker_reopens_a_device_that_died_and_still_plays_that_audio(tmp_path):
    """The device was gone when the audio came: reopened, and that audio is played (and
    reported) all the same, or the segmenter would wait for its `finished` forever."""
    from nodes import speaker as speaker_node
    from pipeline.audio_io import DeviceError, SpeakerFile

    class Unplugged(SpeakerFile):
        def __init__(self, path):
            super().__init__(path)
            self.dead, self.reopened = True, 0

        def add(self, *args, **kw):
            if self.dead:
                raise DeviceError("The speaker stream stopped (SPEAKER_DEVICE='')")
            return super().add(*args, **kw)

        def reopen(self):
            self.dead = False
            self.reopened += 1
            return self

    s = load({"SPEAKER_FILE": str(tmp_path / "o.wav")})
    tone = np.full(2205, 0.1, dtype=np.float32)
    node = RecordingNode([
        ev("transcript", m.text_array("hi"), turn_id=1, final=True),
        ev("audio", m.audio_array(tone), turn_id=1, segment_index=0, sample_rate=22050, text="A.", event=m.SEGMENT),
        ev("audio", m.audio_array(tone[:0]), turn_id=1, segment_index=1, sample_rate=22050, event=m.END),
        closed("audio"),
    ])
    sink = Unplugged(s.speaker_file)
    speaker_node.run(node, s, sink)
    events = [(meta["event"], meta["segment_index"]) for _v, meta in node.of("played")]
    assert sink.reopened == 1
    assert ("finished", 0) in events and events[-1][0] == "turn_end"


def test_llm_server_node_with_an_external_server_says_ready_and_ends_with_the_llm_node():
    from nodes import llm_server as server_node

    s = load({"OPENAI_BASE_URL": "http://example.test/v1"})
    node = RecordingNode([{"type": "INPUT", "id": "tick", "value": pa.array([0]), "metadata": {}},
                          closed("llm"), closed("tick")])
    server_node.run(node, s)
    assert node.messages("ready", m.ServerReady) == [m.ServerReady("http://example.test/v1", embedded=False)]
    assert node.taken[-1] == closed("llm")  # the llm node is gone: nothing will call the server
