"""The speaker node's processor: TTS audio to a sink, and what the user heard back out.

Its `played` messages drive the segmenter's backpressure, the llm's history (what the user
really heard), the vad's half duplex and echo guard, and the per-turn latency line
(pipeline/metrics.py); its `reference` messages tell the echo canceller what will be heard.

Two threads, one order. The event loop (:meth:`SpeakerStage.handle`) queues audio and cuts
it on barge-in; everything that is *reported* comes out of the sink's one event queue
(:attr:`Sink.events`: started, finished, turn_end, the device's stalls, the cuts), read in
order by one report thread that wakes when an event arrives. A barge-in is recorded in that
queue by the playback buffer itself, behind every event of the segments it cuts, so an
`interrupted` can never be sent before its segment's `started` (an echo guard that saw them
the other way round kept the segment "playing" for good and took later questions made of
its words for echo).

Speech over the answer first *holds* it (`duck` from the vad): by default it pauses (fades to
silence within 20 ms, keeps its place; BACKCHANNEL_HOLD=pause), or it plays on `duck_db`
lower (BACKCHANNEL_HOLD=duck). A backchannel resumes it where it stopped (or restores the
volume); an interruption comes as `speech_started` and cuts it as ever. While paused the
echo canceller's reference is cut at the silence, and everything still queued is sent again
from where the sound resumes: it must say what is really heard.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import messages as m
from pipeline.audio import resample
from pipeline.audio_io import DeviceError, Sink
from pipeline.echo import reference_lead_in_s
from pipeline.metrics import TurnMetrics
from pipeline.playback import HOLD, RESUME, PlaybackEvent
from pipeline.runtime import Event, Tick
from pipeline.settings import DEFAULTS, Settings
from pipeline.stages.server_watch import EARCON_SEGMENT, Alarm, Notice, ServerWatch, earcon
from pipeline.turns import CommitGate, SeenSegments, TurnGate

log = logging.getLogger("speaker")

WIRING: dict[str, type[m.Message] | None] = {
    "audio": m.TtsAudio,
    "speech_started": m.SpeechStarted,
    "duck": m.Duck,  # the user may be talking over the answer
    "transcript": m.Transcript,
    "utterance": m.Utterance,  # a final one: an answer is due (the server watch)
    "alive": m.ServerAlive,  # the server side's beat
    "tick": None,  # the server watch looks at the time
}

_STOP = PlaybackEvent("stop", m.NO_TURN, -1, 0.0)  # ends the report thread


@dataclass(frozen=True)
class SpeakerConfig:
    aec: bool = True  # send the echo canceller its reference (when the sink echoes)
    barge_in: bool = True  # the user's speech cuts the answer
    mic_block_s: float = 0.02  # the microphone's block (the reference must arrive before it)
    metrics_file: str = ""  # METRICS_FILE: one JSON line per turn
    server_reply_timeout_s: float = 20.0  # SERVER_REPLY_TIMEOUT_S (pipeline/stages/server_watch.py)
    hold: str = DEFAULTS.backchannel_hold  # BACKCHANNEL_HOLD: "pause" or "duck"
    duck_db: float = DEFAULTS.duck_db  # DUCK_DB: the answer's volume while the user may talk over it
    # a pause the vad never ends (its `duck` off was lost) ends by itself after this long:
    # longer than the backchannel gate can hold a turn (its probe times out after 3 s)
    max_hold_s: float = 6.0

    @classmethod
    def from_settings(cls, s: Settings) -> SpeakerConfig:
        return cls(aec=s.aec, barge_in=s.barge_in, mic_block_s=s.mic_block_ms / 1000.0,
                   metrics_file=s.metrics_file, server_reply_timeout_s=s.server_reply_timeout_s,
                   hold=s.backchannel_hold, duck_db=s.duck_db)


class Reporter:
    """Turns playback events into `played` messages, and keeps each turn's metrics.

    A turn's timestamps come with its audio and transcript (event loop); its played events
    come from the report thread; one lock guards both. A turn's record ends with its
    `turn_end` or `interrupted`, or when it is cut or dropped unheard, so none stays behind.
    """

    def __init__(self, metrics: TurnMetrics, counters: Callable[[], dict[str, Any]]) -> None:
        self.metrics = metrics
        self.counters = counters
        self.turn_times: dict[int, m.Times] = {}
        self._lock = threading.Lock()

    def note_audio(self, turn_id: int, times: m.Times) -> None:
        with self._lock:
            kept = self.turn_times.setdefault(turn_id, {})
            for k, v in times.items():
                kept.setdefault(k, v)
            self.metrics.record(turn_id).stamp(times)

    def note_transcript(self, turn_id: int, text: str, times: m.Times) -> None:
        with self._lock:
            self.metrics.transcript(turn_id, text, times)

    def played(self, event: str, turn_id: int, segment_index: int, t: float, text: str,
               played_s: float = 0.0) -> m.Played:
        """The `played` message of one event, with every timestamp of its turn so far."""
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
            if event in (m.TURN_END, m.INTERRUPTED) and segment_index >= 0:
                self.turn_times.pop(turn_id, None)
                self.metrics.finish(turn_id, interrupted=event == m.INTERRUPTED,
                                    **self.counters())
        return m.Played(turn_id=turn_id, event=event, segment_index=segment_index, t=t,
                        text=text, played_s=played_s, times=times)

    def forget_unconfirmed(self, turn_id: int, confirmed: Callable[[int], bool]) -> None:
        """Forget turns older than `turn_id` that were never `confirmed`: speculative
        answers dropped before their endpoint (the user went on talking) are never heard."""
        with self._lock:
            for t in [t for t in {*self.turn_times, *self.metrics.turns}
                      if t < turn_id and not confirmed(t)]:
                self.turn_times.pop(t, None)
                self.metrics.drop(t)

    def end_before(self, turn_id: int) -> None:
        """A barge-in cut every turn older than `turn_id`: those not yet logged (cut before
        a sound of them was heard) are logged as interrupted."""
        with self._lock:
            for t in sorted(t for t in {*self.turn_times, *self.metrics.turns} if t < turn_id):
                self.turn_times.pop(t, None)
                self.metrics.finish(t, interrupted=True)


class SpeakerStage:
    """TTS audio in, played to `sink`; `played` and `reference` messages out.

    Build it with the node's thread-safe `emit` (the report thread sends through it), call
    :meth:`start`, feed it with :meth:`handle`, and :meth:`close` it at the end.
    """

    def __init__(self, sink: Sink, config: SpeakerConfig, emit: Callable[[m.Message], None],
                 metrics: TurnMetrics | None = None, watch: ServerWatch | None = None) -> None:
        self.sink = sink
        self.watch = watch or ServerWatch(config.server_reply_timeout_s)
        self.config = config
        self._emit = emit
        self.reporter = Reporter(metrics or TurnMetrics(config.metrics_file), lambda: {
            "speaker_underruns": sink.underruns, "speaker_underflows": sink.underflows})
        self.gate = TurnGate()
        self.commits = CommitGate()
        self.seen = SeenSegments()  # after a tts crash the segmenter sends segments again
        self._faults: list[m.Message] = []  # device faults for the live view, sent with the next output
        self._held_at: float | None = None  # when the answer was paused (time.monotonic)
        self._thread = threading.Thread(target=self._report_loop, name="played", daemon=True)

    def start(self) -> None:
        """Start reporting what the sink plays (drive calls it before the first event)."""
        if not self._thread.is_alive():
            self._thread.start()

    # ------------------------------------------------------------------ event loop

    def handle(self, event: Event) -> list[m.Message]:
        if isinstance(event, m.TtsAudio):
            self._news(self.watch.answered(event.turn_id))
            out = self._audio(event)
            if self._faults:
                out, self._faults = self._faults + out, []
            return out
        if isinstance(event, m.Transcript):
            self._news(self.watch.heard())
            return self._transcript(event)
        if isinstance(event, m.SpeechStarted):
            self.watch.talking(event.turn_id)
            self._speech_started(event.turn_id)
        elif isinstance(event, m.Duck):
            self._hold(event.on, event.echo)
        elif isinstance(event, m.Utterance) and event.final:
            self.watch.asked(event.turn_id)
        elif isinstance(event, m.ServerAlive):
            self._news(self.watch.heard())
        elif isinstance(event, Tick):
            self._check_hold()
            return self._check_server()
        return []

    def idle(self) -> bool:
        """Nothing is playing and every event was taken by the report thread."""
        return not self.sink.is_playing and self.sink.events.empty()

    def close(self, timeout_s: float = 2.0) -> None:
        """Report what is left, then close the sink."""
        if self._thread.is_alive():
            self.sink.events.put(_STOP)
            self._thread.join(timeout_s)
        self.sink.close()

    # ------------------------------------------------------------------ speech over the answer

    def _hold(self, on: bool, echo: bool = True) -> None:
        """The user may be talking over the answer (`on`): pause it (or duck it); off: it was
        a backchannel, the answer goes on from where it stopped (after the echo reference's
        lead-in, unless the vad found that no `echo` reaches the microphone)."""
        if self.config.hold == "duck":
            self.sink.duck(on, self.config.duck_db)
            return
        aec = self.config.aec and self.sink.echoes and echo
        lead_in = reference_lead_in_s(self.sink.latency, self.config.mic_block_s) if aec else 0.0
        if self.sink.hold(on, lead_in):
            log.info("answer %s", "paused: the user may be interrupting" if on else "resumed")
        self._held_at = time.monotonic() if on else None

    def _check_hold(self) -> None:
        """A pause nobody ended (the vad's `duck` off was lost) must not silence the
        assistant for good."""
        held_at = self._held_at
        if held_at is not None and time.monotonic() - held_at > self.config.max_hold_s:
            log.warning("answer paused for %.0f s without a verdict on the speech over it: "
                        "resumed", self.config.max_hold_s)
            self._hold(False)

    # ------------------------------------------------------------------ the server watch

    def _news(self, notice: Notice | None) -> None:
        if notice is Notice.BACK:
            log.warning("the server answers again")
        elif notice is Notice.UP:
            log.info("the server is up")

    def _check_server(self) -> list[m.Message]:
        found = self.watch.check(self.sink.is_playing)
        if found is Notice.AWAITED:
            log.warning("waiting for the server side: nothing from it yet (still loading its "
                        "models, or, split over two machines, is the server daemon running?)")
            return []
        if not isinstance(found, Alarm):
            return []
        if found.new_outage:
            log.error("no answer from the server for %.0f s: is the server daemon running?",
                      found.silent_s)
        return self._play_earcon(found.turn_id)

    def _play_earcon(self, turn_id: int) -> list[m.Message]:
        """The earcon through the sink, under the unanswered turn (its events are not
        reported as `played`: nobody upstream should take a tone for an answer)."""
        rate = self.sink.output_rate
        tone = earcon(rate)
        aec = self.config.aec and self.sink.echoes and not self.sink.held
        try:
            accepted = self.sink.add(turn_id, EARCON_SEGMENT, tone, rate, last=True)
        except DeviceError as exc:
            log.error("cannot play the no-answer tone: %s", exc)
            return []
        if not (aec and accepted):
            return []
        return [m.Reference(event=m.PLAY, t_start=self.sink.reference_start(),
                            samples=resample(tone, rate, m.ASR_RATE), turn_id=turn_id)]

    def _transcript(self, msg: m.Transcript) -> list[m.Message]:
        if self.gate.is_stale(msg.turn_id):
            return []
        self.reporter.note_transcript(msg.turn_id, msg.text, msg.times)
        if not msg.final:
            return []
        out: list[m.Message] = []
        for held in self.commits.commit(msg.turn_id):
            out += self._play(held)
        return out

    def _speech_started(self, turn_id: int) -> None:
        if not self.gate.advance(turn_id):
            return
        self.commits.drop_before(turn_id)
        self.reporter.forget_unconfirmed(turn_id, self.commits.is_committed)
        if self.config.barge_in:
            # the buffer records a `cut` event: the report thread reports it, in order
            self.sink.clear(turn_id_below=turn_id)
            # a paused or ducked answer was cut: the next one plays, at full volume
            self.sink.duck(False)
            self.sink.hold(False)
            self._held_at = None

    def _audio(self, msg: m.TtsAudio) -> list[m.Message]:
        turn = msg.turn_id
        if m.is_user_turn(turn) and turn > self.gate.current and (self.sink.is_playing
                                                                   or self.sink.held):
            # its `speech_started` is late (inputs are not ordered): make its barge-in now,
            # or the older answer, paused or not, would play on before this one
            self._speech_started(turn)
        if not self.gate.accept(turn):
            return []
        if not self.seen.first(turn, msg.segment_index, msg.event, msg.chunk_index):
            log.debug("turn %d: segment %d chunk %d again (resent after a tts crash), dropped",
                      turn, msg.segment_index, msg.chunk_index)
            return []
        self.reporter.note_audio(turn, msg.times)
        return self._play(msg) if self.commits.offer(turn, msg) else []

    def _play(self, msg: m.TtsAudio) -> list[m.Message]:
        is_end = msg.event == m.END
        audio, rate = msg.samples, msg.sample_rate
        # paused, what is queued is sent to the canceller when (and where) it resumes
        aec = self.config.aec and self.sink.echoes and audio.size > 0 and not self.sink.held
        lead_in = reference_lead_in_s(self.sink.latency, self.config.mic_block_s) if aec else 0.0
        if lead_in > 0 and not self.sink.is_playing:
            # Starting from silence, the reference would reach the echo canceller only just
            # before the sound does; a short lead-in of silence gives it time to arrive.
            audio = np.concatenate([np.zeros(int(rate * lead_in), dtype=np.float32), audio])
        # a segment comes in chunks (pipeline/tts.py): `started` at its first, `finished`
        # after the one that ends it
        ends = is_end or msg.end_of_segment
        args = (msg.turn_id, msg.segment_index, audio, rate, "" if is_end else msg.text)
        try:
            accepted = self._add(args, is_end, ends)
        except DeviceError as again:
            log.error("speaker still unavailable: %s; segment %d of turn %d is lost",
                      again, msg.segment_index, msg.turn_id)
            if ends:
                self._lost(msg.turn_id, msg.segment_index, is_end)
            return []
        if not (aec and accepted):
            return []
        # the echo canceller in the vad node needs what will play, before it plays
        return [m.Reference(event=m.PLAY, t_start=self.sink.reference_start(),
                            samples=resample(audio, rate, m.ASR_RATE), turn_id=msg.turn_id)]

    def _add(self, args: tuple[int, int, np.ndarray, int, str], last: bool, ends: bool) -> bool:
        """Queue audio; a device that died is reopened once and gets the audio all the
        same (dropped, it would never be reported `finished`). Both are told to the live
        view (:class:`messages.DeviceFault`)."""
        try:
            return self.sink.add(*args, last=last, end_of_segment=ends)
        except DeviceError as exc:
            log.error("speaker failed: %s; reopening", exc)
            self._faults.append(m.DeviceFault(f"failed: {exc}", t=time.time()))
        self.sink.reopen()
        accepted = self.sink.add(*args, last=last, end_of_segment=ends)
        log.info("speaker is back")
        self._faults.append(m.DeviceFault("is back", active=False, t=time.time()))
        return accepted

    def _lost(self, turn_id: int, segment_index: int, is_end: bool) -> None:
        """Audio the device could not take: reported finished (with no text: nobody heard
        it), and the answer ended if it was its end, or the segmenter would wait forever."""
        t = time.time()
        self.sink.events.put(PlaybackEvent(m.FINISHED, turn_id, segment_index, t))
        if is_end:
            self.sink.events.put(PlaybackEvent(m.TURN_END, turn_id, segment_index, t))

    # ------------------------------------------------------------------ report thread

    def _report_loop(self) -> None:
        events = self.sink.events
        while True:
            ev = events.get()
            if ev is _STOP:
                return
            try:
                for msg in self._report(ev):
                    self._emit(msg)
            except Exception:  # noqa: BLE001 - one bad event must not silence the rest
                log.exception("cannot report playback event %s", ev)

    def _report(self, ev: PlaybackEvent) -> list[m.Message]:
        if ev.segment_index == EARCON_SEGMENT:
            return []  # the server watch's tone: not part of any answer
        if ev.kind == m.DELAY:
            # queued audio plays later than its reference said: the reference moves too
            if not self.sink.echoes:
                return []
            return [m.Reference(event=m.DELAY, t_start=ev.t, delay_s=ev.delay_s)]
        if ev.kind == m.CUT:
            return self._cut(ev)
        if ev.kind in (HOLD, RESUME):
            return self._held(ev)
        return [self.reporter.played(ev.kind, ev.turn_id, ev.segment_index, ev.t, ev.text)]

    def _held(self, ev: PlaybackEvent) -> list[m.Message]:
        """A pause or its end, for the echo canceller: nothing is heard from a pause on;
        from a resume on, everything queued then is (back to back, as it plays)."""
        if not (self.config.aec and self.sink.echoes):
            return []
        out = [m.Reference(event=m.CUT, t_start=ev.t)]
        if ev.kind == RESUME and ev.samples is not None and ev.samples.size:
            out.append(m.Reference(event=m.PLAY, t_start=ev.t, samples=resample(
                ev.samples, self.sink.output_rate, m.ASR_RATE)))
        return out

    def _cut(self, ev: PlaybackEvent) -> list[m.Message]:
        """A barge-in: the echo canceller hears nothing after `ev.t`; what the user heard
        of each cut segment is reported `interrupted`; older turns end."""
        out: list[m.Message] = []
        if self.sink.echoes:
            # what is already in the device still plays for its latency; the rest is gone
            out.append(m.Reference(event=m.CUT, t_start=ev.t, turn_id=ev.turn_id))
        if ev.cut:
            log.info("barge-in: stopped %d segment(s) of turn %d", len(ev.cut), ev.cut[0].turn_id)
        now = time.time()
        rate = max(1, self.sink.output_rate)
        for seg in ev.cut:
            if seg.started and seg.segment_index != EARCON_SEGMENT:
                out.append(self.reporter.played(m.INTERRUPTED, seg.turn_id, seg.segment_index, now,
                                                seg.text, round(seg.played_samples / rate, 3)))
        self.reporter.end_before(ev.turn_id)
        return out
