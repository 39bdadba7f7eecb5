"""llm-server node: the embedded OpenAI-compatible server (llama-cpp-python) on 127.0.0.1.

Started and stopped with the dataflow; does nothing when OPENAI_BASE_URL points elsewhere.

Every `tick` (2 s) it also sends `alive`, the server side's beat for the board's speaker.

Self-healing: every `tick` it checks that the server process is alive; a dead one is
started again and `ready` is sent once it answers. The restart never blocks the event loop
(STOP must still be seen at once): the node only polls the new server on the following ticks.
Meanwhile the llm node's requests are refused and each turn gets the apology. If the node
itself is killed, its server dies with it (pipeline/llm_server.py) and dora restarts the node
(`restart_policy` in dataflow.yml), which starts a fresh server.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pipeline import messages as m
from pipeline.llm_server import EmbeddedServer
from pipeline.runtime import CLOSED, STOP, Outbox, fail, inputs, start
from pipeline.settings import Settings

NAME = "llm-server"
log = logging.getLogger(NAME)


@dataclass
class Supervisor:
    """Restarts a dead server, one tick at a time (never waits inside the event loop)."""

    server: EmbeddedServer
    out: Outbox
    start_timeout_s: float
    restarting_since: float | None = None
    restarts: int = 0

    def tick(self) -> None:
        if self.restarting_since is not None:
            if self.server.healthy():
                took = time.monotonic() - self.restarting_since
                log.info("embedded LLM server is back after %.1f s (restart %d)", took, self.restarts)
                self.restarting_since = None
                self.out.send("ready", m.text_array(self.server.base_url), {"embedded": True})
                return
            if self.server.alive() and time.monotonic() - self.restarting_since < self.start_timeout_s:
                return  # still loading
            log.error("the restarted embedded LLM server did not come up (exit %s); its log: %s",
                      self.server.returncode(), self.server.log_tail())
            self._restart()
            return
        if not self.server.alive():
            log.error("the embedded LLM server died (exit %s); restarting it", self.server.returncode())
            self._restart()

    def _restart(self) -> None:
        self.restarts += 1
        try:
            self.server.start(port_wait_s=0.0)  # a busy port is tried again on the next tick
        except OSError as exc:
            log.error("cannot restart the embedded LLM server: %s; trying again", exc)
        self.restarting_since = time.monotonic()


def beat(out: Outbox) -> None:
    """Say the server side is there: the board's speaker watches for this beat, since dora
    1.1 tells the board nothing when the server's daemon dies (docs/distributed.md)."""
    out.emit(m.ServerAlive(t=time.time()))


def run(node: Any, s: Settings) -> None:
    out = Outbox(node)
    if not s.uses_embedded_llm:
        log.info("OPENAI_BASE_URL is set: the embedded server is not started")
        out.send("ready", m.text_array(s.openai_base_url), {"embedded": False})
        for input_id, _value, meta in inputs(node):
            if input_id == STOP or (input_id == CLOSED and meta.get("id") == "llm"):
                break
            if input_id == "tick":
                beat(out)
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
        out.send("ready", m.text_array(server.base_url), {"embedded": True})
        supervisor = Supervisor(server, out, s.llm_server_start_timeout_s)
        for input_id, _value, meta in inputs(node):
            if input_id == STOP or (input_id == CLOSED and meta.get("id") == "llm"):
                break  # the llm node is gone: nothing will call the server any more
            if input_id == "tick":
                beat(out)
                supervisor.tick()
    finally:
        server.stop()


def main() -> None:
    from dora import Node

    s = start(NAME)
    run(Node(), s)


if __name__ == "__main__":
    main()
