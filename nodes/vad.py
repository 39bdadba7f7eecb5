"""vad node: microphone audio in; `speech_started` at an onset, the utterance at its end.

The logic is :class:`pipeline.stages.vad.VadStage`; this file opens the Silero model and
the echo canceller and drives the stage.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.echo import EchoCanceller
from pipeline.runtime import drive, start
from pipeline.settings import Settings
from pipeline.stages.vad import MICROPHONE, WIRING, Canceller, VadStage, VadStageConfig
from pipeline.turn.policy import TurnModel
from pipeline.vad import FrameModel, SileroVad

NAME = "vad"
log = logging.getLogger(NAME)


def run(node: Any, s: Settings, model: FrameModel, aec: Canceller | None = None,
        turn_model: TurnModel | None = None) -> None:
    if turn_model is None and s.turn_model:
        from pipeline.turn.smart_turn import SmartTurn

        turn_model = SmartTurn().probability  # raises, naming the fix, if pipecat-ai is missing
    stage = VadStage(VadStageConfig.from_settings(s), model, aec, turn_model)
    drive(node, stage, WIRING, primary=frozenset({MICROPHONE}))


def main() -> None:
    from dora import Node

    s = start(NAME)
    model = SileroVad()
    aec = EchoCanceller() if s.aec and not s.mic_file else None
    if aec is not None and not aec.available:
        log.warning("echo cancellation unavailable: the assistant may hear itself (see AEC)")
    run(Node(), s, model, aec)


if __name__ == "__main__":
    main()
