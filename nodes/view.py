"""view node: the live view in the browser (pipeline/view/), fed by listening to the dataflow.

It only listens: it has no outputs, its inputs are small drop-oldest queues (a slow view
loses messages, never delays a sender), and nothing downstream depends on it, so a crash of
it never touches a turn. Everything that goes wrong in here is logged and skipped.

All decoding of dora messages (the classes of pipeline/messages.py) into the view's own
events is in :func:`to_view`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from pipeline import messages as m
from pipeline.runtime import CLOSED, FAILED, RESTARTED, STOP, Control, Tick, drive, start
from pipeline.runtime import Event as NodeEvent
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
WIRING: dict[str, type[m.Message] | None] = {
    "tick": None,
    "mic": m.MicAudio,
    "speech_started": m.SpeechStarted,
    "utterance": m.Utterance,
    "transcript": m.Transcript,
    "text": m.LlmText,
    "segment": m.Segment,
    "played": m.Played,
    "speaker_fault": m.DeviceFault,
}
DATA_INPUTS = frozenset(k for k, v in WIRING.items() if v is not None)
LEVEL_EVERY_S = 0.1  # mic level updates per second: 10 are plenty for a meter
NICE = 10  # CPU priority below the answer path's nodes (they run at 0)
MIC_SILENT_S = 3.0  # no microphone audio for this long: the device is probably gone


def to_view(msg: m.Message) -> Event | None:
    """One message of the dataflow as a view event (None: not one the view shows)."""
    if isinstance(msg, m.SpeechStarted):
        return SpeechStarted(msg.turn_id, msg.t_speech_start)
    if isinstance(msg, m.Utterance):
        return Endpointed(msg.turn_id, msg.final, msg.times)
    if isinstance(msg, m.Transcript):
        return Transcript(msg.turn_id, msg.text, msg.final, msg.times)
    if isinstance(msg, m.LlmText) and msg.event == m.END:
        return LlmEnd(msg.turn_id, msg.reason or m.REASON_STOP, msg.error, msg.times)
    if isinstance(msg, m.LlmText):
        return LlmDelta(msg.turn_id, msg.text, msg.index, msg.times)
    if isinstance(msg, m.Segment) and msg.event == m.SEGMENT:
        return SegmentSent(msg.turn_id, msg.segment_index, msg.text, msg.times)
    if isinstance(msg, m.Played):
        return Played(msg.turn_id, msg.event, msg.segment_index, msg.text, msg.t, msg.times)
    if isinstance(msg, m.DeviceFault):
        return Fault(msg.device, msg.message, msg.t, active=msg.active)
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
    """The node's processor: feeds one hub; never raises, never sends anything."""

    def __init__(self, hub: Hub, export_path: str = "") -> None:
        self.hub = hub
        self.export_path = export_path
        self.mic = MicMeter()

    def handle(self, event: NodeEvent) -> None:
        try:
            for item in self._events(event):
                self.hub.apply(item)
            if isinstance(event, m.Played) and event.event in (m.TURN_END, m.INTERRUPTED):
                self.save()
        except Exception:  # noqa: BLE001 - the view must never stop on a bad message
            log.exception("view: could not show %s", type(event).__name__)

    def idle(self) -> bool:
        return True

    def _events(self, event: NodeEvent) -> list[Event]:
        now = time.time()
        if isinstance(event, m.MicAudio):
            return self.mic.feed(event.samples, now)
        if isinstance(event, Tick):
            self.hub.tick(now)
            return self.mic.check(now)
        if isinstance(event, Control):
            if event.kind == CLOSED and event.input_id == "mic":
                self.mic.closed = True
            elif event.kind == RESTARTED:
                return [Fault(event.input_id, "crashed; dora restarted it", now, active=False)]
            elif event.kind == FAILED:
                return [Fault(event.input_id, "crashed and will not be restarted", now)]
            return []
        item = to_view(event)
        return [] if item is None else [item]

    def save(self) -> None:
        if self.export_path:
            export.write(self.hub.snapshot(), self.export_path)


def run(node: Any, s: Settings) -> ViewNode:
    secrets = [getattr(s, spec.name.lower()) for spec in SPECS if spec.secret]
    hub = Hub(ViewState(), Redactor(str(v) for v in secrets))
    server = open_server(s, hub) if s.view else None
    view = ViewNode(hub, s.view_export if s.view else "")
    wiring = WIRING if s.view else {}  # off: every input is read and dropped
    try:
        # STOP ends it at once: it is only a view, nothing of a turn is lost
        drive(node, view, wiring, primary=DATA_INPUTS,
              stop_on=lambda e: isinstance(e, Control) and e.kind == STOP)
    finally:
        view.save()
        if server is not None:
            server.stop()
    return view


def main() -> None:
    from dora import Node

    # First, so that every thread started after (dora's, the HTTP server's) inherits it:
    # on Linux a thread's nice value is its own. The answer's stages always win the CPU.
    os.nice(NICE)
    s = start(NAME)
    run(Node(), s)


if __name__ == "__main__":
    main()
