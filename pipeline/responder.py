"""The llm node's logic: one answer per user turn, streamed, cancellable, never blocking.

The dora event loop must keep running while an answer streams (a `speech_started` has to
cancel it at once), so each answer runs on a worker thread that pushes deltas out through a
`send` callback. A new turn sets the old worker's cancel flag and closes its HTTP response.

History is kept as what the user actually heard: the speaker reports each segment it has
finished playing; an answer whose turn never reached `turn_end` is stored as the spoken part,
marked as cut off (never the full text that was generated but not heard).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline import messages as m
from pipeline.llm import Conversation, LlmClient, LlmError

log = logging.getLogger("llm")

Send = Callable[[str, str, dict[str, Any]], None]  # (event, text, metadata)


@dataclass
class _Turn:
    turn_id: int
    question: str
    meta: dict[str, Any]
    cancel: threading.Event = field(default_factory=threading.Event)
    generated: list[str] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)
    completed: bool = False  # the speaker played the whole answer
    failed: bool = False
    thread: threading.Thread | None = None


class Responder:
    def __init__(
        self,
        client: LlmClient,
        conversation: Conversation,
        apology: str,
        send: Send,
        ready: threading.Event | None = None,
        ready_timeout_s: float = 120.0,
    ) -> None:
        self.client = client
        self.conversation = conversation
        self.apology = apology
        self.send = send
        self.ready = ready or threading.Event()
        if ready is None:
            self.ready.set()
        self.ready_timeout_s = ready_timeout_s
        self.latest = 0
        self.turns: dict[int, _Turn] = {}
        self._lock = threading.Lock()

    # -- events from the dataflow ------------------------------------------------------
    def on_speech_started(self, turn_id: int) -> None:
        """A new user turn: stop whatever answer is still streaming."""
        with self._lock:
            if turn_id > self.latest:
                self.latest = turn_id
            running = [t for t in self.turns.values() if t.turn_id < turn_id and not t.cancel.is_set()]
        for turn in running:
            self._cancel(turn)

    def on_transcript(self, turn_id: int, text: str, meta: dict[str, Any]) -> None:
        text = text.strip()
        if not text or turn_id < self.latest:
            return
        self.on_speech_started(turn_id)  # also cancels an older answer if its start was missed
        self._finalise_history(before=turn_id)
        turn = _Turn(turn_id, text, m.times(meta))
        with self._lock:
            self.turns[turn_id] = turn
        turn.thread = threading.Thread(target=self._answer, args=(turn,), name=f"answer-{turn_id}", daemon=True)
        turn.thread.start()

    def on_played(self, turn_id: int, event: str, text: str) -> None:
        turn = self.turns.get(turn_id)
        if turn is None:
            return
        if event == m.FINISHED and text:
            turn.spoken.append(text)
        elif event == m.TURN_END:
            turn.completed = True

    def idle(self) -> bool:
        """No answer is being generated (the node may end)."""
        return all(t.thread is None or not t.thread.is_alive() for t in list(self.turns.values()))

    def close(self, timeout: float = 5.0) -> None:
        """Wait for a running answer to finish sending (end of the dataflow)."""
        for turn in list(self.turns.values()):
            if turn.thread is not None:
                turn.thread.join(timeout)

    # -- internals ---------------------------------------------------------------------
    def _cancel(self, turn: _Turn) -> None:
        turn.cancel.set()
        self.client.close_current()
        log.info("turn %d: answer cancelled by a new turn", turn.turn_id)

    def _finalise_history(self, before: int) -> None:
        with self._lock:
            done = sorted(t for t in self.turns if t < before)
            old = [self.turns.pop(t) for t in done]
        for turn in old:
            if turn.thread is not None:
                turn.thread.join(2.0)
            if turn.failed or not turn.generated:
                continue
            if turn.completed:
                self.conversation.record(turn.question, "".join(turn.generated), cut_off=False)
            else:
                self.conversation.record(turn.question, " ".join(turn.spoken), cut_off=True)

    def _answer(self, turn: _Turn) -> None:
        meta = dict(turn.meta)
        meta["turn_id"] = turn.turn_id
        index = 0
        error: LlmError | None = None
        if not self.ready.wait(self.ready_timeout_s):
            error = LlmError("not_ready", "the embedded LLM server did not start in time (LLM_SERVER_START_TIMEOUT_S)")
        else:
            meta["t_llm_request"] = time.time()
            try:
                for delta in self.client.stream(self.conversation.messages(turn.question), turn.cancel):
                    if turn.cancel.is_set():
                        break
                    if index == 0:
                        meta["t_first_token"] = time.time()
                    turn.generated.append(delta)
                    self.send(m.DELTA, delta, {**meta, "index": index})
                    index += 1
            except LlmError as exc:
                error = exc
            except Exception as exc:  # noqa: BLE001 - never let a worker die silently
                error = LlmError("internal", f"{type(exc).__name__}: {exc}")
        if turn.cancel.is_set():
            self.send(m.END, "", {**meta, "index": index, "reason": "cancelled"})
            return
        if error is not None:
            turn.failed = True
            log.error("turn %d: LLM failed (%s): %s", turn.turn_id, error.kind, error)
            lead = " " if index else ""
            self.send(m.DELTA, lead + self.apology, {**meta, "index": index, "error": error.kind})
            self.send(m.END, "", {**meta, "index": index + 1, "reason": "error", "error": error.kind})
            return
        meta["t_llm_done"] = time.time()
        self.send(m.END, "", {**meta, "index": index, "reason": "stop"})
