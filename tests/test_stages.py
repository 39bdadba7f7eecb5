"""The nodes' processors (pipeline/stages/) driven directly: messages in, messages out."""

from __future__ import annotations

import threading

import numpy as np

from pipeline import messages as m
from pipeline.tts import SpeechChunk

ONE, TWO = m.user_turn(1), m.user_turn(2)


class ScriptedVoice:
    """A synthesizer that says each word as one chunk of 100 samples (none for "...")."""

    sample_rate = 16000

    def __init__(self) -> None:
        self.awaited: list[bool] = []

    def stream(self, text, awaited=True):
        self.awaited.append(awaited)
        words = [w for w in text.split() if w.strip(".")]
        for i, _w in enumerate(words):
            yield SpeechChunk(np.full(100, 0.1, np.float32), i == len(words) - 1)


def test_tts_stage_streams_chunks_drops_stale_turns_and_ends_the_answer():
    from pipeline.stages.tts import TtsStage

    voice = ScriptedVoice()
    stage = TtsStage(voice)
    assert stage.start() == [m.TtsReady(restart=False)]
    hello = list(stage.handle(m.Segment(ONE, m.SEGMENT, 0, "Hello there", times={"t_llm_done": 3.0})))
    assert [(a.chunk_index, a.end_of_segment, a.samples.size) for a in hello] == [(0, False, 100), (1, True, 100)]
    assert hello[1].times["tts_audio_s"] == 200 / 16000 and "tts_s" not in hello[0].times
    assert "t_first_audio" in hello[0].times and all(a.times["t_llm_done"] == 3.0 for a in hello)
    silent = list(stage.handle(m.Segment(ONE, m.SEGMENT, 1, "...")))
    assert [(a.segment_index, a.samples.size, a.end_of_segment) for a in silent] == [(1, 0, True)]
    assert voice.awaited == [True, False]  # only an answer's first segment is awaited
    assert list(stage.handle(m.SpeechStarted(TWO, t_speech_start=5.0))) == []
    assert list(stage.handle(m.Segment(ONE, m.SEGMENT, 2, "Stale words"))) == []
    end = list(stage.handle(m.Segment(TWO, m.END, 0)))
    assert [(a.turn_id, a.event, a.samples.size) for a in end] == [(TWO, m.END, 0)]
    assert "t_tts_done" in end[0].times


def test_a_restarted_tts_stage_says_so_when_ready():
    from pipeline.stages.tts import TtsStage

    assert TtsStage(ScriptedVoice(), restarted=True).start() == [m.TtsReady(restart=True)]


class Collected:
    """An emit function that records what a stage sends from its threads."""

    def __init__(self) -> None:
        self.items: list[m.Message] = []
        self.changed = threading.Condition()

    def __call__(self, msg: m.Message) -> None:
        with self.changed:
            self.items.append(msg)
            self.changed.notify_all()

    def wait_for(self, what, timeout: float = 10.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: what(self.items), timeout)


def llm_stage(url: str, emit: Collected, embedded: bool):
    from pipeline.llm import Conversation, LlmClient, LlmConfig
    from pipeline.stages.llm import LlmStage

    client = LlmClient(LlmConfig(base_url=url, model="scripted", retries=0, embedded=embedded))
    return LlmStage(client, Conversation("be brief"), "Sorry.", emit)


def test_llm_stage_is_ready_after_the_embedded_servers_ready_and_a_warm_up():
    from tests.scripted_server import Script, ScriptedServer

    emit = Collected()
    script = Script(answer="Paris.")
    with ScriptedServer(script) as srv:
        stage = llm_stage(srv.base_url, emit, embedded=True)
        stage.start()
        assert emit.items == [] and not stage.ready.is_set()  # waits for the llm-server
        stage.handle(m.ServerReady(srv.base_url))
        assert emit.wait_for(lambda items: items == [m.LlmReady("embedded")])
        assert [r["max_tokens"] for r in script.requests] == [1]  # warmed up before ready
        stage.handle(m.Transcript(ONE, "Where is Paris?"))
        assert emit.wait_for(lambda items: getattr(items[-1], "event", "") == m.END)
        stage.handle(m.ServerReady(srv.base_url))  # the server was restarted: warmed up again
        for worker in [t for t in threading.enumerate() if t.name == "warm-up"]:
            worker.join(10)
        assert len(script.requests) == 3
        assert script.requests[-1]["max_tokens"] == 1
        stage.finish()
    answer = [x for x in emit.items if isinstance(x, m.LlmText)]
    assert "".join(x.text for x in answer) == "Paris." and answer[-1].reason == m.REASON_STOP
    assert emit.items.count(m.LlmReady("embedded")) == 1


def test_llm_stage_with_an_external_server_is_ready_at_once_and_ignores_server_ready():
    from tests.scripted_server import ScriptedServer

    emit = Collected()
    with ScriptedServer() as srv:
        stage = llm_stage(srv.base_url, emit, embedded=False)
        stage.start()
        assert emit.items == [m.LlmReady(srv.base_url)]
        stage.handle(m.ServerReady(srv.base_url, embedded=False))
        stage.finish()
        assert srv.script.requests == []  # no warm-up of somebody else's server


def _heard(text: str):
    from pipeline.asr import Transcript

    return Transcript(text=text, audio_s=1.0, elapsed_s=0.1)


def test_asr_stage_drops_stale_turns_echo_and_silence_and_reuses_the_tentative_transcript():
    from pipeline.asr import SpeculativeAsr
    from pipeline.stages.asr import AsrStage

    said = iter(["What time is it", "Paris is lovely", "", "Stop"])
    calls: list[int] = []

    def transcribe(audio):
        calls.append(audio.size)
        return _heard(next(said))

    stage = AsrStage(SpeculativeAsr(transcribe))
    audio = np.zeros(16000, np.float32)

    def utt(turn, final=True, same=False, start=1.0, end=2.0, samples=audio, rate=m.ASR_RATE):
        return m.Utterance(turn, samples, start, end, end + 0.1, final, same, rate)

    tentative = stage.handle(utt(ONE, final=False))
    final = stage.handle(utt(ONE, same=True))
    assert [(t.text, t.final) for t in tentative + final] == [("What time is it", False), ("What time is it", True)]
    assert len(calls) == 1 and final[0].times["t_speech_end"] == 2.0  # the tentative's, reused
    # the assistant says "Paris is lovely" from t=10 to 12; heard back at 10.5-11.5: echo
    stage.handle(m.Played(ONE, m.STARTED, 0, t=10.0, text="Paris is lovely."))
    stage.handle(m.Played(ONE, m.FINISHED, 0, t=12.0, text="Paris is lovely."))
    assert stage.handle(utt(TWO, start=10.5, end=11.5)) == []
    assert stage.handle(utt(TWO + 1000, samples=np.zeros(8000, np.float32), rate=8000)) == []  # silence
    assert calls[-1] == 16000  # resampled to 16 kHz first
    stage.handle(m.SpeechStarted(TWO + 2000, t_speech_start=20.0))
    assert stage.handle(utt(TWO + 1000)) == []  # stale: not even transcribed
    assert len(calls) == 3
    assert [t.text for t in stage.handle(utt(TWO + 2000, start=11.0, end=11.4))] == ["Stop"]  # the user


class FakeServer:
    """A server process the test kills and lets come up again."""

    base_url = "http://127.0.0.1:1/v1"

    def __init__(self) -> None:
        self.up, self.answers, self.starts = True, True, 0

    def healthy(self):
        return self.up and self.answers

    def alive(self):
        return self.up

    def returncode(self):
        return None if self.up else -9

    def log_tail(self):
        return ""

    def start(self, port_wait_s=0.0):
        self.starts += 1
        self.up, self.answers = True, False  # loading its model



def ready(sent: list[m.Message]) -> list[m.Message]:
    """What a tick of the llm-server stage said besides its beat (`alive`, every tick)."""
    assert isinstance(sent[0], m.ServerAlive)
    return sent[1:]


def test_llm_server_stage_restarts_a_dead_server_and_says_ready_when_it_answers():
    from pipeline.runtime import CLOSED, STOP, Control, Tick
    from pipeline.stages.llm_server import LlmServerStage, Supervisor, ends_the_node

    server = FakeServer()
    stage = LlmServerStage(server.base_url, Supervisor(server, start_timeout_s=60.0))
    assert stage.start() == [m.ServerReady(server.base_url, embedded=True)]
    tick = Tick("tick")
    assert ready(stage.handle(tick)) == [] and server.starts == 0  # alive: nothing to do
    server.up = False  # killed
    assert ready(stage.handle(tick)) == [] and server.starts == 1
    assert ready(stage.handle(tick)) == []  # still loading
    server.answers = True
    assert ready(stage.handle(tick)) == [m.ServerReady(server.base_url, embedded=True)]
    assert ready(stage.handle(tick)) == [] and server.starts == 1
    assert ends_the_node(Control(STOP)) and ends_the_node(Control(CLOSED, "llm"))
    assert not ends_the_node(Control(CLOSED, "tick")) and not ends_the_node(tick)


def test_llm_server_stage_of_an_external_server_only_says_where_it_is():
    from pipeline.runtime import Tick
    from pipeline.stages.llm_server import LlmServerStage

    stage = LlmServerStage("http://example.test/v1")
    assert stage.start() == [m.ServerReady("http://example.test/v1", embedded=False)]
    assert ready(stage.handle(Tick("tick"))) == []


def test_microphone_stage_plays_a_file_only_after_ready_then_ends(tmp_path):
    from pipeline.audio import write_wav
    from pipeline.audio_io import MicFile
    from pipeline.runtime import STOP, Control, Tick
    from pipeline.stages.microphone import MicrophoneStage

    path = tmp_path / "q.wav"
    write_wav(path, np.full(8000, 0.1, dtype=np.float32), 16000)
    sent = Collected()
    stage = MicrophoneStage(MicFile(path, realtime=False, tail_s=0.0), sent, wait_for_ready=True)
    stage.start()
    stage.handle(Tick("tick"))
    assert not stage.worker.is_alive() and sent.items == []  # waits for the assistant
    stage.handle(m.LlmReady("embedded"))
    stage.worker.join(10)
    assert sum(a.samples.size for a in sent.items) == 8000
    assert not stage.ended
    stage.handle(Tick("tick"))
    assert stage.ended  # the file has been played
    live = MicrophoneStage(MicFile(path, realtime=False), Collected())
    live.start()  # a live source starts at once
    assert live.worker.ident is not None
    live.handle(Control(STOP))
    assert live.ended
    live.stop()


def test_drive_runs_start_before_the_first_event_and_finish_only_after_a_clean_end():
    import pytest

    from pipeline.runtime import drive
    from tests.nodekit import RecordingNode, closed, ev

    class Recorder:
        def __init__(self, fail: bool) -> None:
            self.fail, self.calls = fail, []

        def start(self):
            self.calls.append("start")
            return [m.TtsReady()]

        def handle(self, event):
            self.calls.append(type(event).__name__)
            if self.fail and isinstance(event, m.Segment):
                raise RuntimeError("crash")
            return []

        def idle(self):
            return True

        def finish(self):
            self.calls.append("finish")

    events = [ev("segment", m.Segment(ONE, m.END, 0)), closed("segment")]
    clean, node = Recorder(fail=False), RecordingNode(events)
    drive(node, clean, {"segment": m.Segment}, primary=frozenset({"segment"}))
    assert clean.calls == ["start", "Segment", "Control", "Control", "finish"]  # CLOSED, STOP
    assert node.messages("ready", m.TtsReady) == [m.TtsReady()]
    crashed = Recorder(fail=True)
    with pytest.raises(RuntimeError):
        drive(RecordingNode(events), crashed, {"segment": m.Segment})
    assert crashed.calls == ["start", "Segment"]  # no finish: a crash journal stays for the restart
