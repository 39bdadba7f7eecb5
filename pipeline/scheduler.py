"""Backpressure between the segmenter and the speaker, and what survives a crash.

Segments are released to TTS only while fewer than `ahead` of them are in flight (sent but
not yet reported `finished` by the speaker). The signal is the speaker's, not TTS having
received text: that way nothing piles up in the TTS or speaker queues, a cancel only has to
drop at most `ahead` segments, and a slow speaker slows the whole chain down gracefully.

Crashes (the tts and segmenter nodes have `restart_policy: on-failure`). dora drops whatever
was sent to a node until its new process is up, and tells only the nodes downstream of it:

* **tts crashed**: the segments it had been sent and not yet synthesized are lost, and so is
  the turn's `end` if it had not passed it on. The segmenter receives the tts node's `ready`
  output, so dora tells it (`on_tts_down`): releases stop, since anything sent now would be
  lost too. When the restarted tts says `ready` (`on_tts_ready`), every in-flight segment of
  the current answer is sent again, in order, then the `end` if the speaker has not reported
  `turn_end`; then releases go on. It cannot know which of them the old process had already
  synthesized: the speaker drops the copies (pipeline/turns.py, SeenSegments). A segment
  that was in flight during two crashes is not sent a third time (a text that crashes Piper
  must not use up dora's restarts and leave the assistant mute): the rest of the answer is
  replaced by the apology.
* **segmenter crashed**: the new process knows nothing, and the llm's deltas sent meanwhile
  are lost. The scheduler notes its answer in a :class:`TurnJournal` (at the start, before
  every release with the indices it reserves, at the LLM's end, at the speaker's turn end);
  the restarted node calls :meth:`resume`: if the LLM had finished, all the text had arrived
  and the rest of the answer is sent (the last batch again, in case the crash came before it
  was sent); otherwise the apology closes the turn. Either way the rest of that turn's text is
  ignored, and the next turn works as usual.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from dataclasses import dataclass, field

from pipeline import messages as m
from pipeline.journal import JournalEntry, TurnJournal
from pipeline.segmenter import StreamSegmenter

log = logging.getLogger("segmenter")

APOLOGY = "Sorry, I can't answer right now."
MAX_SENDS = 2  # a segment is sent at most twice: once more after a crash of the tts


@dataclass
class _Answer:
    turn_id: int
    times: m.Times
    segmenter: StreamSegmenter
    pending: deque[str] = field(default_factory=deque)
    next_index: int = 0
    in_flight: set[int] = field(default_factory=set)
    ended: bool = False
    end_sent: bool = False
    sent: dict[int, m.Segment] = field(default_factory=dict)  # the in-flight segments themselves
    sends: dict[int, int] = field(default_factory=dict)  # how often each was sent
    end: m.Segment | None = None
    turn_ended: bool = False  # the speaker reported turn_end: nothing of it can be lost now
    closed: bool = False  # its text is no longer taken (apologised for, or resumed)


class SegmentScheduler:
    def __init__(
        self,
        ahead: int = 2,
        first_min_words: int = 3,
        max_words: int = 20,
        apology: str = APOLOGY,
        journal: TurnJournal | None = None,
    ) -> None:
        self.ahead = ahead
        self.first_min_words = first_min_words
        self.max_words = max_words
        self.apology = apology
        self.journal = journal
        self.latest = 0
        self.closed_upto = 0  # text of turns up to this one is ignored (after a restart)
        self.answer: _Answer | None = None
        self.tts_up = True

    def _new_answer(self, turn_id: int, times: m.Times) -> _Answer:
        seg = StreamSegmenter(first_min_words=self.first_min_words, max_words=self.max_words)
        return _Answer(turn_id, dict(times), seg)

    def on_speech_started(self, turn_id: int) -> None:
        """A new user turn: everything of older turns is dropped at once."""
        if turn_id > self.latest:
            self.latest = turn_id
        if self.answer is not None and self.answer.turn_id < turn_id:
            self._note_closed(self.answer.turn_id)
            self.answer = None

    def on_text(self, msg: m.LlmText) -> list[m.Segment]:
        """A delta or the end of the LLM's answer: the segments it completes, if released."""
        turn_id = msg.turn_id
        if turn_id < self.latest or turn_id <= self.closed_upto:
            return []
        self.latest = turn_id
        new = self.answer is None or self.answer.turn_id != turn_id
        if new:
            self.answer = self._new_answer(turn_id, msg.times)
        answer = self.answer
        assert answer is not None
        if answer.closed:
            return []
        answer.times.update(msg.times)
        event = msg.event
        if event == m.DELTA:
            answer.pending.extend(answer.segmenter.push(msg.text))
        elif event == m.END:
            if msg.reason == m.REASON_CANCELLED:
                self._note_closed(turn_id)
                self.answer = None
                return []
            answer.pending.extend(answer.segmenter.finish())
            answer.ended = True
        out = self._release()
        if new or out or event == m.END:
            self._note(answer, out)
        return out

    def on_played(self, msg: m.Played) -> list[m.Segment]:
        """The speaker's report: a finished segment frees its place in the window."""
        answer = self.answer
        if answer is None or answer.turn_id != msg.turn_id:
            return []
        if msg.event in (m.FINISHED, m.INTERRUPTED):
            answer.in_flight.discard(msg.segment_index)
            answer.sent.pop(msg.segment_index, None)
        elif msg.event == m.TURN_END:
            answer.turn_ended = True
            self._note_closed(msg.turn_id)
        out = self._release()
        if out:
            self._note(answer, out)
        return out

    # -- crashes -------------------------------------------------------------------------
    def on_tts_down(self) -> None:
        """dora is restarting the tts node: what we send now would be lost; wait for it."""
        self.tts_up = False

    def on_tts_gone(self) -> None:
        """dora gave up on the tts node: nothing to wait for (nothing will be heard either)."""
        self.tts_up = True

    def on_tts_ready(self, restarted: bool) -> list[m.Segment]:
        """The tts node is (back) up. After a restart, what it had is sent to it again."""
        self.tts_up = True
        answer = self.answer
        if not restarted or answer is None or answer.turn_ended:
            return self._release()
        lost = sorted(answer.in_flight)
        out: list[m.Segment] = []
        if any(answer.sends.get(i, 1) >= MAX_SENDS for i in lost):
            log.error("turn %d: the tts node crashed again on segment(s) %s; apologising instead "
                      "of the rest of the answer", answer.turn_id, lost)
            self._apologise(answer)
        else:
            for i in lost:
                answer.sends[i] = answer.sends.get(i, 1) + 1
                out.append(dataclasses.replace(answer.sent[i], resent=True))
            if answer.end_sent and answer.end is not None:
                out.append(answer.end)
            log.warning("turn %d: the tts node was restarted; sending it again %d unplayed "
                        "segment(s)%s", answer.turn_id, len(lost),
                        " and the end of the answer" if answer.end_sent else "")
        out += self._release()
        self._note(answer, out)
        return out

    def resume(self, entry: JournalEntry | None) -> list[m.Segment]:
        """A restarted segmenter: finish the answer its previous life left open (see the
        module docstring); the text of that turn and older ones is ignored from now on."""
        if entry is None:
            log.info("restarted: no answer was in progress")
            return []
        self.latest = max(self.latest, entry.turn_id)
        self.closed_upto = max(self.closed_upto, entry.turn_id)
        if not entry.open:
            log.info("restarted: turn %d had been spoken; waiting for the next one", entry.turn_id)
            return []
        extra = entry.extra
        answer = self._new_answer(entry.turn_id, {})
        answer.next_index = int(extra.get("next_index", 0))
        answer.closed = True
        out: list[m.Segment] = []
        if extra.get("ended"):
            recent = [(int(i), str(t)) for i, t in extra.get("recent", [])]
            pending = [str(t) for t in extra.get("pending", [])]
            log.warning("turn %d: the segmenter was restarted while the answer was spoken; sending "
                        "the rest of it (%d segment(s))", entry.turn_id, len(pending))
            out += [m.Segment(entry.turn_id, m.SEGMENT, index, text, resent=True) for index, text in recent]
            answer.pending.extend(pending)
        else:
            log.error("turn %d: the segmenter was restarted in the middle of the answer (the LLM "
                      "text sent meanwhile is lost); apologising and closing the turn", entry.turn_id)
            answer.pending.append(self.apology)
        answer.ended = True
        self.answer = answer
        out += self._release()
        self._note(answer, out)
        return out

    def idle(self) -> bool:
        """Nothing left to release (the node may end)."""
        a = self.answer
        return a is None or (a.end_sent and (self.tts_up or a.turn_ended))

    # -- internals -----------------------------------------------------------------------
    def _apologise(self, answer: _Answer) -> None:
        """Replace what is left of the answer with the apology (released next)."""
        answer.closed = True
        answer.pending.clear()
        answer.pending.append(self.apology)
        answer.in_flight.clear()  # lost: the speaker will never report them
        answer.sent.clear()
        if answer.end_sent:
            answer.next_index += 1  # never reuse the index of the `end` already sent
        answer.ended = True
        answer.end_sent = False

    def _note(self, answer: _Answer, batch: list[m.Segment]) -> None:
        """Journal the answer before `batch` is sent (its indices are already reserved)."""
        if self.journal is None:
            return
        recent = [[o.segment_index, o.text] for o in batch if o.event == m.SEGMENT]
        self.journal.write(answer.turn_id, is_open=not answer.turn_ended, next_index=answer.next_index,
                           ended=answer.ended, pending=list(answer.pending), recent=recent)

    def _note_closed(self, turn_id: int) -> None:
        if self.journal is not None:
            self.journal.write(turn_id, is_open=False)

    def _release(self) -> list[m.Segment]:
        answer = self.answer
        if answer is None or not self.tts_up:
            return []
        out: list[m.Segment] = []
        while answer.pending and len(answer.in_flight) < self.ahead:
            text = answer.pending.popleft()
            index = answer.next_index
            answer.next_index += 1
            answer.in_flight.add(index)
            times = dict(answer.times)
            if index == 0:
                times["t_first_segment"] = m.now()
            item = m.Segment(answer.turn_id, m.SEGMENT, index, text, times=times)
            answer.sent[index] = item
            answer.sends[index] = 1
            out.append(item)
        if answer.ended and not answer.pending and not answer.end_sent:
            answer.end_sent = True
            # its index is the number of segments of the answer
            answer.end = m.Segment(answer.turn_id, m.END, answer.next_index, times=dict(answer.times))
            out.append(answer.end)
        return out
