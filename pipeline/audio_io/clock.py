"""When a block of audio was captured, or will be heard: PortAudio's stream times on the
wall clock, smoothed so the timestamps downstream (VAD, echo canceller, metrics) are even.
"""

from __future__ import annotations


def adc_wall_time(
    now: float, current_time: float, adc_time: float, block_s: float, max_age_s: float = 2.0
) -> float:
    """UNIX time of the first sample of an input callback's block.

    PortAudio's stream clock is only meaningful relative to itself, so the age of the block
    (`currentTime - inputBufferAdcTime`) is subtracted from the wall clock read in the
    callback. An age above `max_age_s` is not believed: over ALSA + PulseAudio the first
    second of a stream reports ages of ~0.7 s while blocks demonstrably arrive ~20 ms after
    capture (a tone played at a known time shows up there). Without a believable ADC time
    the block is assumed to have just been completed: now - its duration.
    """
    age = current_time - adc_time
    if current_time > 0 and adc_time > 0 and 0.0 <= age <= max_age_s:
        return now - age
    return now - block_s


class CaptureClock:
    """Evenly spaced capture times from jittery per-block estimates.

    PortAudio's ADC times over ALSA/PulseAudio jitter by tens of milliseconds from block to
    block (the server delivers in fragments), while the samples themselves are evenly spaced.
    So the clock advances by one block per block and only leans slowly (`gain`) towards the
    estimates. Stamps never go backwards (the VAD and the metrics subtract them): an estimate
    more than `max_error_s` later re-anchors the clock (start, overflow, dropped block), one
    that much earlier (a burst of blocks after a stall) is caught up faster, but by at most
    half a block per block.

    `latest` (optional) is the latest time the block can have started: the wall time its
    callback ran, less its duration. A clock more than `hold_margin_s` past it is provably
    ahead, which happens when a backlog arrives in one burst: measured in the dataflow, the
    microphone node's first callback ran ~3.4 s late (the process busy starting up, most
    likely holding the GIL), then 170 blocks came within 12 ms, all estimated "now" (their
    ADC ages were beyond `max_age_s`). Stepping one block per block put the stamps ~1.6 s in the
    future, and catching that up took ~8 s of stamps running 10-50% slow: the echo
    canceller, which pairs each microphone frame with the speaker audio of its stamp, saw
    the echo delay drift by ~100 ms during the first answer and let the echo through. So
    such a block is stamped no later than `latest` (held at the previous stamp if that is
    later, never backwards): a burst shares one stamp, and the blocks after it are on time.
    """

    def __init__(
        self, rate: int, max_error_s: float = 0.1, gain: float = 0.02, fast_gain: float = 0.25,
        hold_margin_s: float = 0.01,
    ) -> None:
        self.rate = rate
        self.max_error_s = max_error_s
        self.gain = gain
        self.fast_gain = fast_gain
        self.hold_margin_s = hold_margin_s
        self._next: float | None = None
        self._last = float("-inf")

    def stamp(self, estimate: float, frames: int, latest: float | None = None) -> float:
        """Capture time of a block of `frames` whose first sample was estimated at `estimate`
        (and cannot have been captured after `latest`, if given)."""
        duration = frames / self.rate
        if self._next is None or estimate - self._next > self.max_error_s:
            self._next = estimate
        else:
            error = estimate - self._next
            gain = self.fast_gain if error < -self.max_error_s else self.gain
            self._next += max(gain * error, -0.5 * duration)
        stamp = self._next
        if latest is not None and stamp > latest + self.hold_margin_s:
            stamp = max(self._last, min(estimate, latest))
        self._last = stamp
        self._next = stamp + duration
        return stamp

    def reset(self) -> None:
        self._next = None
        self._last = float("-inf")


class PlayClock:
    """When each output block reaches the speaker: DAC estimates, kept in sequence.

    A block cannot start playing before the previous one has finished, but PortAudio's DAC
    times break that rule right when it matters: after an underflow ALSA refills the buffer
    with a burst of callbacks that all report "now". Taking max(estimate, end of previous
    block - `slack_s`) keeps such bursts sequential and follows real gaps at once; the small
    slack (2.5% of a 20 ms block) lets the stamps follow a device clock that runs a little
    fast instead of drifting ahead for the whole session.

    A refill cannot hold more than the device's buffer, so a stamp more than `max_ahead_s`
    past its estimate is not believed: the estimate is taken instead. Over ALSA's PulseAudio
    plugin a stream sometimes underflows ~150 times within a second (each recovery discards
    what the device held), and without that bound every one of those callbacks moved the
    stamps 20 ms further ahead: ~2.6 s, kept for the rest of the session, which made every
    `started` time and the echo canceller's reference seconds late (the vad then took a
    user speaking right after an answer for the answer's echo).
    """

    def __init__(self, rate: int, slack_s: float = 0.0005, max_ahead_s: float = 0.25) -> None:
        self.rate = rate
        self.slack_s = slack_s
        self.max_ahead_s = max_ahead_s
        self._next = 0.0

    @classmethod
    def for_device(cls, rate: int, latency_s: float, block_frames: int) -> PlayClock:
        """The clock of a stream with this latency and block: a refill holds at most about
        latency + one block; twice that is allowed for jitter."""
        return cls(rate, max_ahead_s=2.0 * (latency_s + block_frames / rate))

    def stamp(self, estimate: float, frames: int) -> float:
        t0 = max(estimate, self._next - self.slack_s)
        if t0 - estimate > self.max_ahead_s:
            t0 = estimate  # more than the device can hold: the blocks before were dropped
        self._next = t0 + frames / self.rate
        return t0
