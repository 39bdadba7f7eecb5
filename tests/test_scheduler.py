"""Backpressure, cancel and crash recovery in the segmenter node's scheduler, and the nodes around it."""

import numpy as np
import pytest

from pipeline import messages as m
from pipeline.journal import TurnJournal
from pipeline.scheduler import SegmentScheduler
from pipeline.settings import load
from pipeline.turns import SeenSegments
from tests.nodekit import RecordingNode, closed, control, ev

ANSWER = "Well, the capital of France is Paris. It has many museums. The Louvre is the largest one. Enjoy!"


def delta(turn, text, index=0):
    return m.LlmText(turn, m.DELTA, index, text)


def end(turn, reason=m.REASON_STOP):
    return m.LlmText(turn, m.END, 0, reason=reason)


def played(turn, event, segment_index):
    return m.Played(turn, event, segment_index, t=0.0)


def feed(sched, turn, text, step=4):
    out = []
    for k, i in enumerate(range(0, len(text), step)):
        out += sched.on_text(delta(turn, text[i:i + step], k))
    return out


def test_first_segment_released_at_first_clause_and_at_most_two_ahead():
    sched = SegmentScheduler(ahead=2)
    out = feed(sched, 1, ANSWER)
    assert [o.text for o in out] == ["Well, the capital of France is Paris."] or len(out) <= 2
    assert len(out) == 2  # the rest waits for the speaker
    assert out[0].segment_index == 0 and out[1].segment_index == 1
    out += sched.on_text(end(1))
    assert len(out) == 2
    more = sched.on_played(played(1, m.FINISHED, 0))
    assert len(more) == 1 and more[0].segment_index == 2
    rest = sched.on_played(played(1, m.FINISHED, 1)) + sched.on_played(played(1, m.FINISHED, 2))
    events = [o.event for o in rest]
    assert events[-1] == m.END and rest[-1].segment_index == len(out) + len(more) + len(rest) - 1
    assert sched.idle()


def test_speech_started_drops_the_old_answer():
    sched = SegmentScheduler(ahead=2)
    feed(sched, 1, ANSWER)
    sched.on_speech_started(2)
    assert sched.on_played(played(1, m.FINISHED, 0)) == []
    assert sched.on_text(delta(1, "late text. More.")) == []
    out = feed(sched, 2, "Sure, here it is. Next one.")
    assert out and out[0].turn_id == 2 and out[0].segment_index == 0


def test_cancelled_answer_sends_nothing_more():
    sched = SegmentScheduler(ahead=1)
    feed(sched, 1, ANSWER)
    assert sched.on_text(end(1, m.REASON_CANCELLED)) == []
    assert sched.idle()


def test_segmenter_node_end_to_end_with_mocknode():
    from nodes import segmenter

    events = [ev("text", m.LlmText(1, m.DELTA, k, ANSWER[i:i + 5], times={"t_speech_end": 1.0}))
              for k, i in enumerate(range(0, len(ANSWER), 5))]
    events.append(ev("text", end(1)))
    for i in range(6):
        events.append(ev("played", played(1, m.FINISHED, i)))
    events.append(closed("text"))
    node = RecordingNode(events)
    segmenter.run(node, load({}))
    sent = node.messages("segment", m.Segment)
    texts = [seg.text for seg in sent if seg.event == m.SEGMENT]
    assert " ".join(texts).split() == ANSWER.split()
    assert sent[-1].event == m.END
    assert all(seg.times["t_speech_end"] == 1.0 for seg in sent)
    assert "t_first_segment" in sent[0].times and "t_first_segment" not in sent[1].times
    assert all(t.strip() for t in texts)


# -- crashes: the tts node restarted, the segmenter node restarted ------------------------------
LONG = ("Paris is the capital of France. It is on the Seine. It has many museums. "
        "The Louvre is the largest one. The Eiffel Tower is tall. Enjoy your trip!")


def texts(items):
    return [(o.event, o.segment_index, o.text) for o in items]


def test_a_restarted_tts_gets_the_unplayed_segments_again_then_the_rest():
    sched = SegmentScheduler(ahead=2)
    out = feed(sched, 1, LONG) + sched.on_text(end(1))
    assert [i for _e, i, _t in texts(out)] == [0, 1]
    out += sched.on_played(played(1, m.FINISHED, 0))  # segment 2 released
    sched.on_tts_down()  # dora: the tts crashed (segments 1 and 2 were in it)
    assert sched.on_played(played(1, m.STARTED, 1)) == []
    assert sched.on_played(played(1, m.FINISHED, 1)) == []  # a slot frees, but nothing goes into the void
    assert not sched.idle()
    again = sched.on_tts_ready(restarted=True)
    # segment 2 again (1 was played), then the next one the freed slot allows
    assert texts(again) == [(m.SEGMENT, 2, "It has many museums."), (m.SEGMENT, 3, "The Louvre is the largest one.")]
    assert again[0].resent is True
    rest = []
    for i in range(2, 6):
        rest += sched.on_played(played(1, m.FINISHED, i))
    assert [e for e, _i, _t in texts(rest)] == [m.SEGMENT, m.SEGMENT, m.END]
    assert sched.idle()


def test_a_restarted_tts_gets_the_end_again_if_the_turn_did_not_end():
    sched = SegmentScheduler(ahead=2)
    feed(sched, 1, "Yes, it is. Fine.")
    out = sched.on_text(end(1))
    out += sched.on_played(played(1, m.FINISHED, 0))
    assert out[-1].event == m.END
    sched.on_tts_down()
    again = sched.on_tts_ready(restarted=True)
    assert texts(again) == [(m.SEGMENT, 1, "Fine."), (m.END, 2, "")]
    sched.on_played(played(1, m.FINISHED, 1))
    sched.on_played(played(1, m.TURN_END, 2))
    sched.on_tts_down()
    assert sched.on_tts_ready(restarted=True) == []  # spoken to the end: nothing to resend


def test_a_segment_in_flight_during_two_tts_crashes_is_replaced_by_the_apology():
    sched = SegmentScheduler(ahead=1, apology="Sorry, I can't.")
    feed(sched, 1, LONG)
    for _ in range(2):
        sched.on_tts_down()
        again = sched.on_tts_ready(restarted=True)
    assert texts(again) == [(m.SEGMENT, 1, "Sorry, I can't."), (m.END, 2, "")]
    assert sched.on_text(delta(1, " More text. And more.")) == []
    assert sched.on_played(played(1, m.FINISHED, 1)) == []
    out = feed(sched, 2, "Sure, here it is. Next one.")
    assert out[0].turn_id == 2 and out[0].segment_index == 0


def test_tts_first_start_and_a_new_turn_while_the_tts_is_down():
    sched = SegmentScheduler(ahead=2)
    assert sched.on_tts_ready(restarted=False) == []
    feed(sched, 1, LONG)
    sched.on_tts_down()
    sched.on_speech_started(2)  # the user went on: turn 1 is dropped
    assert feed(sched, 2, "Sure, here it is. Next one.") == []  # held until the tts is back
    again = sched.on_tts_ready(restarted=True)
    assert [(o.turn_id, o.segment_index) for o in again] == [(2, 0)]
    sched.on_tts_gone()  # dora gave up on it: nothing to wait for
    assert sched.tts_up


def crash_and_resume(tmp_path, before):
    """Run `before(sched)` on a journalled scheduler, then resume a new one from its journal."""
    journal = TurnJournal(tmp_path / "segmenter.json")
    first = SegmentScheduler(ahead=2, apology="Sorry, I can't.", journal=journal)
    sent = before(first)
    second = SegmentScheduler(ahead=2, apology="Sorry, I can't.", journal=TurnJournal(journal.path))
    return sent, second, second.resume(journal.read())


def test_a_segmenter_restarted_while_the_llm_streams_apologises_after_what_it_sent(tmp_path):
    sent, sched, out = crash_and_resume(tmp_path, lambda s: feed(s, 3, LONG[:70]))
    assert [i for _e, i, _t in texts(sent)] == [0, 1]
    assert texts(out) == [(m.SEGMENT, 2, "Sorry, I can't."), (m.END, 3, "")]
    assert out[0].turn_id == 3
    # the rest of turn 3 from the llm is ignored; turn 4 is answered as usual
    assert sched.on_text(delta(3, LONG[70:])) == []
    assert sched.on_text(end(3)) == []
    assert sched.on_played(played(3, m.FINISHED, 2)) == []
    out = feed(sched, 4, "A new answer. Yes.") + sched.on_text(end(4))
    assert [(o.event, o.turn_id, o.segment_index) for o in out] == [
        (m.SEGMENT, 4, 0), (m.SEGMENT, 4, 1), (m.END, 4, 2)]


def test_a_segmenter_restarted_after_the_llm_finished_sends_the_rest_of_the_answer(tmp_path):
    def before(s):
        out = feed(s, 1, LONG) + s.on_text(end(1))
        return out + s.on_played(played(1, m.FINISHED, 0))  # releases segment 2, then the crash

    sent, sched, out = crash_and_resume(tmp_path, before)
    assert [i for _e, i, _t in texts(sent)] == [0, 1, 2]
    # segment 2 again (the crash may have come before it was sent), then 3 and 4 (ahead=2)
    assert [(e, i) for e, i, _t in texts(out)] == [(m.SEGMENT, 2), (m.SEGMENT, 3), (m.SEGMENT, 4)]
    rest = sched.on_played(played(1, m.FINISHED, 3)) + sched.on_played(played(1, m.FINISHED, 4))
    spoken = [t for _e, _i, t in texts(sent[:2] + out + rest) if t]
    assert " ".join(spoken).split() == LONG.split()
    assert rest[-1].event == m.END and sched.idle()


def test_a_segmenter_restarted_between_turns_does_nothing(tmp_path):
    def before(s):
        feed(s, 1, "Yes, it is. Fine.")
        s.on_text(end(1))
        s.on_played(played(1, m.FINISHED, 0))
        s.on_played(played(1, m.FINISHED, 1))
        return s.on_played(played(1, m.TURN_END, 2))

    _sent, sched, out = crash_and_resume(tmp_path, before)
    assert out == [] and sched.idle()
    assert sched.resume(None) == []
    assert feed(sched, 2, "Sure, here it is. Next one.")[0].turn_id == 2


def test_an_interrupted_answer_is_not_resumed(tmp_path):
    def before(s):
        feed(s, 1, LONG)
        s.on_speech_started(2)
        return []

    _sent, _sched, out = crash_and_resume(tmp_path, before)
    assert out == []


def test_seen_segments_lets_each_segment_through_once():
    seen = SeenSegments(keep=2)
    assert seen.first(1, 0, m.SEGMENT) and not seen.first(1, 0, m.SEGMENT)
    assert seen.first(1, 0, m.END) and seen.first(2, 0, m.SEGMENT)
    assert seen.first(3, 0, m.SEGMENT) and 1 not in seen.seen  # old turns are forgotten


def test_inputs_yields_node_restarted_and_failed():
    from pipeline.runtime import FAILED, RESTARTED, inputs

    node = RecordingNode([{"type": "NODE_RESTARTED", "id": "tts"}, {"type": "NODE_FAILED", "id": "tts"}])
    got = [(i, meta) for i, _v, meta in inputs(node)]
    assert got[:2] == [(RESTARTED, {"id": "tts"}), (FAILED, {"id": "tts"})]


# -- the nodes ------------------------------------------------------------------------------------
def test_segmenter_node_resends_to_a_restarted_tts():
    from nodes import segmenter

    events = [ev("text", delta(1, LONG)), ev("text", end(1)),
              control("NODE_RESTARTED", "tts"),
              ev("played", played(1, m.FINISHED, 0)),
              ev("tts_ready", m.TtsReady(restart=True))]
    events += [ev("played", played(1, m.FINISHED, i)) for i in range(1, 6)]
    events.append(closed("text"))
    node = RecordingNode(events)
    segmenter.run(node, load({}))
    sent = [(seg.event, seg.segment_index, seg.resent) for seg in node.messages("segment", m.Segment)]
    assert sent == [("segment", 0, False), ("segment", 1, False), ("segment", 1, True),
                    ("segment", 2, False), ("segment", 3, False), ("segment", 4, False),
                    ("segment", 5, False), ("end", 6, False)]


def test_restarted_segmenter_node_apologises_for_the_open_turn(tmp_path, monkeypatch):
    from nodes import segmenter

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    journal = TurnJournal.for_dataflow("df-seg-test", "segmenter")
    assert journal is not None
    journal.write(5, is_open=True, next_index=3, ended=False, pending=[], recent=[])
    node = RecordingNode([ev("text", delta(5, " and the rest.")),
                          ev("text", delta(6, "Next answer, here it is.")),
                          ev("text", end(6)),
                          closed("text")], is_restart=True, dataflow_id="df-seg-test")
    segmenter.run(node, load({}))
    sent = [(seg.turn_id, seg.event, seg.segment_index, seg.text) for seg in node.messages("segment", m.Segment)]
    apology = load({}).llm_apology
    assert sent == [(5, "segment", 3, apology), (5, "end", 4, ""),
                    (6, "segment", 0, "Next answer, here it is."), (6, "end", 1, "")]
    assert not journal.path.exists()  # a clean end removes it


class FakeSynth:
    sample_rate = 22050

    def synthesize_segment(self, text):
        return np.full(2205, 0.1, dtype=np.float32)


def test_tts_node_says_ready_and_whether_it_was_restarted():
    from nodes import tts as tts_node

    for restarted in (False, True):
        node = RecordingNode([closed("segment")], is_restart=restarted)
        tts_node.run(node, load({}), FakeSynth())
        assert [r.restart for r in node.messages("ready", m.TtsReady)] == [restarted]


def test_speaker_node_plays_a_resent_segment_once(tmp_path):
    from nodes import speaker as speaker_node
    from pipeline.audio_io import SpeakerFile

    s = load({"SPEAKER_FILE": str(tmp_path / "o.wav")})
    tone = np.full(2205, 0.1, dtype=np.float32)

    def audio(i, text, event=m.SEGMENT):
        return ev("audio", m.audio_array(tone if event == m.SEGMENT else tone[:0]), turn_id=1,
                  segment_index=i, sample_rate=22050, text=text, event=event)

    node = RecordingNode([ev("transcript", m.text_array("hi"), turn_id=1, final=True),
                          audio(0, "A."), audio(1, "B."), {"type": "NODE_RESTARTED", "id": "tts"},
                          audio(1, "B."), audio(2, "C."), audio(3, "", m.END), audio(3, "", m.END),
                          closed("audio")])
    sink = SpeakerFile(s.speaker_file)
    sink.start()
    speaker_node.run(node, s, sink)
    finished = [meta["text"] for _v, meta in node.of("played") if meta["event"] == m.FINISHED and meta["text"]]
    assert finished == ["A.", "B.", "C."]
    assert [meta["event"] for _v, meta in node.of("played")].count(m.TURN_END) == 1
    assert sink.seconds_written == pytest.approx(3 * 0.1)


def test_segmenter_stage_holds_releases_only_while_the_tts_node_restarts():
    from pipeline.runtime import RESTARTED, Control
    from pipeline.stages.segmenter import SegmenterStage

    stage = SegmenterStage(SegmentScheduler(ahead=2))
    stage.handle(Control(RESTARTED, "asr"))  # another node's crash changes nothing here
    assert [seg.segment_index for seg in stage.handle(delta(1, "Yes, it is. Fine. "))] == [0]
    stage.handle(Control(RESTARTED, "tts"))
    assert list(stage.handle(end(1))) == []  # held: the tts would lose it
    assert not stage.idle()
    back = stage.handle(m.TtsReady(restart=True))
    assert [(seg.event, seg.segment_index, seg.resent) for seg in back] == [
        (m.SEGMENT, 0, True), (m.SEGMENT, 1, False), (m.END, 2, False)]
