"""PlaybackBuffer without a sound card: a fake callback loop pulls 256-frame blocks."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pipeline.messages import CUT, DELAY, FINISHED, NO_TURN, STARTED, TURN_END
from pipeline.playback import CutSegment, PlaybackBuffer, PlaybackEvent, dac_wall_time

RATE = 1000  # 1 sample = 1 ms: event times are easy to read
BLOCK = 256


def ramp(start: int, n: int) -> np.ndarray:
    """Distinct, recognizable samples (each value says where it came from)."""
    return (np.arange(start, start + n, dtype=np.float32) / 100000.0).astype(np.float32)


def pump(buf: PlaybackBuffer, blocks: int, t0: float = 100.0, shape2d: bool = False):
    """Run the fake callback `blocks` times; returns all output and the next block's time."""
    outs = []
    for _ in range(blocks):
        out = np.full((BLOCK, 1) if shape2d else BLOCK, 7.0, dtype=np.float32)
        buf.fill(out, t0)
        outs.append(out.reshape(-1).copy())
        t0 += BLOCK / RATE
    return np.concatenate(outs), t0


def kinds(events: list[PlaybackEvent]) -> list[tuple[str, int, int]]:
    return [(e.kind, e.turn_id, e.segment_index) for e in events]


def test_events_in_order_and_exact_samples():
    buf = PlaybackBuffer(RATE)
    a, b = ramp(0, 300), ramp(1000, 200)
    buf.add(1, 0, a, "Hello there.")
    buf.add(1, 1, b, "Bye.", last=True)
    out, _ = pump(buf, 3)
    assert np.array_equal(out[:300], a)
    assert np.array_equal(out[300:500], b)
    assert np.all(out[500:] == 0.0)
    events = buf.drain_events()
    assert kinds(events) == [
        (STARTED, 1, 0),
        (FINISHED, 1, 0),
        (STARTED, 1, 1),
        (FINISHED, 1, 1),
        (TURN_END, 1, 1),
    ]
    # t = time the sample reaches the speaker: block start + offset / rate
    assert [round(e.t, 6) for e in events] == [100.0, 100.3, 100.3, 100.5, 100.5]
    assert events[0].text == "Hello there." and events[2].text == "Bye."
    assert buf.underruns == 0 and buf.gaps == 0
    assert buf.frames_out == 500 and buf.frames_queued == 0


def test_two_dimensional_out_and_zero_fill_when_empty():
    buf = PlaybackBuffer(RATE)
    out, _ = pump(buf, 2, shape2d=True)
    assert np.all(out == 0.0)
    buf.add(0, 0, ramp(0, 10), last=True)
    out, _ = pump(buf, 1, shape2d=True)
    assert np.array_equal(out[:10], ramp(0, 10))
    assert np.all(out[10:] == 0.0)
    assert buf.drain_events()[-1].kind == TURN_END
    assert buf.underruns == 0 and buf.gaps == 0  # idle silence is not starvation


def test_event_only_when_first_sample_goes_out():
    buf = PlaybackBuffer(RATE)
    buf.add(1, 0, ramp(0, BLOCK))  # exactly one block
    buf.add(1, 1, ramp(0, 10), last=True)
    pump(buf, 1)
    assert kinds(buf.drain_events()) == [(STARTED, 1, 0), (FINISHED, 1, 0)]
    pump(buf, 1, t0=100.256)
    events = buf.drain_events()
    assert kinds(events) == [(STARTED, 1, 1), (FINISHED, 1, 1), (TURN_END, 1, 1)]
    assert events[0].t == pytest.approx(100.256)


def test_chunked_segment_is_one_segment():
    buf = PlaybackBuffer(RATE)
    buf.add(2, 0, ramp(0, 100), "One. Two.", end_of_segment=False)
    buf.add(2, 0, ramp(100, 100), "One. Two.", last=True)
    out, _ = pump(buf, 1)
    assert np.array_equal(out[:200], ramp(0, 200))
    assert kinds(buf.drain_events()) == [(STARTED, 2, 0), (FINISHED, 2, 0), (TURN_END, 2, 0)]


def test_empty_segment_still_reports():
    buf = PlaybackBuffer(RATE)
    buf.add(3, 0, np.zeros(0, dtype=np.float32), last=True)
    out, _ = pump(buf, 1)
    assert np.all(out == 0.0)
    assert kinds(buf.drain_events()) == [(STARTED, 3, 0), (FINISHED, 3, 0), (TURN_END, 3, 0)]


def test_clear_drops_everything_and_reports_interrupted_segment():
    buf = PlaybackBuffer(RATE)
    buf.add(1, 0, ramp(0, 600), "First sentence.")
    buf.add(1, 1, ramp(0, 300), "Second.", last=True)
    pump(buf, 1)  # 256 samples of segment 0 out
    cut = buf.clear()
    assert cut == [
        CutSegment(1, 0, "First sentence.", True, 256, 600),
        CutSegment(1, 1, "Second.", False, 0, 300),
    ]
    events = buf.drain_events()
    assert kinds(events) == [(STARTED, 1, 0), (CUT, NO_TURN, -1)]
    assert events[-1].cut == tuple(cut)
    out, _ = pump(buf, 4)
    assert np.all(out == 0.0)
    assert buf.drain_events() == []  # no finished, no turn_end for what was cut
    assert buf.frames_queued == 0
    assert not buf.is_playing  # t0=100 s after the epoch: the tail played long ago
    assert buf.underruns == 0 and buf.gaps == 0  # silence after a cut is not starvation


def test_clear_below_keeps_the_new_turn_and_rejects_stale_audio():
    buf = PlaybackBuffer(RATE)
    buf.add(1, 0, ramp(0, 400), "old")
    buf.add(2, 0, ramp(5000, 100), "new", last=True)
    pump(buf, 1)
    cut = buf.clear(turn_id_below=2)
    assert [(c.turn_id, c.segment_index, c.played_samples) for c in cut] == [(1, 0, 256)]
    assert not buf.add(1, 1, ramp(0, 50), "stale")  # turn 1 audio still in flight
    out, _ = pump(buf, 1)
    assert np.array_equal(out[:100], ramp(5000, 100))
    assert np.all(out[100:] == 0.0)
    assert kinds(buf.drain_events()) == [
        (STARTED, 1, 0),
        (CUT, 2, -1),
        (STARTED, 2, 0),
        (FINISHED, 2, 0),
        (TURN_END, 2, 0),
    ]


def test_clear_mid_segment_while_starved():
    buf = PlaybackBuffer(RATE)
    buf.add(1, 0, ramp(0, 100), "long", end_of_segment=False)
    pump(buf, 1)
    cut = buf.clear()
    assert cut == [CutSegment(1, 0, "long", True, 100, 100)]
    buf.add(1, 0, ramp(0, 50), "long", last=True)  # late chunk: a fresh segment now
    pump(buf, 1)
    assert kinds(buf.drain_events()) == [
        (STARTED, 1, 0),
        (CUT, NO_TURN, -1),
        (STARTED, 1, 0),
        (FINISHED, 1, 0),
        (TURN_END, 1, 0),
    ]


def test_underrun_counted_once_per_starvation_mid_segment():
    buf = PlaybackBuffer(RATE)
    buf.add(1, 0, ramp(0, 300), end_of_segment=False)
    pump(buf, 3)  # 300 out, then 212 + 256 starved frames
    assert buf.underruns == 1
    assert buf.underrun_frames == 3 * BLOCK - 300
    buf.add(1, 0, ramp(300, 300), last=True)
    pump(buf, 3)
    assert buf.underruns == 1  # the rest of the segment played, idle after turn_end
    assert buf.gaps == 0
    assert kinds(buf.drain_events()) == [(STARTED, 1, 0), (FINISHED, 1, 0), (TURN_END, 1, 0)]


def test_gap_between_segments_of_an_unfinished_turn():
    buf = PlaybackBuffer(RATE)
    buf.add(1, 0, ramp(0, 100))
    pump(buf, 2)
    assert buf.gaps == 1 and buf.underruns == 0
    buf.add(1, 1, ramp(0, 100), last=True)
    pump(buf, 2)
    assert buf.gaps == 1


def test_drain_all_virtual_clock():
    buf = PlaybackBuffer(RATE)
    buf.add(1, 0, ramp(0, 500), "a")
    buf.add(1, 1, ramp(500, 250), "b", last=True)
    audio = buf.drain_all(t0=50.0)
    assert np.array_equal(audio, ramp(0, 750))
    events = buf.drain_events()
    assert kinds(events) == [
        (STARTED, 1, 0),
        (FINISHED, 1, 0),
        (STARTED, 1, 1),
        (FINISHED, 1, 1),
        (TURN_END, 1, 1),
    ]
    assert [e.t for e in events] == pytest.approx([50.0, 50.5, 50.5, 50.75, 50.75])
    assert buf.drain_all().size == 0
    assert buf.underruns == 0 and buf.gaps == 0


def test_is_playing_follows_queue_and_output_tail():
    buf = PlaybackBuffer(RATE)
    assert not buf.is_playing
    buf.add(1, 0, ramp(0, 10), last=True)
    assert buf.is_playing
    out = np.zeros(BLOCK, dtype=np.float32)
    buf.fill(out, t0=0.0)  # a block "played" long ago
    assert not buf.is_playing


def test_fill_does_not_allocate_audio_in_steady_state():
    """The output array is written in place; nothing else grows with the block count."""
    import tracemalloc

    buf = PlaybackBuffer(RATE)
    buf.add(1, 0, ramp(0, 100_000), last=False)
    out = np.zeros(BLOCK, dtype=np.float32)
    buf.fill(out, 0.0)  # warm up (first event)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(200):
        buf.fill(out, 0.0)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    # only what playback.py allocated: in the full suite, threads left by other tests (log
    # pumps, recorders) allocate meanwhile and tracemalloc sees every thread
    own = [tracemalloc.Filter(True, "*/pipeline/playback.py")]
    diff = after.filter_traces(own).compare_to(before.filter_traces(own), "filename")
    grown = sum(s.size_diff for s in diff if s.size_diff > 0)
    assert grown < 4096  # 200 blocks of 1 KB each would be 200 KB


def test_producer_and_callback_threads():
    """Concurrent add/fill/clear never lose or duplicate samples of kept segments."""
    buf = PlaybackBuffer(RATE)
    total = 200
    seg = ramp(0, 97)
    done = threading.Event()

    def producer() -> None:
        for i in range(total):
            buf.add(1, i, seg, last=i == total - 1)
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    got = []
    out = np.zeros(BLOCK, dtype=np.float32)
    while not (done.is_set() and buf.frames_queued == 0):
        buf.fill(out, 0.0)
        got.append(out.copy())
    thread.join()
    events = buf.drain_events()
    assert sum(e.kind == FINISHED for e in events) == total
    assert events[-1].kind == TURN_END
    audio = np.concatenate(got)
    assert np.count_nonzero(audio) == total * (seg.size - 1)  # ramp starts at 0.0


def test_dac_wall_time_mapping():
    assert dac_wall_time(1000.0, 5.0, 5.02, 0.1) == pytest.approx(1000.02)
    assert dac_wall_time(1000.0, 0.0, 0.0, 0.1) == pytest.approx(1000.1)  # no clock
    assert dac_wall_time(1000.0, 5.0, 4.0, 0.1) == pytest.approx(1000.1)  # nonsense


def test_a_device_stall_is_a_delay_event_in_order_with_the_others():
    buf = PlaybackBuffer(RATE)
    buf.add(1, 0, ramp(0, 300), "A.")
    buf.add(1, 1, ramp(0, 300), "B.", last=True)
    out = np.zeros(BLOCK, dtype=np.float32)
    buf.fill(out, 100.0)  # 100.000-100.256
    buf.fill(out, 100.256 + 0.150)  # the callback came 150 ms late
    buf.fill(out, 100.662)
    events = buf.drain_events()
    assert kinds(events) == [(STARTED, 1, 0), (DELAY, NO_TURN, -1), (FINISHED, 1, 0),
                             (STARTED, 1, 1), (FINISHED, 1, 1), (TURN_END, 1, 1)]
    assert events[1].t == pytest.approx(100.256) and events[1].delay_s == pytest.approx(0.150)


def test_the_virtual_clock_of_file_mode_never_stalls():
    buf = PlaybackBuffer(RATE)
    buf.add(1, 0, ramp(0, 300), "A.")
    buf.drain_all(t0=100.0)
    buf.add(1, 1, ramp(0, 300), "B.", last=True)
    buf.drain_all(t0=200.0)  # much later than the end of the first: not a stall
    assert DELAY not in [e.kind for e in buf.drain_events()]
