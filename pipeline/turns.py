"""Turn state shared by every node: which turn is current, and what is stale.

The VAD numbers turns; `speech_started` for turn N makes everything of turns < N stale.
Nodes never need to coordinate beyond that: each keeps a `TurnGate` and drops stale work.
"""

from __future__ import annotations

from dataclasses import dataclass


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
