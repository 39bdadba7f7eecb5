"""asr node: utterances in, transcripts out (faster-whisper, loaded and warmed once)."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.asr import AsrConfig, SpeculativeAsr, Transcriber
from pipeline.runtime import drive, load_model, start
from pipeline.settings import Settings
from pipeline.stages.asr import WIRING, AsrStage

NAME = "asr"
log = logging.getLogger(NAME)


def run(node: Any, s: Settings, transcriber: Transcriber) -> None:
    stage = AsrStage(SpeculativeAsr(transcriber.transcribe))
    drive(node, stage, WIRING, primary=frozenset({"utterance"}))


def main() -> None:
    from dora import Node

    s = start(NAME)
    transcriber = load_model(NAME, lambda: Transcriber(AsrConfig.from_settings(s)))
    log.info("Whisper %s ready", s.asr_model)
    run(Node(), s, transcriber)


if __name__ == "__main__":
    main()
