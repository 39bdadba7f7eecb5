"""Piper streamed inside a sentence: vocoder chunks, the same samples, one gain per voice."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import models
from pipeline import tts as tts_mod
from pipeline.tts import FIRST_CHUNK_FRAMES, Synthesizer, TtsConfig, chunk_bounds

LONG = "Boil the egg for nine minutes, then cool it in cold water before you peel it."


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    s = Synthesizer(TtsConfig())
    s.warm_up()
    return s


@pytest.fixture
def quiet(synth):
    """Noise scales at 0: VITS renders a text the same way every time, so runs compare."""
    saved = synth._scales.copy()
    synth._scales[0] = synth._scales[2] = 0.0
    yield synth
    synth._scales[:] = saved


def test_chunk_bounds_cover_every_frame_once_starting_small_and_doubling():
    assert chunk_bounds(500, first=32, most=256) == [(0, 32), (32, 96), (96, 224), (224, 500)]
    assert chunk_bounds(40, first=32) == [(0, 40)]  # a short tail joins the chunk before
    assert chunk_bounds(60, first=32) == [(0, 32), (32, 60)]
    assert chunk_bounds(0) == []
    for frames in range(1, 700, 7):
        bounds = chunk_bounds(frames)
        assert bounds[0][0] == 0 and bounds[-1][1] == frames
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
        assert all(end - start <= 2 * 256 for start, end in bounds)


def test_the_first_audio_of_a_long_sentence_is_a_short_chunk(synth):
    """Without streaming, the first audio of a sentence is all of it (~5 s here)."""
    chunks = list(synth.stream(LONG))
    assert synth.streaming
    assert chunks[0].audio.size == FIRST_CHUNK_FRAMES * synth.hop  # 0.37 s
    assert sum(c.audio.size for c in chunks) > 3 * synth.sample_rate
    assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]


def test_chunked_vocoding_gives_the_samples_of_one_pass(quiet):
    for text in (LONG, "The capital of France is Paris.", "Yes."):
        ids = quiet._sentences(text)[0]
        whole = quiet._scaled(quiet._raw(ids))
        streamed = np.concatenate([c.audio for c in quiet.stream(text)])
        assert streamed.size == whole.size
        assert np.max(np.abs(streamed - whole)) < 1e-3


def test_the_split_voice_is_the_voice(quiet):
    """Acoustic model + vocoder give what Piper's own single graph gives."""
    ids = quiet._sentences("The capital of France is Paris.")[0]
    full = quiet._session(models.tts_voice_paths("", "")[0])
    one_graph = full.run(None, quiet._acoustic_feed(ids))[0].reshape(-1)
    assert np.max(np.abs(quiet._raw(ids) - one_graph)) < 1e-4


def test_every_sentence_of_a_segment_streams_and_only_the_segment_end_is_last(synth):
    chunks = list(synth.stream("Yes. The capital of France is Paris, a city on the Seine."))
    assert [c.last for c in chunks].count(True) == 1 and chunks[-1].last
    assert list(synth.stream("...")) == []


def test_one_gain_for_the_voice_keeps_short_and_long_sentences_equally_loud(synth):
    """Piper's per-sentence peak normalization boosted a short 'Sure!' ~2x more than a long
    sentence; with the voice's gain their levels stay within 25 % of each other."""

    def rms(text: str) -> float:
        audio = np.concatenate([c.audio for c in synth.stream(text)])
        return float(np.sqrt(np.mean(audio**2)))

    short, long = np.median([rms("Sure!") for _ in range(3)]), np.median([rms(LONG) for _ in range(3)])
    assert 0.8 < short / long < 1.25
    target = synth.config.volume / tts_mod.RMS_PER_VOLUME
    assert 0.6 * target < long < 1.5 * target
    audio = np.concatenate([c.audio for c in synth.stream(LONG)])
    assert np.max(np.abs(audio)) <= 1.0


def test_a_voice_that_cannot_be_split_is_synthesized_a_sentence_at_a_time(monkeypatch):
    def refuse(model: str, models_dir: str):
        raise models.VoiceNotSplittable("not a Piper VITS export")

    monkeypatch.setattr(tts_mod, "voice_split", refuse)
    s = Synthesizer(TtsConfig())
    s.warm_up()
    assert not s.streaming
    chunks = list(s.stream("Yes. The capital of France is Paris."))
    assert len(chunks) == 2 and [c.last for c in chunks] == [False, True]
    assert chunks[1].audio.size > s.sample_rate


def test_voice_split_makes_the_two_files_once_and_refuses_a_graph_without_a_vocoder(tmp_path):
    voice = models.tts_voice_paths("", str(tmp_path))[0]
    acoustic, vocoder = models.voice_split(voice, str(tmp_path))
    assert acoustic.startswith(str(tmp_path)) and vocoder.startswith(str(tmp_path))
    stamp = (tmp_path / acoustic).stat().st_mtime_ns
    assert models.voice_split(voice, str(tmp_path)) == (acoustic, vocoder)
    assert (tmp_path / acoustic).stat().st_mtime_ns == stamp  # not made again
    # Silero's VAD is an ONNX graph with no HiFi-GAN in it
    from pipeline.vad import silero_model_path

    with pytest.raises(models.VoiceNotSplittable, match="not a Piper VITS export"):
        models.voice_split(silero_model_path(), str(tmp_path))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
