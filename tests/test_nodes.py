"""Each node's event loop driven by dora.testing.MockNode (no daemon), with the real models."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest

from pipeline import messages as m
from pipeline.settings import load
from tests.nodekit import RecordingNode, closed, ev


def test_asr_node_transcribes_and_drops_stale_turns(question_16k):
    from nodes import asr as asr_node
    from pipeline.asr import AsrConfig, Transcriber

    s = load({})
    tr = Transcriber(AsrConfig.from_settings(s))
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


def test_llm_node_streams_and_apologises(tmp_path):
    from nodes import llm as llm_node
    from tests.scripted_server import Script, ScriptedServer

    script = Script(token_delay_s=0.0)
    with ScriptedServer(script) as srv:
        s = load({"OPENAI_BASE_URL": srv.base_url, "LLM_RETRIES": "0",
                  "LLM_HOLD_AFTER_S": "0"})  # its timestamps are not today's
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


def test_llm_server_node_with_an_external_server_says_ready_and_ends_with_the_llm_node():
    from nodes import llm_server as server_node

    s = load({"OPENAI_BASE_URL": "http://example.test/v1"})
    node = RecordingNode([{"type": "INPUT", "id": "tick", "value": pa.array([0]), "metadata": {}},
                          closed("llm"), closed("tick")])
    server_node.run(node, s)
    assert node.messages("ready", m.ServerReady) == [m.ServerReady("http://example.test/v1", embedded=False)]
    assert node.taken[-1] == closed("llm")  # the llm node is gone: nothing will call the server
