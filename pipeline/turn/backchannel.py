"""Backchannels: short acknowledgements a listener says without taking the turn.

"yeah", "mm-hmm", "okay", "I see" said while the assistant speaks mean "go on": they are
neither an interruption nor a question, and must never reach the LLM. :func:`is_backchannel`
recognises them in a transcript; :class:`BackchannelGate` holds a turn that starts over the
answer until its words are known (docs/echo-and-turn-taking.md, "Backchannels").

Anything with more than an acknowledgement in it ("yeah but why", "okay stop", "no", "wait")
is not a backchannel: a real interruption must keep stopping the answer.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import logging
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pipeline import messages as m
from pipeline.settings import DEFAULTS, Settings

if TYPE_CHECKING:
    from pipeline.endpoint import VoiceOnset

log = logging.getLogger("vad")

BACKCHANNELS: frozenset[str] = frozenset({
    "yeah", "yes", "yep", "yup", "ya", "yea", "mm hmm", "mhm", "mm", "mmm", "hmm", "uh huh",
    "okay", "ok", "right", "alright", "all right", "i see", "sure", "got it", "cool", "nice",
    "great", "good", "oh", "ah", "aha", "ah ok", "oh ok", "oh okay", "oh i see", "i know",
    "exactly", "true", "really", "wow", "indeed", "of course", "makes sense", "fine",
})
"""Whole acknowledgements (lower case, punctuation and hyphens as spaces). "no", "stop",
"wait", "what" are deliberately absent: they interrupt."""

EARLY_BACKOFF_S = 1.5
"""After voice that paused the answer and was not speech (a click, an echo the onset check
caught), the next voice pauses it only once it is speech: no stutter from a run of them."""

_SEPARATORS = re.compile(r"[^a-z']+")
MAX_REPEATS = 3  # "yeah yeah yeah" is still a backchannel


def _normalise(text: str) -> str:
    return " ".join(_SEPARATORS.sub(" ", text.lower()).split())


def is_backchannel(text: str) -> bool:
    """True if `text` (a transcript) is only an acknowledgement, possibly repeated
    ("Yeah.", "Mm-hmm", "okay, okay", "I see."); False for anything else, empty included."""
    words = _normalise(text).split()
    if not words:
        return False
    phrase = " ".join(words)
    if phrase in BACKCHANNELS:
        return True
    # a short acknowledgement said two or three times, or two of them ("yeah okay")
    for n in (1, 2):
        if len(words) % n == 0 and len(words) // n <= MAX_REPEATS:
            parts = [" ".join(words[i:i + n]) for i in range(0, len(words), n)]
            if all(p in BACKCHANNELS for p in parts):
                return True
    return False


@functools.cache
def _all_backchannels() -> tuple[str, ...]:
    """Every text :func:`is_backchannel` accepts (normalised), sorted: ~40 000 strings."""
    singles = sorted(p for p in BACKCHANNELS if " " not in p)
    pairs = sorted(p for p in BACKCHANNELS if p.count(" ") == 1)
    found = set(BACKCHANNELS)
    for group in (singles, pairs):
        for k in range(2, MAX_REPEATS + 1):
            found.update(" ".join(c) for c in itertools.product(group, repeat=k))
    return tuple(sorted(found))


MIN_WHOLE_WORDS = 2
"""Whole words a partial transcript needs before they count: Whisper makes up words for a
cut-off sound (through the sound card a cut-off "mm-hmm" came out as "in a", and as "in a
month", which even two whole words do not catch: partial probes are off by default)."""


def could_become_backchannel(text: str) -> bool:
    """False only if `text`, the words of speech that is still going on, already shows it is
    not a backchannel: its whole words (all but the last, which may be cut off mid-word and
    guessed by the ASR), at least two of them, cannot begin one. "What is the" and "No, I
    meant" cannot; "Yeah", "in a", "I said" (a cut-off "I see"), "yeah yeah" still can."""
    words = _normalise(text).split()
    if len(words) <= MIN_WHOLE_WORDS:
        return True
    head = " ".join(words[:-1]) + " "
    phrases = _all_backchannels()
    i = bisect.bisect_left(phrases, head)
    return i < len(phrases) and phrases[i].startswith(head)


@dataclass(frozen=True)
class GateConfig:
    """`max_ms`: speech over the answer this long after its onset is an interruption (no
    backchannel lasts that long); `probe_ms`: voice still going this long after the onset is
    transcribed so far (a partial probe), and is an interruption as soon as its words cannot
    begin a backchannel (0: off); `probe_silence_ms`: the pause after which what was said is
    probed (instead of the speculative transcript's VAD_SPECULATIVE_MS); `answer_timeout_s`:
    a probe the ASR has not answered in this long (the asr node is gone) starts the turn, as
    if there were no gate."""

    max_ms: int = DEFAULTS.backchannel_max_ms
    probe_ms: int = DEFAULTS.backchannel_probe_ms
    probe_silence_ms: int = DEFAULTS.backchannel_probe_silence_ms
    answer_timeout_s: float = 3.0

    @classmethod
    def from_settings(cls, s: Settings) -> GateConfig:
        return cls(max_ms=s.backchannel_max_ms, probe_ms=s.backchannel_probe_ms,
                   probe_silence_ms=s.backchannel_probe_silence_ms)


class BackchannelGate:
    """Holds a user turn that starts while the assistant is audible until its words are known.

    The vad gives it the endpointer's messages of that turn instead of sending them:

    * :meth:`early` (a `VoiceOnset`, the first voiced frames, before they are speech):
      `Duck` on at once; :meth:`gone` (the voice was not speech after all): `Duck` off.
    * :meth:`onset` (a `SpeechStarted`): `Duck` on (the speaker pauses the answer) unless
      :meth:`early` did; the `SpeechStarted` is held.
    * :meth:`utterance`: the first utterance of the held turn (the tentative one the
      endpointer sends after a short pause, or the final one) goes out as a `Probe`; a final
      utterance is held too. The endpointer gives a new turn when the voice resumes after a
      tentative utterance: its `SpeechStarted` replaces the held one (same onset) and the
      next pause is probed again, with all the audio since the onset.
    * :meth:`partial` (voice still going `probe_ms` after the onset): a `Probe` of the
      speech so far, marked partial.
    * :meth:`answer` (the probe's `ProbeText`): a backchannel (or nothing: noise, echo)
      gives `Duck` off (the answer resumes) and drops the turn; anything else releases the
      held messages. A partial probe's answer releases them only if its words cannot begin a
      backchannel (:func:`could_become_backchannel`), else it changes nothing.
    * :meth:`check` (every block): voice still going `max_ms` after the onset, or a probe
      unanswered for `answer_timeout_s`, releases them.

    Released, the turn is a barge-in exactly as without the gate (the speaker stops the
    answer at `speech_started`), only later, and its utterance has all the audio since
    the onset. The probed tentative utterance goes out too (marked `same_as_tentative`: the
    ASR reuses the probe's transcript), so the turn goes on as any other: the LLM can start
    on it, and its transcript is the end-of-turn policy's cue for the pause.
    Pure: times are the microphone's (capture times), nothing is sent here.
    """

    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config or GateConfig()
        self._held: m.SpeechStarted | None = None
        self._final: m.Utterance | None = None
        self._tentative: m.Utterance | None = None  # the probed tentative utterance
        self._probe: m.Probe | None = None
        self._t_probe = 0.0  # capture time when the probe was sent
        self._early = False  # paused on the first voiced frames, no turn held yet
        self._first_turn = m.NO_TURN  # the turn of the onset (the held one may be later)
        self._partial_sent = False
        self._t_gone = -EARLY_BACKOFF_S  # when voice that paused the answer was not speech

    @property
    def holding(self) -> int | None:
        """The turn held, or None."""
        return None if self._held is None else self._held.turn_id

    @property
    def paused(self) -> bool:
        """The answer is paused for speech over it (a turn held, or voice not yet speech)."""
        return self._early or self._held is not None

    def early(self, onset: VoiceOnset, now: float) -> list[m.Message]:
        """The first voiced frames over the answer: pause it now, before they are speech."""
        if self.paused or now - self._t_gone < EARLY_BACKOFF_S:
            return []
        self._early = True
        log.info("voice over the answer (from %.3f): pausing it", onset.t_start)
        return [m.Duck(m.NO_TURN, True, now)]

    def gone(self, now: float, echo: bool = True) -> list[m.Message]:
        """The voice that paused the answer was not speech: the answer goes on."""
        if not self._early or self._held is not None:
            return []
        self._t_gone = now
        return self._resume(now, echo)

    def onset(self, started: m.SpeechStarted, now: float) -> list[m.Message]:
        """Speech started over the answer (or resumed while a turn is held)."""
        first = self._held is None
        t_onset = started.t_speech_start if first else self._onset_time()
        self._held = m.SpeechStarted(started.turn_id, t_onset)
        self._final, self._tentative, self._probe = None, None, None
        if not first:
            return []
        self._first_turn = started.turn_id
        log.info("turn %d: speech over the answer (voice from %.3f): holding it until its words "
                 "are known", started.turn_id, t_onset)
        if self._early:
            self._early = False
            return []  # already paused
        return [m.Duck(started.turn_id, True, now)]

    def utterance(self, utt: m.Utterance, now: float) -> list[m.Message]:
        """An utterance of the held turn: the probe (once per turn), and held if final."""
        held = self._held
        if held is None or utt.turn_id != held.turn_id:
            return []
        if utt.final:
            self._final = utt
        if self._probe is not None:
            return []
        if not utt.final:
            self._tentative = utt
        self._probe = m.Probe(utt.turn_id, utt.samples, utt.t_speech_start, utt.t_speech_end,
                              utt.sample_rate)
        self._t_probe = now
        return [self._probe]

    def wants_partial(self, now: float, voiced: bool) -> bool:
        """Whether the voice of the held turn has gone on long enough for a partial probe."""
        cfg = self.config
        return (self._held is not None and not self._partial_sent and voiced and cfg.probe_ms > 0
                and self._probe is None and (now - self._onset_time()) * 1000 >= cfg.probe_ms)

    def partial(self, so_far: m.Utterance) -> list[m.Message]:
        """A partial probe of the held speech so far (once per onset)."""
        if self._held is None or self._partial_sent:
            return []
        self._partial_sent = True
        return [m.Probe(so_far.turn_id, so_far.samples, so_far.t_speech_start,
                        so_far.t_speech_end, so_far.sample_rate, partial=True)]

    def discarded(self, turn_id: int, now: float, echo: bool = True) -> list[m.Message]:
        """The endpointer dropped the held turn's speech as too short: no turn."""
        if turn_id != self.holding:
            return []
        return self._resume(now, echo)

    def answer(self, text: m.ProbeText, now: float, echo: bool = True) -> tuple[bool, list[m.Message]]:
        """The probe's transcript: (dropped, messages). `dropped` says the held turn was a
        backchannel (the caller forgets its speech); an answer to an older probe is ignored.
        `echo`: the assistant's voice may reach the microphone (for the resume, see `Duck`)."""
        if text.partial:
            return False, self._partial_answer(text)
        if self._probe is None or text.turn_id != self._probe.turn_id:
            return False, []
        if text.text.strip() and not is_backchannel(text.text):
            log.info("turn %d: %r over the answer: an interruption", text.turn_id, text.text)
            return False, self.release()
        log.info("turn %d: %r over the answer: a backchannel, the answer goes on",
                 text.turn_id, text.text)
        return True, self._resume(now, echo)

    def _partial_answer(self, text: m.ProbeText) -> list[m.Message]:
        """A partial probe's words: an interruption if they cannot begin a backchannel."""
        held = self.holding
        if held is None or not self._first_turn <= text.turn_id <= held:
            return []  # an older onset's
        if could_become_backchannel(text.text):
            log.info("turn %d: %r so far over the answer: may still be a backchannel",
                     text.turn_id, text.text)
            return []
        log.info("turn %d: %r so far over the answer: an interruption", text.turn_id, text.text)
        return self.release()

    def check(self, now: float, voiced: bool) -> list[m.Message]:
        """Release the held turn if its voice outlasts a backchannel, or its probe is lost."""
        if self._held is None:
            return []
        if self._probe is None and voiced and (now - self._onset_time()) * 1000 >= self.config.max_ms:
            log.info("turn %d: still speaking %d ms after the onset: an interruption",
                     self._held.turn_id, self.config.max_ms)
            return self.release()
        if self._probe is not None and now - self._t_probe >= self.config.answer_timeout_s:
            log.warning("turn %d: no transcript of the probe after %.1f s: an interruption",
                        self._held.turn_id, self.config.answer_timeout_s)
            return self.release()
        return []

    def release(self) -> list[m.Message]:
        """The held messages, in order; the gate is empty again. Without a final utterance,
        the probed tentative one goes out, marked `same_as_tentative` (its audio is the
        probe's: the ASR reuses the probe's transcript)."""
        out: list[m.Message] = [] if self._held is None else [self._held]
        if self._final is not None:
            out.append(self._final)
        elif self._tentative is not None:
            out.append(replace(self._tentative, same_as_tentative=True))
        self._clear()
        return out

    def _resume(self, now: float, echo: bool = True) -> list[m.Message]:
        turn = self.holding
        self._clear()
        return [m.Duck(m.NO_TURN if turn is None else turn, False, now, echo)]

    def _onset_time(self) -> float:
        assert self._held is not None
        return self._held.t_speech_start

    def _clear(self) -> None:
        self._held, self._final, self._tentative, self._probe = None, None, None, None
        self._early, self._partial_sent, self._first_turn = False, False, m.NO_TURN

