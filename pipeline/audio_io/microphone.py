"""The microphone: a live device (:class:`MicStream`) or a WAV file (:class:`MicFile`),
both behind the :class:`Source` interface, so device mode and file mode share every other line.

The device callback runs on PortAudio's thread exactly when the card has data, so Python
work elsewhere cannot make us lose audio; it makes the one copy it must (PortAudio reuses
`indata`) and puts it on a queue without blocking. Resampling, when the device refuses
16 kHz, happens in :meth:`MicStream.read`, never in the callback.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from os import PathLike
from typing import Any, NamedTuple, Protocol

import numpy as np

from pipeline.audio import AudioFormatError, Closes, Framer, StreamResampler, read_wav
from pipeline.audio_io.clock import CaptureClock, adc_wall_time
from pipeline.audio_io.devices import (
    SIDES,
    DeviceError,
    DeviceStream,
    StreamStats,
    StreamWatch,
    close_quietly,
    locate,
    open_error,
)

MIC_RATE = 16000  # what the VAD and Whisper want


class AudioBlock(NamedTuple):
    """One microphone block: mono float32 samples and the UNIX time of the first sample."""

    samples: np.ndarray
    capture_time: float



class Source(Protocol):
    """Where the user's voice comes from: a live microphone or a WAV file."""

    sample_rate: int
    block_frames: int  # samples per block `read` returns
    finished: bool  # no block will ever come again (a file read to its end)

    @property
    def overflows(self) -> int: ...

    def start(self) -> Source: ...

    def read(self, timeout: float | None = None) -> AudioBlock | None:
        """The next block, or None after `timeout` seconds without one; raises DeviceError
        when the device died (then :meth:`reopen`)."""
        ...

    def reopen(self) -> Source: ...

    def close(self) -> None: ...


class MicStream(DeviceStream, Closes):
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
        self._side = SIDES["input"]
        self._stall_s = stall_timeout_s
        self._watch = StreamWatch(self._side, stall_timeout_s)
        self._stream: Any = None
        self._resampler: StreamResampler | None = None
        self._block_s = block_ms / 1000.0
        self._max_age_s = 2.0
        self._clock = CaptureClock(sample_rate)
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
        found = locate(self.device, "input", self.sample_rate, self.forced_rate)
        sd, index, rate = found.sd, found.index, found.rate
        self.device_name = found.name
        self.device_rate = rate
        self._block_s = round(rate * self.block_ms / 1000.0) / rate
        self._resampler = None
        if rate != self.sample_rate:
            self._resampler = StreamResampler(rate, self.sample_rate)
        self._clock = CaptureClock(rate)
        self._framer.reset()
        self._ready.clear()
        self._watch = StreamWatch(self._side, self._stall_s)
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
            raise open_error(self._side, self.device, self.device_name, exc) from None
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

    def close(self) -> None:
        """Stop at once (pending blocks are discarded); closing twice is harmless."""
        stream, self._stream = self._stream, None
        close_quietly(stream, self._watch)
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



class MicFile(Closes):
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


