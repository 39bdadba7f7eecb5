"""llm-server node: the embedded OpenAI-compatible server (llama-cpp-python) on 127.0.0.1.

Started and stopped with the dataflow; does nothing when OPENAI_BASE_URL points elsewhere.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline import messages as m
from pipeline.llm_server import EmbeddedServer
from pipeline.runtime import CLOSED, STOP, Outbox, fail, inputs, start
from pipeline.settings import Settings

NAME = "llm-server"
log = logging.getLogger(NAME)


def run(node: Any, s: Settings) -> None:
    out = Outbox(node)
    if not s.uses_embedded_llm:
        log.info("OPENAI_BASE_URL is set: the embedded server is not started")
        out.send("ready", m.text_array(s.openai_base_url), {"embedded": False})
        for input_id, _value, meta in inputs(node):
            if input_id == STOP or (input_id == CLOSED and meta.get("id") == "llm"):
                break
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
        log.info("embedded LLM ready at %s (model %s)", server.base_url, server.model_path)
        out.send("ready", m.text_array(server.base_url), {"embedded": True})
        for input_id, _value, meta in inputs(node):
            if input_id == STOP or (input_id == CLOSED and meta.get("id") == "llm"):
                break  # the llm node is gone: nothing will call the server any more
            if input_id == "tick" and not server.alive():
                log.error("the embedded LLM server died (exit %s); restarting it", server.returncode())
                server.start()
                if server.wait_ready(s.llm_server_start_timeout_s):
                    out.send("ready", m.text_array(server.base_url), {"embedded": True})
    finally:
        server.stop()


def main() -> None:
    from dora import Node

    s = start(NAME)
    run(Node(), s)


if __name__ == "__main__":
    main()
