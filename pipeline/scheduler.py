"""Backpressure between the segmenter and the speaker.

Segments are released to TTS only while fewer than `ahead` of them are in flight (sent but
not yet reported `finished` by the speaker). The signal is the speaker's, not TTS having
received text: that way nothing piles up in the TTS or speaker queues, a cancel only has to
drop at most `ahead` segments, and a slow speaker slows the whole chain down gracefully.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pipeline import messages as m
from pipeline.segmenter import StreamSegmenter


@dataclass
class Outgoing:
    event: str  # m.SEGMENT or m.END
    text: str
    metadata: dict[str, Any]


@dataclass
class _Answer:
    turn_id: int
    meta: dict[str, Any]
    segmenter: StreamSegmenter
    pending: deque[str] = field(default_factory=deque)
    next_index: int = 0
    in_flight: set[int] = field(default_factory=set)
    ended: bool = False
    end_sent: bool = False


class SegmentScheduler:
    def __init__(self, ahead: int = 2, first_min_words: int = 3, max_words: int = 30) -> None:
        self.ahead = ahead
        self.first_min_words = first_min_words
        self.max_words = max_words
        self.latest = 0
        self.answer: _Answer | None = None

    def _new_answer(self, turn_id: int, meta: dict[str, Any]) -> _Answer:
        seg = StreamSegmenter(first_min_words=self.first_min_words, max_words=self.max_words)
        return _Answer(turn_id, m.times(meta), seg)

    def on_speech_started(self, turn_id: int) -> None:
        """A new user turn: everything of older turns is dropped at once."""
        if turn_id > self.latest:
            self.latest = turn_id
        if self.answer is not None and self.answer.turn_id < turn_id:
            self.answer = None

    def on_text(self, turn_id: int, event: str, text: str, meta: dict[str, Any]) -> list[Outgoing]:
        if turn_id < self.latest:
            return []
        self.latest = turn_id
        if self.answer is None or self.answer.turn_id != turn_id:
            self.answer = self._new_answer(turn_id, meta)
        answer = self.answer
        answer.meta.update(m.times(meta))
        if event == m.DELTA:
            answer.pending.extend(answer.segmenter.push(text))
        elif event == m.END:
            if meta.get("reason") == "cancelled":
                self.answer = None
                return []
            answer.pending.extend(answer.segmenter.finish())
            answer.ended = True
        return self._release()

    def on_played(self, turn_id: int, event: str, segment_index: int) -> list[Outgoing]:
        answer = self.answer
        if answer is None or answer.turn_id != turn_id:
            return []
        if event in (m.FINISHED, m.INTERRUPTED):
            answer.in_flight.discard(segment_index)
        return self._release()

    def idle(self) -> bool:
        """Nothing left to release (the node may end)."""
        a = self.answer
        return a is None or a.end_sent

    def _release(self) -> list[Outgoing]:
        answer = self.answer
        if answer is None:
            return []
        out: list[Outgoing] = []
        while answer.pending and len(answer.in_flight) < self.ahead:
            text = answer.pending.popleft()
            index = answer.next_index
            answer.next_index += 1
            answer.in_flight.add(index)
            meta = {**answer.meta, "turn_id": answer.turn_id, "segment_index": index}
            if index == 0:
                meta["t_first_segment"] = time.time()
            meta["last"] = answer.ended and not answer.pending
            out.append(Outgoing(m.SEGMENT, text, meta))
        if answer.ended and not answer.pending and not answer.end_sent:
            answer.end_sent = True
            meta = {**answer.meta, "turn_id": answer.turn_id, "segment_index": answer.next_index,
                    "segments": answer.next_index}
            out.append(Outgoing(m.END, "", meta))
        return out
