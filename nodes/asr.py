"""asr node: utterances in, transcripts out (faster-whisper, loaded and warmed once)."""

from __future__ import annotations

import logging
import time
from typing import Any

from pipeline import messages as m
from pipeline.asr import AsrConfig, SpeculativeAsr, Transcriber
from pipeline.audio import resample
from pipeline.echo.guard import EchoGuard
from pipeline.models import ModelNotFound
from pipeline.runtime import STOP, Outbox, fail, inputs, start
from pipeline.settings import Settings
from pipeline.turns import TurnGate

NAME = "asr"
log = logging.getLogger(NAME)


def run(node: Any, s: Settings, transcriber: Transcriber) -> None:
    out = Outbox(node)
    gate = TurnGate()
    asr = SpeculativeAsr(transcriber.transcribe)
    echo = EchoGuard()
    for input_id, value, meta in inputs(node, primary=frozenset({"utterance"})):
        if input_id == STOP:
            continue
        turn = m.turn_of(meta)
        if input_id == "speech_started":
            gate.advance(turn)
        elif input_id == "played":
            echo.played(turn, int(meta.get("segment_index", -1)), str(meta.get("event", "")),
                        str(meta.get("text", "")), float(meta.get("t", time.time())))
        elif input_id == "utterance" and gate.accept(turn):
            # No malloc_trim afterwards: it freed ~45 MB (what Whisper's run left resident), but
            # the next transcription then faults those pages in again: 10-13 ms standalone,
            # the asr stage +25-35 ms in `make bench`.
            _utterance(out, asr, echo, turn, value, meta)


def _utterance(out: Outbox, asr: SpeculativeAsr, echo: EchoGuard, turn: int, value: Any,
               meta: dict[str, Any]) -> None:
    final = bool(meta.get("final", True))
    audio = m.audio_of(value)
    rate = int(meta.get("sample_rate", 16000))
    if rate != 16000:
        audio = resample(audio, rate, 16000)
    result = asr.utterance(turn, audio, final, bool(meta.get("same_as_tentative")))
    if result.dropped and final:
        log.info("turn %d: dropped as not speech: %s", turn, list(result.dropped))
    span = (float(meta.get("t_speech_start", 0.0)), float(meta.get("t_speech_end", 0.0)))
    if result.text and echo.is_echo(result.text, *span):
        log.info("turn %d: %r is the assistant's own voice, ignored", turn, result.text)
        return
    if not result.text:
        if final:
            log.info("turn %d: empty transcript, nothing sent to the LLM", turn)
        return
    if final:
        log.info("turn %d: heard %r (%.2f s audio in %.2f s)", turn, result.text,
                 result.audio_s, result.elapsed_s)
    out.send(
        m.ASR_TRANSCRIPT,
        m.text_array(result.text),
        {
            **m.times(meta),
            "turn_id": turn,
            "final": final,
            "t_transcript": time.time(),
            "asr_s": round(result.elapsed_s, 4),
            "asr_audio_s": round(result.audio_s, 4),
        },
    )


def main() -> None:
    from dora import Node

    s = start(NAME)
    try:
        transcriber = Transcriber(AsrConfig.from_settings(s))
    except ModelNotFound as exc:
        fail(NAME, str(exc))
    transcriber.warm_up()
    log.info("Whisper %s ready", s.asr_model)
    run(Node(), s, transcriber)


if __name__ == "__main__":
    main()
