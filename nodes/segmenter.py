"""segmenter node: LLM deltas in, speakable segments out, paced by the speaker.

dora restarts this node and the tts node after a crash; what each loses is made up for by
the scheduler (pipeline/scheduler.py): a restarted segmenter finishes or apologises for the
answer it left open (its journal), and a restarted tts gets its unplayed segments again.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline import messages as m
from pipeline.runtime import FAILED, RESTARTED, STOP, Outbox, inputs, is_restart, journal_for, start
from pipeline.scheduler import Outgoing, SegmentScheduler
from pipeline.settings import Settings

NAME = "segmenter"
log = logging.getLogger(NAME)


def run(node: Any, s: Settings) -> None:
    out = Outbox(node)
    journal = journal_for(node, NAME)
    sched = SegmentScheduler(s.segments_ahead, s.segment_first_min_words, s.segment_max_words,
                             apology=s.llm_apology, journal=journal)

    def send(items: list[Outgoing]) -> None:
        for item in items:
            out.send(m.SEGMENTER_SEGMENT, m.text_array(item.text), {**item.metadata, "event": item.event})

    if is_restart(node):
        log.warning("segmenter node restarted by dora: resuming")
        send(sched.resume(journal.read() if journal is not None else None))

    for input_id, value, meta in inputs(node, primary=frozenset({"text"}), done=sched.idle):
        if input_id == STOP:
            continue
        turn = m.turn_of(meta)
        if input_id == "speech_started":
            sched.on_speech_started(turn)
        elif input_id == "text":
            send(sched.on_text(turn, str(meta.get("event", m.DELTA)), m.text_of(value), meta))
        elif input_id == "played":
            send(sched.on_played(turn, str(meta.get("event", "")), int(meta.get("segment_index", -1))))
        elif input_id == "tts_ready":
            send(sched.on_tts_ready(bool(meta.get("restart", False))))
        elif input_id == RESTARTED and meta.get("id") == "tts":
            sched.on_tts_down()
        elif input_id == FAILED and meta.get("id") == "tts":
            sched.on_tts_gone()
    if journal is not None:
        journal.remove()  # a clean end: nothing to resume


def main() -> None:
    from dora import Node

    run(Node(), start(NAME))


if __name__ == "__main__":
    main()
