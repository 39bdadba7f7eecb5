"""The echo canceller: WebRTC's AEC3 (with noise suppression and a high-pass filter) via livekit.

On a laptop the speaker reaches the microphone. Without help the VAD takes the assistant's
own voice for a user turn and the assistant interrupts itself; muting the microphone while
it talks (half duplex) fixes that but makes barge-in impossible. So the microphone signal
is cleaned with the audio that was played as the *reference*: an adaptive filter learns the
speaker -> room -> microphone path and subtracts the predicted echo; what remains is the user.

Why AEC3 through the `livekit` package: AEC3 (Chromium's echo canceller) has its own delay
estimator, so the speaker -> microphone delay (device buffers, air, the error of our
timestamps) only has to be bounded, not known; echoes up to ~500 ms behind their reference
are found, none that come *before* it. `livekit` (Apache-2.0, wheels for Linux, macOS and
Windows) ships it prebuilt; :class:`livekit.rtc.AudioProcessingModule` is a local FFI call
that needs no LiveKit server or network. Its price: a 30 MB wheel, a few idle native
threads, and only on/off switches (AEC3's tuning is not exposed). Speex's MDF canceller has
no delay estimator, and the other wrappers lack a canceller or a track record.

The WebRTC module needs exactly 10 ms frames of int16 and one reverse (far end, what
plays) frame before each forward (microphone) frame. :class:`EchoCanceller` does that
bookkeeping: it keeps a :class:`~pipeline.echo.reference.ReferenceTimeline`, cuts
microphone chunks of any length into 10 ms frames, and for each one feeds the reference
playing around the frame's capture time (see `reference_lead_ms`), then the frame itself.

AEC3's weak spot: when the user talks over loud echo its suppressor eats part of the
user's first words, so barge-in is detected on a later word. The VAD therefore keeps the
raw microphone for the utterance (see `VadPipeline.push`) and a longer preroll on barge-in.

The reference must reach the canceller before the microphone audio it echoes into is
processed (by `reference_lead_ms` before it plays, minus the microphone's own transport
delay): a frame processed earlier was paired with silence and its echo stays.

If the library cannot be loaded, :attr:`EchoCanceller.available` is False and
:meth:`EchoCanceller.process` passes the audio through.

Not thread-safe: one thread (the VAD node's event loop) calls every method.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.echo.onset import OnsetJudge, OnsetRules
from pipeline.echo.presence import EchoPresence
from pipeline.echo.reference import FRAME_SAMPLES, SAMPLE_RATE, ReferenceTimeline

log = logging.getLogger("echo")

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
    onset: OnsetRules = field(default_factory=OnsetRules)

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
    and the nodes' scheduling. Only what is needed is added: all of it delays the answer.
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
        self.onset = OnsetJudge(self.presence, cfg.onset)
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
        echo is assumed from now on). See :class:`~pipeline.echo.onset.OnsetJudge`."""
        return self.onset.is_echo(n_samples) if self._backend is not None else False

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



def _to_int16(x: np.ndarray, scratch: np.ndarray, out: np.ndarray) -> None:
    """float32 [-1, 1] -> int16 into `out`, rounded and clipped, through `scratch`."""
    np.multiply(x, _TO_I16, out=scratch)
    np.rint(scratch, out=scratch)
    np.clip(scratch, -32768.0, 32767.0, out=scratch)
    np.copyto(out, scratch, casting="unsafe")
