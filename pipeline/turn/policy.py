"""When a pause ends the user's turn: the end-of-turn policy.

A fixed silence is a bad rule both ways: a person who stops to think ("What is the capital
of ... Spain?") is answered half a question, and a clearly finished question waits the full
silence. The policy asks two signals once the user has been silent a little
(`check_ms`):

* the turn-completion model (Smart Turn, pipeline/turn/smart_turn.py) on the audio so far,
  P(complete) against `threshold`;
* the transcript cue of the speculative transcript (pipeline/turn/cues.py), once the ASR
  has sent it for this pause.

A pause judged complete ends the turn at once; one the signals cannot settle yet (the model
says complete but the transcript has not come) ends at the latest after `end_silence_ms`,
or `unsure_ms` when the endpointer said a transcript is on its way (:meth:`speculated`: ASR is
only slower than the end silence, and a half question must not end the turn for that);
one whose transcript reads neither finished nor unfinished (no final punctuation: Whisper
leaves it off a sentence that trails off, "who wrote the book", but also off some whole
ones) waits `unsure_ms` (not less than `end_silence_ms`; `max_pause_ms` ends any pause), and so does one that reads
finished but whose last word (or final mark) Whisper was unsure of, below `min_word_p`
(`min_mark_p`), unless that word is a name: Whisper completes half a question with a guess ("What time does the" ->
"What time does that?", "What is the capital of" -> "What is the capital on?"). The doubt is
graded by the kind of the last word (pipeline/turn/cues.py): a pronoun Whisper uses as its
guess ("that", "this", "it") is doubted below `guess_word_p`, higher than `min_word_p`; a
content word ("moon", "book") doubted only mildly (at least `content_word_p`) waits
`doubt_ms` instead of `unsure_ms`, since Whisper's guesses are seldom content words. One
judged incomplete waits until `max_pause_ms`, which always ends the turn. A cue that
says incomplete ("... of") outweighs the model; when the cue says complete and the model
does not, the pause ends the turn after `disagree_ms` (Whisper often completes half a
question in its transcript, "What is the capital on?", and the model often doubts whole
questions spoken by a synthetic voice: docs/echo-and-turn-taking.md has the figures).

The transcript also comes with a language model's probability that the sentence ends
where it stops (pipeline/turn/text_end.py): a finished-looking transcript it scores below
`text_end_p` ("Who discovered?", 0.004) waits `unsure_ms` like a doubted one, and an
unmarked one ending on a name or a sure content word that it scores at least
`text_complete_p` ("who painted the Mona Lisa", 0.33) reads finished instead of unsure, as
does a question Whisper marked finished that ends on a preposition ("What are clouds made
of?", 0.72, where "What is the capital of?" scores 0.0006).

Pure: it sees only what it is told (the silence so far, on the caller's clock, and the
signals); the model is a callable the caller injects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.settings import DEFAULTS, Settings
from pipeline.turn.cues import (
    Cue,
    Ending,
    ending_kind,
    last_word,
    stranded_question,
    transcript_cue,
)

TurnModel = Callable[[np.ndarray], float]
"""P(turn complete) of the utterance's audio so far (16 kHz float32)."""


@dataclass(frozen=True)
class PolicyConfig:
    """The end-of-turn parameters (settings TURN_*, VAD_END_SILENCE_MS)."""

    check_ms: int = DEFAULTS.turn_check_ms
    end_silence_ms: int = DEFAULTS.vad_end_silence_ms
    max_pause_ms: int = DEFAULTS.turn_max_pause_ms
    threshold: float = DEFAULTS.turn_threshold
    use_model: bool = True
    use_cues: bool = DEFAULTS.turn_cues
    disagree_ms: int = DEFAULTS.turn_disagree_ms
    unsure_ms: int = DEFAULTS.turn_unsure_ms
    min_word_p: float = DEFAULTS.turn_min_word_p
    min_mark_p: float = 0.0
    guess_word_p: float = DEFAULTS.turn_guess_word_p
    content_word_p: float = DEFAULTS.turn_content_word_p
    doubt_ms: int = DEFAULTS.turn_doubt_ms
    do_questions: bool = DEFAULTS.turn_do_questions
    text_end_p: float = DEFAULTS.turn_text_end_p
    text_complete_p: float = DEFAULTS.turn_text_complete_p
    await_transcript: bool = True  # wait for a transcript on its way (see `speculated`)

    @classmethod
    def from_settings(cls, s: Settings, use_model: bool | None = None) -> PolicyConfig:
        max_pause = max(s.turn_max_pause_ms, s.vad_end_silence_ms)
        return cls(check_ms=s.turn_check_ms, end_silence_ms=s.vad_end_silence_ms,
                   max_pause_ms=max_pause,
                   disagree_ms=min(max(s.turn_disagree_ms, s.turn_check_ms), max_pause),
                   unsure_ms=min(max(s.turn_unsure_ms, s.vad_end_silence_ms), max_pause),
                   min_word_p=s.turn_min_word_p,
                   guess_word_p=s.turn_guess_word_p,
                   content_word_p=s.turn_content_word_p,
                   doubt_ms=min(max(s.turn_doubt_ms, s.vad_end_silence_ms), max_pause),
                   do_questions=s.turn_do_questions,
                   text_end_p=s.turn_text_end_p if s.turn_text_model else 0.0,
                   text_complete_p=s.turn_text_complete_p if s.turn_text_model else 1.0,
                   threshold=s.turn_threshold,
                   use_model=s.turn_model if use_model is None else use_model,
                   use_cues=s.turn_cues)

    def __post_init__(self) -> None:
        if not 0 < self.check_ms <= self.end_silence_ms <= self.max_pause_ms:
            raise ValueError(
                "need 0 < check_ms <= end_silence_ms <= max_pause_ms, got "
                f"{self.check_ms}, {self.end_silence_ms}, {self.max_pause_ms}")
        if not self.check_ms <= self.disagree_ms <= self.max_pause_ms:
            raise ValueError(f"need check_ms <= disagree_ms <= max_pause_ms, got "
                             f"{self.check_ms}, {self.disagree_ms}, {self.max_pause_ms}")

    @property
    def active(self) -> bool:
        """False: no signal is used and the turn ends after `end_silence_ms`, as before."""
        return self.use_model or self.use_cues


class EndOfTurn:
    """The decision for one pause at a time: :meth:`should_end` is asked at every silent frame.

    :meth:`voice` (the user speaks again) forgets the pause's signals; :meth:`transcript`
    hands in the speculative transcript of the current pause. `model_calls` counts the
    model's runs (one per pause at most).
    """

    def __init__(self, config: PolicyConfig, model: TurnModel | None = None) -> None:
        if config.use_model and model is None:
            raise ValueError("use_model needs a turn model")
        self.config = config
        self._model = model
        self.model_calls = 0
        self.probability: float | None = None
        self.cue = Cue.UNKNOWN
        self._cue_seen = False
        self._expected = False  # a tentative utterance of this pause went to ASR
        self.last_word_p: float | None = None  # of the pause's transcript
        self.text_end_p: float | None = None  # the language model's P(sentence end) of it
        self._unsure_wait_ms = config.unsure_ms  # how long this pause's unsure state waits
        # Why the last turn ended, the model's probability, the cue and Whisper's last word
        # probability then (for the log).
        self.reason = ""
        self.ended_probability: float | None = None
        self.ended_cue = Cue.UNKNOWN
        self.ended_word_p: float | None = None
        self.ended_text_end_p: float | None = None

    def voice(self) -> None:
        """The user is speaking again: the pause's verdicts are void."""
        self.probability = None
        self.cue = Cue.UNKNOWN
        self._cue_seen = False
        self._expected = False
        self.last_word_p = None
        self.text_end_p = None
        self._unsure_wait_ms = self.config.unsure_ms

    def speculated(self) -> None:
        """A tentative utterance of the current pause went to ASR: its transcript will come."""
        self._expected = True

    def transcript(self, text: str, last_word_p: float = 1.0, end_mark_p: float = 1.0,
                   text_end_p: float | None = None) -> None:
        """The speculative transcript of the current pause has arrived, with Whisper's
        probabilities of its last word and final mark, and the language model's probability
        that the sentence ends there (pipeline/turn/text_end.py; None when not asked)."""
        cfg = self.config
        cue = transcript_cue(text, cfg.do_questions)
        kind = ending_kind(text)
        self.last_word_p, self.text_end_p = last_word_p, text_end_p
        self._unsure_wait_ms = cfg.unsure_ms
        if (cue is Cue.INCOMPLETE and text_end_p is not None and cfg.text_complete_p < 1.0
                and text_end_p >= cfg.text_complete_p and stranded_question(text)):
            cue = Cue.COMPLETE  # "What are clouds made of?" (0.72; "What is the capital of?" 0.0006)
        if cue is Cue.COMPLETE:
            wait = self._doubt_wait(kind, last_word_p)
            unended = text_end_p is not None and text_end_p < cfg.text_end_p
            if wait is None and (end_mark_p < cfg.min_mark_p or unended):
                wait = cfg.unsure_ms  # "Who discovered?": a half question with a "?"
            if wait is not None:
                cue = Cue.UNKNOWN  # reads finished, but the ending may be Whisper's guess
                self._unsure_wait_ms = wait
        elif (cue is Cue.UNKNOWN and text_end_p is not None and cfg.text_complete_p < 1.0
              and last_word(text)
              and text_end_p >= cfg.text_complete_p
              and (kind is Ending.NAME or kind is Ending.CONTENT and last_word_p >= cfg.min_word_p)):
            cue = Cue.COMPLETE  # "who painted the Mona Lisa": no final mark, but finished
        self.cue = cue
        self._cue_seen = True

    def _doubt_wait(self, kind: Ending, word_p: float) -> int | None:
        """How long a finished-looking transcript whose last word is of `kind`, with
        Whisper's probability `word_p`, waits as unsure; None: it is not doubted."""
        cfg = self.config
        if kind is Ending.NAME:
            return None
        threshold = max(cfg.min_word_p, cfg.guess_word_p) if kind is Ending.GUESS else cfg.min_word_p
        if word_p >= threshold:
            return None
        if kind is Ending.CONTENT and word_p >= cfg.content_word_p:
            return cfg.doubt_ms
        return cfg.unsure_ms

    def should_end(self, silence_ms: float, audio: Callable[[], np.ndarray]) -> bool:
        """True when the turn ends after `silence_ms` of silence; `audio()` gives the
        utterance so far (asked only once per pause, when the model is consulted)."""
        cfg = self.config
        if silence_ms >= cfg.max_pause_ms:
            return self._end("max pause")
        if not cfg.active:
            return silence_ms >= cfg.end_silence_ms and self._end("silence")
        if silence_ms < cfg.check_ms:
            return False
        verdict = self._verdict(audio)
        if verdict is Cue.COMPLETE:
            return self._end("complete")
        if self._disagree() and silence_ms >= cfg.disagree_ms:
            return self._end("disagree")
        if verdict is Cue.UNKNOWN:
            if self._unsure() and silence_ms >= max(self._unsure_wait_ms, cfg.end_silence_ms):
                return self._end("unsure")
            settled_ms = max(cfg.unsure_ms, cfg.end_silence_ms) if self._awaited() else cfg.end_silence_ms
            if not self._unsure() and silence_ms >= settled_ms:
                return self._end("unsettled")
        return False

    def _awaited(self) -> bool:
        """The pause's transcript is on its way but has not come: ASR is slower than the end
        silence (the LLM or another transcription has the cores). Without it a half question
        would end the turn as "unsettled"; it is waited for, up to the unsure wait."""
        cfg = self.config
        return cfg.use_cues and cfg.await_transcript and self._expected and not self._cue_seen

    def _unsure(self) -> bool:
        """The transcript came and reads neither finished nor unfinished."""
        return self.config.use_cues and self._cue_seen and self.cue is Cue.UNKNOWN

    def _verdict(self, audio: Callable[[], np.ndarray]) -> Cue:
        cfg = self.config
        cue = self.cue if cfg.use_cues else Cue.UNKNOWN
        if cue is Cue.INCOMPLETE:
            return Cue.INCOMPLETE
        if not cfg.use_model:
            return cue
        if self.probability is None:
            assert self._model is not None
            self.probability = self._model(audio())
            self.model_calls += 1
        model = Cue.COMPLETE if self.probability >= cfg.threshold else Cue.INCOMPLETE
        if not cfg.use_cues:
            return model
        if model is Cue.COMPLETE:
            # The transcript could still reveal half a question: wait for it, up to the
            # end silence (its absence then says nothing either way).
            return Cue.COMPLETE if self._cue_seen else Cue.UNKNOWN
        return Cue.INCOMPLETE

    def _disagree(self) -> bool:
        """The transcript reads as finished, the model says it is not."""
        cfg = self.config
        return (cfg.use_cues and cfg.use_model and self.cue is Cue.COMPLETE
                and self.probability is not None and self.probability < cfg.threshold)

    def _end(self, reason: str) -> bool:
        self.reason = reason
        self.ended_probability = self.probability
        self.ended_cue, self.ended_word_p = self.cue, self.last_word_p
        self.ended_text_end_p = self.text_end_p
        return True
