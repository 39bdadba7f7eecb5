"""The speaker: a live device (:class:`SpeakerStream`) or a WAV file (:class:`SpeakerFile`).

Both are a :class:`Speaker` (one base class: the :class:`~pipeline.playback.PlaybackBuffer`
that knows what plays when, resampling, barge-in) and satisfy the :class:`Sink` protocol,
which is everything the speaker stage asks of a sink, with an answer for file mode too; so
the stage needs no `isinstance` checks.

The device callback runs on PortAudio's thread exactly when the card needs data, and only
copies ready samples out of the buffer; resampling happens in :meth:`Speaker.add`.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from os import PathLike
from typing import Any, Protocol

import numpy as np

from pipeline.audio import Closes, StreamResampler, WavWriter, resample
from pipeline.audio_io.clock import PlayClock
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
from pipeline.messages import CUT, NO_TURN
from pipeline.playback import CutSegment, EventLog, PlaybackBuffer, PlaybackEvent, dac_wall_time

PIPER_RATE = 22050  # the bundled voice


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



class Sink(Protocol):
    """Where the voice goes: everything the speaker stage asks of it, device or file.

    The stage reads every playback event from one queue, :attr:`events` (started, finished,
    turn_end, the device's stalls as `delay` and barge-in cuts as `cut`, in the order they
    happened; see :class:`~pipeline.playback.PlaybackEvent`); it may put events of its own
    there so they keep their place among them.
    """

    echoes: bool  # a microphone may hear it: the echo canceller needs its reference
    latency: float  # seconds from queueing at an idle device to being heard (file: 0)

    @property
    def events(self) -> queue.SimpleQueue[PlaybackEvent]: ...

    @property
    def is_playing(self) -> bool: ...

    @property
    def output_rate(self) -> int: ...

    @property
    def underruns(self) -> int: ...

    @property
    def underflows(self) -> int: ...

    def add(self, turn_id: int, segment_index: int, samples: np.ndarray, sample_rate: int,
            text: str = "", last: bool = False, end_of_segment: bool = True) -> bool: ...

    def clear(self, turn_id_below: int | None = None) -> list[CutSegment]: ...

    def duck(self, ducked: bool, depth_db: float = -20.0) -> None: ...

    def hold(self, held: bool, lead_in_s: float = 0.0) -> bool: ...

    @property
    def held(self) -> bool: ...

    def reference_start(self) -> float: ...

    def played_until(self) -> float: ...

    def reopen(self) -> Sink: ...

    def close(self) -> None: ...


class Speaker(Closes, EventLog):
    """What a device speaker and a file speaker share: the :class:`PlaybackBuffer` (made at
    the output rate once it is known), resampling to that rate, events and barge-in.

    Subclasses open the output (:meth:`start`), say whether it is still there
    (:meth:`check`) and move queued audio out (the device's callback, or :meth:`_written`).
    """

    echoes = False

    def __init__(self, default_rate: int = PIPER_RATE) -> None:
        self.default_rate = default_rate  # the rate audio is expected at (the TTS's)
        self.latency = 0.0
        self.stats = StreamStats()
        self._events: queue.SimpleQueue[PlaybackEvent] = queue.SimpleQueue()
        self.buffer: PlaybackBuffer | None = None
        self._resampling: _Resampling | None = None

    def _use_rate(self, rate: int) -> PlaybackBuffer:
        """The buffer at output rate `rate` (a new one, events kept, if the rate changed)."""
        if self.buffer is None or self.buffer.sample_rate != rate:
            self.buffer = PlaybackBuffer(rate, self.latency, events=self._events)
            self._resampling = _Resampling(rate)
        return self.buffer

    def _buffer_for(self, sample_rate: int) -> PlaybackBuffer:
        """The buffer `add` queues into (opened by `start` on a device)."""
        self.check()
        assert self.buffer is not None
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
        """Queue TTS audio (resampled to the output rate if needed); see PlaybackBuffer.add.

        Raises DeviceError if the output is gone (then :meth:`reopen`).
        """
        buffer = self._buffer_for(sample_rate)
        assert self._resampling is not None
        data = self._resampling.convert((turn_id, segment_index), samples, sample_rate,
                                        end_of_segment)
        if not buffer.add(turn_id, segment_index, data, text, last, end_of_segment):
            return False
        self._written(buffer)
        return True

    def _written(self, buffer: PlaybackBuffer) -> None:
        """Audio was queued (a device plays it from its callback: nothing to do)."""

    def check(self) -> None:
        """Raise DeviceError if the output cannot take audio now."""

    def clear(self, turn_id_below: int | None = None) -> list[CutSegment]:
        """Barge-in: drop queued audio; see :meth:`PlaybackBuffer.clear` (records a `cut`)."""
        if self._resampling is not None:
            self._resampling.open = None
        if self.buffer is not None:
            return self.buffer.clear(turn_id_below)
        below = NO_TURN if turn_id_below is None else turn_id_below
        self._events.put(PlaybackEvent(CUT, below, -1, self.played_until()))  # nothing to cut
        return []

    def duck(self, ducked: bool, depth_db: float = -20.0) -> None:
        """Lower (or restore) the volume at once; see :meth:`PlaybackBuffer.duck`. Nothing
        plays without a buffer, so there is nothing to duck."""
        if self.buffer is not None:
            self.buffer.duck(ducked, depth_db)

    def hold(self, held: bool, lead_in_s: float = 0.0) -> bool:
        """Pause (or resume) what plays; see :meth:`PlaybackBuffer.hold`. Without a buffer
        nothing plays, and nothing is held."""
        return self.buffer is not None and self.buffer.hold(held, lead_in_s)

    @property
    def held(self) -> bool:
        return self.buffer is not None and self.buffer.held

    @property
    def is_playing(self) -> bool:
        return self.buffer is not None and self.buffer.is_playing

    @property
    def output_rate(self) -> int:
        """The rate of the samples the output plays (and `CutSegment` counts)."""
        return self.buffer.sample_rate if self.buffer is not None else self.default_rate

    @property
    def underruns(self) -> int:
        """Starvation in the middle of a segment (the TTS did not keep up)."""
        return self.buffer.underruns if self.buffer is not None else 0

    @property
    def underflows(self) -> int:
        """Device-reported output underflows (PortAudio ran out of data)."""
        return self.stats.underflows

    def reference_start(self) -> float:
        """When the audio of the last :meth:`add` starts to be heard.

        Taken from the playback buffer, which computes it as the audio is queued (see
        :attr:`PlaybackBuffer.scheduled_start`): segments that follow each other then sit
        on the reference timeline exactly where the device plays them. A prediction made
        before queueing (`now + latency`) is early by a random 10-30 ms per segment, and
        every jump of the echo delay costs the canceller a second of re-convergence.
        """
        return self.buffer.scheduled_start if self.buffer is not None else time.time()

    def played_until(self) -> float:
        """When what the output already has stops playing (see PlaybackBuffer.next_time)."""
        return self.buffer.next_time if self.buffer is not None else time.time() + self.latency

    def reopen(self) -> Speaker:
        return self

    def close(self) -> None:
        """Stop (what is queued is not played); closing twice is harmless."""

    def __enter__(self) -> Speaker:
        return self



class SpeakerStream(DeviceStream, Speaker):
    """A live speaker: a callback-driven OutputStream fed from a :class:`PlaybackBuffer`.

    Opened at `sample_rate` (the TTS rate, 22050 Hz for Piper) when the device takes it,
    else at the device's own rate, in which case :meth:`add` resamples each segment before
    queueing it.

    `latency` and `block_ms` trade barge-in speed against robustness: what is already in the
    device when :meth:`clear` runs (~`latency` seconds) still plays, but a buffer shorter
    than the worst scheduling stall of the callback thread underflows (ALSA then drops and
    restarts, and event times are off by up to the stall). Through PulseAudio on a loaded
    2-core machine 10 ms blocks underflow often and 20 ms blocks rarely; pass
    `latency=0.1` where a 100 ms cut-off is acceptable and the machine is shared.
    `block_ms=0` lets PortAudio choose (~2 ms on ALSA + PulseAudio: 400+ Python calls/s).
    """

    echoes = True
    UNDERFLOW_GRACE_S = 0.5  # see _in_underflow_storm
    UNDERFLOW_PACE = 1.5  # blocks asked for faster than this x real time: a storm

    def __init__(
        self,
        device: str = "",
        sample_rate: int = PIPER_RATE,
        block_ms: float = 20.0,
        latency: str | float = "low",
        device_rate: int | None = None,
    ) -> None:
        super().__init__(sample_rate)
        self.sample_rate = sample_rate
        self.device = device
        self.block_ms = block_ms
        self.latency_setting = latency
        self.forced_rate = device_rate
        self.device_rate = 0
        self.device_name = ""
        self._side = SIDES["output"]
        self._watch = StreamWatch(self._side, 0.0)
        self._stream: Any = None
        self._flowing = threading.Event()
        self._frames_requested = 0
        self._ready_frames = 0
        self._underflow_since: float | None = None  # monotonic start of a run of underflows
        self._underflow_frames = 0  # frames asked for in that run
        self._clock = PlayClock(sample_rate)

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
        found = locate(self.device, "output", self.sample_rate, self.forced_rate)
        sd, index, rate = found.sd, found.index, found.rate
        self.device_name = found.name
        # a reopen at the same rate keeps the queued audio; events always survive
        buffer = self._use_rate(rate)
        self.device_rate = rate
        self._watch = StreamWatch(self._side, 0.0)
        self._flowing.clear()
        self._frames_requested = 0
        self._underflow_since = None
        self._clock = PlayClock(rate)
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
            buffer.latency = self.latency
            block = max(stream.blocksize, 1)
            self._clock = PlayClock.for_device(rate, self.latency, block)
            # priming fills about latency + one block; twice that plus a block means playing
            self._ready_frames = round(2 * (self.latency * rate + block)) + block
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise open_error(self._side, self.device, self.device_name, exc) from None
        self._stream = stream
        self._flowing.wait(ready_timeout_s)
        return self

    @property
    def ready(self) -> bool:
        """The device is consuming audio (not just primed); event times are trustworthy."""
        return self._flowing.is_set()

    def _callback(self, outdata: np.ndarray, frames: int, t: Any, status: Any) -> None:
        """PortAudio thread: copy ready samples (or zeros) into `outdata`. Nothing else.

        A block asked for right after an underflow gets silence and takes nothing from the
        queue: through ALSA's PulseAudio plugin a stream can underflow ~150 times in a row
        (after its sink was created again, or under load), every recovery discarding the
        block just written, and those blocks ate the answer (of a 2.5 s tone queued right
        after a device came back, a median of 0.13 s was heard: tests/bench_speaker_reopen.py).
        An isolated underflow costs one block of silence instead (see
        :meth:`_in_underflow_storm` for a device that flags every block).
        """
        started = time.perf_counter()
        buffer = self.buffer
        if status.output_underflow:
            self.stats.underflows += 1
            if self._in_underflow_storm(frames):
                outdata.fill(0.0)
                return
        else:
            self._underflow_since = None
        if buffer is None:
            outdata.fill(0.0)
            return
        t0 = dac_wall_time(time.time(), t.currentTime, t.outputBufferDacTime, self.latency)
        buffer.fill(outdata, self._clock.stamp(t0, frames))
        self._frames_requested += frames
        if self._frames_requested >= self._ready_frames and not self._flowing.is_set():
            self._flowing.set()
        self.stats.record(time.perf_counter() - started)

    def _in_underflow_storm(self, frames: int) -> bool:
        """One more block right after an underflow: still a storm (its audio would be
        discarded)? Yes for the first `UNDERFLOW_GRACE_S` of a run of them, and as long as
        they are asked for faster than real time (measured: 40-4000 blocks in 0.05-4.3 s,
        up to 900 a second); a device that flags blocks at the pace it plays them is
        believed after the grace."""
        now = time.monotonic()
        if self._underflow_since is None:
            self._underflow_since, self._underflow_frames = now, 0
        self._underflow_frames += frames
        elapsed = now - self._underflow_since
        return (elapsed < self.UNDERFLOW_GRACE_S
                or self._underflow_frames > self.UNDERFLOW_PACE * elapsed * self.device_rate)

    def check(self) -> None:
        """Raise DeviceError if the output stream is not running (unplugged, server gone)."""
        if self._stream is None:
            raise DeviceError("SpeakerStream used before start() (or after close())")
        self._watch.check(self._stream, self.device)

    def close(self) -> None:
        """Stop at once (what is queued is not played); closing twice is harmless."""
        stream, self._stream = self._stream, None
        close_quietly(stream, self._watch)

    def __enter__(self) -> SpeakerStream:
        return self.start()


class SpeakerFile(Speaker):
    """The speaker in file mode (SPEAKER_FILE): audio goes to a mono int16 WAV file.

    The file's rate is the first audio's rate (later audio at another rate is resampled to
    it). Playback is "instant": each `add` is drained at once through the same
    :class:`PlaybackBuffer` logic as the device, on a virtual clock that starts at
    max(now, end of the previous audio), so events arrive immediately and their times are
    those of a speaker that plays everything as soon as it gets it. Segments are written
    back to back (no silence for the time the TTS took). Nobody hears a file: no echo.
    """

    def __init__(self, path: str | PathLike[str], default_rate: int = PIPER_RATE) -> None:
        super().__init__(default_rate)
        self.path = str(path)
        self._writer: WavWriter | None = None
        self._closed = False

    @property
    def sample_rate(self) -> int:
        """The file's rate: its first audio's (`default_rate` until then)."""
        return self.output_rate

    def start(self) -> SpeakerFile:
        """Refuse a path that cannot be written now, at start, not at the first answer."""
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise DeviceError(f"Cannot write SPEAKER_FILE={self.path!r}: {folder} is not a "
                              "folder this user can write to")
        return self

    def _buffer_for(self, sample_rate: int) -> PlaybackBuffer:
        if self._closed:
            raise DeviceError(f"SPEAKER_FILE={self.path!r} is already closed")
        if self._writer is None:
            try:
                self._writer = WavWriter(self.path, sample_rate)
            except OSError as exc:
                raise DeviceError(
                    f"Cannot write SPEAKER_FILE={self.path!r}: {exc.strerror or exc}"
                ) from None
            return self._use_rate(sample_rate)
        assert self.buffer is not None
        return self.buffer

    def _written(self, buffer: PlaybackBuffer) -> None:
        """Write what was queued at once, "played" on the virtual clock."""
        assert self._writer is not None
        self._writer.write(buffer.drain_all(t0=max(time.time(), buffer.end_time)))
        self.stats.blocks += 1

    @property
    def seconds_written(self) -> float:
        return self._writer.seconds_written if self._writer is not None else 0.0

    def close(self) -> None:
        """Finalize the WAV (an empty one at `default_rate` if nothing was said)."""
        if self._closed:
            return
        self._buffer_for(self.default_rate)
        self._closed = True
        assert self._writer is not None
        self._writer.close()
