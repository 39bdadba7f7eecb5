"""speaker node: TTS audio to the sound card (or SPEAKER_FILE); reports what was played.

`played` events drive the segmenter's backpressure, the llm's history (what the user really
heard) and the per-turn latency line (pipeline/metrics.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import numpy as np

from pipeline import messages as m
from pipeline.audio import resample
from pipeline.audio_io import DeviceError, SpeakerFile, SpeakerStream
from pipeline.echo import reference_lead_in_s
from pipeline.metrics import TurnMetrics
from pipeline.playback import PlaybackEvent
from pipeline.runtime import STOP, Outbox, fail, inputs, start
from pipeline.settings import Settings
from pipeline.turns import CommitGate, SeenSegments, TurnGate

NAME = "speaker"
_NOTHING = np.zeros(0, dtype=np.float32)
DELAY_POLL_S = 0.01
_NO_EVENT = PlaybackEvent("", -1, -1, 0.0)
log = logging.getLogger(NAME)


class Reporter:
    """Turns playback events into `played` messages and per-turn metrics."""

    def __init__(self, out: Outbox, metrics: TurnMetrics, counters: Any = None) -> None:
        self.out = out
        self.metrics = metrics
        self.counters = counters or (lambda: {})
        self.turn_times: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def note_audio(self, turn_id: int, meta: dict[str, Any]) -> None:
        with self._lock:
            times = self.turn_times.setdefault(turn_id, {})
            for k, v in m.times(meta).items():
                times.setdefault(k, v)
            self.metrics.record(turn_id).stamp(meta)

    def send(self, event: str, turn_id: int, segment_index: int, t: float, text: str, **extra: Any) -> None:
        with self._lock:
            times = dict(self.turn_times.get(turn_id, {}))
            rec = self.metrics.record(turn_id)
            if event == m.STARTED and segment_index == 0:
                rec.times.setdefault("t_first_played", t)
            if event == m.FINISHED and text:
                rec.answer.append(text)
            if event == m.TURN_END:
                rec.times.setdefault("t_answer_done", t)
            times.update({k: v for k, v in rec.times.items() if k.startswith("t_")})
        meta = {**times, "turn_id": turn_id, "segment_index": segment_index, "event": event,
                "text": text, "t": t, **extra}
        self.out.send(m.SPEAKER_PLAYED, m.int_array(segment_index), meta)
        if event in (m.TURN_END, m.INTERRUPTED) and segment_index >= 0:
            with self._lock:
                self.turn_times.pop(turn_id, None)
            self.metrics.finish(turn_id, interrupted=event == m.INTERRUPTED, **self.counters())

    def forward(self, ev: PlaybackEvent) -> None:
        self.send(ev.kind, ev.turn_id, ev.segment_index, ev.t, ev.text)


def run(node: Any, s: Settings, sink: SpeakerStream | SpeakerFile) -> None:
    out = Outbox(node)
    gate = TurnGate()
    reporter = Reporter(out, TurnMetrics(s.metrics_file), lambda: {
        "speaker_underruns": sink.underruns, "speaker_underflows": sink.underflows})
    events = sink.events

    def pump() -> None:
        while True:
            try:
                # polled so a stall of the device reaches the echo canceller within 10 ms
                ev = events.get(timeout=DELAY_POLL_S)
            except queue.Empty:
                ev = _NO_EVENT
            send_delays(out, sink)
            if ev is None:
                return
            if ev is not _NO_EVENT:
                reporter.forward(ev)

    worker = threading.Thread(target=pump, name="played", daemon=True)
    worker.start()

    def idle() -> bool:
        return not sink.is_playing and events.empty()

    commits = CommitGate()
    seen = SeenSegments()  # after a tts crash the segmenter sends segments again

    def play(turn: int, meta: dict[str, Any], audio: Any) -> None:
        is_end = meta.get("event") == m.END
        rate = int(meta.get("sample_rate", 22050))
        aec = s.aec and isinstance(sink, SpeakerStream) and audio.size > 0
        lead_in = reference_lead_in_s(sink.latency, s.mic_block_ms / 1000.0) if aec else 0.0
        if lead_in > 0 and not sink.is_playing:
            # Starting from silence, the reference would reach the echo canceller only just
            # before the sound does; a short lead-in of silence gives it time to arrive.
            audio = np.concatenate([np.zeros(int(rate * lead_in), dtype=np.float32), audio])
        args = (turn, int(meta.get("segment_index", 0)), audio, rate,
                "" if is_end else str(meta.get("text", "")))
        # a segment comes in chunks (pipeline/tts.py): `started` at its first, `finished` after
        # the one that ends it
        ends = is_end or bool(meta.get("end_of_segment", True))
        try:
            accepted = sink.add(*args, last=is_end, end_of_segment=ends)
        except DeviceError as exc:
            log.error("speaker failed: %s; reopening", exc)
            try:
                sink.reopen()
                # the audio that found the device gone is played now: dropped, it would never
                # be reported `finished` and the segmenter would wait for it forever
                accepted = sink.add(*args, last=is_end, end_of_segment=ends)
                log.info("speaker is back")
            except DeviceError as again:
                log.error("speaker still unavailable: %s", again)
                return
        t_start = reference_start(sink) if aec and accepted else None
        if t_start is not None:
            # the echo canceller in the vad node needs what will play, before it plays
            out.send(m.SPEAKER_REFERENCE, m.audio_array(resample(audio, rate, 16000)),
                     {"turn_id": turn, "sample_rate": 16000, "t_start": t_start, "event": "play"})

    try:
        for input_id, value, meta in inputs(node, primary=frozenset({"audio"}), done=idle):
            if input_id == STOP:
                continue
            turn = m.turn_of(meta)
            if input_id == "transcript":
                if gate.is_stale(turn):
                    continue
                reporter.metrics.transcript(turn, m.text_of(value), meta)
                if meta.get("final", True):
                    for item in commits.commit(turn):
                        play(*item)
            elif input_id == "speech_started":
                if gate.advance(turn):
                    commits.drop_before(turn)
                    if s.barge_in:
                        barge_in(sink, reporter, turn)
            elif input_id == "audio":
                if not gate.accept(turn):
                    continue
                if not seen.first(turn, int(meta.get("segment_index", 0)), str(meta.get("event", "")),
                                  int(meta.get("chunk_index", 0))):
                    log.debug("turn %d: segment %s chunk %s again (resent after a tts crash), dropped",
                              turn, meta.get("segment_index"), meta.get("chunk_index", 0))
                    continue
                reporter.note_audio(turn, meta)
                item = (turn, meta, m.audio_of(value))
                if commits.offer(turn, item):
                    play(*item)
    finally:
        events.put(None)  # type: ignore[arg-type]
        worker.join(2.0)
        sink.close()


def reference_start(sink: SpeakerStream | SpeakerFile) -> float | None:
    """When the audio just added to `sink` starts to be heard (None in file mode: no echo).

    Taken from the playback buffer, which computes it as the audio is queued (see
    :attr:`PlaybackBuffer.scheduled_start`): segments that follow each other then sit on
    the reference timeline exactly where the device plays them. A prediction made before
    queueing (`now + latency` from silence) was ~10-30 ms early, by a random amount per
    segment, and every jump of the echo delay costs AEC3 about a second of re-convergence
    during which the echo gets through (the assistant then interrupted itself ~1 s into
    its answer).
    """
    buf = getattr(sink, "buffer", None)
    if not isinstance(sink, SpeakerStream) or buf is None:
        return None
    return buf.scheduled_start


def barge_in(sink: SpeakerStream | SpeakerFile, reporter: Reporter, turn: int) -> None:
    """The user speaks: silence the assistant now, report what was cut."""
    cut = sink.clear(turn_id_below=turn)
    if isinstance(sink, SpeakerStream):
        # what is already in the device still plays for its latency; the rest is gone
        reporter.out.send(m.SPEAKER_REFERENCE, m.audio_array(_NOTHING),
                          {"turn_id": turn, "t_start": _played_until(sink), "event": "cut"})
    if not cut:
        return
    log.info("barge-in: stopped %d segment(s) of turn %d", len(cut), cut[0].turn_id)
    for seg in cut:
        if seg.started:
            reporter.send(m.INTERRUPTED, seg.turn_id, seg.segment_index, time.time(), seg.text,
                          played_s=round(seg.played_samples / max(1, sink.sample_rate), 3))
    # older turns that were cut before starting still need their turn closed for metrics
    for seg in cut:
        if not seg.started:
            reporter.metrics.finish(seg.turn_id, interrupted=True)


def send_delays(out: Outbox, sink: SpeakerStream | SpeakerFile) -> None:
    """Tell the echo canceller when queued audio plays later than its reference said
    (see :meth:`PlaybackBuffer.drain_delays`): reference from `t_start` on moves `delay_s`."""
    buf = sink.buffer
    if buf is None:
        return
    for t, delay in buf.drain_delays():
        if isinstance(sink, SpeakerStream):
            out.send(m.SPEAKER_REFERENCE, m.audio_array(_NOTHING),
                     {"turn_id": m.NO_TURN, "t_start": t, "delay_s": delay, "event": "delay"})


def _played_until(sink: SpeakerStream) -> float:
    """When what the device already has stops playing (the next block it asks for)."""
    buf = sink.buffer
    return buf.next_time if buf is not None else time.time() + sink.latency


def main() -> None:
    from dora import Node

    s = start(NAME)
    node = Node()  # connected first, so a failure ends the dataflow at once (see microphone)
    try:
        sink = SpeakerFile(s.speaker_file) if s.speaker_file else SpeakerStream(s.speaker_device)
        sink.start()
    except DeviceError as exc:
        fail(NAME, str(exc))
    run(node, s, sink)


if __name__ == "__main__":
    main()
