"""The asr node's processor: utterances in, transcripts out.

Stale turns are dropped (a :class:`TurnGate`), a final utterance that repeats the tentative
one reuses its transcript (:class:`SpeculativeAsr`), and a transcript made of what the
assistant itself was saying at the time is dropped (:class:`EchoGuard`). With a sentence-end
scorer (pipeline/turn/text_end.py, TURN_TEXT_MODEL) every tentative transcript is followed
by a `text_end`: how likely its sentence is to end there, a cue for the vad's end-of-turn
policy (-1 when the words already say it goes on, "... of": not scored). The transcript is
sent first, so the LLM's speculative request starts while the score is computed.

A `probe` (speech over the answer, pipeline/turn/backchannel.py) is answered on its own
output, `probe_text`, which only the vad reads: it never becomes a transcript of a turn. It
is transcribed as the tentative utterance of the turn it would start, so the final
utterance of that turn, if it is one, reuses the transcript.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from pipeline import messages as m
from pipeline.asr import SpeculativeAsr
from pipeline.audio import resample
from pipeline.echo.guard import EchoGuard
from pipeline.runtime import Event
from pipeline.turn.cues import wants_sentence_end
from pipeline.turns import TurnGate

log = logging.getLogger("asr")

WIRING: dict[str, type[m.Message] | None] = {
    "utterance": m.Utterance,
    "speech_started": m.SpeechStarted,
    "played": m.Played,
    "probe": m.Probe,
}


class AsrStage:
    def __init__(self, asr: SpeculativeAsr, echo: EchoGuard | None = None,
                 sentence_end: Callable[[str], float] | None = None) -> None:
        self.asr = asr
        self.echo = echo or EchoGuard()
        self.gate = TurnGate()
        self.sentence_end = sentence_end

    def handle(self, event: Event) -> list[m.Transcript] | list[m.ProbeText] | Iterator[m.Message]:
        if isinstance(event, m.Probe):
            return [self.probe(event)]
        if isinstance(event, m.SpeechStarted):
            self.gate.advance(event.turn_id)
        elif isinstance(event, m.Played):
            self.echo.played(event.turn_id, event.segment_index, event.event, event.text, event.t)
        elif isinstance(event, m.Utterance) and self.gate.accept(event.turn_id):
            # No malloc_trim afterwards: the next transcription would fault the freed pages
            # in again, which costs more than it saves.
            heard = self.transcribe(event)
            if heard and not event.final and self.sentence_end is not None:
                return self._scored(heard[0])
            return heard
        return []

    def _scored(self, transcript: m.Transcript) -> Iterator[m.Message]:
        """The tentative transcript, then (once it is sent) its sentence-end score."""
        yield transcript
        p, started = -1.0, time.perf_counter()
        if wants_sentence_end(transcript.text):
            assert self.sentence_end is not None
            p = self.sentence_end(transcript.text)
        yield m.TextEnd(transcript.turn_id, transcript.text, round(p, 4),
                        round(time.perf_counter() - started, 4))

    def probe(self, probe: m.Probe) -> m.ProbeText:
        """What a probe said: "" when Whisper heard nothing or the assistant's own voice."""
        t_probe = m.now()
        audio = probe.samples
        if probe.sample_rate != m.ASR_RATE:
            audio = resample(audio, probe.sample_rate, m.ASR_RATE)
        result = (self.asr.peek(audio) if probe.partial else
                  self.asr.utterance(probe.turn_id, audio, final=False, same_as_tentative=False))
        text = result.text
        if text and self.echo.is_echo(text, probe.t_speech_start, probe.t_speech_end):
            log.info("turn %d: probe %r is the assistant's own voice", probe.turn_id, text)
            text = ""
        log.info("turn %d: %sprobe over the answer: %r (%.2f s audio in %.2f s)", probe.turn_id,
                 "partial " if probe.partial else "", text, result.audio_s, result.elapsed_s)
        return m.ProbeText(probe.turn_id, text, t_probe, round(result.elapsed_s, 4), probe.partial)

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
        return [m.Transcript(turn, result.text, final, times, round(result.last_word_p, 4),
                             round(result.end_mark_p, 4))]

    def idle(self) -> bool:
        return True
