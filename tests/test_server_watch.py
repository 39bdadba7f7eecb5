"""The board's watch on the server side: pure logic on a fake clock, then the speaker stage
playing the earcon into a WAV file and the node wiring through `drive`."""

from __future__ import annotations

import logging

import numpy as np

from pipeline import messages as m
from pipeline.audio import read_wav
from pipeline.audio_io import SpeakerFile
from pipeline.runtime import Tick
from pipeline.stages.server_watch import Alarm, Notice, ServerWatch, earcon
from pipeline.stages.speaker import SpeakerConfig, SpeakerStage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watch(timeout_s: float = 20.0) -> tuple[ServerWatch, Clock]:
    clock = Clock()
    return ServerWatch(timeout_s, clock=clock, first_word_s=5.0), clock


def test_a_question_with_no_word_from_the_server_raises_one_alarm():
    w, clock = watch()
    w.heard()
    w.asked(1000)
    clock.now += 19.9
    assert w.check(playing=False) is None
    clock.now += 0.2
    alarm = w.check(playing=False)
    assert isinstance(alarm, Alarm) and alarm.turn_id == 1000 and alarm.new_outage
    assert abs(alarm.silent_s - 20.1) < 1e-9
    clock.now += 60
    assert w.check(playing=False) is None  # one earcon per question


def test_the_server_beat_keeps_a_dropped_utterance_from_alarming():
    """A cough the asr drops gets no answer: the beat says the server is there all the same."""
    w, clock = watch()
    w.asked(1000)
    for _ in range(30):
        clock.now += 2
        w.heard()
        assert w.check(playing=False) is None


def test_the_alarm_counts_from_the_last_word_when_it_came_after_the_question():
    w, clock = watch()
    w.asked(1000)
    clock.now += 10
    w.heard()  # the last beat before the server went away
    clock.now += 19
    assert w.check(playing=False) is None
    clock.now += 1
    assert isinstance(w.check(playing=False), Alarm)


def test_nothing_is_due_while_playing_or_after_the_answer_or_while_the_user_talks():
    w, clock = watch()
    w.heard()
    w.asked(1000)
    clock.now += 30
    assert w.check(playing=True) is None
    assert w.answered(1000) is None
    clock.now += 30
    assert w.check(playing=False) is None
    w.asked(2000)
    w.talking(3000)  # the user went on talking: turn 2000's question was dropped
    clock.now += 30
    assert w.check(playing=False) is None


def test_one_log_per_outage_and_back_when_heard_again():
    w, clock = watch()
    w.heard()
    w.asked(1000)
    clock.now += 21
    first = w.check(playing=False)
    w.asked(2000)
    clock.now += 21
    second = w.check(playing=False)
    assert isinstance(first, Alarm) and first.new_outage
    assert isinstance(second, Alarm) and not second.new_outage and second.turn_id == 2000
    assert w.heard() is Notice.BACK
    assert w.heard() is None
    w.asked(3000)
    clock.now += 21
    third = w.check(playing=False)
    assert isinstance(third, Alarm) and third.new_outage


def test_a_board_that_starts_first_says_once_that_it_waits_then_that_the_server_is_up():
    w, clock = watch()
    clock.now += 4
    assert w.check(playing=False) is None
    clock.now += 1
    assert w.check(playing=False) is Notice.AWAITED
    clock.now += 10
    assert w.check(playing=False) is None
    assert w.heard() is Notice.UP
    assert w.heard() is None


def test_earcon_is_a_short_audible_tone_without_clicks():
    tone = earcon(22050)
    assert tone.dtype == np.float32 and 0.3 <= tone.size / 22050 <= 0.5
    assert 0.2 < np.abs(tone).max() <= 0.3 and abs(tone[0]) < 0.01 and abs(tone[-1]) < 0.01


# --------------------------------------------------------------------------- in the stage


def stage_with_clock(tmp_path, timeout_s: float = 20.0):
    sent: list[m.Message] = []
    clock = Clock()
    sink = SpeakerFile(tmp_path / "o.wav").start()
    stage = SpeakerStage(sink, SpeakerConfig(server_reply_timeout_s=timeout_s), sent.append,
                         watch=ServerWatch(timeout_s, clock=clock))
    stage.start()
    return stage, clock, sent


def utterance(turn: int) -> m.Utterance:
    return m.Utterance(turn_id=turn, samples=np.zeros(160, np.float32), t_speech_start=1.0,
                       t_speech_end=2.0, t_utterance=2.0, final=True)


def test_stage_logs_one_line_and_plays_the_earcon_and_reports_no_played(tmp_path, caplog):
    stage, clock, sent = stage_with_clock(tmp_path)
    stage.handle(m.ServerAlive(t=1.0))
    stage.handle(m.SpeechStarted(turn_id=1000, t_speech_start=1.0))
    stage.handle(utterance(1000))
    with caplog.at_level(logging.INFO, logger="speaker"):
        clock.now += 21
        assert stage.handle(Tick("tick")) == []  # a file does not echo: no reference
        clock.now += 5
        stage.handle(Tick("tick"))
        stage.handle(m.ServerAlive(t=2.0))
    stage.close()
    lines = [r.getMessage() for r in caplog.records]
    assert [x for x in lines if "no answer from the server" in x] == [
        "no answer from the server for 21 s: is the server daemon running?"]
    assert "the server answers again" in lines
    wav, rate = read_wav(tmp_path / "o.wav")
    assert wav.size == earcon(rate).size and np.abs(wav).max() > 0.2
    assert not [x for x in sent if isinstance(x, m.Played)]


def test_stage_sends_the_echo_canceller_the_earcon_on_a_sink_that_echoes(tmp_path):
    stage, clock, _sent = stage_with_clock(tmp_path)
    stage.sink.echoes = True
    stage.handle(utterance(1000))
    clock.now += 21
    out = stage.handle(Tick("tick"))
    stage.close()
    assert len(out) == 1 and isinstance(out[0], m.Reference) and out[0].event == m.PLAY
    assert abs(out[0].samples.size - earcon(m.ASR_RATE).size) <= 1


def test_speaker_node_reads_the_watch_inputs(tmp_path):
    """The node's wiring decodes `alive`, `utterance` and `tick` (a contract error would be
    logged and dropped, and the watch would never see them)."""
    from pipeline.stages.speaker import WIRING

    assert WIRING["alive"] is m.ServerAlive and WIRING["utterance"] is m.Utterance
    assert WIRING["tick"] is None


def test_llm_server_node_beats_on_every_tick():
    """The server side's beat: one `alive` per tick (here with an external LLM server)."""
    from nodes import llm_server
    from pipeline.settings import load
    from tests.nodekit import RecordingNode

    s = load({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    tick = {"type": "INPUT", "id": "tick", "value": m.text_array(""), "metadata": {}}
    node = RecordingNode([tick, tick, {"type": "STOP"}])
    llm_server.run(node, s)
    beats = [m.ServerAlive.from_dora(v, meta) for v, meta in node.of("alive")]
    assert len(beats) == 2 and all(b.t > 0 for b in beats)
