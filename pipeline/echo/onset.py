"""Onset judging: is a voice onset heard while the assistant talks its own voice?

The last gate before SpeechStarted, i.e. before the assistant stops talking. Echo reaches
the VAD although the canceller is there in two ways:

* Echo was ruled out (a silent microphone, or no correlation) and the VAD listens to the
  raw microphone, but the path appears later: a loopback that starts delivering late,
  headphones taken off.
* The canceller lost track for a moment (the speaker stalled, AEC3 re-converging after a
  jump of the echo delay) and lets echo through, or the VAD fires on what little it leaves.

So three measures of the onset are taken (:class:`OnsetMeasures`): how much what the VAD
heard follows the reference (an echo is a filtered copy of it, a user is independent of
it), how much the raw microphone does, and how much of the microphone's level the
canceller kept (it removes echo, not a user it cannot predict). :class:`OnsetRules` turns
them into a verdict. Vetoing a real user only delays their barge-in (they are judged again
at their next onset); letting an echo through makes the assistant interrupt itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from pipeline.echo.presence import EchoPresence
from pipeline.echo.reference import FRAME_SAMPLES

log = logging.getLogger("echo")


@dataclass(frozen=True)
class OnsetMeasures:
    """What is known of one onset.

    `corr`: peak correlation of what the VAD heard with the reference; `raw`: the same for
    the raw microphone; `kept`: RMS of what the VAD heard over RMS of the raw microphone.
    """

    corr: float
    raw: float
    kept: float


@dataclass(frozen=True)
class OnsetRules:
    """When an onset heard while the assistant talks is taken for its own voice.

    Correlations are peak normalised cross-correlations in [0, 1]; "kept" is the share of
    the microphone's RMS level left by the canceller.
    """

    correlated: float = 0.55
    """Echo if what the VAD heard correlates this much with the reference: a user's voice,
    even in the assistant's own voice, rarely does by chance."""
    cancelled: float = 0.25
    """... or if the canceller kept at most this share of the level: the onset was mostly
    echo and the VAD fired on the residue."""
    raw_copy: float = 0.85
    """... or if the raw microphone correlates this much (it is nearly a copy of the
    reference) ..."""
    raw_residue: float = 0.3
    """... and the residue still follows the reference this much: AEC3 distorted the
    assistant's voice instead of removing it."""
    half_kept: float = 0.6
    """... or if the canceller removed much of it (kept at most this share) ..."""
    half_residue: float = 0.4
    """... and the rest still follows the reference this much."""
    suspect_frames: int = 150
    """After an onset was found to be echo, the canceller is not trusted for this many
    10 ms frames (AEC3 takes about a second to re-converge) ..."""
    suspect_correlated: float = 0.3
    """... during which an onset correlating this much is echo (instead of `correlated`) ..."""
    suspect_kept: float = 0.5
    """... and so is one of which the canceller kept at most this share (instead of
    `cancelled`)."""
    definite: float = 0.8
    """With the echo path ruled out, an onset correlating less than this is not decided at
    once: a user's chance correlation falls over a longer window, an echo's does not ..."""
    defer_samples: int = 4800
    """... so it is judged again on more of the voice, up to this many samples (300 ms)."""
    extra_samples: int = 512
    """The VAD's onset frame may start up to one Silero frame before the voice it reports."""

    def is_echo(self, m: OnsetMeasures, suspect: bool) -> bool:
        """The verdict on one onset (`suspect`: the canceller recently let echo through)."""
        if suspect:
            echo = m.corr >= self.suspect_correlated or m.kept <= self.suspect_kept
        else:
            echo = m.corr >= self.correlated or m.kept <= self.cancelled
        return (echo or (m.raw >= self.raw_copy and m.corr >= self.raw_residue)
                or (m.kept <= self.half_kept and m.corr >= self.half_residue))

    def undecided(self, m: OnsetMeasures, voice_samples: int) -> bool:
        """For an onset found to be echo while the path was ruled out: wait for more voice?"""
        return m.corr < self.definite and m.kept > self.cancelled and voice_samples < self.defer_samples


class OnsetJudge:
    """Judges voice onsets on what an :class:`EchoPresence` recorded (its rings)."""

    def __init__(self, presence: EchoPresence, rules: OnsetRules | None = None) -> None:
        self.presence = presence
        self.rules = rules or OnsetRules()
        self._suspect_until = 0  # presence frame count until which onsets are suspected echo
        self.last: OnsetMeasures | None = None

    @property
    def last_corr(self) -> float:
        """`corr` of the last onset judged (for logs and tests)."""
        return self.last.corr if self.last is not None else 0.0

    def is_echo(self, n: int) -> bool | None:
        """A voice onset in the last `n` samples while the assistant talks: is it its own
        voice? None: not sure yet, ask again with more of it (see `OnsetRules.definite`).
        If it is echo, echo is assumed from now on (the canceller's output is used)."""
        p, rules = self.presence, self.rules
        if p.idle > 0 or p.frames == 0:
            return False  # nothing plays (or has played within the tail): no echo possible
        voice = n
        n = min(n + rules.extra_samples, p.frames * FRAME_SAMPLES, p.WINDOW)
        mic = p.newest(p.mic, n)
        sound = np.flatnonzero(np.abs(mic) > p.SILENT)
        if sound.size == 0:
            return False
        # From the first sample the microphone heard: the reference that played while it
        # was digitally silent (a loopback not yet delivering) would dilute the correlation.
        n -= int(sound[0])
        out = p.newest(p.out, n)
        e_mic, e_out = float(np.dot(mic[-n:], mic[-n:])), float(np.dot(out, out))
        measures = OnsetMeasures(
            corr=p.correlation(n, p.out), raw=p.correlation(n),
            kept=float(np.sqrt(e_out / e_mic)) if e_mic > 0 else 1.0,
        )
        self.last = measures
        suspect = p.frames < self._suspect_until
        echo = rules.is_echo(measures, suspect)
        if echo and not suspect and not p.echo and rules.undecided(measures, voice):
            log.debug("voice onset while the assistant talks: correlation %.2f after %d ms, "
                      "undecided", measures.corr, voice // 16)
            return None
        if echo and not suspect:  # a fixed period: a user talking over a leaking echo waits
            self._suspect_until = p.frames + rules.suspect_frames  # at most this long
        log.info("voice onset while the assistant talks: correlation %.2f (raw microphone "
                 "%.2f), %.0f%% kept by the canceller: %s", measures.corr, measures.raw,
                 100 * measures.kept, "its own voice" if echo else "the user")
        if echo and not p.echo:
            log.info("echo path found at a voice onset")
            p.echo = True
        return echo
