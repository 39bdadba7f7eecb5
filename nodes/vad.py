"""vad node: microphone chunks in; `speech_started` at onset, the utterance at its end."""

from __future__ import annotations

import logging
import time
from typing import Any

from pipeline import messages as m
from pipeline.echo import EchoCanceller
from pipeline.runtime import CLOSED, STOP, Outbox, inputs, start
from pipeline.settings import Settings
from pipeline.vad import EndpointConfig, SpeechDiscarded, SpeechStarted, Utterance, VadPipeline

NAME = "vad"
log = logging.getLogger(NAME)


class PlaybackState:
    """Whether the assistant is talking, from the speaker's `played` events (half duplex)."""

    def __init__(self) -> None:
        self.playing_turn: int | None = None

    def update(self, turn_id: int, event: str) -> None:
        if event == m.STARTED:
            self.playing_turn = turn_id
        elif event in (m.TURN_END, m.INTERRUPTED) and self.playing_turn == turn_id:
            self.playing_turn = None

    @property
    def playing(self) -> bool:
        return self.playing_turn is not None


def send_events(out: Outbox, events: list[Any]) -> None:
    for ev in events:
        if isinstance(ev, SpeechStarted):
            log.info("turn %d: speech started", ev.turn_id)
            out.send(m.VAD_SPEECH_STARTED, m.int_array(ev.turn_id),
                     {"turn_id": ev.turn_id, "t_speech_start": ev.t_speech_start})
        elif isinstance(ev, Utterance):
            if ev.final:
                log.info("turn %d: utterance of %.2f s", ev.turn_id, ev.duration_s)
            out.send(m.VAD_UTTERANCE, m.audio_array(ev.audio), {
                "turn_id": ev.turn_id, "sample_rate": ev.sample_rate,
                "t_speech_start": ev.t_speech_start, "t_speech_end": ev.t_speech_end,
                "cut": ev.cut, "t_utterance": time.time(), "final": ev.final,
                "same_as_tentative": ev.same_as_tentative,
            })
        elif isinstance(ev, SpeechDiscarded):
            log.info("turn %d: too short to be speech, ignored", ev.turn_id)


def run(node: Any, s: Settings, vad: VadPipeline, aec: EchoCanceller | None = None) -> None:
    out = Outbox(node)
    playback = PlaybackState()
    for input_id, value, meta in inputs(node, primary=frozenset({"audio"})):
        if input_id == STOP:
            continue
        if input_id == CLOSED and meta.get("id") == "audio":
            send_events(out, vad.flush())
        elif input_id == "audio":
            rate = int(meta.get("sample_rate", 16000))
            if rate != 16000:
                log.error("microphone audio at %d Hz ignored: the contract says 16000", rate)
                continue
            capture = float(meta.get("capture_time", 0.0))
            chunk = m.audio_of(value)
            if aec is not None:
                vad.set_threshold(aec.vad_threshold(capture, s.vad_threshold, s.vad_threshold_playing))
                vad.endpointer.assistant_audible = aec.playing_at(capture, tail_s=0.3)
                send_events(out, vad.push(aec.process(chunk, capture), capture, keep=chunk))
                if log.isEnabledFor(logging.DEBUG) and int(meta.get("seq", 0)) % 50 == 0:
                    log.debug("aec: capture lag %.3f s, late reference %.2f s, prob %.2f, %.3f ms/frame",
                              time.time() - capture, aec.stats.late_reference_s, vad.last_prob,
                              aec.stats.ms_per_frame)
            else:
                send_events(out, vad.push(chunk, capture))
        elif input_id == "reference" and aec is not None:
            if meta.get("event") == "cut":
                aec.cut_reference(float(meta.get("t_start", 0.0)))
            elif meta.get("event") == "delay":  # the speaker stalled: what was queued is late
                aec.delay_reference(float(meta.get("t_start", 0.0)), float(meta.get("delay_s", 0.0)))
                log.debug("aec: reference delayed by %.3f s", float(meta.get("delay_s", 0.0)))
            else:
                t_start = float(meta.get("t_start", 0.0))
                log.debug("aec: reference of %.2f s starts in %.3f s", len(value) / 16000, t_start - time.time())
                aec.add_reference(m.audio_of(value), t_start)
        elif input_id == "played":
            playback.update(m.turn_of(meta), str(meta.get("event", "")))
            if not s.barge_in:
                send_events(out, vad.set_muted(playback.playing))


def main() -> None:
    from dora import Node

    s = start(NAME)
    vad = VadPipeline(EndpointConfig.from_settings(s))
    aec = EchoCanceller() if s.aec and not s.mic_file else None
    if aec is not None and not aec.available:
        log.warning("echo cancellation unavailable: the assistant may hear itself (see AEC)")
    elif aec is not None:
        vad.endpointer.onset_veto = aec.onset_is_echo
    run(Node(), s, vad, aec)


if __name__ == "__main__":
    main()
