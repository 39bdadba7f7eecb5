"""The nodes' processors (pipeline/stages/) driven directly: messages in, messages out."""

from __future__ import annotations

import numpy as np

from pipeline import messages as m
from pipeline.tts import SpeechChunk

ONE, TWO = m.user_turn(1), m.user_turn(2)


class ScriptedVoice:
    """A synthesizer that says each word as one chunk of 100 samples (none for "...")."""

    sample_rate = 16000

    def __init__(self) -> None:
        self.awaited: list[bool] = []

    def stream(self, text, awaited=True):
        self.awaited.append(awaited)
        words = [w for w in text.split() if w.strip(".")]
        for i, _w in enumerate(words):
            yield SpeechChunk(np.full(100, 0.1, np.float32), i == len(words) - 1)


def test_tts_stage_streams_chunks_drops_stale_turns_and_ends_the_answer():
    from pipeline.stages.tts import TtsStage

    voice = ScriptedVoice()
    stage = TtsStage(voice)
    assert stage.start() == [m.TtsReady(restart=False)]
    hello = list(stage.handle(m.Segment(ONE, m.SEGMENT, 0, "Hello there", times={"t_llm_done": 3.0})))
    assert [(a.chunk_index, a.end_of_segment, a.samples.size) for a in hello] == [(0, False, 100), (1, True, 100)]
    assert hello[1].times["tts_audio_s"] == 200 / 16000 and "tts_s" not in hello[0].times
    assert "t_first_audio" in hello[0].times and all(a.times["t_llm_done"] == 3.0 for a in hello)
    silent = list(stage.handle(m.Segment(ONE, m.SEGMENT, 1, "...")))
    assert [(a.segment_index, a.samples.size, a.end_of_segment) for a in silent] == [(1, 0, True)]
    assert voice.awaited == [True, False]  # only an answer's first segment is awaited
    assert list(stage.handle(m.SpeechStarted(TWO, t_speech_start=5.0))) == []
    assert list(stage.handle(m.Segment(ONE, m.SEGMENT, 2, "Stale words"))) == []
    end = list(stage.handle(m.Segment(TWO, m.END, 0)))
    assert [(a.turn_id, a.event, a.samples.size) for a in end] == [(TWO, m.END, 0)]
    assert "t_tts_done" in end[0].times


def test_a_restarted_tts_stage_says_so_when_ready():
    from pipeline.stages.tts import TtsStage

    assert TtsStage(ScriptedVoice(), restarted=True).start() == [m.TtsReady(restart=True)]
