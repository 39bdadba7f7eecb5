"""Each node's event loop driven by dora.testing.MockNode (no daemon), with the real models."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest

from pipeline import messages as m
from pipeline.settings import load
from tests.conftest import wait_until
from tests.nodekit import RecordingNode, closed, ev


def test_asr_node_transcribes_and_drops_stale_turns(question_16k):
    from nodes import asr as asr_node
    from pipeline.asr import AsrConfig, Transcriber

    s = load({})
    tr = Transcriber(AsrConfig.from_settings(s))
    audio = m.audio_array(np.asarray(question_16k))
    node = RecordingNode([
        ev("utterance", audio, turn_id=1, sample_rate=16000, final=True, t_speech_end=5.0),
        ev("speech_started", m.int_array(3), turn_id=3),
        ev("utterance", audio, turn_id=2, sample_rate=16000, final=True),  # stale: dropped
        ev("utterance", m.audio_array(np.zeros(16000, np.float32)), turn_id=3, sample_rate=16000, final=True),
        closed("utterance"),
    ])
    asr_node.run(node, s, tr)
    sent = node.of("transcript")
    assert len(sent) == 1  # silence of turn 3 gives no transcript at all
    assert "capital" in m.text_of(sent[0][0]).lower()
    assert sent[0][1]["turn_id"] == 1 and sent[0][1]["t_speech_end"] == 5.0


def test_tts_node_synthesizes_segments_and_forwards_the_end():
    from nodes import tts as tts_node
    from pipeline.tts import Synthesizer, TtsConfig

    synth = Synthesizer(TtsConfig())
    node = RecordingNode([
        ev("segment", m.text_array("Hello there, how are you?"), turn_id=1, segment_index=0, event=m.SEGMENT, t_speech_end=1.0),
        ev("speech_started", m.int_array(2), turn_id=2),
        ev("segment", m.text_array("Stale words."), turn_id=1, segment_index=1, event=m.SEGMENT),
        ev("segment", m.text_array("Fresh words."), turn_id=2, segment_index=0, event=m.SEGMENT),
        ev("segment", m.text_array(""), turn_id=2, segment_index=1, event=m.END),
        closed("segment"),
    ])
    tts_node.run(node, load({}), synth)
    sent = node.of("audio")
    segments = [(meta["turn_id"], meta["event"]) for _v, meta in sent if meta.get("end_of_segment", True)]
    assert segments == [(1, m.SEGMENT), (2, m.SEGMENT), (2, m.END)]
    hello = [(v, meta) for v, meta in sent if meta["turn_id"] == 1]
    # streamed: the segment comes in chunks, numbered, the last one marked and timed
    assert len(hello) >= 2
    assert [meta["chunk_index"] for _v, meta in hello] == list(range(len(hello)))
    assert [meta["end_of_segment"] for _v, meta in hello] == [False] * (len(hello) - 1) + [True]
    assert "tts_s" in hello[-1][1] and "tts_s" not in hello[0][1]
    assert hello[-1][1]["tts_audio_s"] == pytest.approx(sum(len(v) for v, _ in hello) / 22050, abs=1e-3)
    first = hello[0]
    assert first[1]["sample_rate"] == 22050 and len(first[0]) == 32 * 256  # FIRST_CHUNK_FRAMES
    assert sum(len(v) for v, _ in hello) > 22050 * 0.6
    assert first[1]["text"] == "Hello there, how are you?" and "t_first_audio" in first[1]


def test_llm_node_streams_and_apologises(tmp_path):
    from nodes import llm as llm_node
    from tests.scripted_server import Script, ScriptedServer

    script = Script(token_delay_s=0.0)
    with ScriptedServer(script) as srv:
        s = load({"OPENAI_BASE_URL": srv.base_url, "LLM_RETRIES": "0"})
        node = RecordingNode([
            ev("speech_started", m.int_array(1), turn_id=1),
            ev("transcript", m.text_array("Where is Paris?"), turn_id=1, final=True, t_speech_end=2.0),
            closed("transcript"),
        ])
        llm_node.run(node, s)
    texts = [(meta["event"], m.text_of(v)) for v, meta in node.of("text")]
    assert "".join(t for e, t in texts if e == m.DELTA) == script.answer
    assert texts[-1][0] == m.END
    assert node.of("ready")  # an external server is ready at once


def test_microphone_node_plays_a_file_after_ready(tmp_path):
    from nodes import microphone as mic_node
    from pipeline.audio import write_wav
    from pipeline.audio_io import MicFile

    path = tmp_path / "q.wav"
    write_wav(path, np.full(16000, 0.1, dtype=np.float32), 16000)
    s = load({"MIC_FILE": str(path), "MIC_FILE_REALTIME": "false", "MIC_FILE_TAIL_S": "0.2"})
    source = MicFile(path, realtime=False, tail_s=0.2)

    before = set(threading.enumerate())

    def file_played() -> bool:
        """The node's sender thread ("mic") has sent the whole file and ended."""
        return not [t for t in threading.enumerate() if t.name == "mic" and t not in before]

    class WaitingNode(RecordingNode):
        """Hands out its events after the first (llm_ready) only once the file was played:
        the real event loop keeps running meanwhile; MockNode would run out of events."""

        handed = 0

        def next(self, timeout=None):
            return self._after_wait(lambda: super(WaitingNode, self).next(timeout))

        def __next__(self):
            return self._after_wait(lambda: super(WaitingNode, self).__next__())

        def _after_wait(self, get):
            if self.handed:
                wait_until(file_played, 10, "the microphone node to send the whole file")
            self.handed += 1
            return get()

    node = WaitingNode([ev("llm_ready", pa.array(["x"])), ev("tick", pa.array([0])), ev("tick", pa.array([0]))])
    mic_node.run(node, s, source)
    chunks = node.of("audio")
    assert sum(len(v) for v, _m in chunks) == 16000 + 3200
    assert all(meta["sample_rate"] == 16000 for _v, meta in chunks)


@pytest.mark.parametrize("bad", [{"LLM_TEMPERATURE": "hot"}, {"SEGMENTS_AHEAD": "0"}])
def test_every_node_refuses_bad_settings(bad, monkeypatch):
    from pipeline.runtime import start

    for k, v in bad.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit):
        start("any")
