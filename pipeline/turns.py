"""Turn state shared by every node: which turn is current, and what is stale.

The VAD numbers turns; `speech_started` for turn N makes everything of turns < N stale.
Nodes never need to coordinate beyond that: each keeps a `TurnGate` and drops stale work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
        return turn_id in self.committed

    def offer(self, turn_id: int, item: Any) -> bool:
        """True if the item may go out now; otherwise it is held."""
        if turn_id in self.committed:
            return True
        self.held.setdefault(turn_id, []).append(item)
        return False

    def drop_before(self, turn_id: int) -> None:
        for t in [t for t in self.held if t < turn_id]:
            del self.held[t]


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
