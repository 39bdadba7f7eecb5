"""llm-server node: the embedded OpenAI-compatible server (llama-cpp-python) on 127.0.0.1.

Started and stopped with the dataflow; does nothing but say `ready` when OPENAI_BASE_URL
points elsewhere. The embedded server is supervised (pipeline/stages/llm_server.py). If the
node itself is killed, its server dies with it (pipeline/llm_server.py) and dora restarts
the node (`restart_policy` in dataflow.yml), which starts a fresh server.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.llm_server import EmbeddedServer
from pipeline.runtime import drive, fail, start
from pipeline.settings import Settings
from pipeline.stages.llm_server import WIRING, LlmServerStage, Supervisor, ends_the_node

NAME = "llm-server"
log = logging.getLogger(NAME)


def run(node: Any, s: Settings) -> None:
    if not s.uses_embedded_llm:
        log.info("OPENAI_BASE_URL is set: the embedded server is not started")
        drive(node, LlmServerStage(s.openai_base_url), WIRING, stop_on=ends_the_node)
        return
    server = EmbeddedServer.from_settings(s)
    try:
        try:
            server.start()
        except OSError as exc:
            fail(NAME, str(exc))
        if not server.wait_ready(s.llm_server_start_timeout_s):
            fail(NAME, f"the embedded LLM server did not answer within {s.llm_server_start_timeout_s:g} s "
                 f"(LLM_SERVER_START_TIMEOUT_S); its log: {server.log_tail()}")
        log.info("embedded LLM ready at %s (model %s, pid %s)", server.base_url, server.model_path, server.pid)
        stage = LlmServerStage(server.base_url, Supervisor(server, s.llm_server_start_timeout_s))
        drive(node, stage, WIRING, stop_on=ends_the_node)
    finally:
        server.stop()


def main() -> None:
    from dora import Node

    s = start(NAME)
    run(Node(), s)


if __name__ == "__main__":
    main()
