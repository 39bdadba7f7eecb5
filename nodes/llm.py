"""llm node: transcripts in, streamed answer text out (see pipeline/responder.py).

dora may restart this node after a crash (`restart_policy` in dataflow.yml). A restarted
node (`node.is_restart()`) starts fresh but resynchronises: it closes, with the apology, a
turn its previous life left open, never answers an old transcript again (the turn journal,
pipeline/responder.py), and, with the embedded server, asks the server itself whether it is
up, because the llm-server's `ready` message went to the previous process.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pipeline import messages as m
from pipeline.llm import Conversation, LlmClient, LlmConfig
from pipeline.responder import Responder
from pipeline.runtime import STOP, Outbox, inputs, is_restart, journal_for, start
from pipeline.settings import Settings

NAME = "llm"
log = logging.getLogger(NAME)
PROBE_EVERY_S = 0.5


def run(node: Any, s: Settings) -> None:
    out = Outbox(node)
    config = LlmConfig.from_settings(s)
    ready = threading.Event()
    restarted = is_restart(node)
    journal = journal_for(node, NAME)
    stop = threading.Event()
    announce_lock = threading.Lock()

    def announce() -> None:
        with announce_lock:  # the probe and a late `server_ready` may both get here
            if ready.is_set():
                return
            ready.set()
        log.info("assistant ready (LLM at %s)", config.base_url)
        out.send("ready", m.text_array(config.base_url if not s.uses_embedded_llm else "embedded"), {})

    def send(event: str, text: str, meta: dict[str, Any]) -> None:
        out.send(m.LLM_TEXT, m.text_array(text), {**meta, "event": event})

    responder = Responder(
        LlmClient(config),
        Conversation(s.llm_system_prompt, s.llm_history_turns),
        s.llm_apology,
        send,
        ready,
        s.llm_server_start_timeout_s,
        journal,
    )

    def warm_then_ready() -> None:
        responder.client.warm_up(s.llm_system_prompt)
        announce()

    def probe_then_ready() -> None:
        """A restarted node missed the llm-server's `ready`: poll the server until it answers."""
        while not stop.is_set() and not ready.is_set():
            if responder.client.healthy():
                warm_then_ready()
                return
            stop.wait(PROBE_EVERY_S)

    if restarted:
        log.warning("llm node restarted by dora: resynchronising (history of earlier turns is lost)")
        responder.resume(journal.read() if journal is not None else None)
    if not s.uses_embedded_llm:
        announce()  # an external server: nothing to wait for
    elif restarted:
        threading.Thread(target=probe_then_ready, name="probe", daemon=True).start()

    try:
        for input_id, value, meta in inputs(node, primary=frozenset({"transcript"}), done=responder.idle):
            if input_id == STOP:
                continue
            turn = m.turn_of(meta)
            if input_id == "speech_started":
                responder.on_speech_started(turn)
            elif input_id == "transcript":
                responder.on_transcript(turn, m.text_of(value), meta)
            elif input_id == "played":
                responder.on_played(turn, str(meta.get("event", "")), str(meta.get("text", "")))
            elif input_id == "server_ready" and s.uses_embedded_llm:
                # the first one makes the assistant ready; a later one is a restarted server,
                # warmed up again so that the next turn does not pay for its cold start
                target = responder.client.warm_up if ready.is_set() else warm_then_ready
                args = (s.llm_system_prompt,) if ready.is_set() else ()
                threading.Thread(target=target, args=args, name="warm-up", daemon=True).start()
        responder.close()
    finally:
        stop.set()
    if journal is not None:
        journal.remove()  # a clean end: nothing to resume


def main() -> None:
    from dora import Node

    s = start(NAME)
    # the openai SDK's HTTP client (httpx2) logs every request at INFO: one line per turn of noise
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    run(Node(), s)


if __name__ == "__main__":
    main()
