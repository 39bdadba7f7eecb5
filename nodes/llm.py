"""llm node: transcripts in, streamed answer text out (see pipeline/stages/llm.py)."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.llm import Conversation, LlmClient, LlmConfig
from pipeline.runtime import Outbox, drive, is_restart, journal_for, start
from pipeline.settings import Settings
from pipeline.stages.llm import WIRING, LlmStage

NAME = "llm"


def llm_config(s: Settings) -> LlmConfig:
    base_url = s.openai_base_url or f"http://127.0.0.1:{s.llm_server_port}/v1"
    return LlmConfig(
        base_url=base_url,
        api_key=s.openai_api_key,
        model=s.llm_model,
        system_prompt=s.llm_system_prompt,
        max_tokens=s.llm_max_tokens,
        temperature=s.llm_temperature,
        history_turns=s.llm_history_turns,
        streaming=s.enable_streaming,
        connect_timeout_s=s.llm_connect_timeout_s,
        first_token_timeout_s=s.llm_first_token_timeout_s,
        token_timeout_s=s.llm_token_timeout_s,
        retries=s.llm_retries,
        embedded=s.uses_embedded_llm,
    )


def run(node: Any, s: Settings) -> None:
    out = Outbox(node)
    stage = LlmStage(
        LlmClient(llm_config(s)),
        Conversation(s.llm_system_prompt, s.llm_history_turns),
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
