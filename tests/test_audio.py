"""Tests of pipeline.audio: resampling, framing and WAV files (fast, no models)."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.audio import (
    AudioFormatError,
    Framer,
    StreamResampler,
    WavWriter,
    read_wav,
    resample,
    write_wav,
)


def sine(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(spectrum)])


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize(("src", "dst"), [(22050, 16000), (48000, 16000), (8000, 16000)])
def test_resample_length_and_frequency(src: int, dst: int) -> None:
    x = sine(1000.0, 1.0, src)
    y = resample(x, src, dst)
    assert y.dtype == np.float32
    assert abs(y.size - dst) <= 1
    assert abs(peak_hz(y, dst) - 1000.0) < 2.0
    assert 0.45 < np.max(np.abs(y[100:-100])) < 0.55  # no gain change


def test_resample_same_rate_returns_input() -> None:
    x = sine(440.0, 0.1, 16000)
    assert resample(x, 16000, 16000) is x


def test_resample_rejects_bad_rate() -> None:
    with pytest.raises(ValueError):
        resample(np.zeros(10, np.float32), 0, 16000)


def test_stream_resampler_matches_whole_signal() -> None:
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(48000)).astype(np.float32)
    stream = StreamResampler(48000, 16000)
    out, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 2000))
        out.append(stream.process(x[i : i + n]))
        i += n
    out.append(stream.flush())
    y = np.concatenate(out)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, resample(x, 48000, 16000), atol=1e-5)


def test_stream_resampler_same_rate_is_passthrough() -> None:
    stream = StreamResampler(16000, 16000)
    x = sine(440.0, 0.02, 16000)
    assert np.array_equal(stream.process(x), x)
    assert stream.flush().size == 0


# --------------------------------------------------------------------------- framing


def frames_of(framer: Framer, chunks: list[np.ndarray]) -> list[np.ndarray]:
    return [f.copy() for c in chunks for f in framer.push(c)]


def test_framer_random_chunks_equal_one_chunk() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(16000 * 3).astype(np.float32)
    whole = frames_of(Framer(512), [x])
    for _ in range(20):
        cuts = np.sort(
            rng.choice(np.arange(1, x.size), size=int(rng.integers(1, 200)), replace=False)
        )
        framer = Framer(512, capacity=1024)
        got = frames_of(framer, np.split(x, cuts))
        assert len(got) == len(whole) == x.size // 512
        assert all(np.array_equal(a, b) for a, b in zip(got, whole, strict=True))
        assert framer.pending == x.size % 512


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3000), max_size=40))
def test_framer_any_chunking(sizes: list[int]) -> None:
    total = sum(sizes)
    x = np.arange(total, dtype=np.float32)
    chunks = np.split(x, np.cumsum(sizes)[:-1]) if sizes else []
    got = frames_of(Framer(512, capacity=600), chunks)
    assert len(got) == total // 512
    if got:
        assert np.array_equal(np.concatenate(got), x[: len(got) * 512])


def test_framer_unconsumed_frames_are_kept() -> None:
    framer = Framer(4, capacity=8)
    framer.push(np.arange(6, dtype=np.float32))  # iterator dropped
    got = [f.copy() for f in framer.push(np.arange(6, 10, dtype=np.float32))]
    assert [list(f) for f in got] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert list(framer.take_partial()) == [8, 9]
    assert framer.pending == 0


def test_framer_converts_dtype() -> None:
    frames = list(Framer(2).push(np.array([1, 2, 3], dtype=np.float64)))
    assert frames[0].dtype == np.float32


# --------------------------------------------------------------------------- WAV files


def write_pcm(path: Path, data: np.ndarray, rate: int, width: int) -> None:
    """A PCM WAV written by the stdlib, independent of the code under test."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if data.ndim == 1 else data.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data.astype(f"<i{width}").tobytes())


def write_float(path: Path, data: np.ndarray, rate: int) -> None:
    """An IEEE-float WAV (format tag 3), which the stdlib cannot write."""
    channels = 1 if data.ndim == 1 else data.shape[1]
    raw = data.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * 4 * channels, 4 * channels, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(raw)) + raw
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_read_wav_int16_mono(tmp_path: Path) -> None:
    x = sine(440.0, 0.5, 16000)
    write_pcm(tmp_path / "a.wav", np.rint(x * 32767), 16000, 2)
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and y.dtype == np.float32
    np.testing.assert_allclose(y, x, atol=1e-4)


def test_read_wav_stereo_to_mono(tmp_path: Path) -> None:
    left = np.full(1000, 16000, dtype=np.int16)
    right = np.full(1000, -8000, dtype=np.int16)
    write_pcm(tmp_path / "s.wav", np.stack([left, right], axis=1), 44100, 2)
    y, rate = read_wav(tmp_path / "s.wav")
    assert rate == 44100 and y.shape == (1000,)
    np.testing.assert_allclose(y, (16000 - 8000) / 2 / 32768, atol=1e-6)


def test_read_wav_int32(tmp_path: Path) -> None:
    x = sine(300.0, 0.1, 16000)
    write_pcm(tmp_path / "i32.wav", np.rint(x.astype(np.float64) * 2**31), 16000, 4)
    y, _ = read_wav(tmp_path / "i32.wav")
    np.testing.assert_allclose(y, x, atol=1e-6)


def test_read_wav_float32_stereo(tmp_path: Path) -> None:
    x = sine(500.0, 0.2, 22050)
    write_float(tmp_path / "f.wav", np.stack([x, x], axis=1), 22050)
    y, rate = read_wav(tmp_path / "f.wav")
    assert rate == 22050
    np.testing.assert_allclose(y, x, atol=1e-7)


def test_read_wav_8k_resampled(tmp_path: Path) -> None:
    x = sine(1000.0, 1.0, 8000)
    write_pcm(tmp_path / "n.wav", np.rint(x * 32767), 8000, 2)
    y, rate = read_wav(tmp_path / "n.wav", target_rate=16000)
    assert rate == 16000 and abs(y.size - 16000) <= 1
    assert abs(peak_hz(y, 16000) - 1000.0) < 2.0


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"ID3\x03\x00 this is an mp3, honest" * 4, "not a WAV"),
        (b"", "not a WAV"),
        (b"RIFF\x04\x00\x00\x00WAVE", "fmt"),
    ],
)
def test_read_wav_refuses_non_wav(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "question.wav"
    path.write_bytes(content)
    with pytest.raises(AudioFormatError, match=problem) as info:
        read_wav(path)
    assert "question.wav" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_read_wav_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFormatError, match="nope.wav"):
        read_wav(tmp_path / "nope.wav")


def test_write_wav_round_trip(tmp_path: Path) -> None:
    x = sine(440.0, 0.3, 22050)
    x[:10] = 2.0  # clipped, not wrapped
    write_wav(tmp_path / "w.wav", x, 22050)
    with wave.open(str(tmp_path / "w.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 22050)
    y, rate = read_wav(tmp_path / "w.wav")
    assert rate == 22050
    np.testing.assert_allclose(y[:10], 32767 / 32768, atol=1e-6)
    np.testing.assert_allclose(y[10:], x[10:], atol=1e-4)


def test_wav_writer_incremental(tmp_path: Path) -> None:
    path = tmp_path / "speaker.wav"
    chunks = [sine(440.0, 0.05, 22050) * k / 10 for k in range(1, 8)]
    writer = WavWriter(path, 22050)
    writer.write(chunks[0])
    mid, _ = read_wav(path)  # valid while still open
    assert mid.size == chunks[0].size
    for c in chunks[1:]:
        writer.write(c)
    writer.close()
    writer.close()
    y, rate = read_wav(path)
    assert rate == 22050
    assert writer.frames_written == y.size == sum(c.size for c in chunks)
    np.testing.assert_allclose(y, np.concatenate(chunks), atol=1e-4)
    with pytest.raises(ValueError):
        writer.write(chunks[0])
