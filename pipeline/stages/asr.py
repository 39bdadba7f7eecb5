"""The asr node's processor: utterances in, transcripts out.

Stale turns are dropped (a :class:`TurnGate`), a final utterance that repeats the tentative
one reuses its transcript (:class:`SpeculativeAsr`), and a transcript made of what the
assistant itself was saying at the time is dropped (:class:`EchoGuard`).
"""

from __future__ import annotations

import logging

from pipeline import messages as m
from pipeline.asr import SpeculativeAsr
from pipeline.audio import resample
from pipeline.echo.guard import EchoGuard
from pipeline.runtime import Event
from pipeline.turns import TurnGate

log = logging.getLogger("asr")

WIRING: dict[str, type[m.Message] | None] = {
    "utterance": m.Utterance,
    "speech_started": m.SpeechStarted,
    "played": m.Played,
}


class AsrStage:
    def __init__(self, asr: SpeculativeAsr, echo: EchoGuard | None = None) -> None:
        self.asr = asr
        self.echo = echo or EchoGuard()
        self.gate = TurnGate()

    def handle(self, event: Event) -> list[m.Transcript]:
        if isinstance(event, m.SpeechStarted):
            self.gate.advance(event.turn_id)
        elif isinstance(event, m.Played):
            self.echo.played(event.turn_id, event.segment_index, event.event, event.text, event.t)
        elif isinstance(event, m.Utterance) and self.gate.accept(event.turn_id):
            # No malloc_trim afterwards: the next transcription would fault the freed pages
            # in again, which costs more than it saves.
            return self.transcribe(event)
        return []

    def transcribe(self, utt: m.Utterance) -> list[m.Transcript]:
        turn, final = utt.turn_id, utt.final
        audio = utt.samples
        if utt.sample_rate != m.ASR_RATE:
            audio = resample(audio, utt.sample_rate, m.ASR_RATE)
        result = self.asr.utterance(turn, audio, final, utt.same_as_tentative)
        if result.dropped and final:
            log.info("turn %d: dropped as not speech: %s", turn, list(result.dropped))
        if result.text and self.echo.is_echo(result.text, utt.t_speech_start, utt.t_speech_end):
            log.info("turn %d: %r is the assistant's own voice, ignored", turn, result.text)
            return []
        if not result.text:
            if final:
                log.info("turn %d: empty transcript, nothing sent to the LLM", turn)
            return []
        if final:
            log.info("turn %d: heard %r (%.2f s audio in %.2f s)", turn, result.text,
                     result.audio_s, result.elapsed_s)
        times = {**utt.times, "t_transcript": m.now(), "asr_s": round(result.elapsed_s, 4),
                 "asr_audio_s": round(result.audio_s, 4)}
        return [m.Transcript(turn, result.text, final, times)]

    def idle(self) -> bool:
        return True
