"""Echo-path presence: does the played audio actually reach the microphone?

AEC3 (through livekit, which exposes no tuning) starts conservative and, with no echo to
converge on, suppresses the whole microphone while a reference plays: a user interrupting
through headphones or on a virtual card would never be heard. So the canceller's output is
used only while an echo path is present, decided here by cross-correlating the raw
microphone of the last second with the reference.
"""

from __future__ import annotations

import logging

import numpy as np

from pipeline.echo.reference import FRAME_SAMPLES

log = logging.getLogger("echo")


class EchoPresence:
    """Does the played audio reach the microphone? Decided by normalised cross-correlation.

    The raw microphone of the last second is cross-correlated (by FFT) with the reference
    at lags of 0-600 ms: an echo, even filtered by a room, gives a clear peak; a user's
    voice, independent of the reference, stays near zero. Energy envelopes cannot do this
    (two voices' envelopes correlate by chance). Until the first second of playback has
    been judged, echo is assumed (the safe side: the assistant must not interrupt itself);
    afterwards the verdict is refreshed every 250 ms.

    It also keeps the last second of what the VAD was given (:meth:`output`), for the
    onset check (:class:`~pipeline.echo.onset.OnsetJudge`).
    """

    WINDOW = 16000  # samples (1 s) correlated
    MAX_LAG = 9600  # samples (600 ms): acoustic delay + the reference lead
    EVERY = 25  # frames between verdicts
    THRESHOLD = 0.3  # correlation from which an echo path is found
    RULE_OUT = 0.15  # ... and below which it is ruled out (a jittery loopback varies)
    FORGET = 500  # frames (5 s) of silence after which echo is assumed again
    QUIET_REF = 1e-4  # mean square (-40 dBFS): a reference below this tells nothing
    SILENT = 1e-4  # |sample| below this (-80 dBFS) is digital silence, not a sound
    EARLY = 10  # frames (100 ms) of loud reference a digitally silent microphone took in

    def __init__(self) -> None:
        self.size = self.WINDOW + self.MAX_LAG
        self.mic = np.zeros(self.size, dtype=np.float32)
        self.ref = np.zeros(self.size, dtype=np.float32)
        self.out = np.zeros(self.size, dtype=np.float32)  # what the VAD got (see `output`)
        self.pos = 0  # ring write position (same for all rings)
        self._last = 0  # where the last frame was written
        self.frames = 0  # frames since playback started
        self.idle = 0  # frames since playback stopped
        self.echo = True
        self.last_corr = 0.0
        self._silent_loud = 0  # frames of loud reference heard as digital silence (see update)

    def update(self, mic: np.ndarray, ref: np.ndarray, playing: bool) -> bool:
        """Feed one frame; True while the echo canceller's output should be used.

        Echo is assumed until the first second of playback is judged, but a microphone
        that stays digitally silent while 100 ms of the answer play out (a virtual card, a
        muted or digital input) has no echo path: it is ruled out then, so that a user who
        says "stop" within the first second is heard (AEC3 would suppress them, and the
        verdict would come after they stopped). A path that appears later is caught at the
        VAD onset it causes (pipeline.echo.onset).
        """
        if not playing:
            self.idle += 1
            if self.idle > self.FORGET:  # a new answer, maybe a new room (headphones off)
                self.frames = 0
                self.echo = True
                self._silent_loud = 0
            return True
        self.idle = 0
        n = mic.size
        self.mic[self.pos : self.pos + n] = mic
        self.ref[self.pos : self.pos + n] = ref
        self._last = self.pos
        self.pos = (self.pos + n) % self.size
        self.frames += 1
        if self.echo and self._silent_loud >= 0:
            self._early_verdict(mic, ref)
        if self.frames * n >= self.WINDOW + self.MAX_LAG // 2 and self.frames % self.EVERY == 0:
            self._verdict()
        return self.echo

    def _early_verdict(self, mic: np.ndarray, ref: np.ndarray) -> None:
        """Count loud reference frames met by digital silence; any sound ends the count
        (-1: the correlation verdict decides)."""
        if mic.max() >= self.SILENT or mic.min() <= -self.SILENT:
            self._silent_loud = -1
            return
        if float(np.dot(ref, ref)) > self.QUIET_REF * ref.size:
            self._silent_loud += 1
            if self._silent_loud >= self.EARLY:
                self.echo, self.last_corr, self._silent_loud = False, 0.0, -1
                log.info("echo path ruled out (a digitally silent microphone under %d ms of "
                         "the answer)", self.EARLY * 10)

    def _verdict(self) -> None:
        """Echo path or not, from the last second. A microphone that was digitally silent
        for most of it is judged on its sound only, and only once there is half a second of
        it: a user's first syllable, correlated over a few dozen ms, can match the
        reference by chance, and AEC3 would then suppress the rest of the barge-in. Until
        then the onset check judges the sound."""
        mic = self.newest(self.mic, self.WINDOW)
        sound = np.flatnonzero(np.abs(mic) > self.SILENT)
        if sound.size and sound[0] > 0 and self.WINDOW - sound[0] < self.WINDOW // 2:
            return  # a sound began less than 0.5 s ago: the onset check judges it
        self.last_corr = self.correlation(self.WINDOW - int(sound[0]) if sound.size else None)
        echo = self.last_corr >= (self.RULE_OUT if self.echo else self.THRESHOLD)
        if echo != self.echo:
            log.info("echo path %s (correlation %.2f)", "found" if echo else "ruled out", self.last_corr)
        self.echo = echo

    def newest(self, ring: np.ndarray, n: int) -> np.ndarray:
        """The newest `n` samples (at most the ring's size) of one of the rings, oldest
        first: a view where they are contiguous, else a copy of the two parts."""
        start = self.pos - n
        if start >= 0:
            return ring[start : self.pos]
        return np.concatenate((ring[start:], ring[: self.pos]))

    def output(self, out: np.ndarray) -> None:
        """The canceller's output for the frame last given to :meth:`update` (while playing)."""
        if self.idle == 0 and self.frames:
            self.out[self._last : self._last + out.size] = out

    def correlation(self, n: int | None = None, signal: np.ndarray | None = None) -> float:
        """Peak normalised cross-correlation of the last `n` samples (default: the window)
        of `signal` (default: the microphone) with the reference up to MAX_LAG earlier."""
        n = self.WINDOW if n is None else max(FRAME_SAMPLES, min(int(n), self.WINDOW))
        mic = self.newest(self.mic if signal is None else signal, n).astype(np.float64)
        ref = self.newest(self.ref, n + self.MAX_LAG).astype(np.float64)  # ref[MAX_LAG+k] ~ mic[k]
        e_mic = float(np.dot(mic, mic))
        if e_mic < 1e-6:
            # A microphone this quiet (RMS below -100 dBFS) while the reference plays at a
            # normal level hears no echo at all (a virtual card, a muted or digital input);
            # with a quiet reference too there is nothing to judge, so the verdict is kept.
            # An echo that starts later (a loopback that starts late, headphones taken off)
            # is caught at the VAD onset it causes (see pipeline.echo.onset).
            loud = float(np.dot(ref, ref)) > self.QUIET_REF * ref.size
            return 0.0 if loud else (1.0 if self.echo else 0.0)
        size = 1 << int(np.ceil(np.log2(2 * n + self.MAX_LAG)))  # no circular wrap-around
        spec = np.fft.rfft(ref, size) * np.conj(np.fft.rfft(mic, size))
        corr = np.fft.irfft(spec, size)[: self.MAX_LAG + 1]  # corr[j] = sum ref[j+k] mic[k]
        sq = np.concatenate([[0.0], np.cumsum(ref * ref)])
        e_ref = sq[n : n + self.MAX_LAG + 1] - sq[: self.MAX_LAG + 1]
        ok = e_ref > 1e-6
        if not ok.any():
            return 0.0
        return float(np.max(corr[ok] / np.sqrt(e_mic * e_ref[ok])))
