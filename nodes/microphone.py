"""microphone node: the sound card (or MIC_FILE) in 20 ms float32 chunks at 16 kHz."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.audio_io import DeviceError, MicFile, MicStream
from pipeline.runtime import Outbox, drive, fail, start
from pipeline.settings import Settings
from pipeline.stages.microphone import WIRING, MicrophoneStage

NAME = "microphone"
log = logging.getLogger(NAME)


def open_source(s: Settings) -> MicStream | MicFile:
    if s.mic_file:
        return MicFile(s.mic_file, block_ms=s.mic_block_ms, realtime=s.mic_file_realtime, tail_s=s.mic_file_tail_s)
    return MicStream(s.mic_device, block_ms=s.mic_block_ms)


def run(node: Any, s: Settings, source: MicStream | MicFile) -> None:
    """Send audio from the stage's worker thread; a file waits for the llm's `ready`."""
    out = Outbox(node)
    stage = MicrophoneStage(source, out.emit, wait_for_ready=bool(s.mic_file), name=s.mic_file)
    try:
        drive(node, stage, WIRING, out=out, stop_on=lambda _event: stage.ended)
    finally:
        stage.stop()
        source.close()


def main() -> None:
    from dora import Node

    s = start(NAME)
    # Connected before the device or file is opened: if that fails, this node ends as a
    # dora node and the others see its output close and finish, so a bad MIC_FILE or a
    # missing microphone stops the dataflow in seconds. Failing before connecting made
    # every other node fail to subscribe and be restarted 5 times first.
    node = Node()
    try:
        source = open_source(s)
        if isinstance(source, MicStream):
            source.start()
    except DeviceError as exc:
        fail(NAME, str(exc))
    log.info("microphone: %s", s.mic_file or getattr(source, "device_name", "") or "default device")
    run(node, s, source)


if __name__ == "__main__":
    main()
