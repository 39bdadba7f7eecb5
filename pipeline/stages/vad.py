"""The vad node's processor: microphone audio in; `speech_started` at an onset, the utterance
at its end.

Besides the endpointing itself (pipeline/endpoint.py) it keeps the assistant from hearing itself:

* With echo cancellation, every microphone block goes through the canceller first; the VAD
  detects speech on the cleaned signal but keeps the raw one for the utterance. While the
  assistant is (or was just) audible the VAD's threshold is the stricter playing one, and
  an onset is a barge-in (longer preroll, never dropped as too short) that the canceller
  may still veto as the assistant's own voice.
* The speaker's `reference` messages (play, cut, delay) keep the canceller's reference
  timeline equal to what is heard.
* Without barge-in (half duplex), the microphone is muted while an answer plays, from the
  speaker's `played` messages.
* Speech that starts while the assistant is audible may be a backchannel ("yeah"): the
  :class:`~pipeline.turn.backchannel.BackchannelGate` pauses the answer, has the ASR
  transcribe the first words (a `probe`) and only then starts the turn, or lets it go.
* When a pause ends the turn is the end-of-turn policy's call (pipeline/turn/policy.py): the
  turn model on the audio so far and, from the ASR's tentative `transcript` of the pause,
  the transcript cue.

Single-threaded: everything, the canceller included (it is not thread-safe), runs on the
thread that calls :meth:`VadStage.handle`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from pipeline import messages as m
from pipeline.echo import EchoStats
from pipeline.runtime import CLOSED, Control, Event
from pipeline.settings import DEFAULTS, Settings
from pipeline.turn.backchannel import BackchannelGate, GateConfig
from pipeline.turn.policy import EndOfTurn, PolicyConfig, TurnModel
from pipeline.vad import (
    EndpointConfig,
    FrameModel,
    SpeechDiscarded,
    VadPipeline,
    VoiceGone,
    VoiceOnset,
)
from pipeline.vad import Event as VadEvent

log = logging.getLogger("vad")

WIRING: dict[str, type[m.Message] | None] = {
    "audio": m.MicAudio, "played": m.Played, "reference": m.Reference,
    "transcript": m.Transcript, "probe_text": m.ProbeText, "text_end": m.TextEnd,
}
MICROPHONE = "audio"  # the input whose end ends the node (see runtime.inputs)

AUDIBLE_TAIL_S = 0.3
"""The assistant counts as audible this long after its reference stops (the room's echo)."""


class Canceller(Protocol):
    """What the stage needs of an echo canceller (:class:`pipeline.echo.EchoCanceller`)."""

    stats: EchoStats

    @property
    def available(self) -> bool: ...

    def process(self, chunk: np.ndarray, t_capture: float) -> np.ndarray: ...

    def vad_threshold(self, t: float, normal: float, playing: float) -> float | None: ...

    def playing_at(self, t: float, tail_s: float = 0.0) -> bool: ...

    @property
    def echo_heard(self) -> bool: ...

    def onset_is_echo(self, n_samples: int) -> bool | None: ...

    def add_reference(self, samples: np.ndarray, t_start: float) -> None: ...

    def cut_reference(self, t: float) -> None: ...

    def delay_reference(self, t: float, delay_s: float) -> None: ...


@dataclass(frozen=True)
class VadStageConfig:
    """The endpointing, the threshold while the assistant is audible, and half duplex."""

    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    threshold_playing: float = DEFAULTS.vad_threshold_playing
    barge_in: bool = True
    # None: a turn ends after the endpoint's fixed end silence.
    end_of_turn: PolicyConfig | None = None
    # None: speech over the answer interrupts it at once (no pause, no backchannels).
    backchannels: GateConfig | None = None
    # The asr follows each tentative transcript with its sentence-end score (TextEnd,
    # TURN_TEXT_MODEL): the policy gets the transcript together with it.
    text_end: bool = False

    @classmethod
    def from_settings(cls, s: Settings) -> VadStageConfig:
        policy = PolicyConfig.from_settings(s)
        gate = GateConfig.from_settings(s) if s.backchannels and s.barge_in else None
        endpoint = EndpointConfig.from_settings(s)
        if gate is not None:  # the first voiced frames over the answer already pause it
            endpoint = replace(endpoint, early_onset_ms=s.backchannel_pause_ms)
        return cls(endpoint=endpoint,
                   threshold_playing=s.vad_threshold_playing, barge_in=s.barge_in,
                   end_of_turn=policy if policy.active else None, backchannels=gate,
                   text_end=s.turn_text_model and s.turn_cues and policy.active)


class PlaybackState:
    """Whether the assistant is talking, from the speaker's `played` messages (half duplex)."""

    def __init__(self) -> None:
        self.playing_turn: int | None = None

    def update(self, played: m.Played) -> None:
        if played.event == m.STARTED:
            self.playing_turn = played.turn_id
        elif played.event in (m.TURN_END, m.INTERRUPTED) and self.playing_turn == played.turn_id:
            self.playing_turn = None

    @property
    def playing(self) -> bool:
        return self.playing_turn is not None


class VadStage:
    """MicAudio, Played and Reference in; SpeechStarted and Utterance out.

    `model` is the VAD model (Silero), `aec` the echo canceller or None (file mode, or
    AEC off). The canceller, when it works, also vetoes onsets that are its own voice.
    `turn_model` (Smart Turn) is needed when the end-of-turn policy uses a model.
    """

    def __init__(self, config: VadStageConfig, model: FrameModel,
                 aec: Canceller | None = None, turn_model: TurnModel | None = None) -> None:
        self.config = config
        self.aec = aec
        veto = aec.onset_is_echo if aec is not None and aec.available else None
        policy = config.end_of_turn
        end_of_turn = EndOfTurn(policy, turn_model) if policy is not None else None
        self.vad = VadPipeline(config.endpoint, model, onset_veto=veto, end_of_turn=end_of_turn)
        self.playback = PlaybackState()
        gate = config.backchannels if config.barge_in else None
        self.gate = BackchannelGate(gate) if gate is not None else None
        self._now = 0.0  # capture time of the end of the last microphone block
        # the gate released a turn whose utterance goes on: when the voice resumes after a
        # pause the endpointer gives it a new turn, which is the same speech, not a new onset
        self._released = False
        # a tentative transcript waiting for its TextEnd (config.text_end); meanwhile the
        # policy counts it as on its way (EndOfTurn.speculated), up to TURN_UNSURE_MS
        self._unscored: m.Transcript | None = None
        self._score: m.TextEnd | None = None  # a score that came before its transcript

    def handle(self, event: Event) -> list[m.Message]:
        if isinstance(event, m.MicAudio):
            return self._audio(event)
        if isinstance(event, m.Reference):
            self._reference(event)
        elif isinstance(event, m.Transcript):
            if not event.final and self.config.text_end:
                self._unscored = event
                self._scored_if_both()
            elif not event.final:
                self._to_policy(event, None)
        elif isinstance(event, m.TextEnd):
            self._score = event
            self._scored_if_both()
        elif isinstance(event, m.ProbeText):
            return self._probe_answer(event)
        elif isinstance(event, m.Played):
            self.playback.update(event)
            if not self.config.barge_in:
                return self._messages(self.vad.set_muted(self.playback.playing))
        elif isinstance(event, Control) and event.kind == CLOSED and event.input_id == MICROPHONE:
            out = self._messages(self.vad.flush())
            return out + self._logged(self.gate.release() if self.gate is not None else [])
        return []

    def idle(self) -> bool:
        """Nothing of its own runs between events."""
        return True

    def _audio(self, block: m.MicAudio) -> list[m.Message]:
        if block.sample_rate != m.ASR_RATE:
            log.error("microphone audio at %d Hz ignored: the contract says %d",
                      block.sample_rate, m.ASR_RATE)
            return []
        aec, t = self.aec, block.capture_time
        self._now = t + block.samples.size / m.ASR_RATE
        if aec is None:
            return self._messages(self.vad.push(block.samples, t))
        self.vad.set_threshold(
            aec.vad_threshold(t, self.vad.config.threshold, self.config.threshold_playing))
        self.vad.set_assistant_audible(aec.playing_at(t, tail_s=AUDIBLE_TAIL_S))
        events = self.vad.push(aec.process(block.samples, t), t, keep=block.samples)
        if log.isEnabledFor(logging.DEBUG) and block.seq % 50 == 0:
            log.debug("aec: capture lag %.3f s, late reference %.2f s, prob %.2f, %.3f ms/frame",
                      time.time() - t, aec.stats.late_reference_s, self.vad.last_prob,
                      aec.stats.ms_per_frame)
        return self._messages(events)

    def _reference(self, ref: m.Reference) -> None:
        aec = self.aec
        if aec is None:
            return
        if ref.event == m.CUT:
            aec.cut_reference(ref.t_start)
        elif ref.event == m.DELAY:  # the speaker stalled: what was queued is late
            aec.delay_reference(ref.t_start, ref.delay_s)
            log.debug("aec: reference delayed by %.3f s", ref.delay_s)
        else:
            log.debug("aec: reference of %.2f s starts in %.3f s",
                      ref.samples.size / ref.sample_rate, ref.t_start - time.time())
            aec.add_reference(ref.samples, ref.t_start)

    def _audible(self) -> bool:
        """The assistant can be heard now: from the canceller's reference, or without one
        from the speaker's `played` messages."""
        return self.vad.endpointer.assistant_audible or self.playback.playing

    def _scored_if_both(self) -> None:
        """A tentative transcript and its score (in either order: they come on two inputs)
        go to the policy together."""
        held, score = self._unscored, self._score
        if held is None or score is None:
            return
        if (held.turn_id, held.text) == (score.turn_id, score.text):
            self._unscored = self._score = None
            self._to_policy(held, score.p if score.p >= 0 else None)
        elif score.turn_id < held.turn_id:
            self._score = None  # an older transcript's

    def _to_policy(self, transcript: m.Transcript, text_end_p: float | None) -> None:
        self.vad.endpointer.transcript(transcript.turn_id, transcript.text, transcript.last_word_p,
                                       transcript.end_mark_p, text_end_p)

    def _echo_heard(self) -> bool:
        """The assistant's voice may reach the microphone (the canceller has not ruled it
        out): the first voiced frames may be its echo, so they do not pause it; the onset,
        once the canceller has judged it, does."""
        aec = self.aec
        return aec is not None and aec.available and aec.echo_heard

    def _gated(self, events: Iterable[VadEvent]) -> list[VadEvent | m.Message]:
        """The endpointer's events with those of a turn started over the answer held back
        by the backchannel gate (and what the gate sends instead); then the gate's timers."""
        gate, now = self.gate, self._now
        if gate is None:
            return list(events)
        out: list[VadEvent | m.Message] = []
        for ev in events:
            if isinstance(ev, VoiceOnset):
                out += gate.early(ev, now) if self._audible() and not self._echo_heard() else []
            elif isinstance(ev, VoiceGone):
                out += gate.gone(now, self._echo_heard())
            elif isinstance(ev, m.SpeechStarted) and self._released:
                out.append(ev)
            elif isinstance(ev, m.SpeechStarted) and (gate.paused or self._audible()):
                out += gate.onset(ev, now)
            elif isinstance(ev, m.Utterance) and ev.turn_id == gate.holding:
                out += gate.utterance(ev, now)
            elif isinstance(ev, SpeechDiscarded) and ev.turn_id == gate.holding:
                out += gate.discarded(ev.turn_id, now, self._echo_heard())
            else:
                out.append(ev)
        ep = self.vad.endpointer
        voiced = ep.in_speech and self.vad.last_prob >= ep.threshold
        if gate.wants_partial(now, voiced):
            so_far = ep.so_far()
            out += gate.partial(so_far) if so_far is not None else []
        out += self._released_if(gate.check(now, voiced))
        self._released = self._released and ep.in_speech
        # speech over the answer is probed after a shorter pause than the speculative one
        ep.set_speculate_ms(gate.config.probe_silence_ms if gate.holding is not None else None)
        return out

    def _released_if(self, out: list[m.Message]) -> list[m.Message]:
        """Notes that the gate let a turn go while its speech goes on."""
        if any(isinstance(x, m.SpeechStarted) for x in out):
            self._released = self.vad.endpointer.in_speech
        return out

    def _probe_answer(self, text: m.ProbeText) -> list[m.Message]:
        """The ASR's verdict on a probe; a backchannel's speech is forgotten (no turn)."""
        if self.gate is None:
            return []
        dropped, out = self.gate.answer(text, self._now, self._echo_heard())
        ep = self.vad.endpointer
        if dropped and ep.in_speech and ep.turn_id == text.turn_id:
            ep.reset()
        elif not dropped:
            # The probe is the tentative utterance of the pause the user may be in: its text
            # is that pause's transcript for the end-of-turn policy, which waits for one
            # (without Whisper's ending probabilities, which probes do not carry).
            ep.transcript(text.turn_id, text.text)
        return self._logged(self._released_if(out))

    def _messages(self, events: Iterable[VadEvent]) -> list[m.Message]:
        """The endpointer's events that are sent, through the backchannel gate."""
        return self._logged(self._gated(events))

    def _logged(self, events: Iterable[VadEvent | m.Message]) -> list[m.Message]:
        """The events that are sent (all but SpeechDiscarded), logged."""
        out: list[m.Message] = []
        for ev in events:
            if isinstance(ev, SpeechDiscarded):
                log.info("turn %d: too short to be speech, ignored", ev.turn_id)
                continue
            if isinstance(ev, VoiceOnset | VoiceGone):
                continue  # only the backchannel gate reads them
            if isinstance(ev, m.SpeechStarted):
                log.info("turn %d: speech started", ev.turn_id)
            elif isinstance(ev, m.Utterance) and ev.final:
                policy = self.vad.endpointer.end_of_turn
                log.info("turn %d: utterance of %.2f s%s", ev.turn_id, ev.duration_s,
                         f" (end of turn: {policy.reason}, p={policy.ended_probability}, "
                         f"cue {policy.ended_cue.value}, last word p={policy.ended_word_p}, "
                         f"sentence end p={policy.ended_text_end_p})"
                         if policy is not None else "")
            out.append(ev)
        return out
