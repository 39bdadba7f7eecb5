"""Microphone and speaker: real devices through PortAudio, or WAV files with the same interface.

The nodes only see two small interfaces, so device mode and file mode share every other line:

* a source (:class:`MicStream`, :class:`MicFile`): ``start()``, ``read(timeout)`` ->
  :class:`AudioBlock` ``(samples, capture_time)`` or None, ``close()``;
* a sink (:class:`SpeakerStream`, :class:`SpeakerFile`): ``add(turn_id, segment_index,
  samples, sample_rate, text, last)``, ``events`` / ``drain_events()``, ``clear()``,
  ``is_playing``, ``close()``.

Why callbacks and not blocking reads/writes: PortAudio calls us on its own thread exactly
when the card needs data, so Python work elsewhere (VAD, logging, GC) cannot make the card
run dry. The callbacks therefore do as little as possible: the microphone callback makes
the one copy it must (PortAudio reuses `indata`) and puts it on a queue without blocking;
the speaker callback copies ready samples out of a :class:`~pipeline.playback.PlaybackBuffer`.
Resampling, when a device refuses our rate, happens on the consumer's side (``read``,
``add``), never in a callback.

`sounddevice` is imported lazily inside functions: importing it raises OSError when the
PortAudio library is missing, and file mode (and the tests of everything else) must work
without it. Every failure a user can fix is a :class:`DeviceError` whose message names the
setting to change.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from os import PathLike
from types import ModuleType, TracebackType
from typing import Any, NamedTuple

import numpy as np

from pipeline.audio import (
    AudioFormatError,
    Framer,
    StreamResampler,
    WavWriter,
    read_wav,
    resample,
)
from pipeline.playback import CutSegment, PlaybackBuffer, PlaybackEvent, dac_wall_time, drain

MIC_RATE = 16000  # what the VAD and Whisper want
PIPER_RATE = 22050  # the bundled voice


class DeviceError(RuntimeError):
    """A device (or PortAudio, or a MIC_FILE) cannot be used; the message says what to set."""


class AudioBlock(NamedTuple):
    """One microphone block: mono float32 samples and the UNIX time of the first sample."""

    samples: np.ndarray
    capture_time: float


@dataclass
class StreamStats:
    """Counters a node logs now and then; written by the audio callback, read by anyone."""

    blocks: int = 0  # callbacks run
    overflows: int = 0  # input: the device had to drop audio (we were too slow)
    underflows: int = 0  # output: the device played silence it did not get from us
    dropped: int = 0  # input: blocks dropped because the reader fell 10 s behind
    callback_max_s: float = 0.0
    callback_total_s: float = 0.0

    @property
    def callback_mean_s(self) -> float:
        return self.callback_total_s / self.blocks if self.blocks else 0.0

    def record(self, seconds: float) -> None:
        self.blocks += 1
        self.callback_total_s += seconds
        if seconds > self.callback_max_s:
            self.callback_max_s = seconds


# --------------------------------------------------------------------------- devices


@dataclass(frozen=True)
class _Side:
    """Names that differ between the input and the output side, for error messages."""

    kind: str  # "input" or "output"
    device_var: str
    file_var: str
    thing: str
    file_hint: str

    def help(self, devices: str) -> str:
        return (
            f"plug in a {self.thing}, set {self.device_var} to one of: {devices}, "
            f"or set {self.file_var} {self.file_hint}."
        )


_SIDES = {
    "input": _Side("input", "MIC_DEVICE", "MIC_FILE", "microphone",
                   "to a WAV file to run without a microphone"),
    "output": _Side("output", "SPEAKER_DEVICE", "SPEAKER_FILE", "speaker",
                    "to a WAV file path to write the voice to a file instead"),
}


def _side(kind: str) -> _Side:
    try:
        return _SIDES[kind]
    except KeyError:
        raise ValueError(f"kind must be 'input' or 'output', got {kind!r}") from None


def _sounddevice(kind: str = "input") -> ModuleType:
    """Import sounddevice, turning a missing PortAudio library into a DeviceError."""
    side = _side(kind)
    try:
        import sounddevice
    except ImportError:
        raise DeviceError(
            "The sounddevice package is not installed: pip install sounddevice, "
            f"or set {side.file_var} {side.file_hint}."
        ) from None
    except OSError as exc:  # "PortAudio library not found"
        raise DeviceError(
            f"The PortAudio library is not installed ({exc}): install it "
            f"(Debian/Ubuntu: apt-get install libportaudio2; macOS: brew install portaudio), "
            f"or set {side.file_var} {side.file_hint}."
        ) from None
    return sounddevice


def _channels_key(kind: str) -> str:
    return "max_input_channels" if kind == "input" else "max_output_channels"


def _query(kind: str) -> list[dict[str, Any]]:
    """All PortAudio devices (each dict has its `index`); a PortAudio failure is a DeviceError."""
    sd = _sounddevice(kind)
    try:
        return [dict(d) for d in sd.query_devices()]
    except sd.PortAudioError as exc:
        side = _side(kind)
        raise DeviceError(
            f"PortAudio cannot list audio devices ({exc}) ({side.device_var}): "
            + side.help("(none)")
        ) from None


def list_devices(kind: str) -> list[str]:
    """`"<index> '<name>'"` of every device usable for `kind`, for messages and logs."""
    key = _channels_key(kind)
    return [f"{d['index']} '{d['name']}'" for d in _query(kind) if d.get(key, 0) > 0]


def _devices_text(kind: str) -> str:
    names = list_devices(kind)
    return ", ".join(names) if names else "(no device found)"


def find_device(spec: str, kind: str) -> int:
    """The PortAudio index for a MIC_DEVICE / SPEAKER_DEVICE value.

    `spec` is empty (the system default; an error if there is none), an integer index, or
    a case-insensitive part of the device name (an exact name wins over a partial match;
    several partial matches are an error rather than a silent guess). Errors list the
    devices the user can choose from.
    """
    side = _side(kind)
    spec = spec.strip()
    key = _channels_key(kind)
    devices = [d for d in _query(kind) if d.get(key, 0) > 0]
    if not spec:
        return _default_device(side, devices)
    if spec.lstrip("-").isdigit():
        index = int(spec)
        for d in devices:
            if d["index"] == index:
                return index
        raise DeviceError(
            f"{side.device_var}={spec!r} is not an {kind} device index: "
            + side.help(_devices_text(kind))
        )
    low = spec.lower()
    exact = [d for d in devices if d["name"].lower() == low]
    matches = exact or [d for d in devices if low in d["name"].lower()]
    if len(matches) == 1:
        return int(matches[0]["index"])
    if not matches:
        raise DeviceError(
            f"No {kind} audio device matches {side.device_var}={spec!r}: "
            + side.help(_devices_text(kind))
        )
    names = ", ".join(f"{d['index']} '{d['name']}'" for d in matches)
    raise DeviceError(
        f"{side.device_var}={spec!r} matches several {kind} devices ({names}): "
        f"set {side.device_var} to an index or a longer part of the name."
    )


def _default_device(side: _Side, devices: list[dict[str, Any]]) -> int:
    sd = _sounddevice(side.kind)
    try:
        index = int(sd.query_devices(kind=side.kind)["index"])
    except (sd.PortAudioError, ValueError):
        index = -1
    if index < 0 or not any(d["index"] == index for d in devices):
        names = ", ".join(f"{d['index']} '{d['name']}'" for d in devices) or "(no device found)"
        raise DeviceError(
            f"No {side.kind} audio device found ({side.device_var}=''): " + side.help(names)
        )
    return index


def _device_name(index: int, kind: str) -> str:
    for d in _query(kind):
        if d["index"] == index:
            return str(d["name"])
    return str(index)


def _pick_rate(sd: ModuleType, index: int, kind: str, wanted: int, forced: int | None) -> int:
    """The rate to open the device at: `forced`, else `wanted` if it takes it, else its own."""
    if forced:
        return forced
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=index, channels=1, dtype="float32", samplerate=wanted)
        return wanted
    except (sd.PortAudioError, ValueError):
        return int(sd.query_devices(index)["default_samplerate"])


def _open_error(side: _Side, spec: str, name: str, exc: Exception) -> DeviceError:
    return DeviceError(
        f"Cannot open {side.kind} device '{name}' ({side.device_var}={spec!r}): {exc}. "
        + side.help(_devices_text(side.kind))
    )


def adc_wall_time(
    now: float, current_time: float, adc_time: float, block_s: float, max_age_s: float = 2.0
) -> float:
    """UNIX time of the first sample of an input callback's block.

    PortAudio's stream clock is only meaningful relative to itself, so the age of the block
    (`currentTime - inputBufferAdcTime`) is subtracted from the wall clock read in the
    callback. An age above `max_age_s` is not believed: over ALSA + PulseAudio the first
    second of a stream reports ages of ~0.7 s while blocks demonstrably arrive ~20 ms after
    capture (a tone played at a known time shows up there). Without a believable ADC time
    the block is assumed to have just been completed: now - its duration.
    """
    age = current_time - adc_time
    if current_time > 0 and adc_time > 0 and 0.0 <= age <= max_age_s:
        return now - age
    return now - block_s


class _CaptureClock:
    """Evenly spaced capture times from jittery per-block estimates.

    PortAudio's ADC times over ALSA/PulseAudio jitter by tens of milliseconds from block to
    block (the server delivers in fragments), while the samples themselves are evenly spaced.
    So the clock advances by one block per block and only leans slowly (`gain`) towards the
    estimates. Stamps never go backwards (the VAD and the metrics subtract them): an estimate
    more than `max_error_s` later re-anchors the clock (start, overflow, dropped block), one
    that much earlier (a burst of blocks after a stall) is caught up faster, but by at most
    half a block per block.

    `latest` (optional) is the latest time the block can have started: the wall time its
    callback ran, less its duration. A clock more than `hold_margin_s` past it is provably
    ahead, which happens when a backlog arrives in one burst: measured in the dataflow, the
    microphone node's first callback ran ~3.4 s late (the process busy starting up, most
    likely holding the GIL), then 170 blocks came within 12 ms, all estimated "now" (their
    ADC ages were beyond `max_age_s`). Stepping one block per block put the stamps ~1.6 s in the
    future, and catching that up took ~8 s of stamps running 10-50% slow: the echo
    canceller, which pairs each microphone frame with the speaker audio of its stamp, saw
    the echo delay drift by ~100 ms during the first answer and let the echo through. So
    such a block is stamped no later than `latest` (held at the previous stamp if that is
    later, never backwards): a burst shares one stamp, and the blocks after it are on time.
    """

    def __init__(
        self, rate: int, max_error_s: float = 0.1, gain: float = 0.02, fast_gain: float = 0.25,
        hold_margin_s: float = 0.01,
    ) -> None:
        self.rate = rate
        self.max_error_s = max_error_s
        self.gain = gain
        self.fast_gain = fast_gain
        self.hold_margin_s = hold_margin_s
        self._next: float | None = None
        self._last = float("-inf")

    def stamp(self, estimate: float, frames: int, latest: float | None = None) -> float:
        """Capture time of a block of `frames` whose first sample was estimated at `estimate`
        (and cannot have been captured after `latest`, if given)."""
        duration = frames / self.rate
        if self._next is None or estimate - self._next > self.max_error_s:
            self._next = estimate
        else:
            error = estimate - self._next
            gain = self.fast_gain if error < -self.max_error_s else self.gain
            self._next += max(gain * error, -0.5 * duration)
        stamp = self._next
        if latest is not None and stamp > latest + self.hold_margin_s:
            stamp = max(self._last, min(estimate, latest))
        self._last = stamp
        self._next = stamp + duration
        return stamp

    def reset(self) -> None:
        self._next = None
        self._last = float("-inf")


class _PlayClock:
    """When each output block reaches the speaker: DAC estimates, kept in sequence.

    A block cannot start playing before the previous one has finished, but PortAudio's DAC
    times break that rule right when it matters: after an underflow ALSA refills the buffer
    with a burst of callbacks that all report "now". Taking max(estimate, end of previous
    block - `slack_s`) keeps such bursts sequential and follows real gaps at once; the small
    slack (2.5% of a 20 ms block) lets the stamps follow a device clock that runs a little
    fast instead of drifting ahead for the whole session.
    """

    def __init__(self, rate: int, slack_s: float = 0.0005) -> None:
        self.rate = rate
        self.slack_s = slack_s
        self._next = 0.0

    def stamp(self, estimate: float, frames: int) -> float:
        t0 = max(estimate, self._next - self.slack_s)
        self._next = t0 + frames / self.rate
        return t0


class _StreamWatch:
    """Notices a stream that died under us (device unplugged, sound server gone)."""

    def __init__(self, side: _Side, stall_s: float) -> None:
        self.side = side
        self.stall_s = stall_s
        self.closing = False
        self.died = threading.Event()
        self.last_callback = 0.0

    def finished(self) -> None:
        """sounddevice's finished_callback: fine when we closed it, an error otherwise."""
        if not self.closing:
            self.died.set()

    def check(self, stream: Any, spec: str) -> None:
        name = self.side.device_var
        if self.died.is_set() or (stream is not None and not stream.active and not self.closing):
            raise DeviceError(
                f"The {self.side.thing} stream stopped ({name}={spec!r}): the device may "
                "have been unplugged or the sound server stopped; reopen it, or "
                f"set {self.side.file_var} {self.side.file_hint}."
            )
        if self.stall_s > 0 and time.time() - self.last_callback > self.stall_s:
            raise DeviceError(
                f"No audio from the {self.side.thing} for {self.stall_s:g} s ({name}={spec!r}):"
                " the device may be in use or gone; reopen it, or "
                f"set {self.side.file_var} {self.side.file_hint}."
            )


# --------------------------------------------------------------------------- microphone


class MicStream:
    """A live microphone: mono float32 blocks of `block_ms` at `sample_rate` (16 kHz).

    If the device refuses 16 kHz it is opened at its own rate and :meth:`read` resamples
    with a streaming soxr filter (no seams between blocks); `device_rate` forces that path.
    Blocks wait in a queue of ~10 s; a reader further behind loses the newest (`dropped`).
    """

    def __init__(
        self,
        device: str = "",
        sample_rate: int = MIC_RATE,
        block_ms: float = 20.0,
        device_rate: int | None = None,
        stall_timeout_s: float = 5.0,
    ) -> None:
        self.device = device
        self.sample_rate = sample_rate
        self.block_ms = block_ms
        self.forced_rate = device_rate
        self.stats = StreamStats()
        self.device_rate = 0  # set when opened
        self.device_name = ""
        self._side = _SIDES["input"]
        self._stall_s = stall_timeout_s
        self._watch = _StreamWatch(self._side, stall_timeout_s)
        self._stream: Any = None
        self._resampler: StreamResampler | None = None
        self._block_s = block_ms / 1000.0
        self._max_age_s = 2.0
        self._clock = _CaptureClock(sample_rate)
        self._framer = Framer(max(1, round(sample_rate * block_ms / 1000.0)))
        self._framer_t = 0.0
        self._ready: deque[AudioBlock] = deque()
        max_blocks = max(1, int(10_000 / block_ms))
        self._queue: queue.Queue[tuple[np.ndarray, float, float]] = queue.Queue(maxsize=max_blocks)

    @property
    def overflows(self) -> int:
        return self.stats.overflows

    @property
    def block_frames(self) -> int:
        """Samples per block returned by :meth:`read` (at `sample_rate`)."""
        return self._framer.frame_samples

    @property
    def resampling(self) -> bool:
        return self._resampler is not None

    def start(self) -> MicStream:
        """Open and start the device; a DeviceError names MIC_DEVICE / MIC_FILE on failure."""
        if self._stream is not None:
            return self
        sd = _sounddevice("input")
        index = find_device(self.device, "input")
        self.device_name = _device_name(index, "input")
        rate = _pick_rate(sd, index, "input", self.sample_rate, self.forced_rate)
        self.device_rate = rate
        self._block_s = round(rate * self.block_ms / 1000.0) / rate
        self._resampler = None
        if rate != self.sample_rate:
            self._resampler = StreamResampler(rate, self.sample_rate)
        self._clock = _CaptureClock(rate)
        self._framer.reset()
        self._ready.clear()
        self._watch = _StreamWatch(self._side, self._stall_s)
        self._watch.last_callback = time.time()
        try:
            stream = sd.InputStream(
                samplerate=rate,
                blocksize=round(rate * self.block_ms / 1000.0),
                device=index,
                channels=1,
                dtype="float32",
                callback=self._callback,
                finished_callback=self._watch.finished,
            )
            # a block is at most one block plus the stream's buffering old (+ margin)
            self._max_age_s = self._block_s + float(stream.latency) + 0.05
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise _open_error(self._side, self.device, self.device_name, exc) from None
        self._stream = stream
        return self

    def _callback(self, indata: np.ndarray, frames: int, t: Any, status: Any) -> None:
        """PortAudio thread: one copy, one non-blocking put, a few counters. Nothing else."""
        started = time.perf_counter()
        now = time.time()
        self._watch.last_callback = now
        if status.input_overflow:
            self.stats.overflows += 1
        capture = adc_wall_time(
            now, t.currentTime, t.inputBufferAdcTime, self._block_s, self._max_age_s
        )
        try:
            # the block cannot have started later than one block before now
            self._queue.put_nowait((indata[:, 0].copy(), capture, now - frames / self.device_rate))
        except queue.Full:
            self.stats.dropped += 1
        self.stats.record(time.perf_counter() - started)

    def read(self, timeout: float | None = None) -> AudioBlock | None:
        """The next block, or None after `timeout` seconds without one.

        Raises DeviceError if the stream died (device unplugged, sound server gone) or has
        delivered nothing for `stall_timeout_s`: log it and call :meth:`reopen`.
        """
        if self._stream is None:
            raise DeviceError("MicStream.read() before start() (or after close())")
        if self._ready:
            return self._ready.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
            try:
                samples, capture, latest = self._queue.get(timeout=wait)
            except queue.Empty:
                self._watch.check(self._stream, self.device)
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            capture = self._clock.stamp(capture, samples.size, latest)
            if self._resampler is None:
                return AudioBlock(samples, capture)
            self._resample(samples, capture)
            if self._ready:
                return self._ready.popleft()

    def _resample(self, samples: np.ndarray, capture: float) -> None:
        """Resample a device block to `sample_rate` and cut it into `block_ms` blocks.

        soxr emits in bursts (nothing, then ~30 ms), so the output is re-chunked: every block
        `read` returns has the same length in both paths.
        """
        assert self._resampler is not None
        out = self._resampler.process(samples)
        if out.size == 0:
            return
        # `out` ends where the input block ends, minus what the filter still holds.
        end = capture + samples.size / self.device_rate - self._resampler.delay_s
        if self._framer.pending == 0:
            self._framer_t = end - out.size / self.sample_rate
        step = self._framer.frame_samples / self.sample_rate
        for frame in self._framer.push(out):
            self._ready.append(AudioBlock(frame.copy(), self._framer_t))
            self._framer_t += step

    def reopen(self) -> MicStream:
        """Close and open again (the device may have a new index after being re-plugged)."""
        self.close()
        return self.start()

    def close(self) -> None:
        """Stop at once (pending blocks are discarded); closing twice is harmless."""
        stream, self._stream = self._stream, None
        if stream is not None:
            self._watch.closing = True
            stream.close(ignore_errors=True)
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._resampler is not None:
            self._resampler.reset()

    @property
    def finished(self) -> bool:
        """A live microphone never runs out (interface parity with :class:`MicFile`)."""
        return False

    def __enter__(self) -> MicStream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MicFile:
    """A WAV file posing as a microphone (MIC_FILE): same blocks, same `read` interface.

    The file is read and resampled to `sample_rate` up front (errors surface at once),
    `tail_s` of silence is appended so the VAD sees the end of the last utterance, and the
    audio is cut into `block_ms` blocks (the last one zero-padded).

    With `realtime=True` block k is released when a microphone would have finished
    recording it (start + (k+1) * block duration), waiting on an Event until that deadline
    (no drift from per-block sleeps, and :meth:`close` wakes a waiting reader). With
    `realtime=False` blocks come as fast as they are read. Capture times are synthetic in
    both modes, start + sample offset / rate, so latency maths downstream still works.
    After the last block `finished` is True and `read` returns None at once, forever.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        sample_rate: int = MIC_RATE,
        block_ms: float = 20.0,
        realtime: bool = True,
        tail_s: float = 1.5,
    ) -> None:
        self.path = str(path)
        self.sample_rate = sample_rate
        self.realtime = realtime
        self.stats = StreamStats()
        self.block_frames = max(1, round(sample_rate * block_ms / 1000.0))
        try:
            audio, _ = read_wav(path, target_rate=sample_rate)
        except AudioFormatError as exc:
            raise DeviceError(f"Cannot use MIC_FILE={self.path!r}: {exc}") from None
        self.audio_s = audio.size / sample_rate
        total = audio.size + round(tail_s * sample_rate)
        blocks = -(-total // self.block_frames)
        padded = np.zeros(blocks * self.block_frames, dtype=np.float32)
        padded[: audio.size] = audio
        padded.flags.writeable = False  # blocks are handed out as views
        self._audio = padded
        self._blocks = blocks
        self._next = 0
        self._closed = threading.Event()
        self.start_time: float | None = None
        self.finished = False

    @property
    def overflows(self) -> int:
        return 0

    @property
    def duration_s(self) -> float:
        """Length of what :meth:`read` delivers, tail included."""
        return self._audio.size / self.sample_rate

    def start(self, start_time: float | None = None) -> MicFile:
        """Start the clock (the first `read` does it if you do not)."""
        if self.start_time is None:
            self.start_time = time.time() if start_time is None else start_time
        return self

    def read(self, timeout: float | None = None) -> AudioBlock | None:
        """The next block; None if its real-time deadline is more than `timeout` away."""
        if self.finished or self._closed.is_set():
            self.finished = True
            return None
        self.start()
        assert self.start_time is not None
        k = self._next
        n = self.block_frames
        if self.realtime:
            wait = self.start_time + (k + 1) * n / self.sample_rate - time.time()
            if wait > 0:
                if timeout is not None and wait > timeout:
                    self._closed.wait(timeout)
                    return None
                if self._closed.wait(wait):
                    self.finished = True
                    return None
        self._next = k + 1
        self.finished = self._next >= self._blocks
        self.stats.blocks += 1
        capture = self.start_time + k * n / self.sample_rate
        return AudioBlock(self._audio[k * n : (k + 1) * n], capture)

    def reopen(self) -> MicFile:
        return self

    def close(self) -> None:
        """Wake a waiting `read` and end the stream."""
        self._closed.set()

    def __enter__(self) -> MicFile:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- speaker


@dataclass
class _SegmentResampler:
    """Resampling of a segment that arrives in several chunks, without seams between them."""

    key: tuple[int, int]
    resampler: StreamResampler


@dataclass
class _Resampling:
    """Brings TTS audio to the output rate, chunk by chunk (see `add(end_of_segment=...)`)."""

    out_rate: int
    open: _SegmentResampler | None = None

    def convert(
        self, key: tuple[int, int], samples: np.ndarray, rate: int, end_of_segment: bool
    ) -> np.ndarray:
        if rate == self.out_rate:
            return samples
        if self.open is not None and (self.open.key != key or self.open.resampler.src_rate != rate):
            self.open = None  # abandoned (cut or never ended): its tail is not wanted
        if self.open is None and end_of_segment:
            return resample(samples, rate, self.out_rate)  # the whole segment at once
        if self.open is None:
            self.open = _SegmentResampler(key, StreamResampler(rate, self.out_rate))
        out = self.open.resampler.process(samples)
        if end_of_segment:
            out = np.concatenate([out, self.open.resampler.flush()])
            self.open = None
        return out


class SpeakerStream:
    """A live speaker: a callback-driven OutputStream fed from a :class:`PlaybackBuffer`.

    Opened at `sample_rate` (the TTS rate, 22050 Hz for Piper) when the device takes it,
    else at the device's own rate, in which case :meth:`add` resamples each segment before
    queueing it.

    `latency` and `block_ms` trade barge-in speed against robustness: what is already in the
    device when :meth:`clear` runs (~`latency` seconds) still plays, but a buffer shorter
    than the worst scheduling stall of the callback thread underflows (ALSA then drops and
    restarts, and event times are off by up to the stall). Measured through PulseAudio on a
    loaded 2-core box: 10 ms blocks ("low" -> 20 ms) underflowed in half the runs; 20 ms
    blocks ("low" -> 40 ms) in ~1 run of 6, only when the box was busy; pass
    `latency=0.1` where a 100 ms cut-off is acceptable and the machine is shared.
    `block_ms=0` lets PortAudio choose (~2 ms on ALSA + PulseAudio: 400+ Python calls/s).
    """

    def __init__(
        self,
        device: str = "",
        sample_rate: int = PIPER_RATE,
        block_ms: float = 20.0,
        latency: str | float = "low",
        device_rate: int | None = None,
    ) -> None:
        self.device = device
        self.sample_rate = sample_rate
        self.block_ms = block_ms
        self.latency_setting = latency
        self.forced_rate = device_rate
        self.stats = StreamStats()
        self.device_rate = 0
        self.device_name = ""
        self.latency = 0.0  # seconds, as PortAudio reports it once open
        self._side = _SIDES["output"]
        self._watch = _StreamWatch(self._side, 0.0)
        self._stream: Any = None
        self._events: queue.SimpleQueue[PlaybackEvent] = queue.SimpleQueue()
        self.buffer: PlaybackBuffer | None = None
        self._resampling: _Resampling | None = None
        self._flowing = threading.Event()
        self._frames_requested = 0
        self._ready_frames = 0
        self._clock = _PlayClock(sample_rate)

    def start(self, ready_timeout_s: float = 5.0) -> SpeakerStream:
        """Open and start the device, then wait (up to `ready_timeout_s`) until it plays.

        A DeviceError names SPEAKER_DEVICE / SPEAKER_FILE. The wait matters because a
        stream's first callbacks only prime the device buffer: through the PulseAudio ALSA
        plugin the device then stalls for up to ~2 s while reporting DAC times as if it were
        playing, so audio added in that window would get `started` times ~2 s too early.
        Once the device has consumed more than what priming fills, the times are right.
        A device that stays silent longer is not an error here (see :meth:`check`).
        """
        if self._stream is not None:
            return self
        sd = _sounddevice("output")
        index = find_device(self.device, "output")
        self.device_name = _device_name(index, "output")
        rate = _pick_rate(sd, index, "output", self.sample_rate, self.forced_rate)
        if self.buffer is None or self.buffer.sample_rate != rate:
            # a reopen at the same rate keeps the queued audio; events always survive
            self.buffer = PlaybackBuffer(rate, events=self._events)
            self._resampling = _Resampling(rate)
        self.device_rate = rate
        self._watch = _StreamWatch(self._side, 0.0)
        self._flowing.clear()
        self._frames_requested = 0
        self._clock = _PlayClock(rate)
        try:
            stream = sd.OutputStream(
                samplerate=rate,
                blocksize=round(rate * self.block_ms / 1000.0),
                device=index,
                channels=1,
                dtype="float32",
                latency=self.latency_setting,
                callback=self._callback,
                finished_callback=self._watch.finished,
            )
            self.latency = float(stream.latency)
            self.buffer.latency = self.latency
            block = max(stream.blocksize, 1)
            # priming fills about latency + one block; twice that plus a block means playing
            self._ready_frames = round(2 * (self.latency * rate + block)) + block
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise _open_error(self._side, self.device, self.device_name, exc) from None
        self._stream = stream
        self._flowing.wait(ready_timeout_s)
        return self

    @property
    def ready(self) -> bool:
        """The device is consuming audio (not just primed); event times are trustworthy."""
        return self._flowing.is_set()

    def _callback(self, outdata: np.ndarray, frames: int, t: Any, status: Any) -> None:
        """PortAudio thread: copy ready samples (or zeros) into `outdata`. Nothing else."""
        started = time.perf_counter()
        if status.output_underflow:
            self.stats.underflows += 1
        buffer = self.buffer
        if buffer is None:
            outdata.fill(0.0)
            return
        t0 = dac_wall_time(time.time(), t.currentTime, t.outputBufferDacTime, self.latency)
        buffer.fill(outdata, self._clock.stamp(t0, frames))
        self._frames_requested += frames
        if self._frames_requested >= self._ready_frames and not self._flowing.is_set():
            self._flowing.set()
        self.stats.record(time.perf_counter() - started)

    def add(
        self,
        turn_id: int,
        segment_index: int,
        samples: np.ndarray,
        sample_rate: int,
        text: str = "",
        last: bool = False,
        end_of_segment: bool = True,
    ) -> bool:
        """Queue TTS audio (resampled to the device rate if needed); see PlaybackBuffer.add.

        Raises DeviceError if the stream died since it was opened (then :meth:`reopen`).
        """
        self.check()
        assert self.buffer is not None and self._resampling is not None
        data = self._resampling.convert((turn_id, segment_index), samples, sample_rate,
                                        end_of_segment)
        return self.buffer.add(turn_id, segment_index, data, text, last, end_of_segment)

    def check(self) -> None:
        """Raise DeviceError if the output stream is not running (unplugged, server gone)."""
        if self._stream is None:
            raise DeviceError("SpeakerStream used before start() (or after close())")
        self._watch.check(self._stream, self.device)

    def clear(self, turn_id_below: int | None = None) -> list[CutSegment]:
        """Barge-in: drop queued audio; see :meth:`PlaybackBuffer.clear`."""
        if self._resampling is not None:
            self._resampling.open = None
        return self.buffer.clear(turn_id_below) if self.buffer is not None else []

    @property
    def events(self) -> queue.SimpleQueue[PlaybackEvent]:
        """started / finished / turn_end events (see :class:`PlaybackEvent`)."""
        return self._events

    def drain_events(self) -> list[PlaybackEvent]:
        return drain(self._events)

    @property
    def is_playing(self) -> bool:
        return self.buffer is not None and self.buffer.is_playing

    @property
    def underflows(self) -> int:
        """Device-reported output underflows (PortAudio ran out of data)."""
        return self.stats.underflows

    @property
    def underruns(self) -> int:
        """Starvation in the middle of a segment (the TTS did not keep up)."""
        return self.buffer.underruns if self.buffer is not None else 0

    def reopen(self) -> SpeakerStream:
        """Close and open again; queued audio survives when the rate does not change."""
        self.close()
        return self.start()

    def close(self) -> None:
        """Stop at once (what is queued is not played); closing twice is harmless."""
        stream, self._stream = self._stream, None
        if stream is not None:
            self._watch.closing = True
            stream.close(ignore_errors=True)

    def __enter__(self) -> SpeakerStream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SpeakerFile:
    """The speaker in file mode (SPEAKER_FILE): audio goes to a mono int16 WAV file.

    The file's rate is the first audio's rate (later audio at another rate is resampled to
    it). Playback is "instant": each `add` is drained at once through the same
    :class:`PlaybackBuffer` logic as the device, on a virtual clock that starts at
    max(now, end of the previous audio), so events arrive immediately and their times are
    those of a speaker that plays everything as soon as it gets it. Segments are written
    back to back (no silence for the time the TTS took).
    """

    def __init__(self, path: str | PathLike[str], default_rate: int = PIPER_RATE) -> None:
        self.path = str(path)
        self.default_rate = default_rate
        self.stats = StreamStats()
        self._events: queue.SimpleQueue[PlaybackEvent] = queue.SimpleQueue()
        self.buffer: PlaybackBuffer | None = None
        self._writer: WavWriter | None = None
        self._resampling: _Resampling | None = None
        self._closed = False

    @property
    def sample_rate(self) -> int:
        return self.buffer.sample_rate if self.buffer is not None else self.default_rate

    def start(self) -> SpeakerFile:
        """Refuse a path that cannot be written now, at start, not at the first answer."""
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise DeviceError(f"Cannot write SPEAKER_FILE={self.path!r}: {folder} is not a "
                              "folder this user can write to")
        return self

    def _open(self, rate: int) -> PlaybackBuffer:
        if self.buffer is None:
            try:
                self._writer = WavWriter(self.path, rate)
            except OSError as exc:
                raise DeviceError(
                    f"Cannot write SPEAKER_FILE={self.path!r}: {exc.strerror or exc}"
                ) from None
            self.buffer = PlaybackBuffer(rate, events=self._events)
            self._resampling = _Resampling(rate)
        return self.buffer

    def add(
        self,
        turn_id: int,
        segment_index: int,
        samples: np.ndarray,
        sample_rate: int,
        text: str = "",
        last: bool = False,
        end_of_segment: bool = True,
    ) -> bool:
        """Write the audio and record its events at once; see PlaybackBuffer.add."""
        if self._closed:
            raise DeviceError(f"SPEAKER_FILE={self.path!r} is already closed")
        buffer = self._open(sample_rate)
        assert self._resampling is not None and self._writer is not None
        data = self._resampling.convert((turn_id, segment_index), samples, sample_rate,
                                        end_of_segment)
        if not buffer.add(turn_id, segment_index, data, text, last, end_of_segment):
            return False
        audio = buffer.drain_all(t0=max(time.time(), buffer.end_time))
        self._writer.write(audio)
        self.stats.blocks += 1
        return True

    def clear(self, turn_id_below: int | None = None) -> list[CutSegment]:
        """Everything was already "played"; only a segment still expecting chunks is cut."""
        if self._resampling is not None:
            self._resampling.open = None
        return self.buffer.clear(turn_id_below) if self.buffer is not None else []

    @property
    def events(self) -> queue.SimpleQueue[PlaybackEvent]:
        """started / finished / turn_end events, recorded during :meth:`add`."""
        return self._events

    def drain_events(self) -> list[PlaybackEvent]:
        return drain(self._events)

    @property
    def is_playing(self) -> bool:
        """True until the virtual clock passes the end of the audio written."""
        return self.buffer is not None and self.buffer.is_playing

    @property
    def underflows(self) -> int:
        return 0

    @property
    def underruns(self) -> int:
        return self.buffer.underruns if self.buffer is not None else 0

    @property
    def seconds_written(self) -> float:
        return self._writer.seconds_written if self._writer is not None else 0.0

    def check(self) -> None:
        return None

    def reopen(self) -> SpeakerFile:
        return self

    def close(self) -> None:
        """Finalize the WAV (an empty one at `default_rate` if nothing was said)."""
        if self._closed:
            return
        self._closed = True
        if self._writer is None:
            self._open(self.default_rate)
        assert self._writer is not None
        self._writer.close()

    def __enter__(self) -> SpeakerFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
