"""Never stuck, never silent: every LLM fault is spoken as an apology, and the next turn works.

End to end: one dataflow run per fault in file mode (WAV in, WAV out) with two spoken
questions; the scripted server (tests/scripted_server.py) fails the first request(s) and is
healthy afterwards. We listen to the output WAV (Whisper): the apology, then the answer to
the second question; and we read the turn records (METRICS_FILE). Crashes: nodes killed
while the dataflow runs (dora's `restart_policy` must heal them), the embedded llama.cpp
server killed (the llm-server node restarts it).

Timing is only checked against the issue's generous bound (an apology within 20 s of the end
of the question); the measured times are printed (`pytest -s`).

Before the end-to-end runs, fast checks of the client and the llm node: retries inside one
time budget, Retry-After honoured but bounded, a restarted node resynchronising.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline import messages as m
from pipeline.filemode import run_file_mode
from pipeline.llm import LlmClient, LlmConfig, LlmError
from pipeline.models import REPO_ROOT
from pipeline.responder import JournalEntry, TurnJournal
from pipeline.settings import load
from tests.conftest import overlap, transcribe_file, wait_until, words
from tests.nodekit import RecordingNode, ev
from tests.scripted_server import Script, ScriptedServer, free_port
from tests.soak import FileDataflow
from tests.soak import free_port as free_port_in_range

APOLOGY = "Sorry, I can't answer right now."
QUESTIONS = ["What is the capital of France?", "What will the weather be like in Berlin tomorrow?"]
ANSWER = "Berlin will be sunny and warm tomorrow."
SECRET = "sk-test-SECRET-1234567890abcdef"
BOUND_S = 20.0  # the bound for the apology
# short timeouts so that a fault costs seconds, not the defaults' 20 s
FAST = {"LLM_CONNECT_TIMEOUT_S": "1", "LLM_FIRST_TOKEN_TIMEOUT_S": "4", "LLM_TOKEN_TIMEOUT_S": "2"}
GAP_S = 7.0  # silence between the questions: room for a 4 s timeout, the apology and its audio


# -- fast checks: the client ---------------------------------------------------------------------
def client_for(url: str, **kw: Any) -> LlmClient:
    cfg: dict[str, Any] = dict(base_url=url, model="scripted", retries=2, connect_timeout_s=1.0,
                               first_token_timeout_s=4.0, token_timeout_s=2.0)
    cfg.update(kw)
    return LlmClient(LlmConfig(**cfg))


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times[:-1], times[1:], strict=True)]


def collect(client: LlmClient, cancel: threading.Event | None = None) -> str:
    return "".join(client.stream([{"role": "user", "content": "hi"}], cancel or threading.Event()))


def test_retry_after_is_honoured():
    script = Script(plan=["http429", "http429"], retry_after="1")
    with ScriptedServer(script) as srv:
        answer = collect(client_for(srv.base_url))
    assert answer == script.answer
    t = script.times()
    assert len(t) == 3
    assert min(gaps(t)) >= 0.9, t  # waited as the server asked


def test_a_long_retry_after_is_not_waited_for():
    """Retry-After: 30 would overrun the first-token budget: apologise now, do not wait."""
    script = Script(mode="http429", retry_after="30")
    with ScriptedServer(script) as srv:
        started = time.monotonic()
        with pytest.raises(LlmError) as info:
            collect(client_for(srv.base_url))
        took = time.monotonic() - started
    assert info.value.kind == "rate_limit"
    assert "Retry-After" in str(info.value) and "LLM_FIRST_TOKEN_TIMEOUT_S" in str(info.value)
    assert len(script.requests) == 1
    assert took < 2.0


def test_retries_and_their_waits_stay_within_the_first_token_budget():
    """A 500, then a hang: the SDK would give the retry a fresh timeout; ours gets what is left."""
    script = Script(plan=["http500", "hang"])
    with ScriptedServer(script) as srv:
        started = time.monotonic()
        with pytest.raises(LlmError) as info:
            collect(client_for(srv.base_url, first_token_timeout_s=2.0, retries=5))
        took = time.monotonic() - started
    assert info.value.kind == "timeout"
    assert len(script.requests) == 2
    assert took < 2.8, took


def test_500_and_refused_are_retried_with_backoff_then_named():
    script = Script(mode="http500")
    with ScriptedServer(script) as srv, pytest.raises(LlmError) as info:
        collect(client_for(srv.base_url))
    assert info.value.kind == "http" and "HTTP 500" in str(info.value) and "3 attempts" in str(info.value)
    assert len(script.requests) == 3
    started = time.monotonic()
    with pytest.raises(LlmError) as info:
        collect(client_for(f"http://127.0.0.1:{free_port()}/v1"))
    assert info.value.kind == "connection" and "refused" in str(info.value).lower()
    assert 0.7 < time.monotonic() - started < 4.0  # two backoffs (~0.5 s, ~1 s), no more


def test_no_retry_once_a_token_was_yielded():
    script = Script(plan=["cut"])
    with ScriptedServer(script) as srv, pytest.raises(LlmError):
        collect(client_for(srv.base_url))
    assert len(script.requests) == 1  # the user may have heard the first half: never repeat it


def test_cancel_during_a_backoff_returns_at_once():
    script = Script(mode="http429", retry_after="3")
    with ScriptedServer(script) as srv:
        client = client_for(srv.base_url, first_token_timeout_s=10.0)
        cancel = threading.Event()
        threading.Timer(0.3, cancel.set).start()
        started = time.monotonic()
        assert collect(client, cancel) == ""
    assert time.monotonic() - started < 1.5


def test_close_current_only_closes_cancelled_streams():
    """The old stream is stalled (only a close ends it), the new one is streaming: closing
    the cancelled one ends the old and leaves the new to finish."""
    script = Script(plan=["stall"], stall_after=3, answer=" ".join(["word"] * 40), token_delay_s=0.03)
    with ScriptedServer(script) as srv:
        client = client_for(srv.base_url, first_token_timeout_s=60.0, token_timeout_s=60.0)
        old, new = threading.Event(), threading.Event()
        got: dict[str, str] = {}

        def run(name: str, cancel: threading.Event) -> None:
            got[name] = collect(client, cancel)

        threads = {"old": threading.Thread(target=run, args=("old", old), daemon=True),
                   "new": threading.Thread(target=run, args=("new", new), daemon=True)}
        threads["old"].start()
        assert srv.stalled.wait(10)  # the old answer's request was the first: it stalls
        threads["new"].start()
        wait_until(lambda: len(script.requests) == 2, 10, "the new answer's request")
        old.set()
        client.close_current()
        threads["old"].join(10)
        assert not threads["old"].is_alive(), "the cancelled stream was not closed"
        threads["new"].join(10)
    assert got["new"] == script.answer
    assert got["old"] == "word word word"


# -- fast checks: the llm node after a restart --------------------------------------------------
def test_restarted_llm_node_closes_the_open_turn_and_never_replays_it(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    from nodes import llm as llm_node

    journal = TurnJournal.for_dataflow("df-restart-test")
    assert journal is not None
    journal.write(3, is_open=True)  # the previous process died while answering turn 3
    with ScriptedServer(Script(answer=ANSWER)) as srv:
        s = load({"OPENAI_BASE_URL": srv.base_url, "LLM_MODEL": "scripted"})
        node = RecordingNode([
            ev("transcript", m.Transcript(3, "old question, queued before the crash")),
            ev("speech_started", m.SpeechStarted(4, t_speech_start=1.0)),
            ev("transcript", m.Transcript(4, "new question")),
        ], is_restart=True, dataflow_id="df-restart-test")
        llm_node.run(node, s)
        requests = list(srv.script.requests)
    texts = node.messages("text", m.LlmText)
    turn3 = [(x.event, x.text, x.reason, x.error) for x in texts if x.turn_id == 3]
    assert turn3 == [("delta", "… " + APOLOGY, "", "restart"), ("end", "", "error", "restart")]
    assert "".join(x.text for x in texts if x.turn_id == 4 and x.event == "delta") == ANSWER
    assert len(requests) == 1 and requests[0]["messages"][-1]["content"] == "new question"
    assert not journal.path.exists()  # a clean end removes it


def test_restarted_llm_node_finds_the_embedded_server_by_itself(tmp_path, monkeypatch):
    """The llm-server's `ready` went to the previous process: the new one asks the server."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    from nodes import llm as llm_node

    with ScriptedServer(Script(answer=ANSWER), port=free_port_in_range()) as srv:
        s = load({"LLM_SERVER_PORT": str(srv.port)})  # no OPENAI_BASE_URL: the embedded server
        node = RecordingNode([ev("transcript", m.Transcript(1, "a question"))],
                             is_restart=True, dataflow_id="df-probe-test")
        llm_node.run(node, s)
        requests = list(srv.script.requests)
    assert node.messages("ready", m.LlmReady) == [m.LlmReady("embedded")], "the restarted node never became ready"
    assert "".join(x.text for x in node.messages("text", m.LlmText) if x.event == "delta") == ANSWER
    assert requests[0]["max_tokens"] == 1  # warmed up first


def test_journal_notes_only_move_forward(tmp_path):
    journal = TurnJournal(tmp_path / "j.json")
    journal.write(5, is_open=True)
    journal.write(4, is_open=False)  # a cancelled older answer ending late
    assert journal.read() == JournalEntry(5, True)
    journal.write(5, is_open=False)
    assert journal.read() == JournalEntry(5, False)


# -- end to end ----------------------------------------------------------------------------------
def heard_in_order(heard: str, first: str, then: set[str]) -> bool:
    """`first` occurs in `heard` before the last occurrence of any word of `then`."""
    seq = re.findall(r"[a-z0-9']+", heard.lower())
    if first not in seq:
        return False
    later = [i for i, w in enumerate(seq) if w in then]
    return bool(later) and seq.index(first) < max(later)


def report(name: str, rec: dict[str, Any]) -> tuple[float, float]:
    """(first audio after the question, apology decided after the question), printed."""
    times = rec["times"]
    v2v = float(rec["durations"]["voice_to_voice"])
    decided = float(times["t_llm_error"]) - float(times["t_speech_end"])
    print(f"\n[fault {name}] turn {rec['turn_id']}: first audio {v2v:.2f} s after the question,"
          f" apology decided after {decided:.2f} s; said {rec['answer']!r}")
    return v2v, decided


def by_user_turn(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Turn records by the number of the user's turn (1, 2, ...; ids are m.user_turn(n))."""
    assert all(m.is_user_turn(int(t["turn_id"])) for t in records), [t["turn_id"] for t in records]
    return {int(t["turn_id"]) // m.TURN_STRIDE: t for t in records}


def check_apology_then_answer(name: str, result: Any, answer: str = ANSWER) -> dict[str, Any]:
    """The first turn is an apology (within the bound), the second the real answer."""
    assert result.returncode == 0, result.log[-4000:]
    turns = by_user_turn(result.turns)
    assert sorted(turns) == [1, 2], result.log[-4000:]
    first, second = turns[1], turns[2]
    assert APOLOGY in first["answer"], first
    assert not first["interrupted"]
    v2v, decided = report(name, first)
    assert v2v < BOUND_S and decided < BOUND_S
    assert second["answer"].split() == answer.split(), second
    assert "t_llm_error" not in second["times"]
    heard = transcribe_file(result.output_wav)
    assert overlap(APOLOGY, heard) >= 0.6, heard
    assert overlap(answer, heard) >= 0.6, heard
    assert heard_in_order(heard, "sorry", words(answer) - words(APOLOGY)), heard
    return first


@pytest.fixture(scope="module")
def two_questions(make_speech) -> Path:
    return make_speech(QUESTIONS, gap_s=GAP_S)


def run_with(question: Path, tmp_path: Path, script: Script, **env: str):
    with ScriptedServer(script) as srv:
        settings = {"OPENAI_BASE_URL": srv.base_url, "LLM_SERVER_PORT": str(free_port_in_range()),
                    **FAST, **env}
        return run_file_mode(question, env=settings, workdir=tmp_path, timeout_s=240)


SCRIPTED_FAULTS = [
    # (name, per-request plan, extra script fields, env, error kind, requests for turn 1)
    ("http500", ["http500"] * 3, {}, {"LLM_RETRIES": "2"}, "http", 3),
    ("http429", ["http429"] * 3, {"retry_after": "1"}, {"LLM_RETRIES": "2"}, "rate_limit", 3),
    ("http401", ["http401"], {}, {"OPENAI_API_KEY": SECRET}, "auth", 1),
    ("hang", ["hang"], {}, {}, "timeout", 1),
    ("cut", ["cut"], {}, {}, "stream", 1),
    ("malformed", ["malformed"], {}, {}, "protocol", 1),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "plan", "fields", "env", "kind", "n_first"), SCRIPTED_FAULTS,
                         ids=[f[0] for f in SCRIPTED_FAULTS])
def test_llm_fault_is_apologised_for_and_the_next_turn_works(
    tmp_path, two_questions, name, plan, fields, env, kind, n_first
):
    script = Script(answer=ANSWER, plan=plan, **fields)
    started = time.time()
    result = run_with(two_questions, tmp_path, script, **env)
    first = check_apology_then_answer(name, result)
    assert f"LLM failed ({kind})" in result.log, result.log[-4000:]
    assert script.modes_seen() == plan + ["ok"]  # the retries, then one request for turn 2
    assert len(script.requests) == n_first + 1
    if name == "http429":
        t = script.times()
        assert min(gaps(t[:3])) >= 0.9, t  # Retry-After: 1 honoured
    if name == "http401":
        assert "OPENAI_API_KEY" in result.log
        everything = result.log + (tmp_path / "metrics.jsonl").read_text()
        # and dora's own per-node logs of this run (out/<uuid>/ beside dataflow.yml)
        for f in (REPO_ROOT / "out").rglob("*"):
            if f.is_file() and f.stat().st_mtime >= started:
                everything += f.read_text(errors="replace")
        assert SECRET not in everything and SECRET[-8:] not in everything
        assert script.requests[0]["_auth"] == f"Bearer {SECRET}"  # it was used, never shown
    if name in ("cut", "malformed"):
        assert first["answer"].startswith("Berlin")  # the part that arrived was spoken first


@pytest.mark.e2e
def test_connection_refused_then_server_comes_up(tmp_path, two_questions):
    """Nothing listens for the first turn; a server starts on that port before the second."""
    port = free_port_in_range()
    url = f"http://127.0.0.1:{port}/v1"
    env = {"OPENAI_BASE_URL": url, "LLM_SERVER_PORT": str(free_port_in_range()), **FAST}
    script = Script(answer=ANSWER)
    with FileDataflow(two_questions, tmp_path, env) as flow:
        flow.wait_log("LLM failed (connection)", timeout=180)
        with ScriptedServer(script, port=port):
            code = flow.wait(timeout=120)
    result = _as_file_run(flow, code)
    check_apology_then_answer("refused", result)
    assert "refused" in result.log.lower()
    assert len(script.requests) == 1


class _Result:
    def __init__(self, returncode: int, turns: list[dict[str, Any]], output_wav: Path, log: str) -> None:
        self.returncode, self.turns, self.output_wav, self.log = returncode, turns, output_wav, log


def _as_file_run(flow: FileDataflow, code: int | None) -> _Result:
    return _Result(code if code is not None else -1, flow.turns(), flow.output_wav, flow.log())


@pytest.mark.e2e
def test_llm_node_killed_mid_answer_is_restarted_and_resynchronises(tmp_path, make_speech):
    """SIGKILL the llm node while it streams turn 1: dora restarts it; the new process closes
    turn 1 with the apology (the user heard half an answer, then why it stopped), does not
    ask turn 1 again, and answers turn 2."""
    question = make_speech(QUESTIONS, gap_s=9.0)
    long = "Paris is the capital of France, and it is a very large and beautiful old city."
    script = Script(plan=["slow"], slow_token_delay_s=0.6,
                    answer_fn=lambda msgs: long if "france" in msgs[-1]["content"].lower() else ANSWER)
    with ScriptedServer(script) as srv:
        env = {"OPENAI_BASE_URL": srv.base_url, "LLM_SERVER_PORT": str(free_port_in_range()), **FAST,
               "LLM_TOKEN_TIMEOUT_S": "3"}
        with FileDataflow(question, tmp_path, env) as flow:
            # a few tokens are out (0.6 s apart): the answer is under way, far from its end
            flow.wait_until(lambda: script.tokens_sent >= 3, 180, "three tokens of the first answer")
            killed = flow.kill("llm")
            flow.wait_log("restarting node after failure", timeout=30)
            code = flow.wait(timeout=120)
    result = _as_file_run(flow, code)
    assert killed not in flow.pids("llm")
    turns = by_user_turn(result.turns)
    assert sorted(turns) == [1, 2], result.log[-4000:]
    assert turns[1]["answer"].startswith("Paris") and APOLOGY in turns[1]["answer"], turns[1]
    assert turns[2]["answer"].split() == ANSWER.split(), turns[2]
    assert "LLM failed (restart)" in result.log
    assert len(script.requests) == 2  # turn 1 was not asked again after the restart
    assert result.returncode == 0, result.log[-4000:]
    heard = transcribe_file(result.output_wav)
    assert heard_in_order(heard, "sorry", {"berlin", "sunny", "warm", "tomorrow"}), heard


@pytest.mark.e2e
def test_every_restartable_node_heals_after_a_crash(tmp_path, make_speech):
    """One run, six questions: after each answered turn a different node is SIGKILLed; dora's
    restart_policy brings it back and the next question is answered as if nothing happened."""
    victims = ["asr", "tts", "segmenter", "llm", "llm-server"]
    question = make_speech([QUESTIONS[i % 2] for i in range(len(victims) + 1)], gap_s=8.0)
    script = Script(answer=ANSWER)
    with ScriptedServer(script) as srv:
        env = {"OPENAI_BASE_URL": srv.base_url, "LLM_SERVER_PORT": str(free_port_in_range()), **FAST}
        with FileDataflow(question, tmp_path, env) as flow:
            for k, victim in enumerate(victims, start=1):
                flow.wait_turns(k, timeout=180 if k == 1 else 60)
                flow.kill(victim)
                flow.wait_log("restarting node after failure", count=k, timeout=30)
                flow.wait_until(lambda v=victim: flow.pids(v), 30, f"{victim} to be back")
            code = flow.wait(timeout=120)
    result = _as_file_run(flow, code)
    turns = by_user_turn(result.turns)
    assert sorted(turns) == list(range(1, len(victims) + 2)), result.log[-4000:]
    for rec in turns.values():
        assert rec["answer"].split() == ANSWER.split(), rec
    for victim in victims:
        assert re.search(rf"{re.escape(victim)}: daemon restarting node after failure", result.log), victim
    assert result.returncode == 0, result.log[-4000:]


def unread_request_bytes(port: int) -> int:
    """Bytes received on connections to the local `port` that no process has read yet (the
    rx_queue of /proc/net/tcp): a request waiting at a server that is frozen."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == "01" and int(local.split(":")[1], 16) == port:  # 01 = ESTABLISHED
            total += int(queues.split(":")[1], 16)
    return total


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port` (from /proc/net/tcp and tcp6)."""
    import ipaddress

    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(addr_hex)
            # the kernel prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(raw)))
    return found


@pytest.mark.e2e
def test_embedded_server_killed_then_restarted(tmp_path, make_speech):
    """The real llama.cpp server: its process killed while turn 2's request waits for it (apology); the
    llm-server node restarts it (turn 3 answered); then the llm-server node itself killed (dora
    restarts it, its old server dies with it, the new one takes the port: turn 4 answered);
    then the llm node killed (restarted, it finds the server by itself: turn 5 answered).
    The gaps are long: on a busy 2-core machine a freshly started llama.cpp server can take
    several seconds for its first answer, and the next question would cancel it."""
    question = make_speech(["What is the capital of France?", "What color is the sky?",
                            "How many days are there in a week?", "What is two plus two?",
                            "Who wrote Romeo and Juliet?"], gap_s=10.0)
    env = {"LLM_SERVER_PORT": str(free_port_in_range()), "LLM_MAX_TOKENS": "24", "LLM_RETRIES": "0",
           "LLM_FIRST_TOKEN_TIMEOUT_S": "10"}
    port = int(env["LLM_SERVER_PORT"])
    with FileDataflow(question, tmp_path, env) as flow:
        flow.wait_turns(1, timeout=240)
        assert listening_addresses(port) == {"127.0.0.1"}
        # Frozen between the turns, the server cannot answer turn 2 however late the test
        # acts; it is killed once turn 2's request is waiting for it, unread, so that request
        # fails (not one sent before it, and not one the restarted server would answer).
        server_pid = flow.kill("llama-server", signal.SIGSTOP)
        flow.wait_log("turn 2000: speech started", timeout=60)
        flow.wait_until(lambda: unread_request_bytes(port) > 0, 60, "turn 2's request at the frozen server")
        flow.kill("llama-server")
        flow.wait_log("embedded LLM server is back", timeout=60)
        flow.wait_turns(3, timeout=60)
        flow.kill("llm-server")
        flow.wait_log("embedded LLM ready at", count=2, timeout=60)
        flow.wait_turns(4, timeout=60)
        flow.kill("llm")  # restarted, it must find the running server without its `ready`
        flow.wait_log("restarting node after failure", count=2, timeout=30)
        code = flow.wait(timeout=120)
    result = _as_file_run(flow, code)
    assert server_pid not in flow.pids("llama-server")
    turns = by_user_turn(result.turns)
    assert sorted(turns) == [1, 2, 3, 4, 5], result.log[-4000:]
    assert APOLOGY in turns[2]["answer"], turns[2]
    report("embedded server killed", turns[2])
    assert float(turns[2]["durations"]["voice_to_voice"]) < BOUND_S
    for t in (1, 3, 4, 5):
        assert turns[t]["answer"].strip() and "t_llm_error" not in turns[t]["times"], turns[t]
    assert "the embedded LLM server died" in result.log
    assert re.search(r"llm-server: daemon restarting node after failure", result.log)
    assert result.returncode == 0, result.log[-4000:]
    heard = transcribe_file(result.output_wav)
    assert overlap(APOLOGY, heard) >= 0.6, heard


# -- the tts or the segmenter crashes in the middle of an answer ---------------------------------
LONG_ANSWER = ("Paris is the capital of France. It lies on the river Seine, in the north of the country. "
               "The city has many famous museums, and the Louvre is the largest of them. "
               "The Eiffel Tower was built for a world fair. Many people visit the old cathedral. "
               "The food is very good, and the cafes are busy all day. Spring is a lovely time to go there.")
PIPER_RATE = 22050


def wav_seconds(path: Path) -> float:
    """Seconds of audio in the answer WAV so far (the speaker keeps its header valid)."""
    try:
        return max(0, path.stat().st_size - 44) / 2 / PIPER_RATE
    except OSError:
        return 0.0


def long_then_short(msgs: list[dict[str, Any]]) -> str:
    return LONG_ANSWER if "france" in msgs[-1]["content"].lower() else ANSWER


def kill_mid_answer(flow: FileDataflow, victim: str, after_s: float = 1.5) -> tuple[float, float]:
    """Once `after_s` of the first answer is in the WAV, SIGKILL `victim`; wait for dora to
    restart it. Returns (seconds spoken before the kill, seconds from the kill to the restart)."""
    flow.wait_until(lambda: wav_seconds(flow.output_wav) >= after_s, 180, f"{after_s} s of the answer")
    spoken = wav_seconds(flow.output_wav)
    killed_at = time.monotonic()
    flow.kill(victim)
    flow.wait_log("restarting node after failure", timeout=30)
    flow.wait_until(lambda: flow.pids(victim), 30, f"{victim} to be back")
    return spoken, time.monotonic() - killed_at


@pytest.mark.e2e
def test_tts_killed_mid_answer_the_rest_of_the_answer_is_spoken(tmp_path, make_speech):
    """SIGKILL the tts node while it synthesizes a long answer: the segments it had are lost
    with it; the segmenter sends them again to the restarted tts, the speaker plays each
    segment once, the whole answer is heard and the next question is answered."""
    question = make_speech(QUESTIONS, gap_s=12.0)
    script = Script(answer_fn=long_then_short)
    with ScriptedServer(script) as srv:
        # the whole long answer (no LLM_MAX_SENTENCES cut): segments to lose and resend
        env = {"OPENAI_BASE_URL": srv.base_url, "LLM_SERVER_PORT": str(free_port_in_range()),
               "LLM_MAX_SENTENCES": "0", **FAST}
        with FileDataflow(question, tmp_path, env) as flow:
            spoken, back = kill_mid_answer(flow, "tts")
            code = flow.wait(timeout=120)
    result = _as_file_run(flow, code)
    total = float(result.turns[0]["durations"].get("answer_total", 0)) if result.turns else 0.0
    print(f"\n[tts killed] after {spoken:.1f} s of the answer; its process restarted after {back:.1f} s; answer took {total:.1f} s")
    turns = by_user_turn(result.turns)
    assert sorted(turns) == [1, 2], result.log[-4000:]
    assert turns[1]["answer"].split() == LONG_ANSWER.split(), turns[1]  # all of it, each segment once
    assert not turns[1]["interrupted"]
    assert turns[2]["answer"].split() == ANSWER.split(), turns[2]
    assert "the tts node was restarted; sending it again" in result.log, result.log[-4000:]
    assert result.returncode == 0, result.log[-4000:]
    assert wav_seconds(result.output_wav) > spoken + 10  # most of the answer came after the crash
    heard = transcribe_file(result.output_wav)
    assert overlap("The food is very good, and the cafes are busy all day.", heard) >= 0.6, heard
    assert heard_in_order(heard, "spring", {"berlin", "sunny", "warm", "tomorrow"}), heard


@pytest.mark.e2e
def test_segmenter_killed_mid_answer_apologises_and_the_next_turn_works(tmp_path, make_speech):
    """SIGKILL the segmenter while the LLM still streams a long answer: the text sent to it
    while it was down is lost, so the restarted segmenter (its journal) closes the turn with
    the apology after what had been said; the rest of that answer is never spoken, the next
    question is answered normally."""
    question = make_speech(QUESTIONS, gap_s=10.0)
    script = Script(plan=["slow"], slow_token_delay_s=0.25, answer_fn=long_then_short)
    with ScriptedServer(script) as srv:
        env = {"OPENAI_BASE_URL": srv.base_url, "LLM_SERVER_PORT": str(free_port_in_range()), **FAST,
               "LLM_TOKEN_TIMEOUT_S": "3"}
        with FileDataflow(question, tmp_path, env) as flow:
            spoken, back = kill_mid_answer(flow, "segmenter", after_s=1.0)
            code = flow.wait(timeout=120)
    result = _as_file_run(flow, code)
    print(f"\n[segmenter killed] after {spoken:.1f} s of the answer; its process restarted after {back:.1f} s")
    turns = by_user_turn(result.turns)
    assert sorted(turns) == [1, 2], result.log[-4000:]
    first = turns[1]["answer"]
    assert first.startswith("Paris is the capital of France.") and first.endswith(APOLOGY), turns[1]
    assert "Spring" not in first  # the rest of the answer is not spoken after the apology
    assert turns[2]["answer"].split() == ANSWER.split(), turns[2]
    assert "the segmenter was restarted in the middle of the answer" in result.log, result.log[-4000:]
    assert result.returncode == 0, result.log[-4000:]
    heard = transcribe_file(result.output_wav)
    assert heard_in_order(heard, "sorry", {"berlin", "sunny", "warm", "tomorrow"}), heard
