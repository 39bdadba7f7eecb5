"""Audio helpers shared by the nodes: resampling, fixed-size framing and WAV files.

Everything here works on mono float32 samples in [-1, 1], the format of every audio
message (see :mod:`pipeline.messages`).

Resampling uses `soxr` (libsoxr): it is the resampler of SoX, actively maintained, ships
wheels for every platform, is a few times faster than scipy's polyphase filter on CPU and its
"HQ" quality is transparent for speech. It also has a streaming API, which the microphone
needs when the device cannot open at 16 kHz.

WAV files use only the standard library and numpy: `wave` writes int16 PCM (and patches the
header after every write, so a file is valid even if the process is killed), and a small RIFF
reader handles what `wave` cannot read on Python 3.11 (IEEE float and WAVE_FORMAT_EXTENSIBLE
files). `soundfile` would pull in libsndfile for no gain here, so it is not used.
"""

from __future__ import annotations

import struct
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from types import TracebackType

import numpy as np
import soxr

PathArg = str | PathLike[str]

_QUALITY = "HQ"



class Closes:
    """`with x:` closes `x` at the end, however the block ends (devices, files, writers)."""

    def close(self) -> None:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AudioFormatError(ValueError):
    """A file is not audio this module can read; the message names the file and the problem."""


# --------------------------------------------------------------------------- resampling


def _as_mono_f32(x: np.ndarray) -> np.ndarray:
    """A 1-D float32 view of `x` (a copy only when the dtype or layout requires one)."""
    if x.dtype == np.float32 and x.ndim == 1 and x.flags.c_contiguous:
        return x
    return np.ascontiguousarray(x, dtype=np.float32).reshape(-1)


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample a whole mono signal with soxr (HQ); float32 in and out.

    When the rates are equal the input is returned as is (no copy), so callers can resample
    unconditionally without paying for it.
    """
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
    x = _as_mono_f32(x)
    if src_rate == dst_rate or x.size == 0:
        return x
    return soxr.resample(x, src_rate, dst_rate, quality=_QUALITY).astype(np.float32, copy=False)


class StreamResampler:
    """Resample a chunked stream (e.g. 48 kHz microphone blocks to 16 kHz) without seams.

    Resampling each chunk on its own would reset the filter at every boundary and click; a
    soxr stream keeps the filter state between chunks. The price is a small constant delay
    (:attr:`delay_s`), which a caller timestamping audio may subtract.
    """

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._stream: soxr.ResampleStream | None = None
        if src_rate != dst_rate:
            self._stream = soxr.ResampleStream(
                src_rate, dst_rate, 1, dtype="float32", quality=_QUALITY
            )

    @property
    def delay_s(self) -> float:
        """Current delay of the resampler's filter, in seconds of output."""
        if self._stream is None:
            return 0.0
        return float(self._stream.delay()) / self.dst_rate

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Resample the next chunk; the output length varies by a sample or so per chunk."""
        chunk = _as_mono_f32(chunk)
        if self._stream is None:
            return chunk
        return self._stream.resample_chunk(chunk)

    def flush(self) -> np.ndarray:
        """The samples still held in the filter, at the end of the stream."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        out = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream.clear()
        return out

    def reset(self) -> None:
        """Forget the filter state (a new, unrelated stream follows)."""
        if self._stream is not None:
            self._stream.clear()


# --------------------------------------------------------------------------- framing


class Framer:
    """Re-chunk a stream of arbitrary-length chunks into frames of exactly `frame_samples`.

    Silero VAD needs 512-sample frames at 16 kHz, the microphone delivers whatever block size
    the device likes, 50 times a second, so this is a hot path: samples are copied once into
    a preallocated linear buffer and frames are handed out as *views* of it (no allocation but
    the view objects). The buffer only grows when a chunk larger than its free space arrives.

    Frames yielded by :meth:`push` (or :meth:`frames`) are views into the internal buffer that
    stay valid until the next call to :meth:`push` or :meth:`reset`; a consumer that keeps a
    frame longer must copy it. Frames not iterated stay buffered and come out of the next
    iteration, so an abandoned iterator loses nothing.
    """

    def __init__(self, frame_samples: int, capacity: int = 4096) -> None:
        if frame_samples <= 0:
            raise ValueError(f"frame_samples must be positive, got {frame_samples}")
        self.frame_samples = frame_samples
        self._buf = np.zeros(max(capacity, 2 * frame_samples), dtype=np.float32)
        self._start = 0  # first unconsumed sample
        self._end = 0  # one past the last buffered sample

    @property
    def pending(self) -> int:
        """Samples buffered but not yet handed out as a frame."""
        return self._end - self._start

    def reset(self) -> None:
        """Drop buffered samples (e.g. after a gap in the stream)."""
        self._start = self._end = 0

    def push(self, chunk: np.ndarray) -> Iterator[np.ndarray]:
        """Buffer `chunk` and iterate over every complete frame now available."""
        self._append(_as_mono_f32(chunk))
        return self.frames()

    def frames(self) -> Iterator[np.ndarray]:
        """Iterate over the complete frames buffered (views; see the class docstring)."""
        n = self.frame_samples
        while self._end - self._start >= n:
            start = self._start
            self._start = start + n
            yield self._buf[start : start + n]

    def take_partial(self) -> np.ndarray:
        """The leftover (< one frame) samples, as a copy, emptying the buffer (end of stream)."""
        rest = self._buf[self._start : self._end].copy()
        self.reset()
        return rest

    def _append(self, chunk: np.ndarray) -> None:
        size = chunk.size
        if size == 0:
            return
        pending = self._end - self._start
        if self._end + size > self._buf.size:
            if pending + size > self._buf.size:  # rare: grow, amortized by doubling
                grown = np.zeros(max(2 * self._buf.size, pending + size), dtype=np.float32)
                grown[:pending] = self._buf[self._start : self._end]
                self._buf = grown
            else:  # compact: move the leftover (< a frame, usually) to the front
                self._buf[:pending] = self._buf[self._start : self._end]
            self._start, self._end = 0, pending
        self._buf[self._end : self._end + size] = chunk
        self._end += size


# --------------------------------------------------------------------------- WAV files

_PCM = 1
_FLOAT = 3
_EXTENSIBLE = 0xFFFE


@dataclass(frozen=True)
class _WavFormat:
    tag: int
    channels: int
    rate: int
    bits: int


def _parse_fmt(body: bytes, name: str) -> _WavFormat:
    if len(body) < 16:
        raise AudioFormatError(f"{name}: 'fmt ' chunk is too short ({len(body)} bytes)")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE and len(body) >= 26:
        tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the sub-format GUID
    return _WavFormat(tag=tag, channels=channels, rate=rate, bits=bits)


def _read_riff(data: bytes, name: str) -> tuple[_WavFormat, bytes]:
    """The format and the raw sample bytes of a RIFF/WAVE file held in memory."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioFormatError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    fmt: _WavFormat | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        size = struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body_start = pos + 8
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data[body_start : body_start + size], name)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioFormatError(f"{name}: 'data' chunk before the 'fmt ' chunk")
            # A truncated file (or a streamed one with a size of 0/0xFFFFFFFF) still plays:
            # take what is there.
            end = len(data) if size in (0, 0xFFFFFFFF) else min(body_start + size, len(data))
            return fmt, data[body_start:end]
        pos = body_start + size + (size & 1)  # chunks are word aligned
    if fmt is None:
        raise AudioFormatError(f"{name}: WAV file without a 'fmt ' chunk")
    raise AudioFormatError(f"{name}: WAV file without a 'data' chunk")


def _decode(fmt: _WavFormat, raw: bytes, name: str) -> np.ndarray:
    """Raw interleaved samples to float32 in [-1, 1], shape (frames, channels)."""
    if fmt.channels < 1:
        raise AudioFormatError(f"{name}: WAV file declares {fmt.channels} channels")
    width = fmt.bits // 8
    usable = len(raw) - len(raw) % (width * fmt.channels) if width else 0
    raw = raw[:usable]
    if fmt.tag == _PCM and fmt.bits == 8:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif fmt.tag == _PCM and fmt.bits == 16:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif fmt.tag == _PCM and fmt.bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    elif fmt.tag == _PCM and fmt.bits == 32:
        x = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    elif fmt.tag == _FLOAT and fmt.bits in (32, 64):
        x = np.frombuffer(raw, dtype="<f4" if fmt.bits == 32 else "<f8").astype(np.float32)
    else:
        kind = {_PCM: "PCM", _FLOAT: "float"}.get(fmt.tag, f"format tag {fmt.tag:#x}")
        raise AudioFormatError(
            f"{name}: unsupported WAV encoding ({kind}, {fmt.bits} bits); "
            "use PCM 8/16/24/32-bit or float 32/64-bit"
        )
    return x.reshape(-1, fmt.channels)


def read_wav(path: PathArg, target_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read a WAV file as mono float32; returns (samples, sample_rate).

    Multi-channel files are averaged to mono. With `target_rate` the samples are resampled
    and that rate is returned. Anything unreadable raises :class:`AudioFormatError`.
    """
    name = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AudioFormatError(f"{name}: cannot read file ({e.strerror or e})") from e
    fmt, raw = _read_riff(data, name)
    if fmt.rate <= 0:
        raise AudioFormatError(f"{name}: WAV file declares a sample rate of {fmt.rate}")
    frames = _decode(fmt, raw, name)
    mono = frames[:, 0] if fmt.channels == 1 else frames.mean(axis=1, dtype=np.float32)
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if target_rate is not None and target_rate != fmt.rate:
        return resample(mono, fmt.rate, target_rate), target_rate
    return mono, fmt.rate


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] to int16 PCM, clipping rather than wrapping around on overflow."""
    x = np.clip(_as_mono_f32(samples), -1.0, 1.0) * 32767.0
    return np.rint(x).astype("<i2")


def write_wav(path: PathArg, samples: np.ndarray, rate: int) -> None:
    """Write mono float32 samples as a 16-bit PCM WAV file (the format every tool reads)."""
    with WavWriter(path, rate) as writer:
        writer.write(samples)


class WavWriter(Closes):
    """Append float32 chunks to a mono int16 WAV file as they come (the speaker's file mode).

    The stdlib `wave` writer rewrites the header sizes after each write and the file is
    flushed, so the file on disk is a valid WAV at every moment, even if the node is killed
    before :meth:`close`.
    """

    def __init__(self, path: PathArg, rate: int) -> None:
        if rate <= 0:
            raise ValueError(f"sample rate must be positive, got {rate}")
        self.path = path
        self.rate = rate
        self.frames_written = 0
        # The file is opened here (not by `wave`) so each write can be flushed to disk; it
        # stays open across calls on purpose and is closed by close() / __exit__.
        self._file = open(path, "wb")  # noqa: SIM115
        self._wav: wave.Wave_write | None = wave.open(self._file, "wb")  # noqa: SIM115
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)

    @property
    def seconds_written(self) -> float:
        return self.frames_written / self.rate

    def write(self, samples: np.ndarray) -> None:
        """Append samples (float32 in [-1, 1]; louder values are clipped)."""
        if self._wav is None:
            raise ValueError(f"{self.path}: WavWriter is closed")
        pcm = to_int16(samples)
        self._wav.writeframes(pcm.tobytes())
        self._file.flush()
        self.frames_written += pcm.size

    def close(self) -> None:
        """Finalize the header and close the file; closing twice is harmless."""
        if self._wav is not None:
            try:
                self._wav.close()
            finally:
                self._file.close()
                self._wav = None

    def __enter__(self) -> WavWriter:
        return self

