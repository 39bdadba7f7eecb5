"""The llm node's processor: transcripts in, streamed answer text out.

The answers themselves are the :class:`~pipeline.responder.Responder`'s (one worker thread
per answer, cancelled by a new turn, apologised for on a failure). This stage adds when the
assistant is *ready*: with an external server at once; with the embedded one when the
llm-server node says `ready`, after a warm-up request, so that the first turn does not pay
for the server's cold start.

dora may restart the llm node after a crash (`restart_policy` in dataflow.yml). A restarted
node starts fresh but resynchronises: it closes, with the apology, a turn its previous life
left open, never answers an old transcript again (the turn journal), and, with the embedded
server, asks the server itself whether it is up, because the llm-server's `ready` message
went to the previous process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pipeline import messages as m
from pipeline.journal import TurnJournal
from pipeline.llm import Conversation, LlmClient
from pipeline.responder import Responder
from pipeline.runtime import Event
from pipeline.skills import ReplyKind, SkillReply, Skills
from pipeline.skills.tools import SkillTools
from pipeline.turns import Floor

log = logging.getLogger("llm")

PROBE_EVERY_S = 0.5

WIRING: dict[str, type[m.Message] | None] = {
    "transcript": m.Transcript,
    "speech_started": m.SpeechStarted,
    "played": m.Played,
    "server_ready": m.ServerReady,
}


class LlmStage:
    """Sends everything through `emit` (answers stream from worker threads); `handle`
    itself returns nothing."""

    def __init__(
        self,
        client: LlmClient,
        conversation: Conversation,
        apology: str,
        emit: Callable[[m.Message], None],
        ready_timeout_s: float = 120.0,
        journal: TurnJournal | None = None,
        restarted: bool = False,
        skills: Skills | None = None,
    ) -> None:
        self.emit = emit
        self.ready = threading.Event()
        self.skills = skills if skills is not None else Skills()
        self.floor = Floor()
        self._timers = threading.Thread(target=self._ring_timers, name="timers", daemon=True)
        tools = SkillTools(self.skills) if client.config.tools else None
        self.responder = Responder(client, conversation, apology, emit, self.ready, ready_timeout_s, journal,
                                   heard=self.skills.remember_answer, tools=tools)
        self.journal = journal
        self.restarted = restarted
        self._stop = threading.Event()
        self._announce_lock = threading.Lock()

    @property
    def client(self) -> LlmClient:
        return self.responder.client

    @property
    def embedded(self) -> bool:
        return self.client.config.embedded

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._timers.start()
        if self.restarted:
            log.warning("llm node restarted by dora: resynchronising (history of earlier turns is lost)")
            self.responder.resume(self.journal.read() if self.journal is not None else None)
        if not self.embedded:
            self._announce()  # an external server: nothing to wait for
        elif self.restarted:
            threading.Thread(target=self._probe_then_ready, name="probe", daemon=True).start()

    def finish(self) -> None:
        """A clean end: let a running answer finish sending; nothing is left to resume."""
        self.responder.close()
        self._stop.set()
        self.skills.timers.close()
        self.floor.close()
        if self.journal is not None:
            self.journal.remove()

    def idle(self) -> bool:
        return self.responder.idle()

    # -- events ------------------------------------------------------------------------------
    def handle(self, event: Event) -> None:
        if isinstance(event, m.SpeechStarted):
            self.floor.busy(event.turn_id)
            self.responder.on_speech_started(event.turn_id)
        elif isinstance(event, m.Transcript):
            self.floor.busy(event.turn_id)
            self.answer(event)
        elif isinstance(event, m.Played):
            if event.event in (m.TURN_END, m.INTERRUPTED):
                self.floor.done(event.turn_id)
            else:
                self.floor.busy(event.turn_id)
            self.responder.on_played(event)
        elif isinstance(event, m.ServerReady) and self.embedded:
            self._server_ready()

    def answer(self, transcript: m.Transcript) -> None:
        """The one place where what the user said becomes a request for an answer.

        Skills come first and answer without the LLM. A skill that only tells something
        (time, arithmetic, units) answers a tentative transcript at once, like the LLM
        would, so its answer is not later than an LLM answer; a skill that acts (it sets a
        timer, stops an answer) is decided on the final transcript only, and such a
        tentative transcript is not sent to the LLM either. Other tentative transcripts are
        answered at once (the speaker holds the audio until the turn is confirmed); the
        responder answers each turn once.
        """
        text = transcript.text.strip()
        if not transcript.final:
            if text and self.responder.is_new(transcript.turn_id) \
                    and (reply := self.skills.answer_now(text)) is not None:
                self._reply(transcript, reply)
            elif not self.skills.claims(text):
                self.responder.on_transcript(transcript)
            return
        if text and self.responder.is_new(transcript.turn_id):
            reply = self.skills.handle(text)
            if reply is not None:
                self._reply(transcript, reply)
                return
        self.responder.on_transcript(transcript)

    def _reply(self, transcript: m.Transcript, reply: SkillReply) -> None:
        """A skill's reply, spoken like an answer; "stop" ends the turn with nothing said
        (the speaker already cut the answer at `speech_started`, and a new turn cancels
        its generation)."""
        log.info("turn %d: answered by the %s skill, no LLM request", transcript.turn_id, reply.skill)
        text = "" if reply.kind is ReplyKind.STOP else reply.text
        self.responder.say(transcript.turn_id, transcript.text.strip(), text, transcript.times,
                           record=reply.kind is not ReplyKind.STOP)
        if not text:
            self.floor.done(transcript.turn_id)  # nothing will be played

    # -- timers ----------------------------------------------------------------------------
    def _ring_timers(self) -> None:
        """Announce each timer when it ends, in a turn of the assistant's own, once the
        floor is free. Sleeps until the next deadline or a change of the timers."""
        book = self.skills.timers
        version = book.version
        while not book.closed:
            deadline = book.next_deadline()
            left = None if deadline is None else deadline - book.now()
            if left is None or left > 0:
                version = book.wait_for_change(version, left)
                continue
            turn = self.floor.take()
            if turn is None:
                return
            said = " ".join(book.due())
            if not said:  # cancelled meanwhile
                self.floor.done(turn)
                continue
            log.info("turn %d: a timer ended, announced by the assistant", turn)
            self.skills.remember_answer(said)
            self.responder.say(turn, "", said, {"t_timer_due": m.now()}, record=False)

    # -- readiness ---------------------------------------------------------------------------
    def _server_ready(self) -> None:
        """The first `ready` makes the assistant ready; a later one is a restarted server,
        warmed up again so that the next turn does not pay for its cold start."""
        target = self._warm_up if self.ready.is_set() else self._warm_then_ready
        threading.Thread(target=target, name="warm-up", daemon=True).start()

    def _warm_up(self) -> None:
        self.client.warm_up(self.responder.conversation.system_prompt)

    def _warm_then_ready(self) -> None:
        self._warm_up()
        self._announce()

    def _probe_then_ready(self) -> None:
        """A restarted node missed the llm-server's `ready`: poll the server until it answers."""
        while not self._stop.is_set() and not self.ready.is_set():
            if self.client.healthy():
                self._warm_then_ready()
                return
            self._stop.wait(PROBE_EVERY_S)

    def _announce(self) -> None:
        with self._announce_lock:  # the probe and a late `server_ready` may both get here
            if self.ready.is_set():
                return
            self.ready.set()
        log.info("assistant ready (LLM at %s)", self.client.config.base_url)
        self.emit(m.LlmReady("embedded" if self.embedded else self.client.config.base_url))
