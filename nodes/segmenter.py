"""segmenter node: LLM deltas in, speakable segments out, paced by the speaker.

dora restarts this node and the tts node after a crash; what each loses is made up for by
the scheduler (pipeline/scheduler.py): a restarted segmenter finishes or apologises for the
answer it left open (its journal), and a restarted tts gets its unplayed segments again.
"""

from __future__ import annotations

from typing import Any

from pipeline.runtime import drive, is_restart, journal_for, start
from pipeline.scheduler import SegmentScheduler
from pipeline.settings import Settings
from pipeline.stages.segmenter import WIRING, SegmenterStage

NAME = "segmenter"


def run(node: Any, s: Settings) -> None:
    journal = journal_for(node, NAME)
    sched = SegmentScheduler(s.segments_ahead, s.segment_first_min_words, s.segment_max_words,
                             apology=s.llm_apology, journal=journal)
    stage = SegmenterStage(sched, is_restart(node), journal)
    drive(node, stage, WIRING, primary=frozenset({"text"}))


def main() -> None:
    from dora import Node

    run(Node(), start(NAME))


if __name__ == "__main__":
    main()
