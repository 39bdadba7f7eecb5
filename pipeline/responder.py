"""The llm node's logic: one answer per user turn, streamed, cancellable, never blocking.

The dora event loop must keep running while an answer streams (a `speech_started` has to
cancel it at once), so each answer runs on a worker thread that pushes :class:`LlmText`
messages out through an `emit` callback. A new turn sets the old worker's cancel flag and closes its HTTP response;
the event loop never waits for a worker (a cancelled request that is still waiting for the
server's headers ends by itself when its timeout runs out).

History is kept as what the user actually heard: the speaker reports each segment it has
finished playing; an answer whose turn never reached `turn_end` is stored as the spoken part,
marked as cut off (never the full text that was generated but not heard).

Every turn ends with an `end` message, whatever happens: on a failure the apology is spoken
first (LLM_APOLOGY). Even a crash of the node itself: the turn being answered is noted in a
:class:`TurnJournal`, and a node restarted by dora (`restart_policy`) reads it, apologises for
a turn its previous life left open and ignores transcripts of turns already answered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline import messages as m
from pipeline.answer_length import asks_for_more
from pipeline.journal import JournalEntry, TurnJournal
from pipeline.llm import Conversation, LlmClient, LlmError
from pipeline.skills.tools import SkillTools, ToolCall, ToolResult, assistant_message, tool_message

__all__ = ["JournalEntry", "Responder", "TurnJournal"]

log = logging.getLogger("llm")

Emit = Callable[[m.LlmText], None]
Heard = Callable[[str], None]

SENTENCE_END = ".!?…"
TOOL_ROUNDS = 2  # requests that may call tools before one must answer in words


@dataclass
class _Turn:
    turn_id: int
    question: str
    times: m.Times
    cancel: threading.Event = field(default_factory=threading.Event)
    generated: list[str] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)
    completed: bool = False  # the speaker played the whole answer
    record: bool = True  # goes into the history (a timer's announcement answers no question)
    failed: bool = False
    thread: threading.Thread | None = None


class Responder:
    def __init__(
        self,
        client: LlmClient,
        conversation: Conversation,
        apology: str,
        emit: Emit,
        ready: threading.Event | None = None,
        ready_timeout_s: float = 120.0,
        journal: TurnJournal | None = None,
        heard: Heard | None = None,
        tools: SkillTools | None = None,
    ) -> None:
        self.client = client
        self.heard = heard  # told each answer the user heard (for "say that again")
        self.tools = tools  # the skills offered to the model as function-calling tools
        self.conversation = conversation
        self.apology = apology
        self.emit = emit
        self.ready = ready or threading.Event()
        if ready is None:
            self.ready.set()
        self.ready_timeout_s = ready_timeout_s
        self.journal = journal
        self.latest = 0
        self.answered = 0  # turns up to this one were answered by a previous life of the node
        self.turns: dict[int, _Turn] = {}
        self._lock = threading.Lock()

    # -- events from the dataflow ------------------------------------------------------
    def resume(self, entry: JournalEntry | None) -> None:
        """Continue after a restart: what the previous process noted in the journal.

        A turn it left open gets the apology and its `end`, so the segmenter, TTS and speaker
        close it (the user hears why the answer stopped); its transcript, or any older one,
        is never answered again.
        """
        if entry is None:
            log.info("restarted: no turn was in progress")
            return
        self.latest = max(self.latest, entry.turn_id)
        self.answered = max(self.answered, entry.turn_id)
        if not entry.open:
            log.info("restarted: turn %d had been answered; waiting for the next one", entry.turn_id)
            return
        log.error("turn %d: LLM failed (restart): the llm node died while answering; "
                  "apologising and closing the turn", entry.turn_id)
        times = {"t_llm_error": m.now()}
        self.emit(m.LlmText(entry.turn_id, m.DELTA, 0, "… " + self.apology, error="restart", times=times))
        self.emit(m.LlmText(entry.turn_id, m.END, 1, reason=m.REASON_ERROR, error="restart", times=times))
        if self.journal is not None:
            self.journal.write(entry.turn_id, is_open=False)

    def on_speech_started(self, turn_id: int) -> None:
        """A new user turn: stop whatever answer is still streaming."""
        with self._lock:
            if turn_id > self.latest:
                self.latest = turn_id
            running = [t for t in self.turns.values() if t.turn_id < turn_id and not t.cancel.is_set()
                       and t.thread is not None and t.thread.is_alive()]
        for turn in running:
            self._cancel(turn)

    def is_new(self, turn_id: int) -> bool:
        """The turn is neither stale nor answered already (by this process or a previous one)."""
        if turn_id < self.latest or turn_id in self.turns:
            return False
        if turn_id <= self.answered:
            log.info("turn %d: transcript already answered before the restart, ignored", turn_id)
            return False
        return True

    def on_transcript(self, transcript: m.Transcript) -> None:
        """Answer a transcript (tentative or final) of a turn not answered yet."""
        turn_id, text = transcript.turn_id, transcript.text.strip()
        if not text or not self.is_new(turn_id):
            return
        turn = self._open(_Turn(turn_id, text, dict(transcript.times)))
        if self.journal is not None:
            self.journal.write(turn_id, is_open=True)
        turn.thread = threading.Thread(target=self._answer, args=(turn,), name=f"answer-{turn_id}", daemon=True)
        turn.thread.start()

    def say(self, turn_id: int, question: str, text: str, times: m.Times, record: bool = True) -> None:
        """Answer a turn without the LLM: a skill's answer, a timer's announcement, or with
        ``text`` empty nothing at all ("stop": the turn only ends, cancelled).

        The text goes out as one delta and an end, like a streamed answer, with the same
        stamps, so the rest of the dataflow (and its metrics) treats it the same.
        """
        turn = self._open(_Turn(turn_id, question, dict(times), record=record))
        stamps = dict(times)
        # t_skill marks an answer made without the LLM (`make bench` reports those apart)
        stamps["t_llm_request"] = stamps["t_first_token"] = stamps["t_skill"] = m.now()
        if not text:
            self.emit(m.LlmText(turn_id, m.END, 0, reason=m.REASON_CANCELLED, times=stamps))
        else:
            turn.generated.append(text)
            self.emit(m.LlmText(turn_id, m.DELTA, 0, text, times=dict(stamps)))
            stamps["t_llm_done"] = m.now()
            self.emit(m.LlmText(turn_id, m.END, 1, reason=m.REASON_STOP, times=stamps))
        if self.journal is not None:
            self.journal.write(turn_id, is_open=False)

    def on_played(self, played: m.Played) -> None:
        """The speaker's report: what of the answer the user heard, for the history."""
        turn = self.turns.get(played.turn_id)
        if turn is None:
            return
        if played.event == m.FINISHED and played.text:
            turn.spoken.append(played.text)
        elif played.event == m.TURN_END:
            turn.completed = True
            self._tell_heard(" ".join(turn.spoken) or "".join(turn.generated))
            self._finalise_now(played.turn_id)
        elif played.event == m.INTERRUPTED:
            # cut off ("stop"): "say that again" gives the whole answer, not its first words
            self._tell_heard("".join(turn.generated))

    def _tell_heard(self, text: str) -> None:
        if self.heard is not None and text.strip():
            self.heard(text)

    def _finalise_now(self, turn_id: int) -> None:
        """The answer was heard to its end: it goes into the history now rather than at the
        next transcript, and if that trimmed the history, the server reads the new prefix
        while the user is silent (`LlmClient.prefill`)."""
        if self._finalise_history(before=turn_id + 1) and self.client.config.embedded:
            prefix = self.conversation.prefix()
            threading.Thread(target=self.client.prefill, args=(prefix,), name="prefill", daemon=True).start()

    def idle(self) -> bool:
        """No answer is being generated (the node may end)."""
        return all(t.thread is None or not t.thread.is_alive() for t in list(self.turns.values()))

    def close(self, timeout: float = 5.0) -> None:
        """Wait for a running answer to finish sending (end of the dataflow)."""
        for turn in list(self.turns.values()):
            if turn.thread is not None:
                turn.thread.join(timeout)

    # -- internals ---------------------------------------------------------------------
    def _open(self, turn: _Turn) -> _Turn:
        """Start answering `turn`: older answers are cancelled and go into the history."""
        self.on_speech_started(turn.turn_id)  # also cancels an older answer if its start was missed
        self._finalise_history(before=turn.turn_id)
        with self._lock:
            self.turns[turn.turn_id] = turn
        return turn

    def _cancel(self, turn: _Turn) -> None:
        turn.cancel.set()
        self.client.close_current()
        log.info("turn %d: answer cancelled by a new turn", turn.turn_id)

    def _finalise_history(self, before: int) -> bool:
        """Move finished turns into the history, without waiting for their workers: a
        cancelled worker adds nothing that matters (its answer is stored as what was spoken,
        which the event loop itself collected). True if that trimmed the history."""
        with self._lock:
            done = sorted(t for t in self.turns if t < before)
            old = [self.turns.pop(t) for t in done]
        trimmed = False
        for turn in old:
            if turn.failed or not turn.generated or not turn.record:
                continue
            if turn.completed:
                trimmed |= self.conversation.record(turn.question, "".join(turn.generated), cut_off=False)
            else:
                trimmed |= self.conversation.record(turn.question, " ".join(turn.spoken), cut_off=True)
        return trimmed

    def _answer(self, turn: _Turn) -> None:
        try:
            self._stream_answer(turn)
        finally:
            if self.journal is not None:
                self.journal.write(turn.turn_id, is_open=False)

    def _stream_answer(self, turn: _Turn) -> None:
        times = dict(turn.times)
        index = 0
        error: LlmError | None = None
        # Never longer than the first-token budget: the user is waiting for an answer.
        wait_s = min(self.ready_timeout_s, self.client.config.first_token_timeout_s)
        hold = _Hold(self, turn, times)
        if not self.ready.wait(wait_s):
            error = LlmError("not_ready", f"the embedded LLM server is not ready after {wait_s:g} s "
                             "(still starting, or restarting after a crash)")
            index = hold.stop()
        else:
            times["t_llm_request"] = m.now()
            try:
                for delta in self._deltas(turn):
                    if turn.cancel.is_set():
                        break
                    with hold.lock:
                        hold.answered = True
                        if not turn.generated:
                            times["t_first_token"] = m.now()
                        turn.generated.append(delta)
                        self.emit(m.LlmText(turn.turn_id, m.DELTA, hold.index, delta, times=dict(times)))
                        hold.index += 1
            except LlmError as exc:
                error = exc
            except Exception as exc:  # noqa: BLE001 - never let a worker die silently
                error = LlmError("internal", f"{type(exc).__name__}: {exc}")
            finally:
                index = hold.stop()
        if turn.cancel.is_set():
            self.emit(m.LlmText(turn.turn_id, m.END, index, reason=m.REASON_CANCELLED, times=times))
            return
        if error is not None:
            turn.failed = True
            times["t_llm_error"] = m.now()
            waited = times["t_llm_error"] - times.get("t_transcript", times["t_llm_error"])
            log.error("turn %d: LLM failed (%s) %.1f s after the transcript: %s; speaking the apology",
                      turn.turn_id, error.kind, waited, error)
            self.emit(m.LlmText(turn.turn_id, m.DELTA, index, self._apology_after("".join(turn.generated)),
                                error=error.kind, times=dict(times)))
            self.emit(m.LlmText(turn.turn_id, m.END, index + 1, reason=m.REASON_ERROR, error=error.kind,
                                times=times))
            return
        times["t_llm_done"] = m.now()
        self.emit(m.LlmText(turn.turn_id, m.END, index, reason=m.REASON_STOP, times=times))

    def _deltas(self, turn: _Turn) -> Iterator[str]:
        """The answer's text. With tools offered, a round of tool calls is run and its
        results go back to the model, which then answers; if it still says nothing, the
        results themselves are spoken (a malformed call gets its short error, never silence).
        """
        messages: list[dict[str, Any]] = list(self.conversation.messages(turn.question))
        # one or two spoken sentences, unless the user asked for more (LLM_MAX_SENTENCES)
        sentences = 0 if asks_for_more(turn.question) else None
        results: list[ToolResult] = []
        for round_ in range(TOOL_ROUNDS + 1):
            offered = self.tools.definitions if self.tools is not None and round_ < TOOL_ROUNDS else None
            calls: list[ToolCall] = []
            said = False
            for delta in self.client.stream(messages, turn.cancel, tools=offered, calls=calls,
                                            max_sentences=sentences):
                said = True
                yield delta
            if said or turn.cancel.is_set():
                return
            if not calls or self.tools is None:
                break
            results = [self.tools.call_tool(call.name, call.arguments) for call in calls]
            log.info("turn %d: tool calls %s", turn.turn_id,
                     ", ".join(f"{c.name}({'ok' if r.ok else 'failed'})" for c, r in zip(calls, results, strict=True)))
            messages += [assistant_message(calls)] + [tool_message(c, r) for c, r in zip(calls, results, strict=True)]
        if results:
            yield " ".join(r.spoken for r in results)

    def _apology_after(self, partial: str) -> str:
        """The apology, as a sentence of its own after whatever part of the answer was sent
        ("The capital of… Sorry, ..."), so it is neither glued to a half sentence nor lost."""
        partial = partial.rstrip()
        if not partial:
            return self.apology
        return (" " if partial[-1] in SENTENCE_END else "… ") + self.apology


class _Hold:
    """Says the holding phrase once if the LLM has not sent a word `hold_after_s` after the
    end of the question (a hung or overloaded server), so the user is not met with silence
    until the first-token timeout. The phrase and the answer's deltas share one index
    counter under one lock, so the segmenter sees them in order."""

    def __init__(self, responder: Responder, turn: _Turn, times: dict[str, float]) -> None:
        self.lock = threading.Lock()
        self.index = 0
        self.answered = False
        self._responder, self._turn, self._times = responder, turn, times
        config = responder.client.config
        self._timer: threading.Timer | None = None
        if config.hold_after_s > 0 and config.hold_phrase:
            since = times.get("t_speech_end", m.now())
            delay = max(0.0, since + config.hold_after_s - m.now())
            self._timer = threading.Timer(delay, self._say)
            self._timer.daemon = True
            self._timer.start()

    def _say(self) -> None:
        with self.lock:
            if self.answered or self._turn.cancel.is_set():
                return
            phrase = self._responder.client.config.hold_phrase.strip() + " "
            log.info("turn %d: no answer yet, saying %r", self._turn.turn_id, phrase.strip())
            self._responder.emit(m.LlmText(self._turn.turn_id, m.DELTA, self.index, phrase,
                                           times={**self._times, "t_hold": m.now()}))
            self.index += 1

    def stop(self) -> int:
        """No phrase from now on; the next free index."""
        with self.lock:
            self.answered = True
            if self._timer is not None:
                self._timer.cancel()
            return self.index
