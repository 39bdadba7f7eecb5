"""What the live view shows, derived from the dataflow's events (no dora, no I/O).

The `view` node adapts dora messages to the small event dataclasses below and feeds them to
:class:`ViewState`. Each :meth:`ViewState.apply` returns the JSON-ready updates to push to the
open pages; :meth:`ViewState.snapshot` is what a page gets when it (re)connects, so a reload
mid-session shows the earlier turns.

The state badge follows the turn in progress:

* ``listening``: nothing is happening (or the last turn ended);
* ``hearing``: the user is speaking (`speech_started`) until the utterance is endpointed;
* ``interrupted``: the user started speaking while the assistant was thinking or speaking;
* ``thinking``: endpointed, until the first sound of the answer;
* ``speaking``: the answer is playing, until the speaker's `turn_end`;
* ``error``: the LLM failed (until the apology plays) or a fault is active while idle.

Turns the VAD starts but nothing comes of (a cough, the assistant's own echo, an empty
transcript) send no further message; :meth:`ViewState.tick` drops them after a while so the
badge does not stay on "hearing" forever.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.metrics import STAGES

LISTENING = "listening"
HEARING = "hearing"
INTERRUPTED = "interrupted"
THINKING = "thinking"
SPEAKING = "speaking"
ERROR = "error"

# The stages between the end of speech and the first sound, in order (pipeline/metrics.py).
CHAIN = ("endpoint", "asr", "llm_request", "first_token", "first_segment", "tts_first", "to_speaker")
_STAGE = {name: (a, b) for name, a, b in STAGES}
Times = Mapping[str, float]


# -- events (the node's adapter builds these from dora messages) ---------------------------
@dataclass(frozen=True)
class SpeechStarted:
    turn_id: int
    t: float


@dataclass(frozen=True)
class Endpointed:
    """The VAD endpointed an utterance (`final`), or sent a tentative one for speculative ASR."""

    turn_id: int
    final: bool
    times: Times = field(default_factory=dict)


@dataclass(frozen=True)
class Transcript:
    turn_id: int
    text: str
    final: bool
    times: Times = field(default_factory=dict)


@dataclass(frozen=True)
class LlmDelta:
    turn_id: int
    text: str
    index: int
    times: Times = field(default_factory=dict)


@dataclass(frozen=True)
class LlmEnd:
    turn_id: int
    reason: str  # stop, cancelled, error
    error: str = ""
    times: Times = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentSent:
    turn_id: int
    segment_index: int
    text: str
    times: Times = field(default_factory=dict)


@dataclass(frozen=True)
class Played:
    """The speaker's report: started / finished / interrupted a segment, or the turn ended."""

    turn_id: int
    kind: str
    segment_index: int
    text: str
    t: float
    times: Times = field(default_factory=dict)


@dataclass(frozen=True)
class MicLevel:
    rms: float
    t: float


@dataclass(frozen=True)
class Fault:
    """Something is wrong (`active`) or was and is over (`active=False` clears `source`)."""

    source: str
    message: str
    t: float
    active: bool = True


Event = (SpeechStarted | Endpointed | Transcript | LlmDelta | LlmEnd | SegmentSent | Played
         | MicLevel | Fault)


# -- per-turn record ------------------------------------------------------------------------
_WORD = re.compile(r"\S+")
LOOKAHEAD_WORDS = 8  # answer words a spoken word may be ahead of its match (skipped markup)
_LINK_TARGET = re.compile(r"\]\(.*")  # "label](url)": only the label is spoken


def _norm(word: str) -> str:
    return "".join(ch for ch in _LINK_TARGET.sub("", word).lower() if ch.isalnum())


def spoken_offset(answer: str, spoken: list[str]) -> int:
    """Where in `answer` the `spoken` segments end (a character offset).

    Segments are the answer made speakable (markdown dropped, pieces joined), so they are
    aligned word by word, not by characters: each spoken word is looked for among the next
    few answer words (markup the voice skipped is passed over; a spoken word the answer does
    not have is skipped), in one pass over both.
    """
    said = [w for w in (_norm(w) for seg in spoken for w in seg.split()) if w]
    if not said:
        return 0
    words = [(mt.end(), _norm(mt.group())) for mt in _WORD.finditer(answer)]
    pos, end = 0, 0
    for word in said:
        for j in range(pos, min(pos + LOOKAHEAD_WORDS, len(words))):
            if words[j][1] == word:
                pos, end = j + 1, words[j][0]
                break
    return end


@dataclass
class TurnView:
    """One question and its answer as the page shows it."""

    turn_id: int
    transcript: str = ""
    transcript_final: bool = False
    deltas: dict[int, str] = field(default_factory=dict)
    finished: dict[int, str] = field(default_factory=dict)  # segments heard to their end
    playing: tuple[int, str] | None = None  # the segment being played now
    status: str = HEARING  # hearing, thinking, speaking, done, interrupted, error
    error: str = ""
    times: dict[str, float] = field(default_factory=dict)

    def stamp(self, times: Times) -> None:
        for key, value in times.items():
            if key.startswith("t_") and isinstance(value, (int, float)):
                self.times.setdefault(key, float(value))

    @property
    def answer(self) -> str:
        return "".join(self.deltas[i] for i in sorted(self.deltas))

    @property
    def empty(self) -> bool:
        return not self.transcript and not self.deltas

    def latency(self) -> dict[str, Any] | None:
        """End of speech -> first sound, with the stage breakdown (seconds)."""
        t = self.times
        if "t_speech_end" not in t or "t_first_played" not in t:
            return None
        stages = []
        for name in CHAIN:
            a, b = _STAGE[name]
            if a in t and b in t:
                stages.append({"name": name, "s": round(t[b] - t[a], 4)})
        return {"total_s": round(t["t_first_played"] - t["t_speech_end"], 4), "stages": stages}

    def as_json(self) -> dict[str, Any]:
        answer = self.answer
        done = [self.finished[i] for i in sorted(self.finished)]
        spoken = spoken_offset(answer, done)
        current = spoken
        if self.playing is not None:
            current = max(spoken, spoken_offset(answer, [*done, self.playing[1]]))
        return {
            "turn_id": self.turn_id,
            "transcript": self.transcript,
            "transcript_final": self.transcript_final,
            "answer": answer,
            "spoken_to": spoken,  # answer[:spoken_to] has been heard
            "speaking_to": current,  # answer[spoken_to:speaking_to] is being played
            "status": self.status,
            "error": self.error,
            "latency": self.latency(),
        }


# -- the view --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ViewLimits:
    """How much the view keeps and how long it waits for turns that come to nothing."""

    max_turns: int = 50
    max_faults: int = 20
    hearing_timeout_s: float = 16.0  # longer than VAD_MAX_UTTERANCE_S (15 s)
    thinking_timeout_s: float = 30.0  # a transcript that never came, an answer that never played
    error_hold_s: float = 5.0


class ViewState:
    """Keeps the state badge, the turns and the faults; makes the updates to push."""

    def __init__(self, limits: ViewLimits | None = None) -> None:
        self.limits = limits or ViewLimits()
        self.state = LISTENING
        self.state_since = 0.0
        self.current = -1  # the newest turn the VAD started
        self.turns: OrderedDict[int, TurnView] = OrderedDict()
        self.faults: deque[dict[str, Any]] = deque(maxlen=self.limits.max_faults)
        self.active_faults: dict[str, dict[str, Any]] = {}
        self.level = 0.0
        self._forgotten_below = -1  # turns dropped from the bounded history
        self.dirty: set[int] = set()  # turns changed since the last changed_turns()

    # public API
    def apply(self, event: Event) -> list[dict[str, Any]]:
        """Take one event; return the updates for the open pages (possibly none)."""
        return self.update(event) + self.changed_turns()

    def update(self, event: Event) -> list[dict[str, Any]]:
        """Take one event; return only the updates that cannot wait (state, faults, removed
        turns, the mic level). The turns it changed are only marked: :meth:`changed_turns`
        renders them, so a burst of LLM deltas costs one rendering, not one per delta."""
        if isinstance(event, MicLevel):
            self.level = max(0.0, float(event.rms))
            return [{"type": "level", "rms": round(self.level, 5)}]
        if isinstance(event, Fault):
            return self._fault(event)
        turn_id = event.turn_id
        if turn_id < 0 or turn_id < self._forgotten_below:
            return []
        out: list[dict[str, Any]] = []
        if isinstance(event, SpeechStarted):
            out += self._speech_started(event)
        turn = self._turn(turn_id, out)
        self.dirty.add(turn_id)
        t = self._when(event)
        if isinstance(event, Endpointed):
            turn.stamp(event.times)
            if event.final and turn.status == HEARING:
                turn.status = THINKING
                if turn_id == self.current:
                    out += self._set_state(THINKING, t)
        elif isinstance(event, Transcript):
            turn.stamp(event.times)
            if not turn.transcript_final:
                turn.transcript, turn.transcript_final = event.text, event.final
            if event.final and turn.status == HEARING:  # the endpoint's message was dropped
                turn.status = THINKING
                if turn_id == self.current:
                    out += self._set_state(THINKING, t)
        elif isinstance(event, LlmDelta):
            turn.stamp(event.times)
            turn.deltas.setdefault(event.index, event.text)
        elif isinstance(event, LlmEnd):
            turn.stamp(event.times)
            if event.reason == "error":
                turn.status = ERROR
                turn.error = event.error or "error"
                out += self._fault(Fault("llm", f"LLM failed ({turn.error}) in turn {turn_id}",
                                         t, active=False))
                if turn_id == self.current and self.state != SPEAKING:
                    out += self._set_state(ERROR, t)
        elif isinstance(event, SegmentSent):
            turn.stamp(event.times)
        elif isinstance(event, Played):
            out += self._played(turn, event)
        return out

    def changed_turns(self, render: bool = True) -> list[dict[str, Any]]:
        """The turns changed since the last call, each once (nothing rendered if not
        `render`: no page is open to receive them)."""
        dirty, self.dirty = self.dirty, set()
        if not render:
            return []
        return [{"type": "turn", "turn": self.turns[i].as_json()}
                for i in sorted(dirty) if i in self.turns]

    def tick(self, now: float) -> list[dict[str, Any]]:
        """Give up on a turn that stopped sending (a discarded utterance, an empty transcript)."""
        waited = now - self.state_since
        lim = self.limits
        stuck = (
            (self.state in (HEARING, INTERRUPTED) and waited > lim.hearing_timeout_s)
            or (self.state == THINKING and waited > lim.thinking_timeout_s)
            or (self.state == ERROR and not self.active_faults and waited > lim.error_hold_s)
        )
        if not stuck:
            return []
        out = self._drop_if_empty(self.current)
        turn = self.turns.get(self.current)
        if turn is not None and turn.status in (HEARING, THINKING):
            turn.status = "done"
            self.dirty.add(turn.turn_id)
        return out + self._set_state(self._idle_state(), now) + self.changed_turns()

    def snapshot(self) -> dict[str, Any]:
        """Everything a newly opened page needs."""
        return {
            "type": "snapshot",
            "state": self.state,
            "level": round(self.level, 5),
            "turns": [t.as_json() for t in self.turns.values() if not t.empty],
            "faults": list(self.faults),
        }

    # internals
    @staticmethod
    def _when(event: Event) -> float:
        if isinstance(event, (SpeechStarted, Played)):
            return event.t
        times = getattr(event, "times", {})
        return max((float(v) for k, v in times.items() if k.startswith("t_")), default=0.0)

    def _turn(self, turn_id: int, out: list[dict[str, Any]]) -> TurnView:
        turn = self.turns.get(turn_id)
        if turn is None:
            turn = self.turns[turn_id] = TurnView(turn_id)
            self.turns = OrderedDict(sorted(self.turns.items()))
            while len(self.turns) > self.limits.max_turns:
                old, _ = self.turns.popitem(last=False)
                self._forgotten_below = old + 1
                out.append({"type": "turn_removed", "turn_id": old})
        return turn

    def _speech_started(self, event: SpeechStarted) -> list[dict[str, Any]]:
        if event.turn_id <= self.current:
            return []
        out = self._drop_if_empty(self.current)
        busy = self.state in (THINKING, SPEAKING)
        self.current = event.turn_id
        return out + self._set_state(INTERRUPTED if busy else HEARING, event.t)

    def _drop_if_empty(self, turn_id: int) -> list[dict[str, Any]]:
        turn = self.turns.get(turn_id)
        if turn is None or not turn.empty:
            return []
        del self.turns[turn_id]
        return [{"type": "turn_removed", "turn_id": turn_id}]

    def _played(self, turn: TurnView, ev: Played) -> list[dict[str, Any]]:
        turn.stamp(ev.times)
        out: list[dict[str, Any]] = []
        if ev.kind == "started" and turn.turn_id > self.current:
            self.current = turn.turn_id  # a turn the assistant started itself (no speech)
        mine = turn.turn_id == self.current
        if ev.kind == "started":
            turn.playing = (ev.segment_index, ev.text)
            if turn.status not in (ERROR, INTERRUPTED):
                turn.status = SPEAKING
            if mine:
                out += self._set_state(SPEAKING, ev.t)
        elif ev.kind == "finished":
            if ev.text:
                turn.finished[ev.segment_index] = ev.text
            if turn.playing is not None and turn.playing[0] == ev.segment_index:
                turn.playing = None
        elif ev.kind == "interrupted":
            turn.status = INTERRUPTED
            if mine and self.state == SPEAKING:
                out += self._set_state(INTERRUPTED, ev.t)
        elif ev.kind == "turn_end":
            turn.playing = None
            if turn.status != INTERRUPTED:
                turn.status = ERROR if turn.error else "done"
            if mine and self.state in (SPEAKING, THINKING, ERROR):
                out += self._set_state(self._idle_state(), ev.t)
        return out

    def _fault(self, ev: Fault) -> list[dict[str, Any]]:
        record = {"source": ev.source, "message": ev.message, "t": ev.t, "active": ev.active}
        if ev.active:
            self.active_faults[ev.source] = record
        elif self.active_faults.pop(ev.source, None) is None and not ev.message:
            return []  # clearing a fault that is not there: nothing to show
        if ev.message:
            self.faults.append(record)
        out: list[dict[str, Any]] = [{"type": "fault", "fault": record}]
        if self.state in (LISTENING, ERROR):
            out += self._set_state(self._idle_state(), ev.t)
        return out

    def _idle_state(self) -> str:
        return ERROR if self.active_faults else LISTENING

    def _set_state(self, state: str, t: float) -> list[dict[str, Any]]:
        self.state_since = max(self.state_since, t)
        if state == self.state:
            return []
        self.state = state
        return [{"type": "state", "state": state, "turn_id": self.current}]
