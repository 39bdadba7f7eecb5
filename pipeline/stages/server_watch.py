"""Is the server side still there? The board's own watch (pure: a clock is injected).

In the split deployment (docs/distributed.md) dora 1.1 sends the board's nodes no event
when the server's daemon dies: their inputs from the server just go quiet. Without a watch
the user asks, and nothing ever happens. The speaker feeds this class what it sees:

* :meth:`heard`: anything from the server side (its beat `llm-server/alive` every 2 s, a
  transcript, the voice);
* :meth:`asked`: a final utterance (the user finished a question), :meth:`talking`: the
  user started speaking again (no answer is due while they talk);
* :meth:`answered`: voice of the question's turn (or a later one) came back;
* :meth:`check` on every tick, with whether something is playing.

A question is *unanswered* once `timeout_s` have passed since the later of its end and the
last word from the server, while nothing plays. The beat keeps `last heard` fresh while the
server is there, so an utterance the server rightly drops (a cough, an echo) never raises
the alarm; an LLM that stalls is the LLM's business (its apology comes after
LLM_FIRST_TOKEN_TIMEOUT_S, below this timeout).

What the stage must do is returned as :class:`Notice` values: log one line for a new outage
and play the earcon once per unanswered question; log once when the server is heard again;
and at start, log once while the server has not been heard at all (the board started first).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

FIRST_WORD_S = 5.0
"""At start, how long to wait for the server's first word before saying it is awaited."""


class Notice(Enum):
    """What the watch asks the stage to say or play."""

    SILENT = "silent"  # a question went unanswered: log (once per outage) and play the earcon
    BACK = "back"  # the server was silent and is heard again
    UP = "up"  # the server's first word (after AWAITED was said)
    AWAITED = "awaited"  # nothing from the server since start, FIRST_WORD_S ago


@dataclass(frozen=True)
class Alarm:
    """A question that went unanswered: `silent_s` since the later of question and last word."""

    turn_id: int
    silent_s: float
    new_outage: bool  # the first alarm since the server was last heard (log it)


class ServerWatch:
    """Tracks the last word from the server and the question waiting for an answer."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic,
                 first_word_s: float = FIRST_WORD_S) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self.first_word_s = first_word_s
        self.started = clock()
        self.last_heard: float | None = None
        self.waiting_turn: int | None = None
        self.asked_at = 0.0
        self.outage = False  # an alarm was raised and the server has not been heard since
        self.awaited_said = False

    def heard(self) -> Notice | None:
        """A message from the server side arrived; BACK/UP when that is news."""
        first = self.last_heard is None
        self.last_heard = self.clock()
        if self.outage:
            self.outage = False
            return Notice.BACK
        if first and self.awaited_said:
            return Notice.UP
        return None

    def asked(self, turn_id: int) -> None:
        """The user ended a question (a final utterance of `turn_id`): an answer is due."""
        if self.waiting_turn is None or turn_id >= self.waiting_turn:
            self.waiting_turn = turn_id
            self.asked_at = self.clock()

    def talking(self, turn_id: int) -> None:
        """The user started turn `turn_id`: older questions are dropped, none is due yet."""
        if self.waiting_turn is not None and turn_id > self.waiting_turn:
            self.waiting_turn = None

    def answered(self, turn_id: int) -> Notice | None:
        """Voice of `turn_id` came back from the server (it counts as a word from it)."""
        if self.waiting_turn is not None and turn_id >= self.waiting_turn:
            self.waiting_turn = None
        return self.heard()

    def check(self, playing: bool) -> Alarm | Notice | None:
        """On a tick: an :class:`Alarm` for a question that went unanswered (once per
        question), AWAITED once at start while the server was never heard, else None."""
        now = self.clock()
        if self.waiting_turn is not None and not playing:
            since = max(self.asked_at, self.last_heard or self.asked_at)
            if now - since >= self.timeout_s:
                alarm = Alarm(self.waiting_turn, now - self.asked_at, new_outage=not self.outage)
                self.outage = True
                self.waiting_turn = None  # one earcon per question
                return alarm
        if self.last_heard is None and not self.awaited_said and now - self.started >= self.first_word_s:
            self.awaited_said = True
            return Notice.AWAITED
        return None


EARCON_SEGMENT = -2
"""The segment index the earcon is played under (never reported as `played`)."""


def earcon(rate: int = 22050, amplitude: float = 0.3) -> np.ndarray:
    """A short falling two-note tone (0.4 s, float32 at `rate`): "no answer".

    Two 150 ms notes (A5 then E5) with 10 ms fades so the card does not click, 50 ms apart.
    """
    def note(freq: float, seconds: float = 0.15) -> np.ndarray:
        t = np.arange(int(rate * seconds)) / rate
        tone = np.sin(2 * np.pi * freq * t)
        fade = min(len(t) // 2, int(rate * 0.01))
        ramp = np.linspace(0.0, 1.0, fade)
        tone[:fade] *= ramp
        tone[len(t) - fade:] *= ramp[::-1]
        return tone

    gap = np.zeros(int(rate * 0.05))
    return (amplitude * np.concatenate([note(880.0), gap, note(659.25)])).astype(np.float32)
