"""A scripted OpenAI-compatible server for tests and benchmarks (never used by the product).

It speaks just enough of the chat-completions API (SSE streaming and plain JSON) to drive
the llm node through the official SDK, with faults on demand. The behaviour is chosen per
server (`mode`), or per request with `plan` (request n gets `plan[n-1]`, later ones `mode`),
so one dataflow run can see a fault on its first turn and a healthy server on the next; it
can be changed while the server runs. Every chat request is recorded with its arrival time
and the mode it got, so a test can check the retries and how far apart they were.

Modes: ok, http500, http429 (with `Retry-After: retry_after`), http401, hang (accept, never
answer), cut (stream stops mid-answer and the connection closes), malformed (a line that is
not JSON), slow (every token `slow_token_delay_s` apart), stall (`stall_after` tokens, then
nothing until the client closes the connection or the server is closed: only a client that
really closes its stream gets out of it before its own timeouts).
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("ok", "http500", "http429", "http401", "hang", "cut", "malformed", "slow", "stall")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Script:
    mode: str = "ok"
    answer: str = "The capital of France is Paris. It is a lovely city."
    token_delay_s: float = 0.02
    first_token_delay_s: float = 0.05
    words_per_token: int = 1
    fail_times: int = 10**9  # for http500/http429: fail this many requests, then answer ok
    plan: list[str] = field(default_factory=list)  # per-request modes, then `mode`
    retry_after: str = "0"  # Retry-After of a 429 (seconds or an HTTP date; "" = no header)
    slow_token_delay_s: float = 3.0
    stall_after: int = 3  # for stall: tokens sent before the server goes quiet
    requests: list[dict[str, Any]] = field(default_factory=list)
    tokens_sent: int = 0  # streamed tokens written so far, all requests together
    answer_fn: Any = None  # optional callable(messages) -> answer text
    # optional callable(request) -> tool-call delta items, each streamed as a chunk of its
    # own (finish_reason tool_calls), or None to answer in text
    tool_calls_fn: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, request: dict[str, Any]) -> tuple[int, str]:
        """Record a request; return its number (from 1) and the mode it gets."""
        with self._lock:
            self.requests.append(request)
            n = len(self.requests)
        if n <= len(self.plan):
            mode = self.plan[n - 1]
        else:
            mode = self.mode
            if mode in ("http500", "http429") and n > self.fail_times:
                mode = "ok"
        request["_mode"] = mode
        return n, mode

    def modes_seen(self) -> list[str]:
        return [str(r.get("_mode")) for r in self.requests]

    def times(self) -> list[float]:
        """Arrival times (time.monotonic) of the chat requests."""
        return [float(r["_t"]) for r in self.requests]


def tokens_of(text: str, per: int = 1) -> list[str]:
    words = text.split(" ")
    out = []
    for i in range(0, len(words), per):
        piece = " ".join(words[i : i + per])
        out.append(piece if i == 0 else " " + piece)
    return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # /v1/models
        body = json.dumps({"object": "list", "data": [{"id": "scripted", "object": "model"}]}).encode()
        self._send(200, body)

    def _send(self, code: int, body: bytes, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        script = self.server.script
        request["_auth"] = self.headers.get("Authorization", "")
        request["_t"] = time.monotonic()
        _n, mode = script.take(request)
        if mode == "http500":
            return self._send(500, b'{"error": {"message": "boom"}}')
        if mode == "http429":
            extra = {"Retry-After": script.retry_after} if script.retry_after else {}
            return self._send(429, b'{"error": {"message": "slow down"}}', headers=extra)
        if mode == "http401":
            return self._send(401, b'{"error": {"message": "Incorrect API key provided"}}')
        if mode == "hang":
            self.server.hung.wait(120)
            self.close_connection = True
            return None
        tool_deltas = script.tool_calls_fn(request) if script.tool_calls_fn else None
        if tool_deltas is not None and request.get("stream"):
            return self._stream_tool_calls(tool_deltas)
        answer = script.answer_fn(request.get("messages", [])) if script.answer_fn else script.answer
        if not request.get("stream"):
            time.sleep(script.first_token_delay_s + script.token_delay_s * len(tokens_of(answer, script.words_per_token)))
            body = json.dumps({
                "id": "x", "object": "chat.completion", "created": 0, "model": "scripted",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            }).encode()
            return self._send(200, body)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        toks = tokens_of(answer, script.words_per_token)
        delay = script.slow_token_delay_s if mode == "slow" else script.token_delay_s
        try:
            time.sleep(script.first_token_delay_s)
            for i, tok in enumerate(toks):
                if mode == "cut" and i == len(toks) // 2:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                if mode == "stall" and i == script.stall_after:
                    self.wfile.flush()
                    self._stall()
                    return None
                if mode == "malformed" and i == 2:
                    self.wfile.write(b"data: {this is not json\n\n")
                    self.wfile.flush()
                    continue
                chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "scripted",
                         "choices": [{"index": 0, "delta": {"content": tok}, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                script.tokens_sent += 1
                if i + 1 < len(toks):
                    time.sleep(delay)
            final = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "scripted",
                     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            self.wfile.write(f"data: {json.dumps(final)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.server.cancelled += 1
        self.close_connection = True
        return None


    def _stream_tool_calls(self, deltas: list[dict[str, Any]]) -> None:
        """Stream tool calls as a server does: one delta item per chunk, then the finish."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        finish = [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]
        choices = [[{"index": 0, "delta": {"tool_calls": [d]}, "finish_reason": None}] for d in deltas]
        for chunk_choices in [*choices, finish]:
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "scripted",
                     "choices": chunk_choices}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _stall(self) -> None:
        """Send nothing more; return when the client closed the connection (counted in
        `cancelled`) or the server is closed."""
        self.server.stalled.set()
        self.close_connection = True
        while not self.server.hung.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            try:
                closed = bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
            except OSError:  # reset by the client
                closed = True
            if closed:
                self.server.cancelled += 1  # the client closed its stream
                return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], script: Script) -> None:
        super().__init__(addr, _Handler)
        self.script = script
        self.hung = threading.Event()
        self.stalled = threading.Event()  # a stall-mode answer has gone quiet
        self.cancelled = 0


class ScriptedServer:
    def __init__(self, script: Script | None = None, port: int = 0) -> None:
        self.script = script or Script()
        self.port = port or free_port()
        self._server = _Server(("127.0.0.1", self.port), self.script)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def cancelled(self) -> int:
        return self._server.cancelled

    @property
    def stalled(self) -> threading.Event:
        return self._server.stalled

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.hung.set()
        if self._thread.is_alive():  # shutdown() waits for serve_forever: never call it unstarted
            self._server.shutdown()
        self._server.server_close()


if __name__ == "__main__":  # run standalone: python tests/scripted_server.py PORT [mode]
    import sys

    srv = ScriptedServer(Script(mode=sys.argv[2] if len(sys.argv) > 2 else "ok"), port=int(sys.argv[1]))
    with srv:
        print(srv.base_url, flush=True)
        threading.Event().wait()
