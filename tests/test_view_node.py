"""The view node (nodes/view.py) driven by dora's MockNode: messages of the contract in, the
view's state and its static export out."""

from __future__ import annotations

import numpy as np

from nodes import view as view_node
from pipeline import messages as m
from pipeline import settings
from pipeline.view import export
from tests.nodekit import RecordingNode, closed

T0 = 1_700_000_000.0
KEY = "sk-secret-key-123"


def msg(input_id: str, message: m.Message) -> dict:
    value, meta = message.to_dora()
    return {"type": "INPUT", "id": input_id, "value": value, "metadata": meta}


def conversation(turn: int = 1000) -> list[dict]:
    times = {"t_speech_end": T0 + 1.0, "t_utterance": T0 + 1.3, "t_transcript": T0 + 1.5,
             "t_llm_request": T0 + 1.51, "t_first_token": T0 + 1.7, "t_first_segment": T0 + 1.8,
             "t_first_audio": T0 + 2.0}
    played = {**times, "t_first_played": T0 + 2.1}
    return [
        msg("mic", m.MicAudio(np.full(320, 0.1, dtype=np.float32), capture_time=T0)),
        msg("speech_started", m.SpeechStarted(turn, T0)),
        msg("utterance", m.Utterance(turn, np.zeros(16, dtype=np.float32), T0, T0 + 1.0, T0 + 1.3)),
        msg("transcript", m.Transcript(turn, f"What is the key {KEY}?", True, times)),
        msg("text", m.LlmText(turn, m.DELTA, 0, "It is ", times=times)),
        msg("text", m.LlmText(turn, m.DELTA, 1, "a secret.", times=times)),
        msg("text", m.LlmText(turn, m.END, 2, reason=m.REASON_STOP, times=times)),
        msg("segment", m.Segment(turn, m.SEGMENT, 0, "It is a secret.", times=times)),
        msg("played", m.Played(turn, m.STARTED, 0, T0 + 2.1, "It is a secret.", times=played)),
        msg("played", m.Played(turn, m.FINISHED, 0, T0 + 3.0, "It is a secret.", times=played)),
        msg("played", m.Played(turn, m.TURN_END, 1, T0 + 3.0, times=played)),
    ]


def run(events: list[dict], tmp_path, **env: str) -> view_node.ViewNode:
    s = settings.load({"VIEW_PORT": "0", "VIEW_EXPORT": str(tmp_path / "page.html"),
                       "OPENAI_API_KEY": KEY, **env})
    node = RecordingNode(events)
    view = view_node.run(node, s)
    assert node.sent == []  # it only listens
    return view


def test_a_conversation_reaches_the_view_and_the_export(tmp_path):
    view = run(conversation(), tmp_path)
    snap = view.hub.snapshot()
    assert snap["state"] == "listening"
    (turn,) = snap["turns"]
    assert turn["transcript"] == "What is the key <hidden>?"
    assert (turn["answer"], turn["status"]) == ("It is a secret.", "done")
    assert turn["spoken_to"] == len("It is a secret.")
    assert abs(turn["latency"]["total_s"] - 1.1) < 1e-6
    assert snap["level"] > 0.09
    page = (tmp_path / "page.html").read_text()
    assert "It is a secret." in page and "What is the key" in page
    assert KEY not in page
    assert "<script src=" not in page and "<link" not in page  # self-contained
    assert export.read(tmp_path / "page.html")["turns"] == snap["turns"]


def test_an_llm_failure_shows_as_a_fault_and_on_its_turn(tmp_path):
    """The llm node's failure (HTTP 500 after its retries): the apology is spoken and the page
    shows the error on the turn and in the fault list, also in the saved page."""
    turn = 7
    times = {"t_speech_end": T0 + 1.0, "t_transcript": T0 + 1.5, "t_llm_error": T0 + 2.5}
    apology = "Sorry, I can't answer right now."
    events = [
        msg("speech_started", m.SpeechStarted(turn, T0)),
        msg("transcript", m.Transcript(turn, "Play some jazz.", True, times)),
        msg("text", m.LlmText(turn, m.DELTA, 0, apology, error="http", times=times)),
        msg("text", m.LlmText(turn, m.END, 1, reason=m.REASON_ERROR, error="http", times=times)),
    ]
    view = run(events, tmp_path)
    assert view.hub.state.state == "error"  # until the apology plays
    snap = export.read(tmp_path / "page.html")
    (shown,) = snap["turns"]
    assert (shown["status"], shown["error"], shown["answer"]) == ("error", "http", apology)
    (fault,) = snap["faults"]
    assert fault["source"] == "llm" and "LLM failed (http) in turn 7" in fault["message"]


def test_view_off_does_nothing(tmp_path):
    view = run(conversation(), tmp_path, VIEW="false")
    assert view.hub.snapshot()["turns"] == []
    assert not (tmp_path / "page.html").exists()


def test_crashed_nodes_show_as_faults(tmp_path):
    events = [{"type": "NODE_RESTARTED", "id": "tts"}, {"type": "NODE_FAILED", "id": "asr"}]
    view = run(events, tmp_path)
    faults = view.hub.snapshot()["faults"]
    assert [(f["source"], f["active"]) for f in faults] == [("tts", False), ("asr", True)]
    assert view.hub.state.state == "error"


def test_a_lost_speaker_shows_as_a_fault_until_it_is_back(tmp_path):
    failed = msg("speaker_fault", m.DeviceFault("failed: the stream stopped", t=10.0))
    view = run([failed], tmp_path)
    faults = view.hub.snapshot()["faults"]
    assert [(f["source"], f["active"]) for f in faults] == [("speaker", True)]
    assert view.hub.state.state == "error"
    back = msg("speaker_fault", m.DeviceFault("is back", active=False, t=11.0))
    view = run([failed, back], tmp_path)
    assert view.hub.state.state != "error"


def test_a_message_that_breaks_the_contract_is_skipped(tmp_path):
    bad = {"type": "INPUT", "id": "transcript", "value": m.text_array("no turn"), "metadata": {}}
    view = run([bad, *conversation()], tmp_path)
    assert [t["transcript"] for t in view.hub.snapshot()["turns"]] == ["What is the key <hidden>?"]


def test_mic_meter_throttles_and_notices_a_silent_device():
    meter = view_node.MicMeter()
    loud = np.full(320, 0.5, dtype=np.float32)
    quiet = np.full(320, 0.01, dtype=np.float32)
    levels = []
    for i in range(7):  # chunks of 20 ms: one level per 100 ms, the loudest chunk's
        levels += meter.feed(loud if i == 3 else quiet, 100.0 + i * 0.02)
    assert [round(e.rms, 3) for e in levels] == [0.01, 0.5]
    assert meter.check(100.5) == []
    faults = meter.check(104.0)
    assert faults[0].source == "microphone" and faults[0].active
    assert meter.check(105.0) == []  # said once
    back = meter.feed(quiet, 106.0)
    assert back[0].active is False
    meter.closed = True  # the end of MIC_FILE is not a fault
    assert meter.check(200.0) == []


def test_the_end_of_the_mic_file_is_not_a_fault(tmp_path):
    view = run([msg("mic", m.MicAudio(np.zeros(320, dtype=np.float32), capture_time=T0)),
                closed("mic")], tmp_path)
    assert view.mic.closed
