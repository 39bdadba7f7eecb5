"""The llm-server node's processor: says where the OpenAI-compatible server is, and keeps the
embedded one alive.

Self-healing: on every `tick` the :class:`Supervisor` checks that the server process is
alive; a dead one is started again and `ready` is sent once it answers. The restart never
blocks the event loop (STOP must still be seen at once): the new server is only polled on
the following ticks. Meanwhile the llm node's requests are refused and each turn gets the
apology. Every tick also says `alive`, the server side's beat for the board's speaker.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from pipeline import messages as m
from pipeline.runtime import CLOSED, STOP, Control, Event, Tick

log = logging.getLogger("llm-server")

LLM_NODE_INPUT = "llm"  # closes when the llm node is gone: nothing will call the server any more

WIRING: dict[str, type[m.Message] | None] = {"tick": None, LLM_NODE_INPUT: m.LlmText}


class Server(Protocol):
    """What the supervisor needs of pipeline.llm_server.EmbeddedServer."""

    @property
    def base_url(self) -> str: ...

    def healthy(self) -> bool: ...

    def alive(self) -> bool: ...

    def returncode(self) -> int | None: ...

    def log_tail(self) -> str: ...

    def start(self, port_wait_s: float = ...) -> None: ...


@dataclass
class Supervisor:
    """Restarts a dead server, one tick at a time (never waits inside the event loop)."""

    server: Server
    start_timeout_s: float
    restarting_since: float | None = None
    restarts: int = 0

    def tick(self) -> list[m.ServerReady]:
        if self.restarting_since is not None:
            if self.server.healthy():
                took = time.monotonic() - self.restarting_since
                log.info("embedded LLM server is back after %.1f s (restart %d)", took, self.restarts)
                self.restarting_since = None
                return [m.ServerReady(self.server.base_url, embedded=True)]
            if self.server.alive() and time.monotonic() - self.restarting_since < self.start_timeout_s:
                return []  # still loading
            log.error("the restarted embedded LLM server did not come up (exit %s); its log: %s",
                      self.server.returncode(), self.server.log_tail())
            self._restart()
            return []
        if not self.server.alive():
            log.error("the embedded LLM server died (exit %s); restarting it", self.server.returncode())
            self._restart()
        return []

    def _restart(self) -> None:
        self.restarts += 1
        try:
            self.server.start(port_wait_s=0.0)  # a busy port is tried again on the next tick
        except OSError as exc:
            log.error("cannot restart the embedded LLM server: %s; trying again", exc)
        self.restarting_since = time.monotonic()


class LlmServerStage:
    """`ready` with the server's URL at start; then, for the embedded server, supervision.

    `supervisor` is None for an external server (OPENAI_BASE_URL): nothing to supervise.
    """

    def __init__(self, base_url: str, supervisor: Supervisor | None = None) -> None:
        self.base_url = base_url
        self.supervisor = supervisor

    def start(self) -> list[m.ServerReady]:
        return [m.ServerReady(self.base_url, embedded=self.supervisor is not None)]

    def handle(self, event: Event) -> list[m.Message]:
        """On every tick: the beat (`alive`), then what supervision has to say.

        The beat is for the board's speaker: dora 1.1 tells the board nothing when the
        server's daemon dies (docs/distributed.md), so it watches for this message.
        """
        if not isinstance(event, Tick):
            return []
        out: list[m.Message] = [m.ServerAlive(t=m.now())]
        if self.supervisor is not None:
            out.extend(self.supervisor.tick())
        return out

    def idle(self) -> bool:
        return True


def ends_the_node(event: Event) -> bool:
    """STOP, or the llm node is gone (its output closed)."""
    return isinstance(event, Control) and (
        event.kind == STOP or (event.kind == CLOSED and event.input_id == LLM_NODE_INPUT))
