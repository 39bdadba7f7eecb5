"""tts node: speakable segments in, audio out (Piper, loaded and warmed once).

Its `ready` output (sent once the voice is loaded, `restart` = this process was restarted by
dora after a crash) goes to the segmenter, which then sends again what the crash lost.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.runtime import drive, is_restart, load_model, release_memory, start
from pipeline.settings import Settings
from pipeline.stages.tts import WIRING, TtsStage, Voice
from pipeline.tts import Synthesizer, TtsConfig

NAME = "tts"
log = logging.getLogger(NAME)


def run(node: Any, s: Settings, synth: Voice) -> None:
    drive(node, TtsStage(synth, is_restart(node)), WIRING, primary=frozenset({"segment"}))


def main() -> None:
    from dora import Node

    s = start(NAME)
    synth = load_model(NAME, lambda: Synthesizer(TtsConfig.from_settings(s)))
    release_memory()
    log.info("Piper voice ready (%d Hz)", synth.sample_rate)
    run(Node(), s, synth)


if __name__ == "__main__":
    main()
