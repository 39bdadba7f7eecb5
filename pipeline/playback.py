"""The queue between the speaker node and the sound card: what plays, when, and barge-in.

The speaker node receives TTS audio a segment (or a sentence chunk of a segment) at a time;
the sound card pulls fixed-size blocks from a PortAudio callback on its own real-time
thread. :class:`PlaybackBuffer` sits between the two and is the single place that knows
which sample of which segment is going out, so it is also where the assistant learns when a
segment *really* started and finished playing (the `speaker/played` events that drive the
segmenter's backpressure and the latency metrics), and where a barge-in cuts the audio.

Why a callback fed from a queue: a blocking `sd.play()` next to an open input stream
underran and lost audio on the test machine; a callback that only copies ready samples
cannot be starved by Python work elsewhere, except for the gaps the TTS really leaves.

Threading rules (the callback runs on PortAudio's thread):

* one `threading.Lock` guards the queue and the read position. Inside it, :meth:`fill` only
  moves indices and copies at most one device block (a memcpy of a few KB); it never waits
  on anything, never allocates audio buffers (only the per-segment event tuples) and never
  logs. :meth:`add` and :meth:`clear` hold it for a deque append or a pass over the queue.
* events go to one `queue.SimpleQueue` (non-blocking, reentrant put), in the order they
  happened: a segment's `started` and `finished`, a turn's `turn_end`, the device's stalls
  (`delay`), barge-in cuts (`cut`) and pauses (`hold`, `resume`). One consumer reading that
  queue can therefore never report a segment `interrupted` before it reported it `started`.

File mode uses the same logic with a virtual clock: :meth:`drain_all` pulls everything
queued in one go, as if a sound card had played it starting at `t0`, so events and their
times come from the same code path as on a device.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import numpy as np

from pipeline.messages import CUT, DELAY, FINISHED, NO_TURN, STARTED, TURN_END

_T = TypeVar("_T")

HOLD = "hold"
"""Playback event: the answer is held (paused) from `t` on; see :meth:`PlaybackBuffer.hold`."""
RESUME = "resume"
"""Playback event: a held answer plays again from `t` on; `samples` is everything queued."""


class CutSegment(NamedTuple):
    """A segment dropped by :meth:`PlaybackBuffer.clear` (for an `interrupted` event)."""

    turn_id: int
    segment_index: int
    text: str
    started: bool  # its first sample had gone out (the user heard part of it)
    played_samples: int  # samples of it already handed to the device
    total_samples: int  # samples of it received so far (played + dropped)


class PlaybackEvent(NamedTuple):
    """Something audible happened; `t` is the estimated UNIX time at the speaker.

    `kind` (pipeline/messages.py names):

    * `started`: the segment's first sample reaches the speaker at `t`;
    * `finished`: its last sample has at `t`; `turn_end`: the same time, for the turn's last;
    * `delay`: the device stalled: what was to be heard from `t` on is heard `delay_s` later;
    * `cut`: :meth:`PlaybackBuffer.clear` dropped the segments in `cut` (turns below
      `turn_id`, or all for NO_TURN); what the device already had plays until `t`;
    * `hold`: :meth:`PlaybackBuffer.hold` paused the answer: silence from `t` on;
    * `resume`: it plays again from `t` on: `samples`, everything queued then, follows
      back to back (more may be added later).
    """

    kind: str
    turn_id: int
    segment_index: int
    t: float
    text: str = ""
    delay_s: float = 0.0
    cut: tuple[CutSegment, ...] = ()
    samples: np.ndarray | None = None


class Ducking:
    """The answer's volume while the user may be talking over it: full, or `depth_db` lower.

    A change ramps linearly over `ramp_s` (an instant step clicks), from wherever the gain is,
    so a duck quickly followed by an unduck never jumps. :meth:`apply` scales a block in
    place with arrays made in :meth:`set`: it runs in the sound card callback, where
    nothing may allocate.
    """

    def __init__(self, sample_rate: int, ramp_s: float = 0.02) -> None:
        self._n = max(2, round(ramp_s * sample_rate))
        self.ducked = False
        self.low = 1.0
        self._down = self._up = np.ones(self._n, dtype=np.float32)
        self._ramp: np.ndarray | None = None  # the ramp under way, or None (steady gain)
        self._pos = 0

    def set(self, ducked: bool, depth_db: float = -20.0) -> None:
        """Duck (or restore) from the next sample on."""
        if ducked == self.ducked:
            return
        if ducked:
            low = float(10.0 ** (depth_db / 20.0))
            if low != self.low:
                self.low = low
                self._down = np.linspace(1.0, low, self._n, dtype=np.float32)
                self._up = self._down[::-1].copy()
        # the ramps mirror each other: the same gain sits at position n-1-p of the other one
        pos = self._n - 1 - self._pos if self._ramp is not None else 0
        self.ducked = ducked
        self._ramp, self._pos = (self._down if ducked else self._up), max(pos, 0)

    @property
    def ramp_left(self) -> int:
        """Samples until the gain is steady (0 when it is)."""
        return 0 if self._ramp is None else self._ramp.shape[0] - self._pos

    @property
    def gain(self) -> float:
        """The gain of the next sample."""
        if self._ramp is not None:
            return float(self._ramp[self._pos])
        return self.low if self.ducked else 1.0

    def apply(self, block: np.ndarray) -> None:
        """Scale `block` (the next samples out) in place."""
        done = 0
        ramp = self._ramp
        if ramp is not None:
            done = min(block.shape[0], ramp.shape[0] - self._pos)
            np.multiply(block[:done], ramp[self._pos:self._pos + done], out=block[:done])
            self._pos += done
            if self._pos >= ramp.shape[0]:
                self._ramp, self._pos = None, 0
        if self.ducked and done < block.shape[0]:
            block[done:] *= self.low


@dataclass(eq=False)
class _Chunk:
    """Audio added by one :meth:`PlaybackBuffer.add` call; a segment is one or more chunks."""

    turn_id: int
    segment_index: int
    samples: np.ndarray
    text: str
    starts_segment: bool
    ends_segment: bool
    ends_turn: bool


@dataclass
class _Current:
    """The segment whose first sample went out and whose last one has not yet."""

    turn_id: int
    segment_index: int
    text: str
    played: int = 0


class EventLog:
    """Playback events in the order they happened, for one reader (the speaker's report
    thread), which blocks on :attr:`events`; owners set `_events`."""

    _events: queue.SimpleQueue[PlaybackEvent]

    @property
    def events(self) -> queue.SimpleQueue[PlaybackEvent]:
        return self._events

    def drain_events(self) -> list[PlaybackEvent]:
        """Every event recorded so far (non-blocking)."""
        return drain(self._events)


class PlaybackBuffer(EventLog):
    """Thread-safe queue of mono float32 audio at `sample_rate`, drained by :meth:`fill`.

    `latency` is only used when the caller of :meth:`fill` cannot say when its block will
    reach the speaker (no DAC time): events are then stamped `now + latency`.
    """

    DELAY_MIN_S = 0.005  # a block this much later than the previous one's end: a stall
    HOLD_FADE_S = 0.02  # a hold fades out (and a resume in) over this long: a step clicks

    def __init__(
        self,
        sample_rate: int,
        latency: float = 0.0,
        events: queue.SimpleQueue[PlaybackEvent] | None = None,
    ) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = sample_rate
        self.latency = latency
        self._lock = threading.Lock()
        # an owner may pass its own queue so events outlive a buffer re-created at a new rate
        self._events: queue.SimpleQueue[PlaybackEvent] = (
            queue.SimpleQueue() if events is None else events
        )
        self._chunks: deque[_Chunk] = deque()
        self._pos = 0  # read position in self._chunks[0]
        self._queued = 0  # samples queued and not yet handed out
        self._current: _Current | None = None
        self._open_key: tuple[int, int] | None = None  # segment add() expects more chunks of
        self._open_turn: int | None = None  # turn with finished segments but no turn_end yet
        self._min_turn: int | None = None  # add() ignores older turns (set by clear)
        self._starved = False
        self.ducking = Ducking(sample_rate)
        self._hold = Ducking(sample_rate, ramp_s=self.HOLD_FADE_S)  # held: ducked to silence
        self._wait = 0  # samples of silence still to go out before a resumed answer
        self._out_end_t = 0.0  # when the last sample handed out reaches the speaker
        self._next_t = 0.0  # when the next block handed out will (zero fill counts)
        self.scheduled_start = 0.0  # when the audio of the last add() starts to be heard
        # counters (read without the lock: ints, written only under it)
        self.underruns = 0  # starvation episodes in the middle of a segment
        self.underrun_frames = 0  # zero frames output in the middle of a segment
        self.gaps = 0  # starvation episodes between two segments of an unfinished turn
        self.frames_out = 0  # audio frames handed out (not counting zero fill)

    # ------------------------------------------------------------------ producer side

    def add(
        self,
        turn_id: int,
        segment_index: int,
        samples: np.ndarray,
        text: str = "",
        last: bool = False,
        end_of_segment: bool = True,
    ) -> bool:
        """Queue audio (already at `sample_rate`) of one segment, or one chunk of it.

        `last` marks the last segment of the turn (a `turn_end` follows its `finished`).
        `end_of_segment=False` says more chunks of the same segment follow (Piper yields a
        segment sentence by sentence): `started` is sent on its first chunk, `finished` after
        the chunk added with `end_of_segment=True`. An empty array is fine (e.g. a turn's
        end marker). The samples are copied: the caller's buffer may be shared memory that
        is reused once its message is dropped.

        Returns False (and queues nothing) for a turn older than a previous
        `clear(turn_id_below=...)`: stale audio still in flight after a barge-in.

        On success :attr:`scheduled_start` is the estimated UNIX time at which the first of
        these samples reaches the speaker: right after what is queued, which itself starts
        with the next device block (:attr:`next_time`). It is computed under the lock, so a
        callback running meanwhile cannot make it one block early, and it follows the same
        device clock from segment to segment (the echo canceller needs the delay between
        this timeline and the microphone to stay put; see pipeline/stages/speaker.py).
        """
        data = np.array(samples, dtype=np.float32, copy=True).reshape(-1)
        key = (turn_id, segment_index)
        with self._lock:
            if self._min_turn is not None and turn_id < self._min_turn:
                return False
            self.scheduled_start = self._next_time_locked() + self._queued / self.sample_rate
            starts = self._open_key != key
            self._open_key = None if end_of_segment else key
            self._chunks.append(
                _Chunk(
                    turn_id=turn_id,
                    segment_index=segment_index,
                    samples=data,
                    text=text,
                    starts_segment=starts,
                    ends_segment=end_of_segment,
                    ends_turn=last and end_of_segment,
                )
            )
            self._queued += data.size
        return True

    def duck(self, ducked: bool, depth_db: float = -20.0) -> None:
        """Lower the volume of what plays from the next block on (the user may be talking
        over it), or restore it; nothing is dropped. See :class:`Ducking`."""
        with self._lock:
            self.ducking.set(ducked, depth_db)

    def hold(self, held: bool, lead_in_s: float = 0.0) -> bool:
        """Pause what plays (the user may be talking over it), or resume it; True if that
        changed anything.

        Held, the output fades to silence over :attr:`HOLD_FADE_S` from the next block on and
        then stays silent: the read position, the segment under way and everything queued
        stay where they are, :meth:`add` goes on queueing, and no segment event happens
        until it is resumed (so the segmenter, paced by `started`/`finished`, just waits).
        Resumed, it fades in from where it stopped, after `lead_in_s` more of silence if
        it was silent (so that the echo canceller's new reference reaches it in time, as
        before an answer that starts from silence). A `hold` event says when the silence
        starts, a `resume` event when the sound starts again and what is queued then.
        """
        with self._lock:
            if held == self._hold.ducked:
                return False
            t = self._next_time_locked()
            silent = not self._hold.ramp_left  # (when held: the fade-out is over)
            self._hold.set(held, -math.inf)
            if held:
                t_silent = t + self._hold.ramp_left / self.sample_rate
                self._events.put(PlaybackEvent(HOLD, NO_TURN, -1, t_silent))
            else:
                self._wait = round(lead_in_s * self.sample_rate) if silent else 0
                self._events.put(PlaybackEvent(RESUME, NO_TURN, -1,
                                               t + self._wait / self.sample_rate,
                                               samples=self._queued_audio_locked()))
        return True

    @property
    def held(self) -> bool:
        """Paused by :meth:`hold` (fading out, or silent)."""
        return self._hold.ducked

    def clear(self, turn_id_below: int | None = None) -> list[CutSegment]:
        """Drop queued audio (barge-in) and return the segments cut, in queue order.

        With `turn_id_below=N` only turns < N are dropped (audio of turn N already queued
        stays) and later `add` calls for turns < N are ignored.

        A `cut` event carrying the cut segments is recorded in :attr:`events` under the same
        lock as every other event: after any event of a cut segment, and no event of a cut
        segment ever follows it. A consumer that reports interruptions from `cut` events
        (rather than from this return value) keeps every segment's `started` before its
        `interrupted`. Its `t` is when what the device already has (up to its latency,
        ~10-50 ms) stops playing.
        """
        with self._lock:
            cut = self._cut_locked(turn_id_below)
            if turn_id_below is not None and (
                self._min_turn is None or turn_id_below > self._min_turn
            ):
                self._min_turn = turn_id_below
            below = NO_TURN if turn_id_below is None else turn_id_below
            self._events.put(PlaybackEvent(CUT, below, -1, self._next_time_locked(),
                                           cut=tuple(cut)))
        return cut

    # ------------------------------------------------------------------ consumer side

    def fill(self, out: np.ndarray, t0: float | None = None) -> None:
        """Copy queued audio into `out` (1-D or (frames, 1)) and zero what is left.

        Called from the sound card callback. `t0` is the estimated UNIX time at which
        `out[0]` reaches the speaker (see :func:`dac_wall_time`); events inside the block
        are stamped `t0 + offset / sample_rate`.
        """
        self._pull(out, time.time() + self.latency if t0 is None else t0, holds=True)

    def _pull(self, out: np.ndarray, t0: float, holds: bool) -> None:
        """:meth:`fill`; with `holds` false a hold is ignored (a file has no listener)."""
        full = out if out.ndim == 1 else out[:, 0]
        n = full.shape[0]
        rate = self.sample_rate
        with self._lock:
            hold = self._hold if holds else None
            wait = min(n, self._wait) if hold is not None else 0
            self._wait -= wait
            if (wait and wait == n) or (hold is not None and hold.ducked and not hold.ramp_left):
                full[:] = 0.0  # held: silence, nothing moves (and silence is never late)
                if n:
                    self._next_t = t0 + n / rate
                return
            full[:wait] = 0.0  # the end of a resumed answer's lead-in
            buf, t0 = full[wait:], t0 + wait / rate
            if wait:
                self._next_t = t0
            late = t0 - self._next_t
            if self._queued and self._next_t and late > self.DELAY_MIN_S:
                self._events.put(PlaybackEvent(DELAY, NO_TURN, -1, self._next_t, delay_s=late))
            size = buf.shape[0]
            m = min(size, hold.ramp_left) if hold is not None and hold.ducked else size
            k = self._fill_locked(buf, m, t0)
            if m < size:  # the hold's fade ends in this block: the rest is silence
                self._next_t = t0 + size / rate
            if k < size:
                buf[k:] = 0.0
            if hold is not None:
                hold.apply(buf)
            self.ducking.apply(buf)  # the whole block: a ramp lasts the same in any case

    def drain_all(self, t0: float | None = None) -> np.ndarray:
        """Everything queued, as one array, played on a virtual clock starting at `t0`.

        File mode: the "device" is a WAV file that takes all audio at once, so this is a
        single :meth:`fill` of exactly the queued length. Events get the times a sound card
        starting at `t0` (default: now) would give them, so their spacing is the audio's
        duration. A virtual clock never stalls: no `delay` events. Not for the real-time
        path (it allocates).
        """
        with self._lock:
            n = self._queued
            self._next_t = 0.0
        out = np.zeros(n, dtype=np.float32)
        self._pull(out, time.time() if t0 is None else t0, holds=False)
        return out

    # ------------------------------------------------------------------ state

    @property
    def frames_queued(self) -> int:
        """Samples waiting to be handed to the device."""
        return self._queued

    @property
    def end_time(self) -> float:
        """Estimated UNIX time at which the last sample handed out reaches the speaker."""
        return self._out_end_t

    @property
    def next_time(self) -> float:
        """Estimated UNIX time at which the next block handed out reaches the speaker, i.e.
        when everything handed out so far has played (zero fill included).

        While the device runs this is the DAC time of the last block plus its length; audio
        added when nothing is queued starts there, not at `now + latency` (which is up to
        a block and the DAC-time offset earlier: ~10-30 ms through PulseAudio). Without a
        recent block (device not started or stalled) it falls back to `now + latency`.
        """
        with self._lock:
            return self._next_time_locked()

    def _next_time_locked(self) -> float:
        now = time.time()
        return self._next_t if self._next_t > now else now + self.latency

    @property
    def is_playing(self) -> bool:
        """True while audio is queued, a segment is mid-way, or output is still audible.

        Half duplex mutes the microphone while this is True (so the assistant does not
        transcribe itself).
        """
        return self._queued > 0 or self._current is not None or time.time() < self._out_end_t

    # ------------------------------------------------------------------ internals

    def _queued_audio_locked(self) -> np.ndarray:
        """Every sample queued and not yet handed out, in order (one copy). Lock held."""
        parts = [c.samples[self._pos:] if i == 0 else c.samples for i, c in enumerate(self._chunks)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def _emit(self, kind: str, cur: _Current, t: float) -> None:
        self._events.put(PlaybackEvent(kind, cur.turn_id, cur.segment_index, t, cur.text))

    def _fill_locked(self, buf: np.ndarray, n: int, t0: float) -> int:
        """Hand out up to `n` samples into `buf`; returns how many. Lock held."""
        rate = self.sample_rate
        k = 0
        while self._chunks:
            chunk = self._chunks[0]
            remaining = chunk.samples.shape[0] - self._pos
            if remaining and k == n:
                break
            if self._pos == 0 and chunk.starts_segment:
                self._start_segment(chunk, t0 + k / rate)
            take = min(n - k, remaining)
            if take:
                buf[k : k + take] = chunk.samples[self._pos : self._pos + take]
                k += take
                self._pos += take
                self._queued -= take
                if self._current is not None:
                    self._current.played += take
            if self._pos < chunk.samples.shape[0]:
                break  # block full, chunk continues in the next one
            self._chunks.popleft()
            self._pos = 0
            if chunk.ends_segment:
                self._finish_segment(chunk.ends_turn, t0 + k / rate)
        self._account(k, n, t0)
        return k

    def _start_segment(self, chunk: _Chunk, t: float) -> None:
        if self._current is not None:  # the previous segment never got its last chunk
            self._emit(FINISHED, self._current, t)
        self._current = _Current(chunk.turn_id, chunk.segment_index, chunk.text)
        self._open_turn = chunk.turn_id
        self._emit(STARTED, self._current, t)

    def _finish_segment(self, ends_turn: bool, t: float) -> None:
        cur = self._current
        if cur is None:  # chunks of a segment whose start was cut: nothing was announced
            return
        self._emit(FINISHED, cur, t)
        if ends_turn:
            self._emit(TURN_END, cur, t)
            self._open_turn = None
        self._current = None

    def _account(self, k: int, n: int, t0: float) -> None:
        """Counters and the end-of-audio estimate after a block of `k` of `n` samples."""
        if n:
            self._next_t = t0 + n / self.sample_rate
        if k:
            self.frames_out += k
            self._out_end_t = t0 + k / self.sample_rate
            self._starved = False
        if k == n:
            return
        if self._current is not None:
            if not self._starved:
                self.underruns += 1
            self.underrun_frames += n - k
            self._starved = True
        elif self._open_turn is not None and n:
            if not self._starved:
                self.gaps += 1
            self._starved = True

    def _cut_locked(self, below: int | None) -> list[CutSegment]:
        """Remove chunks of turns < `below` (all when None); the cut segments. Lock held."""
        cut: dict[tuple[int, int], CutSegment] = {}
        cur = self._current
        if cur is not None and (below is None or cur.turn_id < below):
            key = (cur.turn_id, cur.segment_index)
            cut[key] = CutSegment(cur.turn_id, cur.segment_index, cur.text, True, cur.played,
                                  cur.played)
        kept: deque[_Chunk] = deque()
        for i, chunk in enumerate(self._chunks):
            if below is not None and chunk.turn_id >= below:
                kept.append(chunk)
                continue
            unplayed = chunk.samples.shape[0] - (self._pos if i == 0 else 0)
            self._queued -= unplayed
            key = (chunk.turn_id, chunk.segment_index)
            prev = cut.get(key) or CutSegment(chunk.turn_id, chunk.segment_index, chunk.text,
                                              False, 0, 0)
            cut[key] = prev._replace(total_samples=prev.total_samples + unplayed)
        head_cut = bool(self._chunks) and (not kept or self._chunks[0] is not kept[0])
        if head_cut:
            self._pos = 0
        self._chunks = kept
        if cur is not None and (cur.turn_id, cur.segment_index) in cut:
            self._current = None
        if self._open_key is not None and (below is None or self._open_key[0] < below):
            self._open_key = None
        if self._open_turn is not None and (below is None or self._open_turn < below):
            self._open_turn = None
        self._starved = False
        return list(cut.values())


def dac_wall_time(now: float, current_time: float, dac_time: float, fallback: float) -> float:
    """UNIX time at which a callback's first output sample reaches the speaker.

    PortAudio stamps callbacks on the stream's own clock (`time.currentTime`, and
    `time.outputBufferDacTime` for the first sample); only their difference is meaningful
    to us, so it is added to the wall clock read in the callback. Some host APIs report 0
    or nonsense: then `now + fallback` (the stream's nominal latency) is used.
    """
    ahead = dac_time - current_time
    if current_time > 0 and dac_time > 0 and 0.0 <= ahead < 2.0:
        return now + ahead
    return now + fallback


def drain(q: queue.SimpleQueue[_T]) -> list[_T]:
    """Everything in `q` now, without blocking."""
    got: list[_T] = []
    while True:
        try:
            got.append(q.get_nowait())
        except queue.Empty:
            return got
