"""The whole dataflow in file mode with the real models (WAV in, WAV out)."""

from __future__ import annotations

import pytest

from pipeline.demo import run_demo
from pipeline.filemode import BUNDLED_QUESTION, run_file_mode
from pipeline.view import export
from tests.conftest import overlap, transcribe_file, words
from tests.scripted_server import Script, ScriptedServer

pytestmark = pytest.mark.e2e


def echo_answer(messages: list[dict]) -> str:
    question = messages[-1]["content"].strip().rstrip("?.!")
    return f"You asked, {question}. That is a good question, and here is a short answer for you."


def check_run(result, n_turns: int) -> None:
    assert result.returncode == 0, result.log[-3000:]
    assert len(result.turns) == n_turns, result.log[-3000:]


def test_spoken_question_gets_spoken_answer_from_embedded_llm(tmp_path, monkeypatch):
    """What `make demo` runs; it also leaves the conversation as a page (VIEW_EXPORT)."""
    monkeypatch.delenv("VIEW_EXPORT", raising=False)
    result, page = run_demo(BUNDLED_QUESTION, tmp_path)
    check_run(result, 1)
    turn = result.turns[0]
    assert overlap("what is the capital of france", turn["transcript"]) >= 0.8
    assert len(words(turn["answer"])) >= 3
    heard = transcribe_file(result.output_wav)
    assert overlap(turn["answer"], heard) >= 0.6, (turn["answer"], heard)
    for stage in ("asr", "first_token", "tts_first", "voice_to_voice"):
        assert stage in turn["durations"]
    # the saved page has the turn (the LLM's text; the spoken one may differ in markup)
    assert page == tmp_path / "conversation.html"
    shown = export.read(page)["turns"]
    assert [t["transcript"] for t in shown] == [turn["transcript"]], shown
    assert overlap(turn["answer"], shown[0]["answer"]) >= 0.8, (turn["answer"], shown)
    assert shown[0]["status"] == "done" and shown[0]["latency"]["total_s"] > 0, shown


def test_answer_shows_the_question_was_heard_with_any_openai_server(tmp_path, make_speech):
    question = make_speech(["Please tell me about the weather in Berlin tomorrow."])
    with ScriptedServer(Script(answer_fn=echo_answer)) as srv:
        result = run_file_mode(question, workdir=tmp_path, env={"OPENAI_BASE_URL": srv.base_url,
                                                                "OPENAI_API_KEY": "sk-test-abcdef"})
        requests = list(srv.script.requests)
    check_run(result, 1)
    assert requests and requests[0]["_auth"] == "Bearer sk-test-abcdef"
    assert requests[0]["stream"] is True
    heard = transcribe_file(result.output_wav)
    assert {"weather", "berlin"} <= words(heard), heard
    assert "sk-test-abcdef" not in result.log


def test_history_is_kept_across_turns(tmp_path, make_speech):
    question = make_speech(["My name is Peter.", "What is my name?"], gap_s=4.0)
    with ScriptedServer(Script(answer_fn=echo_answer)) as srv:
        result = run_file_mode(question, workdir=tmp_path, env={"OPENAI_BASE_URL": srv.base_url})
        requests = list(srv.script.requests)
    check_run(result, 2)
    second = requests[1]["messages"]
    assert any("peter" in msg["content"].lower() for msg in second if msg["role"] == "user")
    assert any(msg["role"] == "assistant" for msg in second)


def test_llm_failure_is_spoken_as_an_apology(tmp_path):
    with ScriptedServer(Script(mode="http500")) as srv:
        result = run_file_mode(BUNDLED_QUESTION, workdir=tmp_path,
                               env={"OPENAI_BASE_URL": srv.base_url, "LLM_RETRIES": "1"})
    check_run(result, 1)
    heard = transcribe_file(result.output_wav)
    assert overlap("sorry i can't answer right now", heard) >= 0.6, heard
    assert "HTTP 500" in result.log


def test_bad_mic_file_is_refused_with_a_clear_message(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio")
    result = run_file_mode(bad, workdir=tmp_path, timeout_s=120)
    assert result.returncode != 0
    assert "MIC_FILE" in result.log
    # the microphone failed as a connected node: the others finished, none was restarted
    # in vain for want of its outputs (that took 28 s instead of ~6 s)
    assert "exited before initializing dora" not in result.log
    assert "max restarts" not in result.log


def test_speaker_file_in_a_missing_folder_is_refused_with_a_clear_message(tmp_path):
    env = {"SPEAKER_FILE": str(tmp_path / "no-such-folder" / "answer.wav")}
    result = run_file_mode(env=env, workdir=tmp_path, timeout_s=120)
    assert result.returncode != 0
    assert "[speaker] error: Cannot write SPEAKER_FILE" in result.log
    assert "exited before initializing dora" not in result.log
