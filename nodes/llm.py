"""llm node: transcripts in, streamed answer text out (see pipeline/stages/llm.py)."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.llm import Conversation, LlmClient, LlmConfig
from pipeline.runtime import Outbox, drive, is_restart, journal_for, start
from pipeline.settings import Settings
from pipeline.stages.llm import WIRING, LlmStage

NAME = "llm"


def run(node: Any, s: Settings) -> None:
    out = Outbox(node)
    stage = LlmStage(
        LlmClient(LlmConfig.from_settings(s)),
        Conversation.from_settings(s),
        s.llm_apology,
        out.emit,
        s.llm_server_start_timeout_s,
        journal_for(node, NAME),
        is_restart(node),
    )
    drive(node, stage, WIRING, out=out, primary=frozenset({"transcript"}))


def main() -> None:
    from dora import Node

    s = start(NAME)
    # the openai SDK's HTTP client (httpx2) logs every request at INFO: one line per turn of noise
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    run(Node(), s)


if __name__ == "__main__":
    main()
