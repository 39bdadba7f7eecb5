"""The live view's HTTP server: the page, and its updates pushed as Server-Sent Events.

Standard library only (``ThreadingHTTPServer``): one thread per open page, which is plenty
for the few pages that watch one assistant, and nothing to install. ``GET /events`` sends the
full snapshot first, then the updates (coalesced, see :class:`Hub`) as ``data:`` lines of
JSON; ``EventSource`` in the page reconnects by itself and so gets a fresh snapshot after a reload or a dropped link.

Security: bound to 127.0.0.1 by default. Any other address needs a token (the server refuses
to start without one); when a token is set every request must carry it, as ``?token=`` or
``Authorization: Bearer <token>``, or gets 401. Every text that leaves the server has the
values of secret settings (the API key) replaced, whatever event carried them.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import math
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipeline.view.state import Event, LlmDelta, MicLevel, SegmentSent, ViewState

log = logging.getLogger("view")

KEEPALIVE_S = 15.0
FLUSH_S = 0.1  # coalesced updates (answer text, mic level) at most 10 times a second
COALESCED = (LlmDelta, SegmentSent, MicLevel)  # the frequent events, sent by the flusher
CLIENT_QUEUE = 1000  # updates a slow page may lag behind before it is dropped (it reconnects)
STATIC = {  # path -> (file in pipeline/view/static, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/view.js": ("view.js", "text/javascript; charset=utf-8"),
    "/view.css": ("view.css", "text/css; charset=utf-8"),
}
# Nothing is fetched from anywhere but this server.
CSP = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
_END = object()


class ViewConfigError(ValueError):
    """The view cannot start with these settings (a non-local address without a token)."""


def is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def static_file(name: str) -> bytes:
    return resources.files("pipeline.view").joinpath("static", name).read_bytes()


class Redactor:
    """Replaces the values of secret settings in outgoing text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # longest first, so a secret containing another is hidden whole
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<hidden>")
        return text


class Hub:
    """The ViewState behind a lock, and the queues of the connected pages.

    Pushes little, so that a page costs its browser little: the frequent events (LLM
    deltas, segments, the mic level) are coalesced and sent at most every FLUSH_S, as the
    latest state of each changed turn and the latest level; any other event (a state
    change, a transcript, a sound starting, a fault) is sent at once, after the pending
    changes. With no page open nothing is rendered or encoded at all.
    """

    def __init__(self, state: ViewState | None = None, redact: Callable[[str], str] = str,
                 flush_s: float = FLUSH_S) -> None:
        self.state = state or ViewState()
        self.redact = redact
        self.flush_s = flush_s
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._clients: set[queue.Queue[Any]] = set()
        self._level: dict[str, Any] | None = None  # the newest level not yet pushed
        self._level_step: int | None = None  # meter_step of the last level pushed
        self._last_flush = 0.0
        self._closed = False
        self._flusher: threading.Thread | None = None

    def apply(self, event: Event) -> None:
        with self._lock:
            updates = self.state.update(event)
            if not self._clients:
                self.state.changed_turns(render=False)
                return
            if isinstance(event, COALESCED):
                self._level = updates[-1] if isinstance(event, MicLevel) else self._level
                self._wake.notify()
            else:
                self._flush(updates)

    def tick(self, now: float) -> None:
        with self._lock:
            updates = self.state.tick(now)
            if self._clients:
                self._flush(updates)

    def snapshot(self) -> dict[str, Any]:
        """The snapshot with secrets hidden (for the static export)."""
        return json.loads(self.snapshot_json())

    def snapshot_json(self) -> str:
        with self._lock:
            return self._encode(self.state.snapshot())

    def subscribe(self) -> tuple[str, queue.Queue[Any]]:
        """The snapshot and a queue of the updates after it (nothing lost in between)."""
        q: queue.Queue[Any] = queue.Queue(maxsize=CLIENT_QUEUE)
        with self._lock:
            self._flush([])  # pending changes go to the pages that were there before
            self._clients.add(q)
            if self._flusher is None and not self._closed:
                self._flusher = threading.Thread(target=self._flush_loop, name="view-flush",
                                                 daemon=True)
                self._flusher.start()
            return self._encode(self.state.snapshot()), q

    def unsubscribe(self, q: queue.Queue[Any]) -> None:
        with self._lock:
            self._clients.discard(q)

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify()
            for q in self._clients:
                _put_end(q)
            self._clients.clear()

    def _encode(self, update: dict[str, Any]) -> str:
        return self.redact(json.dumps(update, separators=(",", ":")))

    def _pending(self) -> bool:
        return bool(self.state.dirty) or self._level is not None

    def _flush_loop(self) -> None:
        """Sends the coalesced changes, at most once every flush_s (under the lock)."""
        with self._lock:
            while not self._closed:
                if not self._pending():
                    self._wake.wait()
                    continue
                wait = self._last_flush + self.flush_s - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                self._flush([])

    def _flush(self, updates: list[dict[str, Any]]) -> None:
        """Pushes the pending turns and level, then `updates` (the caller holds the lock)."""
        level, self._level = self._level, None
        if level is not None:
            step = meter_step(level["rms"])
            level = None if step == self._level_step else level
            self._level_step = step
        pending = self.state.changed_turns(render=bool(self._clients))
        self._last_flush = time.monotonic()
        self._publish(pending + ([level] if level else []) + updates)

    def _publish(self, updates: list[dict[str, Any]]) -> None:
        if not updates or not self._clients:
            return
        lines = [self._encode(u) for u in updates]
        for q in list(self._clients):
            try:
                for line in lines:
                    q.put_nowait(line)
            except queue.Full:  # a page that stopped reading: drop it, it reconnects
                self._clients.discard(q)
                _put_end(q)


def meter_step(rms: float) -> int:
    """The page's meter position (-60..0 dBFS) in 1.5 dB steps: a level that would not
    move the meter is not pushed (a quiet room sends almost nothing)."""
    db = 20 * math.log10(rms) if rms > 0 else -100.0
    return round(max(-60.0, min(0.0, db)) / 1.5)


def _put_end(q: queue.Queue[Any]) -> None:
    while True:
        try:
            q.put_nowait(_END)
            return
        except queue.Full:
            with contextlib.suppress(queue.Empty):
                q.get_nowait()


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str = ""

    def check(self) -> None:
        if not is_local(self.host) and not self.token:
            raise ViewConfigError(
                f"VIEW_HOST={self.host} is not a loopback address: set VIEW_TOKEN too "
                "(the page is then opened with ?token=...)")


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        url = urlsplit(self.path)
        if not self._authorised(url.query):
            self._send(401, b"401: a valid token is needed (?token= or Authorization: Bearer)\n",
                       "text/plain; charset=utf-8", {"WWW-Authenticate": "Bearer"})
            return
        if url.path == "/events":
            self._events()
        elif url.path == "/snapshot.json":
            self._send(200, self.server.hub.snapshot_json().encode(), "application/json")
        elif url.path in STATIC:
            name, ctype = STATIC[url.path]
            self._send(200, static_file(name), ctype)
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def _authorised(self, query: str) -> bool:
        token = self.server.config.token
        if not token:
            return True
        given = parse_qs(query).get("token", [""])[0]
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = given or auth[len("Bearer "):].strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self._common_headers(extra)
        self.wfile.write(body)

    def _common_headers(self, extra: dict[str, str] | None = None) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _events(self) -> None:
        hub = self.server.hub
        snapshot, q = hub.subscribe()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Connection", "close")
            self.close_connection = True
            self._common_headers()
            self._write(snapshot)
            while not self.server.closing.is_set():
                try:
                    item = q.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    continue
                if item is _END:
                    return
                self._write(item)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the page went away
        finally:
            hub.unsubscribe(q)

    def _write(self, line: str) -> None:
        self.wfile.write(b"data: " + line.encode() + b"\n\n")
        self.wfile.flush()


class ViewServer(ThreadingHTTPServer):
    """Serves the page and the event stream of one :class:`Hub` (in a background thread)."""

    daemon_threads = True

    def __init__(self, hub: Hub, config: ServerConfig) -> None:
        config.check()
        self.hub = hub
        self.config = config
        self.closing = threading.Event()
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        super().__init__((config.host, config.port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self) -> str:
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/" + ("?token=<VIEW_TOKEN>" if self.config.token else "")

    def start(self) -> ViewServer:
        self._thread = threading.Thread(target=self.serve_forever, name="view-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        self.hub.close()
        self.shutdown()
        self.server_close()
