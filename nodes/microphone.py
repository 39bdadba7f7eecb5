"""microphone node: the sound card (or MIC_FILE) in 20 ms float32 chunks at 16 kHz."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pipeline import messages as m
from pipeline.audio_io import DeviceError, MicFile, MicStream
from pipeline.runtime import STOP, Outbox, fail, inputs, start
from pipeline.settings import Settings

NAME = "microphone"
log = logging.getLogger(NAME)
RETRY_S = 1.0


def open_source(s: Settings) -> MicStream | MicFile:
    if s.mic_file:
        return MicFile(s.mic_file, block_ms=s.mic_block_ms, realtime=s.mic_file_realtime, tail_s=s.mic_file_tail_s)
    return MicStream(s.mic_device, block_ms=s.mic_block_ms)


def pump(source: MicStream | MicFile, out: Outbox, stop: threading.Event) -> None:
    """Read blocks and send them; on a device failure, retry opening it every second."""
    seq = 0
    meta: dict[str, Any] = {"sample_rate": source.sample_rate, "turn_id": m.NO_TURN}
    while not stop.is_set():
        try:
            block = source.read(timeout=0.25)
        except DeviceError as exc:
            log.error("microphone failed: %s; retrying every %.0f s", exc, RETRY_S)
            while not stop.wait(RETRY_S):
                try:
                    source.reopen()
                    log.info("microphone is back")
                    break
                except DeviceError:
                    continue
            continue
        if block is None:
            if getattr(source, "finished", False):
                log.info("end of MIC_FILE")
                return
            continue
        meta["capture_time"] = block.capture_time
        meta["seq"] = seq
        out.send(m.MIC_AUDIO, m.audio_array(block.samples), meta)
        seq += 1


READY_TIMEOUT_S = 120.0


def run(node: Any, s: Settings, source: MicStream | MicFile) -> None:
    """Send audio from a worker thread; the event loop only watches for STOP.

    A file waits for the llm node's `ready` (models loaded and warmed) before it starts, so
    a demo measures the assistant, not its start-up; a live microphone starts at once.
    """
    out = Outbox(node)
    stop = threading.Event()
    worker = threading.Thread(target=pump, args=(source, out, stop), name="mic", daemon=True)
    waiting = isinstance(source, MicFile)
    started_at = time.monotonic()
    overflows_seen = 0
    if not waiting:
        worker.start()
    try:
        for input_id, _value, _meta in inputs(node):
            if input_id == STOP:
                break
            if waiting and (input_id == "llm_ready" or time.monotonic() - started_at > READY_TIMEOUT_S):
                log.info("assistant ready: playing %s", s.mic_file)
                waiting = False
                source.start()
                worker.start()
            elif not waiting and not worker.is_alive():
                break  # the file has been played
            elif input_id == "tick" and source.overflows > overflows_seen:
                log.warning("microphone overflowed %d time(s) (input lost): the machine is too busy",
                            source.overflows - overflows_seen)
                overflows_seen = source.overflows
    finally:
        stop.set()
        worker.join(2.0)
        source.close()


def main() -> None:
    from dora import Node

    s = start(NAME)
    # Connected before the device or file is opened: if that fails, this node ends as a
    # dora node and the others see its output close and finish, so a bad MIC_FILE or a
    # missing microphone stops the dataflow in ~5 s. Failing before connecting made every
    # other node fail to subscribe and be restarted 5 times first (28 s).
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
