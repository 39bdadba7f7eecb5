"""Acoustic echo cancellation: the assistant must not hear itself, yet must still hear the user.

On a laptop the speaker reaches the microphone. Without help the VAD takes the assistant's
own voice for a user turn and the assistant interrupts itself; muting the microphone while
it talks (half duplex) fixes that but also makes barge-in impossible. So the microphone
signal is cleaned with the audio that was played as the *reference*: an adaptive filter
learns the speaker -> room -> microphone path and subtracts the predicted echo, and what
remains is the user.

Why WebRTC's audio processing module (AEC3 + noise suppression + high-pass filter) through
the `livekit` package:

* AEC3 is the echo canceller of Chromium's WebRTC: a linear adaptive filter, a residual echo
  suppressor and, most useful here, its own delay estimator, so the speaker -> microphone
  delay (device buffers, air, and the error of our timestamps) only has to be bounded, not
  known: measured here, echoes 0 to ~500 ms behind the reference fed with them are found
  (650 ms is not, nor an echo that comes *before* its reference).
* `livekit` (Apache-2.0, PyPI wheels for Linux, macOS and Windows) ships it prebuilt in its
  native library; :class:`livekit.rtc.AudioProcessingModule` is a local FFI call that needs
  no LiveKit server, room or network. Measured on this 2-core machine: ~0.25 ms of one
  core per 10 ms frame (0.14 ms of it inside livekit's FFI request), 50-60 dB echo
  reduction on the simulated rooms of tests/test_echo.py.
* The price: a 30 MB wheel, a few idle native threads once loaded, one small protobuf
  request per call, and only on/off switches (AEC3's own tuning is not exposed). Since it
  works, the alternatives were not adopted (nor benchmarked): `speexdsp` bindings give
  Speex's older MDF canceller (no delay estimator: its filter must span the whole delay),
  `webrtc-noise-gain` has noise suppression and gain control but no echo canceller, and
  `aec-audio-processing` is a recent wrapper with little track record.

The WebRTC module needs exactly 10 ms frames of int16 and one reverse (far end, what plays)
frame before each forward (microphone) frame. :class:`EchoCanceller` does that bookkeeping:
it keeps a short *reference timeline* (what the speaker played, on the UNIX clock), cuts
microphone chunks of any length into 10 ms frames, and for each one feeds the reference
playing around the frame's capture time (see `reference_lead_ms`), then the frame itself.

What AEC3 does not do well, measured in the tests: when the user talks over loud echo
(about the same level), its suppressor eats part of the user's first words, so barge-in is
detected on a later word (SpeechStarted ~0.85 s after "Stop, what is..." began, on "what").
The VAD sees the residual echo at Silero probabilities below ~0.2, so a guard need not be
stricter while the assistant talks; a stricter one would only delay barge-in further.

The reference must reach the canceller before the microphone audio it echoes into is
processed (by `reference_lead_ms` before it plays, minus the microphone's own transport
delay): a frame processed earlier was paired with silence and its echo stays.

If the library cannot be loaded, :attr:`EchoCanceller.available` is False and
:meth:`EchoCanceller.process` passes the audio through: the node then relies on its VAD
guard (:meth:`EchoCanceller.playing_at`, :meth:`EchoCanceller.reference_level`).

Not thread-safe: one thread (the VAD node's event loop) calls every method.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("echo")

SAMPLE_RATE = 16000
FRAME_SAMPLES = 160  # 10 ms: the only frame size WebRTC's audio processing accepts
_TO_I16 = np.float32(32768.0)
_FROM_I16 = np.float32(1.0 / 32768.0)

_warned = False  # the "no echo cancellation" warning is logged once per process


@dataclass(frozen=True)
class EchoConfig:
    """Settings of :class:`EchoCanceller`.

    `reference_lead_ms`: each microphone frame is paired with the reference that plays this
    much *later* than its capture time. AEC3 can only cancel an echo whose reference it has
    already been given; device timestamps are only good to some tens of ms, so leading the
    reference turns an error of up to this much in the wrong direction into a delay AEC3
    finds by itself (it handles up to ~500 ms in the other direction). A larger lead needs
    the reference to arrive that much earlier (see the module docstring).

    `bypass_idle`: when nothing has played for `tail_s` (room echo dies out, plus margin),
    the microphone audio is returned untouched, so with the assistant silent the VAD and
    Whisper see exactly what they saw before echo cancellation existed. The module still
    runs on every frame, so its noise estimate and echo path stay warm; the switch is
    crossfaded over one 10 ms frame.
    """

    noise_suppression: bool = True
    high_pass_filter: bool = True
    reference_lead_ms: float = 40.0
    delay_ms: float = 0.0
    tail_s: float = 0.5
    bypass_idle: bool = True
    keep_s: float = 5.0
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        if self.sample_rate != SAMPLE_RATE:
            raise ValueError(f"EchoCanceller runs at {SAMPLE_RATE} Hz, got {self.sample_rate}")
        if self.reference_lead_ms < 0 or self.tail_s < 0:
            raise ValueError("reference_lead_ms and tail_s must not be negative")
        if self.keep_s < 1.0:
            raise ValueError(f"keep_s must be at least 1 s (echo tail + lead), got {self.keep_s}")


def reference_lead_in_s(
    device_latency_s: float, mic_block_s: float, config: EchoConfig | None = None
) -> float:
    """Silence to put before an answer that starts from silence, so that its reference
    reaches the canceller in time.

    The canceller pairs a microphone frame captured at t with the reference playing at
    t + `reference_lead_ms`, and a frame reaches it one microphone block after capture; so
    the reference of a sound heard at T is needed at T - lead + block. It is sent when the
    audio is queued, the device's latency before T. 10 ms of margin covers the messages
    and the nodes' scheduling. (A fixed 80 ms lead-in used to be added, all of it to the
    answer's latency; with PulseAudio's 40 ms and 20 ms blocks 30 ms are needed.)
    """
    lead = (config or EchoConfig()).reference_lead_ms / 1000.0
    return max(0.0, lead + mic_block_s + 0.010 - max(0.0, device_latency_s))


# --------------------------------------------------------------------------- backend


class _LiveKitApm:
    """WebRTC APM via livekit, on two preallocated 10 ms int16 frames (reverse, forward).

    The numpy arrays are views on the AudioFrames' own buffers: filling them is the only
    copy, and the module processes the forward frame in place.
    """

    def __init__(self, config: EchoConfig) -> None:
        from livekit import rtc  # imported here: the timeline and the fallback work without it

        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=True,
            noise_suppression=config.noise_suppression,
            high_pass_filter=config.high_pass_filter,
            auto_gain_control=False,  # the VAD and Whisper are tuned on the raw level
        )
        self._reverse = rtc.AudioFrame.create(SAMPLE_RATE, 1, FRAME_SAMPLES)
        self._forward = rtc.AudioFrame.create(SAMPLE_RATE, 1, FRAME_SAMPLES)
        self.reverse = _int16_view(self._reverse)
        self.forward = _int16_view(self._forward)

    def set_delay_ms(self, delay_ms: int) -> None:
        """A hint only (AEC3 estimates the delay itself), but without it AEC3 missed echoes
        that follow their reference by less than ~3 ms (measured; the value did not matter)."""
        self._apm.set_stream_delay_ms(max(0, int(delay_ms)))

    def run(self) -> None:
        """Reverse frame, then forward frame (processed in place in :attr:`forward`)."""
        self._apm.process_reverse_stream(self._reverse)
        self._apm.process_stream(self._forward)


def _int16_view(frame: Any) -> np.ndarray:
    view = np.frombuffer(frame.data, dtype=np.int16)  # on the frame's bytearray: writable
    if view.size != FRAME_SAMPLES or not view.flags.writeable:
        raise RuntimeError("unexpected livekit AudioFrame buffer layout")
    return view


def _open_backend(config: EchoConfig) -> _LiveKitApm:
    """The WebRTC module; raises if livekit (or its native library) cannot be loaded."""
    return _LiveKitApm(config)


def _warn_once(message: str, *args: Any) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(message, *args)


# --------------------------------------------------------------------------- reference


@dataclass
class _Segment:
    """Reference audio that started playing at absolute sample `start` (UNIX time * rate)."""

    start: int
    samples: np.ndarray

    @property
    def end(self) -> int:
        return self.start + self.samples.size


class ReferenceTimeline:
    """What the speaker played, on the UNIX clock in 16 kHz samples, a few seconds of it.

    Segments are kept as given (one copy each) rather than in a ring buffer: a TTS segment
    may be scheduled many seconds ahead, and reading a 10 ms frame only touches the one or
    two segments it overlaps, found by bisection on the start times (so a speaker that
    reports every 20 ms device block costs no more than one that reports whole segments).
    Overlapping segments add up, as sounds do in the air.
    """

    def __init__(self, keep_s: float = 5.0, rate: int = SAMPLE_RATE) -> None:
        self.rate = rate
        self.keep = int(keep_s * rate)
        self._segments: list[_Segment] = []
        self._starts: list[int] = []  # sorted; _starts[i] == _segments[i].start
        self._longest = 0  # no segment is longer: bounds how far back an overlap can start

    def sample_at(self, t: float) -> int:
        """Absolute sample index of UNIX time `t` (float64 keeps it exact to ~0.01 sample)."""
        return int(round(t * self.rate))

    def add(self, samples: np.ndarray, t_start: float) -> None:
        data = np.array(samples, dtype=np.float32, copy=True).reshape(-1)
        if data.size == 0:
            return
        seg = _Segment(self.sample_at(t_start), data)
        i = bisect.bisect_right(self._starts, seg.start)
        self._segments.insert(i, seg)
        self._starts.insert(i, seg.start)
        self._longest = max(self._longest, data.size)

    def cut(self, t: float) -> None:
        """Playback stopped at `t`: forget every sample at or after it."""
        k = self.sample_at(t)
        i = bisect.bisect_left(self._starts, k)
        del self._segments[i:], self._starts[i:]
        for seg in self._segments[self._first(k) :]:
            if seg.end > k:
                seg.samples = seg.samples[: k - seg.start]

    def shift(self, t: float, delay_s: float) -> None:
        """Everything from `t` on plays `delay_s` later (the speaker stalled at `t`)."""
        k, d = self.sample_at(t), int(round(delay_s * self.rate))
        if d <= 0:
            return
        moved: list[_Segment] = []
        for seg in self._segments:
            if seg.start >= k:
                seg.start += d
            elif seg.end > k:  # split: the part from `t` on moves
                moved.append(_Segment(k + d, seg.samples[k - seg.start :]))
                seg.samples = seg.samples[: k - seg.start]
        self._segments = sorted(self._segments + moved, key=lambda seg: seg.start)
        self._starts = [seg.start for seg in self._segments]

    def prune(self, now: float) -> None:
        """Drop segments that ended more than `keep_s` before `now` (bounded memory)."""
        oldest = self.sample_at(now) - self.keep
        n = 0
        while n < len(self._segments) and self._segments[n].end < oldest:
            n += 1
        if n:
            del self._segments[:n], self._starts[:n]
        if not self._segments:
            self._longest = 0

    def read(self, start: int, out: np.ndarray) -> None:
        """Reference samples [start, start + out.size) into `out` (zeros where none)."""
        out.fill(0.0)
        stop = start + out.size
        for seg in self._overlapping(start, stop):
            lo, hi = max(start, seg.start), min(stop, seg.end)
            out[lo - start : hi - start] += seg.samples[lo - seg.start : hi - seg.start]

    def any_between(self, start: int, stop: int) -> bool:
        """True if some reference sample lies in [start, stop)."""
        return next(self._overlapping(start, stop), None) is not None

    def energy(self, start: int, stop: int) -> float:
        """Sum of squared reference samples in [start, stop) (no array allocated)."""
        total = 0.0
        for seg in self._overlapping(start, stop):
            part = seg.samples[max(start, seg.start) - seg.start : min(stop, seg.end) - seg.start]
            total += float(np.dot(part, part))
        return total

    def __len__(self) -> int:
        return len(self._segments)

    def _first(self, start: int) -> int:
        """Index of the first segment that may reach `start` (none before it can)."""
        return bisect.bisect_right(self._starts, start - self._longest)

    def _overlapping(self, start: int, stop: int) -> Iterator[_Segment]:
        """Segments with a sample in [start, stop), in start order."""
        end = bisect.bisect_left(self._starts, stop)
        for i in range(self._first(start), end):
            seg = self._segments[i]
            if seg.end > start:
                yield seg


# --------------------------------------------------------------------------- canceller


@dataclass
class EchoStats:
    """Counters for logs and metrics: frames through the module and the time they took."""

    frames: int = 0
    busy_s: float = 0.0
    errors: int = 0
    late_reference_s: float = 0.0  # reference that arrived after its frames were processed

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 * self.busy_s / self.frames if self.frames else 0.0


class EchoCanceller:
    """16 kHz mono float32 microphone audio in, the same with the assistant's voice removed.

    The speaker side calls :meth:`add_reference` for every piece of audio it plays (with the
    UNIX time its first sample reaches the speaker) and :meth:`cut_reference` on barge-in;
    the microphone side calls :meth:`process` on every chunk. Output length always equals
    input length. Latency: none while chunks are whole multiples of 10 ms (the microphone's
    20 ms blocks); from the first chunk that is not, the output is 10 ms behind the input
    for good (:attr:`latency_s`; the first output sample of a chunk captured at `t` was
    captured at `t - latency_s`). Switching costs one 10 ms gap of silence, once.
    """

    def __init__(self, config: EchoConfig | None = None) -> None:
        self.config = config or EchoConfig()
        cfg = self.config
        self.reference = ReferenceTimeline(cfg.keep_s, SAMPLE_RATE)
        self.stats = EchoStats()
        self._backend: _LiveKitApm | None = None
        try:
            self._backend = _open_backend(cfg)
        except Exception as e:  # ImportError, OSError from the native library, FFI errors
            _warn_once("echo cancellation unavailable (%s): microphone audio passes through", e)
        self._tail = int(cfg.tail_s * SAMPLE_RATE)  # echo still heard after the reference
        self._delay_ms = cfg.delay_ms
        self._shift_s = 0.0
        self._apply_delay()
        # preallocated per-frame buffers
        self._ref = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self._scratch = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self._frame = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self._fade_in = np.arange(1, FRAME_SAMPLES + 1, dtype=np.float32) / FRAME_SAMPLES
        self._fade_out = 1.0 - self._fade_in
        # stream state
        self._pending = np.zeros(FRAME_SAMPLES, dtype=np.float32)  # input not yet a frame
        self._pending_n = 0
        self._work = np.zeros(4 * FRAME_SAMPLES, dtype=np.float32)  # carry + processed
        self._carry_n = 0  # processed samples not yet returned
        self._latency = 0
        self._active = False  # last frame's output was the processed signal
        self.presence = EchoPresence()
        self._fed_until = 0  # end of the reference given to AEC3 so far (absolute sample)

    # -- public state ------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False when the WebRTC module could not be loaded: :meth:`process` passes through."""
        return self._backend is not None

    @property
    def latency_s(self) -> float:
        """How far the output lags the input (0 or 10 ms, see the class docstring)."""
        return self._latency / SAMPLE_RATE

    @property
    def delay_ms(self) -> float:
        return self._delay_ms

    def set_delay_ms(self, delay_ms: float) -> None:
        """A known speaker -> microphone delay (device latencies the timestamps miss, or a
        calibration). The reference is shifted by it, so only the residue is left to AEC3's
        delay estimator; the default 0 relies on the estimator alone."""
        self._delay_ms = float(delay_ms)
        self._apply_delay()

    # -- reference (speaker side) --------------------------------------------------------

    def add_reference(self, samples: np.ndarray, t_start: float) -> None:
        """Audio that plays (16 kHz float32) from UNIX time `t_start` at the speaker. Must
        arrive before the microphone audio it echoes into: frames processed earlier were
        paired with silence and their echo is not cancelled."""
        self.reference.add(samples, t_start)
        start = self.reference.sample_at(t_start)
        if start < self._fed_until:  # too late for frames already processed: worth a metric
            late = min(self._fed_until - start, np.size(samples))
            self.stats.late_reference_s += late / SAMPLE_RATE

    def cut_reference(self, t: float) -> None:
        """Playback stopped at UNIX time `t` (barge-in): nothing after it plays any more."""
        self.reference.cut(t)

    def delay_reference(self, t: float, delay_s: float) -> None:
        """The speaker stalled: what was to play from UNIX time `t` on plays `delay_s` later.
        Without this the echo after a stall (150 ms measured on a busy machine) no longer
        matches its reference and AEC3 takes about a second to find the new delay."""
        self.reference.shift(t, delay_s)

    def playing_at(self, t: float, tail_s: float = 0.0) -> bool:
        """True if reference audio plays at some time in [t - tail_s, t]: the assistant is
        (or, with a tail, was just) audible. For a VAD guard next to the canceller."""
        ref = self.reference
        return ref.any_between(ref.sample_at(t - tail_s), ref.sample_at(t) + 1)

    @property
    def echo_heard(self) -> bool:
        """False once the presence detector found that the speaker does not reach the
        microphone (headphones, a virtual card); True until then (the safe assumption)."""
        return self.presence.echo

    def vad_threshold(self, t: float, normal: float, playing: float) -> float | None:
        """The VAD threshold for audio captured at `t`: the stricter `playing` one while the
        assistant is (or was within 300 ms) audible and its voice may reach the microphone,
        so residual echo cannot start a turn; None (the configured one) otherwise, so that
        without an echo path a user interrupts as fast as when the assistant is silent."""
        if self.playing_at(t, tail_s=0.3) and self.echo_heard:
            return max(normal, playing)
        return None

    def onset_is_echo(self, n_samples: int) -> bool | None:
        """For the VAD, when `n_samples` of voice have started while the assistant is
        audible: True if they are its own voice (the onset must then not become a turn;
        echo is assumed from now on). See :meth:`EchoPresence.onset_is_echo`."""
        return self.presence.onset_is_echo(n_samples) if self._backend is not None else False

    def reference_level(self, t0: float, t1: float) -> float:
        """RMS of what played over [t0, t1) (silence counts as zeros); 0.0 if t1 <= t0."""
        ref = self.reference
        start, stop = ref.sample_at(t0), ref.sample_at(t1)
        if stop <= start:
            return 0.0
        return float(np.sqrt(ref.energy(start, stop) / (stop - start)))

    # -- microphone side ------------------------------------------------------------------

    def process(self, chunk: np.ndarray, t_capture: float) -> np.ndarray:
        """Echo-cancelled copy of a microphone chunk whose first sample was captured at
        `t_capture` (UNIX seconds); same length, lagging by :attr:`latency_s`."""
        x = np.ascontiguousarray(chunk, dtype=np.float32).reshape(-1)
        n = x.size
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        if self._latency == 0 and n % FRAME_SAMPLES:
            self._start_latency()
        started = time.perf_counter()
        produced = self._run_frames(x, t_capture)
        total = self._carry_n + produced
        out = self._work[:n].copy()
        rest = total - n
        self._work[:rest] = self._work[n:total]  # numpy copies safely if the ranges overlap
        self._carry_n = rest
        self.stats.busy_s += time.perf_counter() - started
        self.reference.prune(t_capture)
        return out

    def reset(self) -> None:
        """Forget buffered microphone audio (the stream restarted); the reference stays."""
        self._pending_n = 0
        self._carry_n = 0
        self._latency = 0
        self._active = False

    # -- internals ------------------------------------------------------------------------

    def _apply_delay(self) -> None:
        """The reference fed with a frame captured at t is the one playing at t + shift;
        with the delay right, the echo then trails its reference by the lead."""
        self._shift_s = (self.config.reference_lead_ms - self._delay_ms) / 1000.0
        if self._backend is None:
            return
        try:
            self._backend.set_delay_ms(round(self.config.reference_lead_ms))
        except Exception as e:  # a hint only: never worth failing for
            log.debug("set_stream_delay_ms failed: %s", e)

    def _start_latency(self) -> None:
        """Chunks stopped being whole frames: from now on the output is one frame late."""
        self._work[: self._carry_n + FRAME_SAMPLES] = 0.0
        self._carry_n += FRAME_SAMPLES
        self._latency = FRAME_SAMPLES
        log.debug("microphone chunks are not multiples of 10 ms: output delayed by 10 ms")

    def _run_frames(self, x: np.ndarray, t_capture: float) -> int:
        """Process every whole frame of pending + `x` into the work buffer after the carry;
        keep the remainder pending. Returns the number of samples produced."""
        n = x.size
        carry = self._carry_n
        need = carry + self._pending_n + n
        if self._work.size < need:
            grown = np.zeros(need + FRAME_SAMPLES, dtype=np.float32)
            grown[:carry] = self._work[:carry]
            self._work = grown
        t0 = t_capture - self._pending_n / SAMPLE_RATE  # capture time of the first pending
        pos = 0  # samples of x consumed
        produced = 0
        if self._pending_n:
            take = min(FRAME_SAMPLES - self._pending_n, n)
            self._pending[self._pending_n : self._pending_n + take] = x[:take]
            self._pending_n += take
            pos = take
            if self._pending_n < FRAME_SAMPLES:
                return 0
            self._frame_to(self._pending, t0, self._work[carry : carry + FRAME_SAMPLES])
            self._pending_n = 0
            produced = FRAME_SAMPLES
        while n - pos >= FRAME_SAMPLES:
            t = t_capture + pos / SAMPLE_RATE
            dst = self._work[carry + produced : carry + produced + FRAME_SAMPLES]
            self._frame_to(x[pos : pos + FRAME_SAMPLES], t, dst)
            pos += FRAME_SAMPLES
            produced += FRAME_SAMPLES
        rest = n - pos
        if rest:
            self._pending[:rest] = x[pos:]
            self._pending_n = rest
        return produced

    def _frame_to(self, mic: np.ndarray, t: float, dst: np.ndarray) -> None:
        """One 10 ms frame captured at `t`: reference, then microphone, into `dst`."""
        backend = self._backend
        if backend is None:
            dst[:] = mic
            return
        ref = self.reference
        at = ref.sample_at(t + self._shift_s)
        ref.read(at, self._ref)
        self._fed_until = at + FRAME_SAMPLES
        _to_int16(self._ref, self._scratch, backend.reverse)
        _to_int16(mic, self._scratch, backend.forward)
        try:
            backend.run()
        except Exception as e:  # the FFI raises RuntimeError on a bad frame; keep the audio
            self.stats.errors += 1
            _warn_once("echo cancellation failed (%s): passing audio through", e)
            dst[:] = mic
            return
        self.stats.frames += 1
        active = not self.config.bypass_idle or ref.any_between(at - self._tail, at + FRAME_SAMPLES)
        # AEC3 suppresses everything while it has no echo to learn from, including a user
        # interrupting; where the speaker does not reach the microphone (headphones, a
        # virtual card) the raw signal is used instead (see EchoPresence).
        active = self.presence.update(mic, self._ref, active) and active
        if active and self._active:
            np.multiply(backend.forward, _FROM_I16, out=dst)
        elif active or self._active:  # crossfade between the raw and the processed signal
            np.multiply(backend.forward, _FROM_I16, out=self._frame)
            into, out_of = (self._fade_in, self._fade_out)
            if not active:
                into, out_of = out_of, into
            np.multiply(self._frame, into, out=dst)
            np.multiply(mic, out_of, out=self._frame)
            dst += self._frame
        else:
            dst[:] = mic
        self._active = active
        self.presence.output(dst)


class EchoPresence:
    """Does the played audio actually reach the microphone? Decided by cross-correlation.

    AEC3 (through livekit, which exposes no tuning) starts conservative and, with no echo to
    converge on, suppresses the whole microphone while a reference plays: a user interrupting
    through headphones or on a virtual card was never heard. So the raw microphone of the last
    second is cross-correlated (normalised, by FFT) with the reference at lags of 0-600 ms: an
    echo, even filtered by a room, gives a clear peak (> 0.3); a user's voice, independent of
    the reference, stays near 0.05. (Energy envelopes were tried first: two voices' envelopes
    correlate by chance up to 0.9, so they cannot tell echo from double talk.)
    Until the first second of playback has been judged, echo is assumed (the safe side: the
    assistant must not interrupt itself); afterwards the verdict is refreshed every 250 ms.
    Cost: one 32k-point FFT correlation every 250 ms (~1 ms).
    """

    WINDOW = 16000  # samples (1 s) correlated
    MAX_LAG = 9600  # samples (600 ms): acoustic delay + the reference lead
    EVERY = 25  # frames between verdicts
    THRESHOLD = 0.3
    FORGET = 500  # frames (5 s) of silence after which echo is assumed again
    QUIET_REF = 1e-4  # mean square (-40 dBFS): a reference below this tells nothing
    # A VAD onset while the assistant talks is its own voice (see `onset_is_echo`) if what
    # the VAD heard correlates this much with the reference... Measured on 1-4 s of Piper
    # speech: an echo through simulated rooms 0.79-1.0 from its first 100 ms, a digital
    # loopback 1.0 (0.58 once, on a machine so loaded that the speaker underran every
    # second), an echo the canceller lost track of (a 150-300 ms unreported delay jump)
    # 0.66-0.9, a user talking over a cancelled echo 0.37. A user alone, in the same voice
    # as the assistant (the worst case), over 288 onsets (12 phrases, 3 answers, 100-250 ms
    # into the speech): median 0.19, p95 0.38, p99 0.55, max 0.66. Vetoing a real user costs
    # a slower barge-in; letting an echo through makes the assistant interrupt itself.
    ONSET_THRESHOLD = 0.55
    # ... or if the canceller took this much of it away (output / microphone RMS): then it
    # was mostly echo and the VAD fired on the residue (ratios 0.06-0.11 measured), while a
    # user's voice, which the canceller cannot predict, passes (0.84 over a cancelled echo
    # as loud as the user; an echo 12 dB louder than the user would be taken for echo).
    ONSET_CANCELLED = 0.25
    # ... or if the raw microphone is mostly a copy of the reference (>= 72 % of its energy
    # explained by it) and what the canceller left still follows it: the assistant's voice
    # alone, which AEC3 distorted instead of removing. While AEC3 has lost track (the speaker
    # underran or stalled without telling) its residue correlates less than an intact echo
    # and keeps 34-150 % of the level; a loopback's residue passed at 0.49 / 34 % in a full
    # test run. Over 200 simulated such onsets (a loopback with underruns, 150-300 ms
    # stalls, a room) the two rules above caught 79 %, with this one 97 %; over 217 onsets
    # of a user talking over an echo (three rooms, four levels) they vetoed 4.6 %, with this
    # one 6.0 %. A vetoed user is checked again at their next onset (they keep talking), so
    # their barge-in comes later, not never.
    ONSET_RAW = 0.85
    ONSET_RAW_RESIDUE = 0.3
    # ... or if the canceller removed much of it (<= 60 % kept) and the rest still follows
    # the reference (>= 0.4): a loopback's residue passed at 0.54 / 50 % (raw 0.71, an
    # underrun in the window) in a full test run. Over the same simulated onsets: 97.5 %
    # of the echoes caught instead of 97 %, 6.5 % of the users vetoed instead of 6.0 %.
    ONSET_HALF_KEPT = 0.6
    ONSET_HALF_RESIDUE = 0.4
    # After an onset was found to be echo the canceller is not to be trusted for a while
    # (AEC3 takes about a second to re-converge; its residue meanwhile correlated 0.42 and
    # kept 47 %, measured): an onset must then look clearly like a user's voice.
    SUSPECT_FRAMES = 150  # 1.5 s
    SUSPECT_THRESHOLD = 0.3  # 89 % of the user onsets above pass (99 % at ONSET_THRESHOLD)
    SUSPECT_KEPT = 0.5
    # Echo is found at THRESHOLD but ruled out only below this: a loopback whose timing
    # jitters (speaker underruns) correlated 0.16-0.40 from one verdict to the next.
    RULE_OUT = 0.15
    # With echo ruled out (the VAD hears the raw microphone) a correlation between
    # ONSET_THRESHOLD and this is not decided at once: a user in the assistant's own voice
    # reached 0.63 once in a test run, was taken for echo, and the "echo" verdict then let
    # AEC3 swallow the rest of the barge-in. The onset is judged again on more of it, each
    # frame, until DEFER_SAMPLES of voice: over longer windows a user's chance correlation
    # falls (144 onsets: p99 0.59 / max 0.66 at 100 ms, p99 0.41 / max 0.47 at 300 ms)
    # while an echo's stays high (a loopback 1.0, rooms 0.79-1.0).
    DEFINITE = 0.8
    DEFER_SAMPLES = 4800  # 300 ms of voice
    ONSET_EXTRA = 512  # samples: the VAD's onset frame may start up to a frame earlier
    SILENT = 1e-4  # |sample| below this (-80 dBFS) is digital silence, not a sound

    def __init__(self) -> None:
        self.size = self.WINDOW + self.MAX_LAG
        self.mic = np.zeros(self.size, dtype=np.float32)
        self.ref = np.zeros(self.size, dtype=np.float32)
        self.out = np.zeros(self.size, dtype=np.float32)  # what the VAD got (see `output`)
        self.pos = 0  # ring write position (same for all rings)
        self._last = 0  # where the last frame was written
        self._suspect_until = 0  # frame count until which onsets are suspected echo
        self.frames = 0  # frames since playback started
        self.idle = 0  # frames since playback stopped
        self.echo = True
        self.last_corr = 0.0

    def update(self, mic: np.ndarray, ref: np.ndarray, playing: bool) -> bool:
        """Feed one frame; True while the echo canceller's output should be used."""
        if not playing:
            self.idle += 1
            if self.idle > self.FORGET:  # a new answer, maybe a new room (headphones off)
                self.frames = 0
                self.echo = True
            return True
        self.idle = 0
        n = mic.size
        self.mic[self.pos : self.pos + n] = mic
        self.ref[self.pos : self.pos + n] = ref
        self._last = self.pos
        self.pos = (self.pos + n) % self.size
        self.frames += 1
        if self.frames * n >= self.WINDOW + self.MAX_LAG // 2 and self.frames % self.EVERY == 0:
            self._verdict()
        return self.echo

    def _verdict(self) -> None:
        """Echo path or not, from the last second. A microphone that was digitally silent
        for most of it is judged on its sound only, and only once there is half a second of
        it: a user's first syllable, correlated over 50 ms, can match the reference by
        chance (0.43 measured), and AEC3 then suppressed the rest of the barge-in."""
        mic = self._newest(self.mic, self.WINDOW)
        sound = np.flatnonzero(np.abs(mic) > self.SILENT)
        if sound.size and sound[0] > 0 and self.WINDOW - sound[0] < self.WINDOW // 2:
            return  # a sound began less than 0.5 s ago: the onset check judges it
        self.last_corr = self.correlation(self.WINDOW - int(sound[0]) if sound.size else None)
        echo = self.last_corr >= (self.RULE_OUT if self.echo else self.THRESHOLD)
        if echo != self.echo:
            log.info("echo path %s (correlation %.2f)", "found" if echo else "ruled out", self.last_corr)
        self.echo = echo

    def _newest(self, ring: np.ndarray, n: int) -> np.ndarray:
        """The newest `n` samples (at most the ring's size) of one of the rings, oldest
        first: a view where they are contiguous, else a copy of the two parts."""
        start = self.pos - n
        if start >= 0:
            return ring[start : self.pos]
        return np.concatenate((ring[start:], ring[: self.pos]))

    def output(self, out: np.ndarray) -> None:
        """The canceller's output for the frame last given to :meth:`update` (while playing)."""
        if self.idle == 0 and self.frames:
            self.out[self._last : self._last + out.size] = out

    def correlation(self, n: int | None = None, signal: np.ndarray | None = None) -> float:
        """Peak normalised cross-correlation of the last `n` samples (default: the window)
        of `signal` (default: the microphone) with the reference up to MAX_LAG earlier."""
        n = self.WINDOW if n is None else max(FRAME_SAMPLES, min(int(n), self.WINDOW))
        mic = self._newest(self.mic if signal is None else signal, n).astype(np.float64)
        ref = self._newest(self.ref, n + self.MAX_LAG).astype(np.float64)  # ref[MAX_LAG+k] ~ mic[k]
        e_mic = float(np.dot(mic, mic))
        if e_mic < 1e-6:
            # A microphone this quiet (RMS below -100 dBFS) while the reference plays at a
            # normal level hears no echo at all (a virtual card, a muted or digital input);
            # with a quiet reference too there is nothing to judge, so the verdict is kept.
            # An echo that starts later (a loopback that starts late, headphones taken off)
            # is caught at the VAD onset it causes: see `onset_is_echo`.
            loud = float(np.dot(ref, ref)) > self.QUIET_REF * ref.size
            return 0.0 if loud else (1.0 if self.echo else 0.0)
        size = 1 << int(np.ceil(np.log2(2 * n + self.MAX_LAG)))  # no circular wrap-around
        spec = np.fft.rfft(ref, size) * np.conj(np.fft.rfft(mic, size))
        corr = np.fft.irfft(spec, size)[: self.MAX_LAG + 1]  # corr[j] = sum ref[j+k] mic[k]
        sq = np.concatenate([[0.0], np.cumsum(ref * ref)])
        e_ref = sq[n : n + self.MAX_LAG + 1] - sq[: self.MAX_LAG + 1]
        ok = e_ref > 1e-6
        if not ok.any():
            return 0.0
        return float(np.max(corr[ok] / np.sqrt(e_mic * e_ref[ok])))

    def onset_is_echo(self, n: int) -> bool | None:
        """A voice onset in the last `n` samples while the assistant talks: is it its own
        voice? The last gate before SpeechStarted, i.e. before the assistant stops talking.
        None: not sure yet, ask again with more of it (see DEFINITE).

        Two ways the echo reaches the VAD although the canceller is there:
        * Echo was ruled out (a silent microphone, or no correlation) and the VAD listens to
          the raw microphone, but the path appears later: a loopback that starts delivering
          late, headphones taken off.
        * The canceller lost track for a moment (the speaker stalled, AEC3 re-converging
          after a jump of the echo delay) and lets echo through, or the VAD fires on what
          little it leaves.
        So the onset, as the VAD heard it, is cross-correlated with the reference (an echo is
        a filtered copy of it; a user is independent of it), and its level compared with the
        raw microphone's (the canceller removes echo, not a user it cannot predict). The raw
        microphone is correlated too: nearly a copy of the reference means nothing but echo,
        however distorted the canceller's residue is. If it is echo, echo is assumed from now
        on (the canceller's output is used).
        """
        if self.idle > 0 or self.frames == 0:
            return False  # nothing plays (or has played within the tail): no echo possible
        voice = n
        n = min(n + self.ONSET_EXTRA, self.frames * FRAME_SAMPLES, self.WINDOW)
        mic = self._newest(self.mic, n)
        sound = np.flatnonzero(np.abs(mic) > self.SILENT)
        if sound.size == 0:
            return False
        # From the first sample the microphone heard: the reference that played while it
        # was digitally silent (a loopback not yet delivering) would dilute the correlation.
        n -= int(sound[0])
        out = self._newest(self.out, n)
        e_mic, e_out = float(np.dot(mic[-n:], mic[-n:])), float(np.dot(out, out))
        kept = float(np.sqrt(e_out / e_mic)) if e_mic > 0 else 1.0
        corr, raw = self.correlation(n, self.out), self.correlation(n)
        suspect = self.frames < self._suspect_until
        if suspect:
            echo = corr >= self.SUSPECT_THRESHOLD or kept <= self.SUSPECT_KEPT
        else:
            echo = corr >= self.ONSET_THRESHOLD or kept <= self.ONSET_CANCELLED
        echo = (echo or (raw >= self.ONSET_RAW and corr >= self.ONSET_RAW_RESIDUE)
                or (kept <= self.ONSET_HALF_KEPT and corr >= self.ONSET_HALF_RESIDUE))
        self.last_corr = corr
        if (echo and not suspect and not self.echo and corr < self.DEFINITE
                and kept > self.ONSET_CANCELLED and voice < self.DEFER_SAMPLES):
            log.debug("voice onset while the assistant talks: correlation %.2f after %d ms, "
                      "undecided", corr, voice // 16)
            return None
        if echo and not suspect:  # a fixed period: a user talking over a leaking echo waits
            self._suspect_until = self.frames + self.SUSPECT_FRAMES  # at most this long
        log.info("voice onset while the assistant talks: correlation %.2f (raw microphone "
                 "%.2f), %.0f%% kept by the canceller: %s", corr, raw, 100 * kept,
                 "its own voice" if echo else "the user")
        if echo and not self.echo:
            log.info("echo path found at a voice onset")
            self.echo = True
        return echo


def _to_int16(x: np.ndarray, scratch: np.ndarray, out: np.ndarray) -> None:
    """float32 [-1, 1] -> int16 into `out`, rounded and clipped, through `scratch`."""
    np.multiply(x, _TO_I16, out=scratch)
    np.rint(scratch, out=scratch)
    np.clip(scratch, -32768.0, 32767.0, out=scratch)
    np.copyto(out, scratch, casting="unsafe")
