"""One entry point: an utterance in, a :class:`SkillReply` out, or None for the LLM.

The order matters only where phrases overlap: control first ("cancel" alone is a stop,
"cancel the timer" is not, because control needs the whole utterance), then timers,
clock, arithmetic and unit conversions. Every matcher accepts a whole normalised utterance and nothing
else, so anything not clearly a skill returns None and goes to the LLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from . import arithmetic, clock, units
from .clock import WallClock, local_now
from .control import Control, control
from .normalize import normalize
from .timer_requests import (
    CancelTimer,
    SetTimer,
    TimeLeft,
    parse_choice,
    parse_duration,
    parse_request,
)
from .timers import TimerBook


class ReplyKind(Enum):
    ANSWER = "answer"  # speak ``text`` like any answer
    STOP = "stop"  # silence the current answer; say nothing, ask no LLM
    REPEAT = "repeat"  # speak ``text``, the last answer again


@dataclass(frozen=True)
class SkillReply:
    kind: ReplyKind
    text: str
    skill: str  # "time", "date", "timer", "arithmetic", "units", "stop", "repeat"


NOTHING_TO_REPEAT = "I haven't said anything yet."
ASK_LENGTH = "How long should the {what} be?"


class Skills:
    """The skills and their state: the timers, the last answer, a pending question."""

    def __init__(self, clock: WallClock = local_now, timers: TimerBook | None = None) -> None:
        self.clock = clock
        self.timers = timers if timers is not None else TimerBook()
        self._last_answer: str | None = None
        # A question the last reply asked, answered by the next utterance only:
        # ("length", name) after "How long should the timer be?", ("which",) after
        # "Which one should I cancel?".
        self._asked: tuple[str, str | None] | None = None

    @property
    def last_answer(self) -> str | None:
        return self._last_answer

    def remember_answer(self, text: str) -> None:
        """Record what was last said (LLM answers, announcements) for "say that again"."""
        if text.strip():
            self._last_answer = text

    def claims(self, text: str, now: datetime | None = None) -> bool:
        """Whether ``text`` would be a skill, without acting on it (no timer is set, no
        question consumed): a tentative transcript that is one is not sent to the LLM."""
        said = normalize(text)
        if not said:
            return False
        if control(said) is not None or parse_request(said) is not None:
            return True
        if self._asked is not None and self._answers_question(said, self._asked):
            return True
        return (clock.answer(said, now or self.clock()) is not None or arithmetic.answer(said) is not None
                or units.answer(said) is not None)

    @staticmethod
    def _answers_question(said: str, asked: tuple[str, str | None]) -> bool:
        if asked[0] == "length":
            words = said.split()
            return parse_duration(words[1:] if words[:1] == ["for"] else words) is not None
        return parse_choice(said) is not None

    def answer_now(self, text: str, now: datetime | None = None) -> SkillReply | None:
        """The reply for ``text`` when it is a skill that only *tells* something (the time or
        date, arithmetic, a unit conversion), else None. Such a reply changes nothing, so it
        may go out on a tentative transcript, as an LLM answer does; a skill that acts
        (timers, "stop", "say that again", the answer to a question just asked) waits for
        the final one."""
        said = normalize(text)
        if not said or self._asked is not None or control(said) is not None or parse_request(said) is not None:
            return None
        reply = None
        if (found := clock.answer(said, now or self.clock())) is not None:
            reply = self._answer(found[1], found[0])
        elif (result := arithmetic.answer(said)) is not None:
            reply = self._answer(result, "arithmetic")
        elif (result := units.answer(said)) is not None:
            reply = self._answer(result, "units")
        if reply is not None:
            self._last_answer = reply.text
        return reply

    def handle(self, text: str, now: datetime | None = None) -> SkillReply | None:
        """The reply for ``text`` (Whisper's transcript), or None when it is not a skill."""
        said = normalize(text)
        pending, self._asked = self._asked, None
        if not said:
            return None
        reply = self._route(said, now, pending)
        if reply is not None and reply.kind is ReplyKind.ANSWER:
            self._last_answer = reply.text
        return reply

    def _route(
        self, said: str, now: datetime | None, pending: tuple[str, str | None] | None
    ) -> SkillReply | None:
        command = control(said)
        if command is Control.STOP:
            return SkillReply(ReplyKind.STOP, "", "stop")
        if command is Control.REPEAT:
            return SkillReply(ReplyKind.REPEAT, self._last_answer or NOTHING_TO_REPEAT, "repeat")
        if pending is not None and (reply := self._follow_up(said, pending)) is not None:
            return reply
        if (request := parse_request(said)) is not None:
            return self._answer(self._timer(request), "timer")
        if (found := clock.answer(said, now or self.clock())) is not None:
            return self._answer(found[1], found[0])
        if (result := arithmetic.answer(said)) is not None:
            return self._answer(result, "arithmetic")
        if (result := units.answer(said)) is not None:
            return self._answer(result, "units")
        return None

    def _timer(self, request: SetTimer | TimeLeft | CancelTimer) -> str:
        if isinstance(request, SetTimer):
            if request.seconds is None:
                self._asked = ("length", request.name)
                what = f"{request.name} timer" if request.name else "timer"
                return ASK_LENGTH.format(what=what)
            return self.timers.set(request.seconds, request.name)
        if isinstance(request, TimeLeft):
            return self.timers.remaining(request.name)
        if request.everything:
            return self.timers.cancel_all()
        text = self.timers.cancel(request.name)
        if request.name is None and text.endswith("?"):
            self._asked = ("which", None)
        return text

    def _follow_up(self, said: str, pending: tuple[str, str | None]) -> SkillReply | None:
        """The answer to the question just asked, if ``said`` is one."""
        if pending[0] == "length":
            words = said.split()
            seconds = parse_duration(words[1:] if words[:1] == ["for"] else words)
            if seconds is not None:
                return self._answer(self.timers.set(seconds, pending[1]), "timer")
            return None
        choice = parse_choice(said)
        if choice is None:
            return None
        if choice.everything:
            return self._answer(self.timers.cancel_all(), "timer")
        if self.timers.has(choice.name):
            return self._answer(self.timers.cancel(choice.name), "timer")
        return None

    @staticmethod
    def _answer(text: str, skill: str) -> SkillReply:
        return SkillReply(ReplyKind.ANSWER, text, skill)
