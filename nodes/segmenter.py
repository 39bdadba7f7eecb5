"""segmenter node: LLM deltas in, speakable segments out, paced by the speaker."""

from __future__ import annotations

from typing import Any

from pipeline import messages as m
from pipeline.runtime import STOP, Outbox, inputs, start
from pipeline.scheduler import Outgoing, SegmentScheduler
from pipeline.settings import Settings

NAME = "segmenter"


def run(node: Any, s: Settings) -> None:
    out = Outbox(node)
    sched = SegmentScheduler(s.segments_ahead, s.segment_first_min_words, s.segment_max_words)

    def send(items: list[Outgoing]) -> None:
        for item in items:
            out.send(m.SEGMENTER_SEGMENT, m.text_array(item.text), {**item.metadata, "event": item.event})

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


def main() -> None:
    from dora import Node

    run(Node(), start(NAME))


if __name__ == "__main__":
    main()
