"""view node: the live view in the browser (pipeline/view/), fed by listening to the dataflow.

It only listens: it has no outputs, its inputs are small drop-oldest queues (a slow view
loses messages, never delays a sender), and nothing downstream depends on it, so a crash of
it never touches a turn. Everything that goes wrong in here is logged and skipped.

All decoding of dora messages into the view's events is in :func:`decode`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from pipeline import messages as m
from pipeline.runtime import CLOSED, FAILED, RESTARTED, STOP, inputs, start
from pipeline.settings import SPECS, Settings
from pipeline.view import export
from pipeline.view.server import Hub, Redactor, ServerConfig, ViewConfigError, ViewServer
from pipeline.view.state import (
    Endpointed,
    Event,
    Fault,
    LlmDelta,
    LlmEnd,
    MicLevel,
    Played,
    SegmentSent,
    SpeechStarted,
    Transcript,
    ViewState,
)

NAME = "view"
log = logging.getLogger(NAME)
DATA_INPUTS = frozenset({"mic", "speech_started", "utterance", "transcript", "text", "segment",
                         "played"})
LEVEL_EVERY_S = 0.1  # mic level updates per second: 10 are plenty for a meter
MIC_SILENT_S = 3.0  # no microphone audio for this long: the device is probably gone


def decode(input_id: str, value: Any, meta: dict[str, Any]) -> Event | None:
    """One dora message as a view event (None: not one the view shows)."""
    turn = m.turn_of(meta)
    times = m.times(meta)
    event = str(meta.get("event", ""))
    if input_id == "speech_started":
        return SpeechStarted(turn, float(meta.get("t_speech_start", time.time())))
    if input_id == "utterance":
        return Endpointed(turn, bool(meta.get("final", True)), times)
    if input_id == "transcript":
        return Transcript(turn, m.text_of(value), bool(meta.get("final", True)), times)
    if input_id == "text" and event == m.END:
        return LlmEnd(turn, str(meta.get("reason", "stop")), str(meta.get("error", "")), times)
    if input_id == "text":
        return LlmDelta(turn, m.text_of(value), int(meta.get("index", 0)), times)
    if input_id == "segment" and event == m.SEGMENT:
        return SegmentSent(turn, int(meta.get("segment_index", -1)), m.text_of(value), times)
    if input_id == "played":
        return Played(turn, event, int(meta.get("segment_index", -1)), str(meta.get("text", "")),
                      float(meta.get("t", time.time())), times)
    return None


class MicMeter:
    """Microphone level for the meter: the loudest chunk RMS of each LEVEL_EVERY_S window,
    and a fault when the audio stops (a lost device sends nothing)."""

    def __init__(self) -> None:
        self.peak = 0.0
        self.next_at = 0.0
        self.last_audio: float | None = None
        self.silent = False
        self.closed = False

    def feed(self, samples: np.ndarray, now: float) -> list[Event]:
        out: list[Event] = []
        if self.silent:
            self.silent = False
            out.append(Fault("microphone", "audio is back", now, active=False))
        self.last_audio = now
        if samples.size:
            self.peak = max(self.peak, float(np.sqrt(np.dot(samples, samples) / samples.size)))
        if now >= self.next_at:
            out.append(MicLevel(self.peak, now))
            self.peak = 0.0
            self.next_at = now + LEVEL_EVERY_S
        return out

    def check(self, now: float) -> list[Event]:
        if self.closed or self.silent or self.last_audio is None:
            return []
        if now - self.last_audio < MIC_SILENT_S:
            return []
        self.silent = True
        return [Fault("microphone", f"no audio for {MIC_SILENT_S:g} s (device lost?)", now),
                MicLevel(0.0, now)]


def open_server(s: Settings, hub: Hub) -> ViewServer | None:
    try:
        server = ViewServer(hub, ServerConfig(s.view_host, s.view_port, s.view_token)).start()
    except ViewConfigError as exc:
        log.error("live view not started: %s", exc)
        return None
    except OSError as exc:  # port taken (another assistant, a second test run)
        log.warning("live view not started: cannot listen on %s:%d (%s)", s.view_host, s.view_port, exc)
        return None
    log.info("live view at %s", server.url())
    return server


class ViewNode:
    """Feeds one hub from dora events; never raises out of :meth:`handle`."""

    def __init__(self, hub: Hub, export_path: str = "") -> None:
        self.hub = hub
        self.export_path = export_path
        self.mic = MicMeter()

    def handle(self, input_id: str, value: Any, meta: dict[str, Any]) -> None:
        try:
            for event in self._events(input_id, value, meta):
                self.hub.apply(event)
            if input_id == "played" and meta.get("event") in (m.TURN_END, m.INTERRUPTED):
                self.save()
        except Exception:  # noqa: BLE001 - the view must never stop on a bad message
            log.exception("view: could not show %s", input_id)

    def _events(self, input_id: str, value: Any, meta: dict[str, Any]) -> list[Event]:
        now = time.time()
        if input_id == "mic":
            return self.mic.feed(m.audio_of(value), now)
        if input_id == "tick":
            self.hub.tick(now)
            return self.mic.check(now)
        if input_id == CLOSED and meta.get("id") == "mic":
            self.mic.closed = True
        if input_id == RESTARTED:
            return [Fault(str(meta.get("id")), "crashed; dora restarted it", now, active=False)]
        if input_id == FAILED:
            return [Fault(str(meta.get("id")), "crashed and will not be restarted", now)]
        event = decode(input_id, value, meta)
        return [] if event is None else [event]

    def save(self) -> None:
        if self.export_path:
            export.write(self.hub.snapshot(), self.export_path)


def run(node: Any, s: Settings) -> None:
    secrets = [getattr(s, spec.name.lower()) for spec in SPECS if spec.secret]
    hub = Hub(ViewState(), Redactor(str(v) for v in secrets))
    server = open_server(s, hub) if s.view else None
    view = ViewNode(hub, s.view_export)
    try:
        for input_id, value, meta in inputs(node, primary=DATA_INPUTS):
            if input_id == STOP:
                break  # only a view: nothing of a turn is lost by stopping now
            if s.view:
                view.handle(input_id, value, meta)
    finally:
        if s.view:
            view.save()
        if server is not None:
            server.stop()


def main() -> None:
    from dora import Node

    s = start(NAME)
    run(Node(), s)


if __name__ == "__main__":
    main()
