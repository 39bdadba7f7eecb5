"""Backpressure and cancel in the segmenter node's scheduler, and the segmenter node."""

from pipeline import messages as m
from pipeline.scheduler import SegmentScheduler
from pipeline.settings import load
from tests.nodekit import RecordingNode, closed, ev

ANSWER = "Well, the capital of France is Paris. It has many museums. The Louvre is the largest one. Enjoy!"


def feed(sched, turn, text, step=4):
    out = []
    for i in range(0, len(text), step):
        out += sched.on_text(turn, m.DELTA, text[i:i + step], {"turn_id": turn})
    return out


def test_first_segment_released_at_first_clause_and_at_most_two_ahead():
    sched = SegmentScheduler(ahead=2)
    out = feed(sched, 1, ANSWER)
    assert [o.text for o in out] == ["Well, the capital of France is Paris."] or len(out) <= 2
    assert len(out) == 2  # the rest waits for the speaker
    assert out[0].metadata["segment_index"] == 0 and out[1].metadata["segment_index"] == 1
    out += sched.on_text(1, m.END, "", {"turn_id": 1})
    assert len(out) == 2
    more = sched.on_played(1, m.FINISHED, 0)
    assert len(more) == 1 and more[0].metadata["segment_index"] == 2
    rest = sched.on_played(1, m.FINISHED, 1) + sched.on_played(1, m.FINISHED, 2)
    events = [o.event for o in rest]
    assert events[-1] == m.END and rest[-1].metadata["segments"] == len(out) + len(more) + len(rest) - 1
    assert sched.idle()


def test_speech_started_drops_the_old_answer():
    sched = SegmentScheduler(ahead=2)
    feed(sched, 1, ANSWER)
    sched.on_speech_started(2)
    assert sched.on_played(1, m.FINISHED, 0) == []
    assert sched.on_text(1, m.DELTA, "late text. More.", {"turn_id": 1}) == []
    out = feed(sched, 2, "Sure, here it is. Next one.")
    assert out and out[0].metadata["turn_id"] == 2 and out[0].metadata["segment_index"] == 0


def test_cancelled_answer_sends_nothing_more():
    sched = SegmentScheduler(ahead=1)
    feed(sched, 1, ANSWER)
    assert sched.on_text(1, m.END, "", {"turn_id": 1, "reason": "cancelled"}) == []
    assert sched.idle()


def test_segmenter_node_end_to_end_with_mocknode():
    from nodes import segmenter

    events = [ev("text", m.text_array(ANSWER[i:i + 5]), turn_id=1, event=m.DELTA, t_speech_end=1.0)
              for i in range(0, len(ANSWER), 5)]
    events.append(ev("text", m.text_array(""), turn_id=1, event=m.END, reason="stop"))
    for i in range(6):
        events.append(ev("played", m.int_array(i), turn_id=1, segment_index=i, event=m.FINISHED))
    events.append(closed("text"))
    node = RecordingNode(events)
    segmenter.run(node, load({}))
    sent = node.of("segment")
    texts = [m.text_of(v) for v, meta in sent if meta["event"] == m.SEGMENT]
    assert " ".join(texts).split() == ANSWER.split()
    assert sent[-1][1]["event"] == m.END
    assert all(meta["t_speech_end"] == 1.0 for _v, meta in sent)
    assert all(t.strip() for t in texts)
