"""The segmenter node's processor: LLM text in, speakable segments out, paced by the speaker.

The work is the :class:`~pipeline.scheduler.SegmentScheduler`'s (backpressure, and what
survives a crash of the tts node or of this one); this stage routes the inputs to it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pipeline import messages as m
from pipeline.journal import TurnJournal
from pipeline.runtime import FAILED, RESTARTED, Control, Event
from pipeline.scheduler import SegmentScheduler

log = logging.getLogger("segmenter")

TTS_NODE = "tts"  # the node whose crashes the scheduler makes up for

WIRING: dict[str, type[m.Message] | None] = {
    "text": m.LlmText,
    "played": m.Played,
    "speech_started": m.SpeechStarted,
    "tts_ready": m.TtsReady,
}


class SegmenterStage:
    def __init__(self, scheduler: SegmentScheduler, restarted: bool = False,
                 journal: TurnJournal | None = None) -> None:
        self.scheduler = scheduler
        self.restarted = restarted
        self.journal = journal

    def start(self) -> list[m.Segment]:
        """A process dora restarted finishes the answer its previous life left open."""
        if not self.restarted:
            return []
        log.warning("segmenter node restarted by dora: resuming")
        return self.scheduler.resume(self.journal.read() if self.journal is not None else None)

    def handle(self, event: Event) -> Iterable[m.Segment]:
        sched = self.scheduler
        if isinstance(event, m.SpeechStarted):
            sched.on_speech_started(event.turn_id)
        elif isinstance(event, m.LlmText):
            return sched.on_text(event)
        elif isinstance(event, m.Played):
            return sched.on_played(event)
        elif isinstance(event, m.TtsReady):
            return sched.on_tts_ready(event.restart)
        elif isinstance(event, Control) and event.input_id == TTS_NODE:
            if event.kind == RESTARTED:
                sched.on_tts_down()
            elif event.kind == FAILED:
                sched.on_tts_gone()
        return []

    def idle(self) -> bool:
        return self.scheduler.idle()

    def finish(self) -> None:
        if self.journal is not None:
            self.journal.remove()  # a clean end: nothing to resume
