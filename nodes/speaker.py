"""speaker node: TTS audio to the sound card (or SPEAKER_FILE); reports what was played.

The logic is :class:`pipeline.stages.speaker.SpeakerStage`; this file opens the sink and
wires the stage to dora.
"""

from __future__ import annotations

from typing import Any

from pipeline.audio_io import DeviceError, Sink, SpeakerFile, SpeakerStream
from pipeline.runtime import STOP, Control, Outbox, drive, fail, start
from pipeline.settings import Settings
from pipeline.stages.speaker import WIRING, SpeakerConfig, SpeakerStage

NAME = "speaker"


def run(node: Any, s: Settings, sink: Sink) -> None:
    out = Outbox(node)
    stage = SpeakerStage(sink, SpeakerConfig.from_settings(s), out.emit)
    try:
        # STOP ends it at once: inputs from a server whose daemon died never close (dora 1.1)
        drive(node, stage, WIRING, out=out, primary=frozenset({"audio"}),
              stop_on=lambda e: isinstance(e, Control) and e.kind == STOP)
    finally:
        stage.close()


def open_sink(s: Settings) -> Sink:
    """The WAV file of SPEAKER_FILE, else the device of SPEAKER_DEVICE, started."""
    return SpeakerFile(s.speaker_file).start() if s.speaker_file else SpeakerStream(s.speaker_device).start()


def main() -> None:
    from dora import Node

    s = start(NAME)
    node = Node()  # connected first, so a failure ends the dataflow at once (see microphone)
    try:
        sink = open_sink(s)
    except DeviceError as exc:
        fail(NAME, str(exc))
    run(node, s, sink)


if __name__ == "__main__":
    main()
