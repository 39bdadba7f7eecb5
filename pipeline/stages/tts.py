"""The tts node's processor: speakable segments in, their voice out, chunk by chunk.

Chunks are yielded as Piper makes them (see pipeline/tts.py), and :func:`~pipeline.runtime.drive`
sends each one as soon as it is yielded, so the speaker can start on a segment's first
sentence while the rest is still being synthesized.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Protocol

from pipeline import messages as m
from pipeline.runtime import Event, release_memory
from pipeline.tts import SpeechChunk
from pipeline.turns import TurnGate

log = logging.getLogger("tts")

WIRING: dict[str, type[m.Message] | None] = {"segment": m.Segment, "speech_started": m.SpeechStarted}


class Voice(Protocol):
    """What the stage needs of a synthesizer (pipeline.tts.Synthesizer)."""

    sample_rate: int

    def stream(self, text: str, awaited: bool = True) -> Iterator[SpeechChunk]: ...


class TtsStage:
    def __init__(self, voice: Voice, restarted: bool = False) -> None:
        self.voice = voice
        self.restarted = restarted
        self.gate = TurnGate()

    def start(self) -> list[m.TtsReady]:
        """`ready`: segments sent to a restarting node before this point were lost; it tells
        the segmenter that it may send again, and, after a restart, what to send again."""
        if self.restarted:
            log.warning("tts node restarted by dora: asking the segmenter for the unplayed segments")
        return [m.TtsReady(restart=self.restarted)]

    def handle(self, event: Event) -> Iterator[m.TtsAudio]:
        if isinstance(event, m.SpeechStarted):
            self.gate.advance(event.turn_id)
        elif isinstance(event, m.Segment) and self.gate.accept(event.turn_id):
            if event.event == m.END:
                # end of the answer: the speaker needs to know so it can report turn_end
                yield m.TtsAudio(event.turn_id, m.END, event.segment_index, self.voice.sample_rate,
                                 times={**event.times, "t_tts_done": m.now()})
                return
            yield from self.speak(event)
            # glibc keeps per-thread arenas of onnxruntime's threads: without a trim the memory
            # of the longest segment so far stays resident. After the audio was sent, so it
            # delays nothing.
            release_memory()

    def speak(self, seg: m.Segment) -> Iterator[m.TtsAudio]:
        """A segment's audio chunk by chunk as Piper makes it.

        Every chunk carries `chunk_index` and `end_of_segment`; the last one also the
        segment's synthesis time and length (`tts_s`, `tts_audio_s`). A segment Piper makes
        no sound of is still sent (one empty chunk): the speaker reports it played, which
        frees its place in the segmenter's backpressure window.
        """
        rate = self.voice.sample_rate
        first_of_answer = seg.segment_index == 0
        started = time.perf_counter()
        samples = 0
        index = -1
        for index, chunk in enumerate(self.voice.stream(seg.text, awaited=first_of_answer)):
            samples += chunk.audio.size
            times = dict(seg.times)
            if chunk.last:
                times.update(tts_s=round(time.perf_counter() - started, 4),
                             tts_audio_s=round(samples / rate, 4))
            if index == 0 and first_of_answer and chunk.audio.size:
                times["t_first_audio"] = m.now()
            yield m.TtsAudio(seg.turn_id, m.SEGMENT, seg.segment_index, rate, chunk.audio,
                             chunk_index=index, end_of_segment=chunk.last, text=seg.text, times=times)
        if index < 0:
            yield m.TtsAudio(seg.turn_id, m.SEGMENT, seg.segment_index, rate, text=seg.text,
                             times={**seg.times, "tts_s": round(time.perf_counter() - started, 4),
                                    "tts_audio_s": 0.0})

    def idle(self) -> bool:
        return True
