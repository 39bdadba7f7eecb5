"""Endpointing: when does the user start and stop talking, from per-frame speech probabilities?

:class:`Endpointer` is a pure state machine over (frame, probability, time): it emits
:class:`~pipeline.messages.SpeechStarted` and :class:`~pipeline.messages.Utterance` (the
messages other nodes get), and :class:`SpeechDiscarded`, :class:`VoiceOnset` and
:class:`VoiceGone` (which stay in the vad node). It needs no model, so every timing rule is
tested on synthetic probabilities; :class:`~pipeline.vad.VadPipeline` runs it on Silero's.
When a pause ends the turn is the end-of-turn policy's call (:mod:`pipeline.turn.policy`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline import messages as m
from pipeline.messages import SpeechStarted, Utterance
from pipeline.settings import DEFAULTS, Settings
from pipeline.silero import FRAME_SAMPLES, SAMPLE_RATE
from pipeline.turn.policy import EndOfTurn

HYSTERESIS = 0.15  # neg_threshold = threshold - 0.15, as in Silero's get_speech_timestamps


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class SpeechDiscarded:
    """Speech had started (SpeechStarted was sent) but was too short: a cough, a click."""

    turn_id: int


@dataclass(frozen=True)
class VoiceOnset:
    """Voice has lasted `early_onset_ms`, not yet `start_ms`: maybe speech, not a turn yet
    (only with `early_onset_ms` on). `t_start`: capture time of its first voiced frame."""

    t_start: float


@dataclass(frozen=True)
class VoiceGone:
    """The voice of a :class:`VoiceOnset` ended before it became speech (too short, or the
    onset veto found it is the assistant's own echo): there is no turn."""


Event = SpeechStarted | Utterance | SpeechDiscarded | VoiceOnset | VoiceGone


OnsetVeto = Callable[[int], "bool | None"]
"""Asked with the samples of voice so far before a SpeechStarted is given: True drops the
onset (e.g. the echo canceller found it is the assistant's own voice), None asks again at
the next voiced frame (not sure yet)."""


# --------------------------------------------------------------------------- endpointer


@dataclass(frozen=True)
class EndpointConfig:
    """Endpointing parameters; durations are rounded up to whole frames (32 ms).

    The defaults of the fields that are settings are the settings' (pipeline/settings.py),
    except `speculate_ms`, which is off unless :meth:`from_settings` turns it on.
    """

    threshold: float = DEFAULTS.vad_threshold
    start_ms: int = DEFAULTS.vad_start_ms
    min_speech_ms: int = DEFAULTS.vad_min_speech_ms
    end_silence_ms: int = DEFAULTS.vad_end_silence_ms
    preroll_ms: int = DEFAULTS.vad_preroll_ms
    max_utterance_s: float = DEFAULTS.vad_max_utterance_s
    sample_rate: int = SAMPLE_RATE
    frame_samples: int = FRAME_SAMPLES
    # Silence kept after the last voiced frame: Whisper transcribes the last word better with
    # a little trailing silence, but the rest of the end_silence_ms wait is dead weight.
    postroll_ms: int = 200
    first_turn: int = 1  # n of the first user turn: its id is messages.user_turn(n)
    # Silence after which a tentative utterance goes to ASR (0 = off). At or above
    # postroll_ms its audio is exactly what the final utterance will be if the user
    # stays silent, so the final transcript is ready almost at once.
    speculate_ms: int = 0
    # Preroll of an utterance that starts while the assistant is audible (a barge-in): AEC3
    # suppresses the start of double talk, so the onset is found late and the usual preroll
    # would give Whisper only the end of what the user said. The audio kept is the raw
    # microphone.
    barge_in_preroll_ms: int = 1000
    # Voice this long (under `start_ms`) gives a VoiceOnset event, and its end before
    # `start_ms` a VoiceGone (0 = off): the vad pauses an answer on it (pipeline/turn/backchannel.py).
    early_onset_ms: int = 0

    @classmethod
    def from_settings(cls, s: Settings) -> EndpointConfig:
        """Speculation only makes sense if it starts before the endpoint: a
        VAD_SPECULATIVE_MS at or above VAD_END_SILENCE_MS turns it off."""
        speculate = s.vad_speculative_ms if s.vad_speculative_ms < s.vad_end_silence_ms else 0
        return cls(
            threshold=s.vad_threshold,
            start_ms=s.vad_start_ms,
            min_speech_ms=s.vad_min_speech_ms,
            end_silence_ms=s.vad_end_silence_ms,
            preroll_ms=s.vad_preroll_ms,
            max_utterance_s=s.vad_max_utterance_s,
            speculate_ms=speculate,
        )

    def __post_init__(self) -> None:
        if self.first_turn < 1:
            raise ValueError(f"first_turn must be at least 1, got {self.first_turn}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.sample_rate <= 0 or self.frame_samples <= 0:
            raise ValueError("sample_rate and frame_samples must be positive")
        for name in ("start_ms", "min_speech_ms", "end_silence_ms", "preroll_ms", "postroll_ms",
                     "barge_in_preroll_ms", "early_onset_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.max_utterance_s <= 0:
            raise ValueError(f"max_utterance_s must be positive, got {self.max_utterance_s}")

    @property
    def frame_s(self) -> float:
        return self.frame_samples / self.sample_rate

    def frames(self, ms: float) -> int:
        """Whole frames needed to cover `ms` milliseconds (at least one)."""
        return max(1, math.ceil(ms / (1000.0 * self.frame_s) - 1e-9))

    def samples(self, ms: float) -> int:
        return int(round(ms * self.sample_rate / 1000.0))


def neg_threshold(threshold: float) -> float:
    """Probability under which a frame is silence once speech has started (hysteresis)."""
    return max(threshold - HYSTERESIS, 0.01)


class _Ring:
    """The last `size` samples of audio, for the preroll; written once per frame, no allocation."""

    def __init__(self, size: int) -> None:
        self._buf = np.zeros(max(size, 1), dtype=np.float32)
        self.size = size
        self._pos = 0
        self.fill = 0

    def clear(self) -> None:
        self._pos = 0
        self.fill = 0

    def write(self, x: np.ndarray) -> None:
        if self.size == 0:
            return
        if x.size >= self.size:
            self._buf[: self.size] = x[-self.size :]
            self._pos, self.fill = 0, self.size
            return
        first = min(x.size, self.size - self._pos)
        self._buf[self._pos : self._pos + first] = x[:first]
        self._buf[: x.size - first] = x[first:]
        self._pos = (self._pos + x.size) % self.size
        self.fill = min(self.fill + x.size, self.size)

    def read_into(self, out: np.ndarray, limit: int | None = None) -> int:
        """Copy the buffered samples (the newest `limit` of them), oldest first, to the
        start of `out`; return how many."""
        n = self.fill if limit is None else min(self.fill, limit)
        start = (self._pos - n) % self.size if self.size else 0
        first = min(n, self.size - start)
        out[:first] = self._buf[start : start + first]
        out[first:n] = self._buf[: n - first]
        return n


_IDLE, _PENDING, _SPEAKING = "idle", "pending", "speaking"


@dataclass
class _Current:
    """Bookkeeping of the utterance being collected (reset for each one)."""

    t_start: float | None = None  # capture time of the first voiced frame
    t_voiced_end: float = 0.0  # end of the last voiced frame
    voiced_end_pos: int = 0  # buffer position just after the last voiced frame
    run: int = 0  # consecutive speech frames while pending
    voiced: int = 0  # voiced frames in the utterance
    speculated_voiced: int = -1  # `voiced` when the tentative utterance was sent
    silence: int = 0  # frames in the current run of silence while speaking
    frames: int = 0  # frames since the onset (preroll excluded)
    pos: int = 0  # samples in the utterance buffer
    prefix: int = 0  # samples of preroll at the start of the buffer
    barge_in: bool = False  # started while the assistant was audible: it stopped the assistant
    early: bool = False  # a VoiceOnset was given for it while pending


@dataclass
class _Counts:
    """Frame counts derived from the config once."""

    start: int
    min_speech: int
    end_silence: int
    max_frames: int
    preroll: int
    barge_in_preroll: int
    postroll: int
    speculate: int
    early: int


class Endpointer:
    """Pure endpointing state machine: feed (frame, probability, time), get events.

    States: *idle*; *pending* after a frame with probability >= threshold, while fewer than
    `start_ms` of speech have accumulated (a frame below neg_threshold abandons it silently);
    *speaking* once :class:`SpeechStarted` was emitted. While speaking, a frame counts as
    voiced if >= threshold, or in the hysteresis band [neg_threshold, threshold) before any
    silence; `end_silence_ms` of frames after the last voiced one end the utterance
    (:class:`Utterance`, or :class:`SpeechDiscarded` with less than `min_speech_ms` voiced).

    At `max_utterance_s` an utterance still being spoken is cut and emitted; the speech that
    follows goes through *pending* again without preroll (so it gets its own SpeechStarted
    and turn only if the user really keeps talking, and the first part's answer is not
    cancelled by a trailing syllable).

    The frames given are copied; the caller may reuse its buffers.
    """

    def __init__(self, config: EndpointConfig | None = None, onset_veto: OnsetVeto | None = None,
                 clock: Callable[[], float] = m.now, end_of_turn: EndOfTurn | None = None) -> None:
        self.config = config or EndpointConfig()
        cfg = self.config
        # Decides when a pause ends the turn (pipeline/turn/policy.py); None: after
        # `end_silence_ms` of silence, whatever was said.
        self.end_of_turn = end_of_turn
        self._counts = _Counts(
            start=cfg.frames(cfg.start_ms),
            min_speech=cfg.frames(cfg.min_speech_ms) if cfg.min_speech_ms > 0 else 0,
            end_silence=cfg.frames(cfg.end_silence_ms),
            max_frames=cfg.frames(cfg.max_utterance_s * 1000.0),
            preroll=cfg.samples(cfg.preroll_ms),
            barge_in_preroll=cfg.samples(cfg.barge_in_preroll_ms),
            postroll=cfg.samples(cfg.postroll_ms),
            speculate=cfg.frames(cfg.speculate_ms) if cfg.speculate_ms > 0 else 0,
            early=cfg.frames(cfg.early_onset_ms) if cfg.early_onset_ms > 0 else 0,
        )
        longest = max(self._counts.preroll, self._counts.barge_in_preroll)
        self._ring = _Ring(longest)
        capacity = longest + (self._counts.max_frames + 1) * cfg.frame_samples
        self._buf = np.zeros(capacity, dtype=np.float32)
        self._threshold = cfg.threshold
        self._neg = neg_threshold(cfg.threshold)
        self._state = _IDLE
        self._cur = _Current()
        self._muted = False
        self._cut_pending = False
        self._turns = cfg.first_turn - 1  # user turns given out so far
        self.turn_id = m.user_turn(self._turns) if self._turns else m.NO_TURN  # the last one
        self._onset_veto = onset_veto
        self._clock = clock  # stamps `t_utterance`
        self._assistant_audible = False
        # silence after which a tentative utterance is sent, instead of `speculate_ms`, for
        # now (set_speculate_ms): a probe of speech over the answer wants it sooner
        self._speculate_now: int | None = None

    # -- controls --------------------------------------------------------------------

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def muted(self) -> bool:
        return self._muted

    @property
    def in_speech(self) -> bool:
        """True between SpeechStarted and the end of its utterance."""
        return self._state == _SPEAKING

    @property
    def assistant_audible(self) -> bool:
        return self._assistant_audible

    def set_assistant_audible(self, audible: bool) -> None:
        """Whether the assistant can be heard now: speech that starts then is a barge-in,
        with a longer preroll and never dropped as too short (see `_min_voiced`)."""
        self._assistant_audible = bool(audible)

    def set_speculate_ms(self, ms: int | None) -> None:
        """Send the tentative utterance after `ms` of silence from now on (None: after the
        configured `speculate_ms`). Its transcript is only an early guess: the final
        utterance still waits for the end of the turn."""
        self._speculate_now = None if ms is None else self.config.frames(ms)

    def set_threshold(self, threshold: float | None) -> None:
        """Raise (or lower) the speech threshold for a while, e.g. while the assistant talks,
        so its own voice leaking into the microphone is less likely to start a turn.
        None restores the configured value. The hysteresis band moves with it."""
        value = self.config.threshold if threshold is None else float(threshold)
        if not 0.0 < value < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {value}")
        self._threshold = value
        self._neg = neg_threshold(value)

    def set_muted(self, muted: bool) -> list[Event]:
        """Half duplex: while muted every frame is ignored and the preroll is forgotten.

        Muting drops any speech in progress; if SpeechStarted was already sent for it, the
        returned list holds the matching SpeechDiscarded so that turn is closed.
        """
        events: list[Event] = []
        if muted and not self._muted:
            if self._state == _SPEAKING:
                events.append(SpeechDiscarded(self.turn_id))
            self._to_idle()
            self._ring.clear()
        self._muted = muted
        return events

    def transcript(self, turn_id: int, text: str, last_word_p: float = 1.0,
                   end_mark_p: float = 1.0, text_end_p: float | None = None) -> None:
        """The speculative transcript of turn `turn_id`'s tentative utterance (and Whisper's
        confidence in its ending): a cue for the end-of-turn policy, if the user is still
        pausing in that turn (else it is stale)."""
        cur = self._cur
        if (self.end_of_turn is not None and self._state == _SPEAKING and turn_id == self.turn_id
                and cur.speculated_voiced == cur.voiced and cur.silence > 0):
            self.end_of_turn.transcript(text, last_word_p, end_mark_p, text_end_p)

    def so_far(self) -> Utterance | None:
        """The utterance being spoken, as a tentative one (nothing changes), or None."""
        cur = self._cur
        if self._state != _SPEAKING or cur.t_start is None:
            return None
        return Utterance(turn_id=self.turn_id, samples=self._buf[:cur.pos].copy(),
                         t_speech_start=cur.t_start, t_speech_end=cur.t_voiced_end,
                         sample_rate=self.config.sample_rate, t_utterance=self._clock(),
                         final=False)

    def reset(self) -> None:
        """Back to idle without events (e.g. the audio stream restarted); turn ids go on."""
        self._to_idle()
        self._ring.clear()

    # -- processing ------------------------------------------------------------------

    def process(self, frame: np.ndarray, prob: float, frame_time: float) -> list[Event]:
        """Feed one frame with its speech probability and the capture time of its first
        sample (UNIX seconds); returns the events it causes (usually none)."""
        if self._muted:
            return []
        events: list[Event] = []
        if self._state == _IDLE:
            if prob >= self._threshold:
                self._onset(frame_time, with_preroll=True)
                self._state = _PENDING
                self._pending_frame(frame, prob, frame_time, events)
        elif self._state == _PENDING:
            self._pending_frame(frame, prob, frame_time, events)
        else:
            self._speaking_frame(frame, prob, frame_time, events)
        self._ring.write(frame)
        if self._cut_pending:
            # After a cut the audio so far went out with the first part: a later onset must
            # not repeat it as preroll.
            self._ring.clear()
            self._cut_pending = False
        return events

    def flush(self) -> list[Event]:
        """End of input: emit the utterance in progress (or its SpeechDiscarded) and go idle.

        Speech still pending (under `start_ms`) is dropped (VoiceGone if it was announced);
        no turn was given.
        """
        events: list[Event] = []
        if self._state == _SPEAKING:
            self._finish(events, cut=False)
        elif self._state == _PENDING:
            self._abandon(events)
        self._to_idle()
        return events

    # -- states ----------------------------------------------------------------------

    def _onset(self, frame_time: float, with_preroll: bool) -> None:
        cur = self._cur = _Current(t_start=frame_time)
        if with_preroll:
            counts = self._counts
            limit = counts.barge_in_preroll if self._assistant_audible else counts.preroll
            cur.prefix = cur.pos = self._ring.read_into(self._buf, max(limit, counts.preroll))

    def _append(self, frame: np.ndarray) -> None:
        cur = self._cur
        end = cur.pos + frame.size
        if end > self._buf.size:  # only with frames larger than configured; stay correct
            grown = np.zeros(max(end, 2 * self._buf.size), dtype=np.float32)
            grown[: cur.pos] = self._buf[: cur.pos]
            self._buf = grown
        self._buf[cur.pos : end] = frame
        cur.pos = end
        cur.frames += 1

    def _voiced(self, frame_time: float) -> None:
        cur = self._cur
        cur.voiced += 1
        cur.silence = 0
        cur.t_voiced_end = frame_time + self.config.frame_s
        cur.voiced_end_pos = cur.pos

    def _pending_frame(
        self, frame: np.ndarray, prob: float, frame_time: float, events: list[Event]
    ) -> None:
        cur = self._cur
        if prob < self._neg:  # too short to be speech: forget it, no turn was given
            self._abandon(events)
            return
        if cur.t_start is None:  # first frame after a max_utterance_s cut
            cur.t_start = frame_time
        self._append(frame)
        self._voiced(frame_time)
        cur.run += 1
        if cur.run >= self._counts.start:
            veto = self._onset_veto
            verdict = veto(cur.pos - cur.prefix) if veto is not None else False
            if verdict is None:
                return  # undecided: still pending, judged again with the next frame
            if verdict:
                self._abandon(events)  # not the user (e.g. the assistant's own echo): no turn
                return
            self._next_turn()
            self._state = _SPEAKING
            cur.barge_in = self._assistant_audible
            assert cur.t_start is not None
            events.append(SpeechStarted(self.turn_id, cur.t_start))
        elif cur.run == self._counts.early and not cur.early:
            cur.early = True
            assert cur.t_start is not None
            events.append(VoiceOnset(cur.t_start))

    def _abandon(self, events: list[Event]) -> None:
        """Pending voice that is not speech: idle again, and VoiceGone if it was announced."""
        if self._cur.early:
            events.append(VoiceGone())
        self._to_idle()

    def _speaking_frame(
        self, frame: np.ndarray, prob: float, frame_time: float, events: list[Event]
    ) -> None:
        cur = self._cur
        self._append(frame)
        if prob >= self._threshold or (prob >= self._neg and cur.silence == 0):
            if cur.speculated_voiced >= 0 and prob >= self._threshold:
                # The user goes on after a tentative utterance: whatever was started on it
                # (ASR, LLM, TTS) must be dropped, so the rest of the utterance is a new turn.
                cur.speculated_voiced = -1
                self._next_turn()
                events.append(SpeechStarted(self.turn_id, frame_time))
            if cur.silence and self.end_of_turn is not None:
                self.end_of_turn.voice()
            self._voiced(frame_time)
        else:
            cur.silence += 1
        if cur.silence and self._turn_ends():
            self._finish(events, cut=False)
            self._to_idle()
        elif (
            self._speculate()
            and cur.silence == self._speculate()
            and cur.speculated_voiced != cur.voiced  # (once per pause)
            and cur.voiced >= self._min_voiced()
        ):
            sent = len(events)
            self._finish(events, cut=False, final=False)
            cur.speculated_voiced = cur.voiced
            if self.end_of_turn is not None and len(events) > sent:
                self.end_of_turn.speculated()
        elif cur.frames >= self._counts.max_frames:
            if cur.silence > 0:  # already pausing: a normal end, not a cut
                self._finish(events, cut=False)
                self._to_idle()
            else:
                self._finish(events, cut=True)
                self._cur = _Current()  # continue without preroll: the audio is seamless
                self._state = _PENDING
                self._cut_pending = True

    def _speculate(self) -> int:
        """Frames of silence before the tentative utterance (0: none)."""
        now = self._speculate_now
        return self._counts.speculate if now is None else now

    def _turn_ends(self) -> bool:
        """Whether the current pause ends the turn: the policy's verdict, or the fixed
        `end_silence_ms` without one."""
        cur, policy = self._cur, self.end_of_turn
        if policy is None:
            return cur.silence >= self._counts.end_silence
        silence_ms = cur.silence * self.config.frame_s * 1000.0
        return policy.should_end(silence_ms, lambda: self._buf[: cur.pos])

    def _min_voiced(self) -> int:
        """Voiced frames an utterance needs to be sent to ASR.

        `min_speech_ms` keeps coughs and clicks away from Whisper, except for an utterance
        that began while the assistant was audible: its `speech_started` has already stopped
        the assistant, and while they overlapped the echo canceller suppressed much of it
        (AEC3 eats the first words of double talk), so it can look shorter than it was.
        Dropped, the user would be met with silence; sent, Whisper hears the raw microphone
        (and what it makes of an echo residue, a lone word of the answer, the EchoGuard drops).
        """
        return self._counts.start if self._cur.barge_in else self._counts.min_speech

    def _finish(self, events: list[Event], cut: bool, final: bool = True) -> None:
        cur = self._cur
        if cur.voiced < self._min_voiced():
            if final:
                events.append(SpeechDiscarded(self.turn_id))
            return
        end = cur.pos if cut else min(cur.voiced_end_pos + self._counts.postroll, cur.pos)
        assert cur.t_start is not None
        events.append(
            Utterance(
                turn_id=self.turn_id,
                samples=self._buf[:end].copy(),
                t_speech_start=cur.t_start,
                t_speech_end=cur.t_voiced_end,
                sample_rate=self.config.sample_rate,
                t_utterance=self._clock(),
                final=final,
                same_as_tentative=final and cur.speculated_voiced == cur.voiced,
            )
        )

    def _next_turn(self) -> None:
        self._turns += 1
        self.turn_id = m.user_turn(self._turns)

    def _to_idle(self) -> None:
        self._state = _IDLE
        self._cur = _Current()
        if self.end_of_turn is not None:
            self.end_of_turn.voice()


