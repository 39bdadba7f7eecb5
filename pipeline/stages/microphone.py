"""The microphone node's processor: a worker thread pumps the source's blocks out as
:class:`MicAudio`; the event loop only starts it, watches its health and stops it.

A file (MIC_FILE) waits for the llm node's `ready` (models loaded and warmed) before it
starts, so a demo measures the assistant, not its start-up; a live microphone starts at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from pipeline import messages as m
from pipeline.audio_io import AudioBlock, DeviceError
from pipeline.runtime import STOP, Control, Event, Tick

log = logging.getLogger("microphone")

RETRY_S = 1.0
READY_TIMEOUT_S = 120.0  # a file starts anyway if the assistant never says it is ready

WIRING: dict[str, type[m.Message] | None] = {"tick": None, "llm_ready": m.LlmReady}


class Source(Protocol):
    """What the stage needs of a microphone or a microphone file (pipeline.audio_io)."""

    sample_rate: int

    @property
    def overflows(self) -> int: ...

    def read(self, timeout: float | None = None) -> AudioBlock | None: ...

    def reopen(self) -> object: ...

    def start(self) -> object: ...


class MicrophoneStage:
    def __init__(self, source: Source, emit: Callable[[m.Message], None], wait_for_ready: bool = False,
                 name: str = "") -> None:
        self.source = source
        self.emit = emit
        self.name = name
        self.waiting = wait_for_ready
        self.ended = False  # the node may stop (STOP, or the file has been played)
        self._started_at = time.monotonic()
        self._overflows_seen = 0
        self._stop = threading.Event()
        self.worker = threading.Thread(target=self._pump, name="mic", daemon=True)

    def start(self) -> None:
        if not self.waiting:
            self.worker.start()

    def handle(self, event: Event) -> None:
        if isinstance(event, Control) and event.kind == STOP:
            self.ended = True
        elif self.waiting:
            if isinstance(event, m.LlmReady) or time.monotonic() - self._started_at > READY_TIMEOUT_S:
                log.info("assistant ready: playing %s", self.name)
                self.waiting = False
                self.source.start()
                self.worker.start()
        elif not self.worker.is_alive():
            self.ended = True  # the file has been played
        elif isinstance(event, Tick) and self.source.overflows > self._overflows_seen:
            log.warning("microphone overflowed %d time(s) (input lost): the machine is too busy",
                        self.source.overflows - self._overflows_seen)
            self._overflows_seen = self.source.overflows

    def idle(self) -> bool:
        return True

    def finish(self) -> None:
        self.stop()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the pump (the node closes the source afterwards)."""
        self._stop.set()
        if self.worker.is_alive():
            self.worker.join(timeout)

    def _pump(self) -> None:
        """Read blocks and send them; on a device failure, retry opening it every second."""
        seq = 0
        source = self.source
        while not self._stop.is_set():
            try:
                block = source.read(timeout=0.25)
            except DeviceError as exc:
                log.error("microphone failed: %s; retrying every %.0f s", exc, RETRY_S)
                self._reopen()
                continue
            if block is None:
                if getattr(source, "finished", False):
                    log.info("end of MIC_FILE")
                    return
                continue
            self.emit(m.MicAudio(block.samples, block.capture_time, seq, source.sample_rate))
            seq += 1

    def _reopen(self) -> None:
        while not self._stop.wait(RETRY_S):
            try:
                self.source.reopen()
                log.info("microphone is back")
                return
            except DeviceError:
                continue
