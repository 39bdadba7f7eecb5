"""asr node: utterances in, transcripts out (faster-whisper, loaded and warmed once; and the
sentence-end scorer of tentative transcripts, TURN_TEXT_MODEL)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pipeline.asr import AsrConfig, SpeculativeAsr, Transcriber
from pipeline.runtime import drive, load_model, start
from pipeline.settings import Settings
from pipeline.stages.asr import WIRING, AsrStage

NAME = "asr"
log = logging.getLogger(NAME)


def run(node: Any, s: Settings, transcriber: Transcriber,
        sentence_end: Callable[[str], float] | None = None) -> None:
    stage = AsrStage(SpeculativeAsr(transcriber.transcribe), sentence_end=sentence_end)
    drive(node, stage, WIRING, primary=frozenset({"utterance"}))


def main() -> None:
    from dora import Node

    s = start(NAME)
    transcriber = load_model(NAME, lambda: Transcriber(AsrConfig.from_settings(s)))
    log.info("Whisper %s ready", s.asr_model)
    sentence_end = None
    if s.turn_text_model and s.turn_cues:
        from pipeline.turn import text_end

        sentence_end = load_model(NAME, lambda: text_end.load(s.models_dir))
    run(Node(), s, transcriber, sentence_end)


if __name__ == "__main__":
    main()
