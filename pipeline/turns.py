"""Turn state shared by every node: which turn is current, and what is stale.

The VAD numbers turns; `speech_started` for turn N makes everything of turns < N stale.
Nodes never need to coordinate beyond that: each keeps a `TurnGate` and drops stale work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline import messages as m


@dataclass
class TurnGate:
    current: int = 0

    def advance(self, turn_id: int) -> bool:
        """A new turn started; returns True when it is newer than what we had."""
        if turn_id > self.current:
            self.current = turn_id
            return True
        return False

    def is_stale(self, turn_id: int) -> bool:
        """Work of an older turn than the newest one seen is stale (interrupted)."""
        return turn_id < self.current

    def accept(self, turn_id: int) -> bool:
        """Accept a message of `turn_id` (moving forward if it is newer); False if stale.

        Messages of a newer turn can arrive before its `speech_started` (different inputs are
        not ordered), so a newer id also moves the gate forward.
        """
        if self.is_stale(turn_id):
            return False
        self.advance(turn_id)
        return True


@dataclass
class CommitGate:
    """Holds a turn's audio until its final transcript exists (speculative answers).

    The LLM may start answering a tentative transcript (the user paused but the endpoint
    silence has not fully passed); the answer is synthesized but must not be heard until the
    endpoint confirms the turn. If the user goes on talking instead, the VAD starts a new
    turn and the held audio is dropped with the rest of the old turn. The last `keep`
    committed turns are remembered.
    """

    keep: int = 8
    committed: list[int] = field(default_factory=list)
    held: dict[int, list[Any]] = field(default_factory=dict)

    def commit(self, turn_id: int) -> list[Any]:
        """The turn is confirmed: returns what was held for it, in order."""
        if turn_id not in self.committed:
            self.committed.append(turn_id)
            del self.committed[:-self.keep]
        return self.held.pop(turn_id, [])

    def is_committed(self, turn_id: int) -> bool:
        """Confirmed by its final transcript; a turn the assistant started (a timer's
        announcement) has no transcript and is confirmed from the start."""
        return turn_id in self.committed or not m.is_user_turn(turn_id)

    def offer(self, turn_id: int, item: Any) -> bool:
        """True if the item may go out now; otherwise it is held."""
        if self.is_committed(turn_id):
            return True
        self.held.setdefault(turn_id, []).append(item)
        return False

    def drop_before(self, turn_id: int) -> None:
        for t in [t for t in self.held if t < turn_id]:
            del self.held[t]


@dataclass
class Floor:
    """Whether the assistant may start a turn of its own (a timer's announcement): not while
    the user speaks (speech started, no transcript yet) nor while an answer is on its way or
    playing (transcript .. `turn_end` / `interrupted`).

    An announcement with a newer turn id would make the rest of the current answer stale
    everywhere, so it must wait. A busy floor that hears nothing for `hold_max_s` is free
    again: a turn whose transcript never came (echo, silence) must not hold timers forever.
    Thread-safe: the event loop reports, the timer thread waits.
    """

    hold_max_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    last_turn: int = 0
    _busy: int | None = None
    _until: float = 0.0
    _closed: bool = False
    _changed: threading.Condition = field(default_factory=threading.Condition)
    on_wait: Callable[[], None] | None = None  # told when `take` has to wait (for tests)

    def busy(self, turn_id: int) -> None:
        """Turn `turn_id` is under way (speech, transcript, playback)."""
        with self._changed:
            self.last_turn = max(self.last_turn, turn_id)
            if self._busy is None or turn_id >= self._busy:
                self._busy, self._until = turn_id, self.clock() + self.hold_max_s
            self._changed.notify_all()

    def done(self, turn_id: int) -> None:
        """Turn `turn_id` is over (played to its end, cut, or ended with nothing to say)."""
        with self._changed:
            if self._busy is not None and turn_id >= self._busy:
                self._busy = None
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def take(self) -> int | None:
        """Wait until the floor is free, then take it for a new assistant turn: its id
        (after every turn seen so far), or None once closed."""
        with self._changed:
            while not self._closed:
                left = self._until - self.clock()
                if self._busy is None or left <= 0:
                    turn = m.assistant_turn(self.last_turn)
                    self._busy, self._until = turn, self.clock() + self.hold_max_s
                    self.last_turn = turn
                    return turn
                if self.on_wait is not None:
                    self.on_wait()
                self._changed.wait(left)
            return None


@dataclass
class SeenSegments:
    """Each (turn, segment, event) once: drops a segment's audio that arrives a second time.

    After a crash of the tts node the segmenter sends the segments that were in flight again
    (pipeline/scheduler.py): it cannot know which of them the old tts process had already
    synthesized, so the speaker may get one twice and must play (and report) it only once.
    Only the last `keep` turns are remembered.
    """

    keep: int = 8
    seen: dict[int, set[tuple[int, int, str]]] = field(default_factory=dict)

    def first(self, turn_id: int, segment_index: int, event: str, chunk_index: int = 0) -> bool:
        """True the first time this chunk of a segment (or turn end) of `turn_id` is offered.

        A segment synthesized again may be cut into chunks of other lengths (Piper samples
        its durations), so after a crash in the middle of a segment its new chunks from the
        old count on can still repeat or skip a little of it; that is all a crash costs.
        """
        keys = self.seen.get(turn_id)
        if keys is None:
            keys = self.seen[turn_id] = set()
            for old in [t for t in self.seen if t <= turn_id - self.keep]:
                del self.seen[old]
        key = (segment_index, chunk_index, event)
        if key in keys:
            return False
        keys.add(key)
        return True
