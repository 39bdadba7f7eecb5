"""The streaming LLM client and the llm node's logic against a scripted server."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline import messages as m
from pipeline.llm import Conversation, LlmClient, LlmConfig, LlmError
from pipeline.responder import Responder
from pipeline.settings import load
from tests.conftest import wait_until
from tests.scripted_server import Script, ScriptedServer, free_port


def client_for(url: str, **kw) -> LlmClient:
    cfg = dict(base_url=url, model="scripted", retries=0, connect_timeout_s=1.0, hold_after_s=0.0,
               first_token_timeout_s=2.0, token_timeout_s=1.0)
    cfg.update(kw)
    return LlmClient(LlmConfig(**cfg))


def collect(client: LlmClient, cancel: threading.Event | None = None) -> list[str]:
    return list(client.stream([{"role": "user", "content": "hi"}], cancel or threading.Event()))


def test_deltas_arrive_one_by_one_before_the_answer_ends():
    script = Script(token_delay_s=0.05)
    with ScriptedServer(script) as srv:
        client = client_for(srv.base_url)
        arrivals = []
        started = time.monotonic()
        deltas = []
        for d in client.stream([{"role": "user", "content": "hi"}], threading.Event()):
            arrivals.append(time.monotonic() - started)
            deltas.append(d)
    assert "".join(deltas) == script.answer
    assert len(deltas) == len(script.answer.split())
    # the first delta came long before the last one: nothing waited for the end
    assert arrivals[-1] - arrivals[0] > 0.3


def test_buffered_mode_gives_the_whole_answer_at_once():
    with ScriptedServer() as srv:
        deltas = collect(client_for(srv.base_url, streaming=False))
    assert deltas == [Script().answer]


def test_cancel_closes_the_http_stream():
    """A server that goes quiet mid-answer: setting the flag alone cannot end the stream (the
    reader is blocked in a read, and no token comes to notice the flag); close_current must
    close the connection, which ends the stream and lets the server stop generating."""
    script = Script(mode="stall", stall_after=3)
    with ScriptedServer(script) as srv:
        # timeouts far beyond the waits below: only close_current can end the stall in time
        client = client_for(srv.base_url, first_token_timeout_s=60.0, token_timeout_s=60.0)
        cancel = threading.Event()
        got: list[str] = []
        ended = threading.Event()

        def consume() -> None:
            for d in client.stream([{"role": "user", "content": "hi"}], cancel):
                got.append(d)
            ended.set()

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        assert srv.stalled.wait(10), "the server never reached its stall"
        wait_until(lambda: len(got) == 3, 10, "the three tokens before the stall")
        assert not ended.is_set()  # control: the stall holds the stream open
        cancel.set()
        client.close_current()
        assert ended.wait(10), "the stream did not end after close_current"
        wait_until(lambda: srv.cancelled == 1, 10, "the server to see the connection closed")
        reader.join(10)
    assert "".join(got) == " ".join(script.answer.split()[:3])  # nothing after the cancel


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("http500", "http"), ("http429", "rate_limit"), ("http401", "auth"), ("hang", "timeout"),
     ("cut", "stream"), ("malformed", "protocol")],
)
def test_faults_become_named_errors(mode, kind):
    with ScriptedServer(Script(mode=mode)) as srv:
        client = client_for(srv.base_url, api_key="sk-secret-key-123456")
        with pytest.raises(LlmError) as info:
            collect(client)
    assert info.value.kind == kind or (mode == "cut" and info.value.kind in ("stream", "protocol", "connection"))
    assert "sk-secret-key-123456" not in str(info.value)


def test_connection_refused_is_named():
    client = client_for(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(LlmError) as info:
        collect(client)
    assert info.value.kind in ("connection", "timeout")


def test_retries_a_500_before_anything_was_spoken():
    script = Script(mode="http500", fail_times=1)
    with ScriptedServer(script) as srv:
        deltas = collect(client_for(srv.base_url, retries=2))
    assert "".join(deltas) == script.answer
    assert len(script.requests) == 2


def test_stalled_stream_times_out_between_tokens():
    script = Script(token_delay_s=3.0)
    with ScriptedServer(script) as srv:
        client = client_for(srv.base_url, token_timeout_s=0.5, first_token_timeout_s=2.0)
        started = time.monotonic()
        with pytest.raises(LlmError) as info:
            collect(client)
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 3.0


def test_the_watchdog_ends_a_stream_gone_quiet_before_the_read_timeout():
    """LLM_TOKEN_TIMEOUT_S is the watchdog's, not httpx's: with a read timeout (the first-token
    budget) far away, a server gone quiet after three tokens still becomes a timeout error."""
    script = Script(mode="stall", stall_after=3)
    with ScriptedServer(script) as srv:
        client = client_for(srv.base_url, token_timeout_s=0.3, first_token_timeout_s=60.0)
        failed: list[LlmError] = []

        def consume() -> None:
            try:
                collect(client)
            except LlmError as err:
                failed.append(err)

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        reader.join(10)  # far below the 60 s read timeout
        assert not reader.is_alive(), "the stalled stream was not ended by the watchdog"
        wait_until(lambda: srv.cancelled == 1, 10, "the server to see the connection closed")
    assert [e.kind for e in failed] == ["timeout"]
    assert "after 3 tokens" in str(failed[0])


def test_default_model_is_asked_from_the_server():
    with ScriptedServer() as srv:
        client = client_for(srv.base_url, model="")
        assert client.model == "scripted"


# -- the responder (llm node logic) -------------------------------------------------------

class Sink:
    def __init__(self) -> None:
        self.items: list[m.LlmText] = []
        self.ended = threading.Event()

    def __call__(self, msg: m.LlmText) -> None:
        self.items.append(msg)
        if msg.event == m.END:
            self.ended.set()

    def text(self, turn: int) -> str:
        return "".join(x.text for x in self.items if x.event == m.DELTA and x.turn_id == turn)


def transcript(turn: int, text: str, **times: float) -> m.Transcript:
    return m.Transcript(turn, text, times=times)


def played(turn: int, event: str, text: str) -> m.Played:
    return m.Played(turn, event, 0, t=0.0, text=text)


def responder(url: str, sink: Sink, **kw) -> Responder:
    conv = Conversation("be brief", max_turns=kw.pop("max_turns", 6))
    return Responder(client_for(url, **kw), conv, "Sorry, I can't answer right now.", sink)


def test_responder_streams_deltas_with_turn_and_timestamps():
    sink = Sink()
    with ScriptedServer() as srv:
        r = responder(srv.base_url, sink)
        r.on_speech_started(1)
        r.on_transcript(transcript(1, "What is the capital of France?", t_speech_end=1.0))
        assert sink.ended.wait(5)
    deltas = [x for x in sink.items if x.event == m.DELTA]
    assert [d.index for d in deltas] == list(range(len(deltas)))
    assert all(d.turn_id == 1 and d.times["t_speech_end"] == 1.0 and "t_first_token" in d.times for d in deltas)
    assert "t_llm_done" in sink.items[-1].times and "t_llm_done" not in deltas[-1].times
    assert sink.items[-1].reason == "stop"
    assert sink.text(1) == Script().answer


def test_responder_speaks_an_apology_on_failure_and_recovers():
    sink = Sink()
    script = Script(mode="http500")
    with ScriptedServer(script) as srv:
        r = responder(srv.base_url, sink)
        r.on_transcript(transcript(1, "hello?"))
        assert sink.ended.wait(5)
        assert sink.text(1) == "Sorry, I can't answer right now."
        assert sink.items[-1].error == "http"
        script.mode = "ok"
        sink.ended.clear()
        r.on_transcript(transcript(2, "hello again"))
        assert sink.ended.wait(5)
    assert sink.text(2) == script.answer


def test_new_turn_cancels_the_running_answer():
    """The server goes quiet after five tokens (timeouts far away): only the responder's
    cancel, which closes the stream, ends turn 1, and nothing of it follows its END."""
    sink = Sink()
    script = Script(mode="stall", stall_after=5)
    with ScriptedServer(script) as srv:
        r = responder(srv.base_url, sink, first_token_timeout_s=60.0, token_timeout_s=60.0)
        r.on_transcript(transcript(1, "tell me a long story"))
        assert srv.stalled.wait(10)
        wait_until(lambda: len(sink.items) == 5, 10, "the five deltas before the stall")
        assert not sink.ended.is_set()  # control: the stall holds turn 1 open
        r.on_speech_started(2)
        assert sink.ended.wait(10), "turn 1 did not end when turn 2 started"
        wait_until(r.idle, 10, "the answer's worker to end")
        wait_until(lambda: srv.cancelled == 1, 10, "the server to see the stream closed")
    assert [x.event for x in sink.items] == [m.DELTA] * 5 + [m.END]
    assert sink.items[-1].reason == "cancelled"


def test_history_keeps_what_was_spoken_of_an_interrupted_answer():
    sink = Sink()
    script = Script(answer="First part, second part. Third part that was never heard.")
    with ScriptedServer(script) as srv:
        r = responder(srv.base_url, sink)
        r.on_transcript(transcript(1, "question one"))
        assert sink.ended.wait(5)
        r.on_played(played(1, m.FINISHED, "First part,"))  # the user interrupted after this
        sink.ended.clear()
        r.on_speech_started(2)
        r.on_transcript(transcript(2, "question two"))
        assert sink.ended.wait(5)
        r.on_played(played(2, m.FINISHED, script.answer))
        r.on_played(played(2, m.TURN_END, ""))
        sink.ended.clear()
        r.on_transcript(transcript(3, "question three"))
        assert sink.ended.wait(5)
    sent = script.requests[-1]["messages"]
    assert sent[1] == {"role": "user", "content": "question one"}
    assert "First part," in sent[2]["content"] and "interrupted" in sent[2]["content"]
    assert "never heard" not in sent[2]["content"]
    assert sent[4]["content"] == script.answer  # completed answer kept whole
    assert sent[-1] == {"role": "user", "content": "question three"}


def test_history_is_bounded():
    conv = Conversation("sys", max_turns=2)
    for i in range(5):
        conv.record(f"q{i}", f"a{i}", cut_off=False)
        assert len(conv.exchanges) <= 2
    msgs = conv.messages("now")
    assert [x["content"] for x in msgs] == ["sys", "q4", "a4", "now"]


def test_history_is_trimmed_in_blocks_so_the_servers_prompt_cache_keeps_matching():
    """Each request must extend the previous one (same prefix) except once per block."""
    conv = Conversation("sys", max_turns=6)
    prefix_kept = []
    previous = conv.messages("q0")
    for i in range(12):
        conv.record(f"q{i}", f"a{i}", cut_off=False)
        now = conv.messages(f"q{i + 1}")
        prefix_kept.append(now[: len(previous)] == previous)
        previous = now
    assert prefix_kept.count(False) == 2  # 12 turns, blocks of 3: two cache misses, not 6
    assert 3 <= len(conv.exchanges) <= 6


@pytest.mark.parametrize("embedded", [True, False])
def test_after_a_trim_the_embedded_server_reads_the_new_history_before_the_user_speaks(embedded):
    """A heard answer goes into the history at its turn end; when that trims the history, the
    embedded server is asked (1 token) to read the kept history at once, so the next turn's
    request finds it cached instead of re-reading it before its first token."""
    sink = Sink()
    script = Script(answer="Fine.")
    with ScriptedServer(script) as srv:
        r = responder(srv.base_url, sink, max_turns=2, embedded=embedded)
        for turn in (1, 2, 3):
            sink.ended.clear()
            r.on_transcript(transcript(turn, f"q{turn}"))
            assert sink.ended.wait(5)
            r.on_played(played(turn, m.FINISHED, "Fine."))
            r.on_played(played(turn, m.TURN_END, ""))
        # every prefill the turn ends started has been answered (there is none when remote)
        wait_until(lambda: not [t for t in threading.enumerate() if t.name == "prefill"], 10,
                   "the prefill requests to end")
        before_turn_4 = list(script.requests)
        sink.ended.clear()
        r.on_transcript(transcript(4, "q4"))
        assert sink.ended.wait(5)
    answers = [req for req in before_turn_4 if req.get("max_tokens") != 1]
    prefills = [req for req in before_turn_4 if req.get("max_tokens") == 1]
    assert len(answers) == 3
    if not embedded:
        assert prefills == []  # a remote server would bill it
        return
    # turn 3 made the history longer than 2 exchanges: one prefill of what was kept
    assert len(prefills) == 1
    kept = prefills[0]["messages"]
    assert [x["content"] for x in kept] == ["be brief", "q3", "Fine."]
    assert script.requests[-1]["messages"][: len(kept)] == kept  # turn 4 starts with it


def test_empty_transcript_never_reaches_the_llm():
    sink = Sink()
    with ScriptedServer() as srv:
        r = responder(srv.base_url, sink)
        r.on_transcript(transcript(1, "   "))
        assert r.turns == {} and r.idle()  # no answer was started for it
        # control: the same responder does ask the server for a transcript with words
        r.on_transcript(transcript(2, "hello"))
        assert sink.ended.wait(5)
        asked = [req["messages"][-1]["content"] for req in srv.script.requests]
    assert asked == ["hello"]
    assert {x.turn_id for x in sink.items} == {2}


def test_embedded_server_generates_on_one_thread_and_reads_prompts_on_two():
    from pipeline.llm_server import EmbeddedServer
    from pipeline.settings import load

    cmd = EmbeddedServer.from_settings(load({})).command()
    assert cmd[cmd.index("--n_threads") + 1] == "1"
    assert cmd[cmd.index("--n_threads_batch") + 1] == "2"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--logits_all") + 1] == "false"  # logits of every prompt token: +280 MB
    assert cmd[cmd.index("--n_ubatch") + 1] == "128"  # compute buffers: -19 MB, no slower
    cmd = EmbeddedServer.from_settings(load({"LLM_SERVER_BATCH_THREADS": "4"})).command()
    assert cmd[cmd.index("--n_threads_batch") + 1] == "4"


def test_a_server_slow_to_answer_gets_the_holding_phrase_once_then_the_answer():
    """No first token 0.3 s after the end of the question: "One moment." once, then the
    answer as usual; a fast server gets no phrase (the control)."""
    for delay, expected in ((1.0, "One moment. "), (0.0, "")):
        sink = Sink()
        with ScriptedServer(Script(first_token_delay_s=delay, token_delay_s=0.0)) as srv:
            r = Responder(client_for(srv.base_url, hold_after_s=0.3, hold_phrase="One moment."),
                          Conversation("be brief"), "Sorry.", sink)
            r.on_transcript(transcript(1, "hello?", t_speech_end=m.now()))
            assert sink.ended.wait(10)
            answer = srv.script.answer
        assert sink.text(1) == expected + answer
        assert [x.index for x in sink.items] == list(range(len(sink.items)))
        assert sink.items[-1].reason == m.REASON_STOP


def test_a_hung_server_gets_the_holding_phrase_then_the_apology():
    sink = Sink()
    with ScriptedServer(Script(mode="hang")) as srv:
        r = Responder(client_for(srv.base_url, hold_after_s=0.2, hold_phrase="One moment.",
                                 first_token_timeout_s=1.0), Conversation("be brief"), "Sorry.", sink)
        r.on_transcript(transcript(1, "hello?", t_speech_end=m.now()))
        assert sink.ended.wait(10)
    assert sink.text(1) == "One moment. Sorry."
    assert sink.items[-1].reason == m.REASON_ERROR


def test_history_goes_with_follow_ups_only():
    conv = Conversation("be brief", history="follow-ups")
    conv.record("What is a good dinner?", "Pasta with lemon butter.", False)
    for q in ("How can I sleep better?", "What is the capital of France?", "Who wrote Hamlet?"):
        assert [x["content"] for x in conv.messages(q)] == ["be brief", q]  # a new topic
    for q in ("And what about breakfast?", "How long does it take to cook?", "What is my name?",
              "What about Spain?", "Why?", "What did I just ask?"):
        assert "Pasta with lemon butter." in [x["content"] for x in conv.messages(q)]
    assert len(Conversation("be brief", history="all", exchanges=list(conv.exchanges))
               .messages("Who wrote Hamlet?")) == 4  # control: `all` keeps it


def test_the_node_conversation_follows_the_history_settings():
    """LLM_HISTORY=follow-ups by default: with the whole history the 135M model repeated one
    answer over several new questions of the second held-out set (docs/answers.md)."""
    conv = Conversation.from_settings(load({}))
    conv.record("What is the capital of France?", "The capital of France is Paris.", False)
    assert [x["content"] for x in conv.messages("Who wrote Hamlet?")][1:] == ["Who wrote Hamlet?"]
    assert "The capital of France is Paris." in [x["content"] for x in conv.messages("And Spain?")]
    whole = Conversation.from_settings(load({"LLM_HISTORY": "all", "LLM_HISTORY_TURNS": "3"}))
    whole.exchanges = list(conv.exchanges)
    assert len(whole.messages("Who wrote Hamlet?")) == 4 and whole.max_turns == 3
