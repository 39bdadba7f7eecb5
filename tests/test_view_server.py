"""The live view's HTTP server: SSE push, snapshot on connect, the token rule, secrets."""

from __future__ import annotations

import http.client
import json

import pytest

from pipeline.view.server import Hub, Redactor, ServerConfig, ViewConfigError, ViewServer
from pipeline.view.state import LlmDelta, MicLevel, SpeechStarted, Transcript, TurnView

T0 = 1000.0


@pytest.fixture
def served():
    servers = []

    def make(hub: Hub, host: str = "127.0.0.1", token: str = "") -> ViewServer:
        server = ViewServer(hub, ServerConfig(host, 0, token)).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def get(server: ViewServer, path: str, headers: dict | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    return conn.getresponse()


def next_data(resp: http.client.HTTPResponse, kind: str = "") -> dict:
    """The next `data:` event (of type `kind` if given) of an SSE stream (blocks until it comes)."""
    while True:
        line = resp.fp.readline()
        assert line, "the stream ended"
        if line.startswith(b"data: "):
            data = json.loads(line[len(b"data: "):])
            if not kind or data["type"] == kind:
                return data


def test_events_start_with_the_snapshot_then_push_updates(served):
    hub = Hub()
    hub.apply(SpeechStarted(1, T0))
    hub.apply(Transcript(1, "first question", True))
    server = served(hub)
    resp = get(server, "/events")
    assert resp.status == 200
    assert resp.getheader("Content-Type").startswith("text/event-stream")
    snap = next_data(resp)
    assert snap["type"] == "snapshot" and snap["state"] == "thinking"
    assert [t["transcript"] for t in snap["turns"]] == ["first question"]
    hub.apply(LlmDelta(1, "An answer", 0))
    update = next_data(resp, "turn")
    assert update["turn"]["answer"] == "An answer"
    # a second page (a reload) gets everything so far as its snapshot
    again = next_data(get(server, "/events"))
    assert again["turns"][0]["answer"] == "An answer"
    server.stop()
    assert resp.fp.read().strip() == b""  # open streams end with the server


def test_the_page_and_its_files_are_served_with_a_strict_policy(served):
    server = served(Hub())
    resp = get(server, "/")
    body = resp.read().decode()
    assert resp.status == 200 and 'id="state"' in body and "view.js" in body
    assert "default-src 'self'" in resp.getheader("Content-Security-Policy")
    for path in ("/view.js", "/view.css"):
        r = get(server, path)
        assert r.status == 200 and r.read()
    assert get(server, "/../settings.py").status == 404
    assert "http://" not in body and "https://" not in body  # nothing from elsewhere


def test_a_non_local_bind_without_a_token_is_refused():
    with pytest.raises(ViewConfigError, match="VIEW_TOKEN"):
        ViewServer(Hub(), ServerConfig("0.0.0.0", 0, ""))


def test_with_a_token_every_request_needs_it(served):
    server = served(Hub(), host="0.0.0.0", token="letmein")
    for path in ("/", "/events", "/view.js", "/snapshot.json", "/?token=wrong"):
        resp = get(server, path)
        assert resp.status == 401, path
        assert b"letmein" not in resp.read()
    assert get(server, "/", {"Authorization": "Bearer wrong"}).status == 401
    assert get(server, "/?token=letmein").status == 200
    assert get(server, "/snapshot.json", {"Authorization": "Bearer letmein"}).status == 200
    resp = get(server, "/events?token=letmein")
    assert resp.status == 200 and next_data(resp)["type"] == "snapshot"


def test_secret_values_never_leave_the_server(served):
    hub = Hub(redact=Redactor(["sk-abc-123", ""]))
    hub.apply(SpeechStarted(1, T0))
    server = served(hub)
    resp = get(server, "/events")
    next_data(resp)
    hub.apply(Transcript(1, "my key is sk-abc-123", True))
    pushed = next_data(resp, "turn")
    assert pushed["turn"]["transcript"] == "my key is <hidden>"
    snap = get(server, "/snapshot.json").read().decode()
    assert "sk-abc-123" not in snap and "<hidden>" in snap


def test_a_page_that_stops_reading_is_dropped_not_waited_for(monkeypatch):
    monkeypatch.setattr("pipeline.view.server.CLIENT_QUEUE", 3)
    hub = Hub()
    _snapshot, q = hub.subscribe()
    for i in range(10):
        hub.apply(Transcript(1, f"t{i}", False))  # pushed at once, never blocks
    assert hub.clients == 0
    items = [q.get_nowait() for _ in range(q.qsize())]
    assert items[-1] is not None and not isinstance(items[-1], str)  # the end marker


def drain(q) -> list[dict]:
    return [json.loads(q.get_nowait()) for _ in range(q.qsize())]


def test_a_streamed_answer_is_pushed_as_its_latest_text_not_per_delta():
    hub = Hub(flush_s=3600.0)  # the flusher never gets its turn: only the immediate sends
    _snapshot, q = hub.subscribe()
    hub.apply(SpeechStarted(1, T0))
    assert "state" in [u["type"] for u in drain(q)]  # a state change goes at once
    for i in range(50):
        hub.apply(LlmDelta(1, f"w{i} ", i))
    assert drain(q) == []  # deltas wait for the next flush
    hub.apply(Transcript(1, "a question", True))  # not coalesced: sent with what is pending
    turns = [u["turn"] for u in drain(q) if u["type"] == "turn"]
    assert len(turns) == 1
    assert turns[0]["answer"] == "".join(f"w{i} " for i in range(50))
    hub.close()


def test_the_flusher_sends_the_coalesced_answer_by_itself():
    hub = Hub(flush_s=0.05)
    _snapshot, q = hub.subscribe()
    hub.apply(SpeechStarted(1, T0))
    for i in range(5):
        hub.apply(LlmDelta(1, f"w{i} ", i))
    while not (u := json.loads(q.get(timeout=5))).get("turn", {}).get("answer"):
        pass  # the state and the (empty) new turn went at once
    assert u["turn"]["answer"] == "w0 w1 w2 w3 w4 "
    hub.close()


def test_a_level_that_would_not_move_the_meter_is_not_pushed():
    hub = Hub(flush_s=3600.0)
    _snapshot, q = hub.subscribe()
    hub.apply(MicLevel(0.1, T0))
    hub.apply(SpeechStarted(1, T0))  # flushes the pending level
    hub.apply(MicLevel(0.1001, T0 + 0.1))
    hub.apply(Transcript(1, "x", False))
    hub.apply(MicLevel(0.5, T0 + 0.2))
    hub.apply(Transcript(1, "xy", False))
    assert [u["rms"] for u in drain(q) if u["type"] == "level"] == [0.1, 0.5]
    hub.close()


def test_with_no_page_open_nothing_is_rendered(monkeypatch):
    calls = []
    real = TurnView.as_json
    monkeypatch.setattr(TurnView, "as_json", lambda self: calls.append(1) or real(self))
    hub = Hub()
    hub.apply(SpeechStarted(1, T0))
    hub.apply(Transcript(1, "a question", True))
    for i in range(20):
        hub.apply(LlmDelta(1, f"w{i} ", i))
    assert calls == []
    assert hub.snapshot()["turns"][0]["answer"].startswith("w0 w1")
