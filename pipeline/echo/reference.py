"""The reference timeline: what the speaker played, on the UNIX clock in 16 kHz samples.

The echo canceller and the presence detector read it to know what sound could be coming
back through the microphone at a given capture time.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000
"""The rate of the microphone, the reference and everything in this package."""
FRAME_SAMPLES = 160
"""10 ms: the only frame size WebRTC's audio processing accepts; the unit of the package."""


@dataclass
class _Segment:
    """Reference audio that started playing at absolute sample `start` (UNIX time * rate)."""

    start: int
    samples: np.ndarray

    @property
    def end(self) -> int:
        return self.start + self.samples.size


class ReferenceTimeline:
    """What the speaker played, on the UNIX clock in 16 kHz samples, a few seconds of it.

    Segments are kept as given (one copy each) rather than in a ring buffer: a TTS segment
    may be scheduled many seconds ahead, and reading a 10 ms frame only touches the one or
    two segments it overlaps, found by bisection on the start times (so a speaker that
    reports every 20 ms device block costs no more than one that reports whole segments).
    Overlapping segments add up, as sounds do in the air.
    """

    def __init__(self, keep_s: float = 5.0, rate: int = SAMPLE_RATE) -> None:
        self.rate = rate
        self.keep = int(keep_s * rate)
        self._segments: list[_Segment] = []
        self._starts: list[int] = []  # sorted; _starts[i] == _segments[i].start
        self._longest = 0  # no segment is longer: bounds how far back an overlap can start

    def sample_at(self, t: float) -> int:
        """Absolute sample index of UNIX time `t` (float64 keeps it exact to ~0.01 sample)."""
        return int(round(t * self.rate))

    def add(self, samples: np.ndarray, t_start: float) -> None:
        data = np.array(samples, dtype=np.float32, copy=True).reshape(-1)
        if data.size == 0:
            return
        seg = _Segment(self.sample_at(t_start), data)
        i = bisect.bisect_right(self._starts, seg.start)
        self._segments.insert(i, seg)
        self._starts.insert(i, seg.start)
        self._longest = max(self._longest, data.size)

    def cut(self, t: float) -> None:
        """Playback stopped at `t`: forget every sample at or after it."""
        k = self.sample_at(t)
        i = bisect.bisect_left(self._starts, k)
        del self._segments[i:], self._starts[i:]
        for seg in self._segments[self._first(k) :]:
            if seg.end > k:
                seg.samples = seg.samples[: k - seg.start]

    def shift(self, t: float, delay_s: float) -> None:
        """Everything from `t` on plays `delay_s` later (the speaker stalled at `t`)."""
        k, d = self.sample_at(t), int(round(delay_s * self.rate))
        if d <= 0:
            return
        moved: list[_Segment] = []
        for seg in self._segments:
            if seg.start >= k:
                seg.start += d
            elif seg.end > k:  # split: the part from `t` on moves
                moved.append(_Segment(k + d, seg.samples[k - seg.start :]))
                seg.samples = seg.samples[: k - seg.start]
        self._segments = sorted(self._segments + moved, key=lambda seg: seg.start)
        self._starts = [seg.start for seg in self._segments]

    def prune(self, now: float) -> None:
        """Drop segments that ended more than `keep_s` before `now` (bounded memory)."""
        oldest = self.sample_at(now) - self.keep
        n = 0
        while n < len(self._segments) and self._segments[n].end < oldest:
            n += 1
        if n:
            del self._segments[:n], self._starts[:n]
        if not self._segments:
            self._longest = 0

    def read(self, start: int, out: np.ndarray) -> None:
        """Reference samples [start, start + out.size) into `out` (zeros where none)."""
        out.fill(0.0)
        stop = start + out.size
        for seg in self._overlapping(start, stop):
            lo, hi = max(start, seg.start), min(stop, seg.end)
            out[lo - start : hi - start] += seg.samples[lo - seg.start : hi - seg.start]

    def any_between(self, start: int, stop: int) -> bool:
        """True if some reference sample lies in [start, stop)."""
        return next(self._overlapping(start, stop), None) is not None

    def energy(self, start: int, stop: int) -> float:
        """Sum of squared reference samples in [start, stop) (no array allocated)."""
        total = 0.0
        for seg in self._overlapping(start, stop):
            part = seg.samples[max(start, seg.start) - seg.start : min(stop, seg.end) - seg.start]
            total += float(np.dot(part, part))
        return total

    def __len__(self) -> int:
        return len(self._segments)

    def _first(self, start: int) -> int:
        """Index of the first segment that may reach `start` (none before it can)."""
        return bisect.bisect_right(self._starts, start - self._longest)

    def _overlapping(self, start: int, stop: int) -> Iterator[_Segment]:
        """Segments with a sample in [start, stop), in start order."""
        end = bisect.bisect_left(self._starts, stop)
        for i in range(self._first(start), end):
            seg = self._segments[i]
            if seg.end > start:
                yield seg
