"""Voice activity detection and endpointing: when does the user start and stop talking?

Three parts, so that the decision logic can be tested without a model:

* :class:`~pipeline.silero.SileroVad` turns one 32 ms frame into a speech probability.
* :class:`~pipeline.endpoint.Endpointer` is a pure state machine over (frame,
  probability, time) that emits the messages :class:`~pipeline.messages.SpeechStarted` and
  :class:`~pipeline.messages.Utterance` (its own module, :mod:`pipeline.endpoint`).
* :class:`VadPipeline` glues a :class:`~pipeline.audio.Framer`, the model and the endpointer
  together and timestamps every frame from the capture time of the microphone chunks.

Only 16 kHz is supported: it is what Whisper wants, and Silero's 8 kHz mode would need
different frame and context sizes for no benefit here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from pipeline import messages as m
from pipeline.audio import Framer
from pipeline.endpoint import (
    EndpointConfig,
    Endpointer,
    Event,
    OnsetVeto,
    SpeechDiscarded,
    VoiceGone,
    VoiceOnset,
)
from pipeline.messages import SpeechStarted, Utterance
from pipeline.silero import FRAME_SAMPLES, SAMPLE_RATE, SileroVad, VadModelError, silero_model_path
from pipeline.turn.policy import EndOfTurn

__all__ = [
    "FRAME_SAMPLES", "SAMPLE_RATE", "EndpointConfig", "Endpointer", "Event", "FrameModel", "OnsetVeto",
    "SileroVad", "SpeechDiscarded", "SpeechStarted", "Utterance", "VadModelError",
    "VadPipeline", "VoiceGone", "VoiceOnset", "silero_model_path",
]


class FrameModel(Protocol):
    """What the pipeline needs of a VAD model (:class:`~pipeline.silero.SileroVad`)."""

    def prob(self, frame: np.ndarray) -> float: ...

    def reset(self) -> None: ...



# --------------------------------------------------------------------------- glue


class VadPipeline:
    """Microphone chunks in, endpointing events out: Framer + SileroVad + Endpointer.

    Each frame's time is derived from the capture time of the chunk it ends in, minus the
    samples that were already buffered, so the timestamps follow the microphone's clock
    and do not drift with the chunk sizes.
    """

    def __init__(self, config: EndpointConfig | None = None, vad: FrameModel | None = None,
                 onset_veto: OnsetVeto | None = None, clock: Callable[[], float] = m.now,
                 end_of_turn: EndOfTurn | None = None) -> None:
        self.config = config or EndpointConfig()
        if self.config.sample_rate != SAMPLE_RATE or self.config.frame_samples != FRAME_SAMPLES:
            raise ValueError(
                f"VadPipeline runs Silero at {SAMPLE_RATE} Hz with {FRAME_SAMPLES}-sample frames"
            )
        self.vad = vad or SileroVad()
        self.vad.reset()  # a model shared with an earlier stream must not carry its state
        self.endpointer = Endpointer(self.config, onset_veto, clock, end_of_turn)
        self.framer = Framer(self.config.frame_samples)
        self.keep_framer = Framer(self.config.frame_samples)
        self.last_prob = 0.0
        self._pending_time: float | None = None  # capture time of the first buffered sample

    def push(
        self, chunk: np.ndarray, capture_time: float, keep: np.ndarray | None = None
    ) -> list[Event]:
        """Feed a 16 kHz chunk whose first sample was captured at `capture_time`.

        With `keep` (same length), speech is *detected* on `chunk` but the utterance is
        made of `keep`: the echo-cancelled signal is the right one to decide whether the user
        speaks, but AEC3 suppresses the first syllables of double talk, which Whisper needs;
        the raw microphone has them (and at most the ~0.2 s of the assistant's voice before
        barge-in silences it).
        """
        rate = self.config.sample_rate
        t0 = capture_time - self.framer.pending / rate
        frame_s = self.config.frame_s
        events: list[Event] = []
        n = 0
        if keep is None:
            for frame in self.framer.push(chunk):
                events.extend(self._frame(frame, t0 + n * frame_s))
                n += 1
        else:
            for frame, kept in zip(self.framer.push(chunk), self.keep_framer.push(keep), strict=True):
                events.extend(self._frame(frame, t0 + n * frame_s, kept))
                n += 1
        self._pending_time = t0 + n * frame_s
        return events

    def flush(self) -> list[Event]:
        """End of input: run the last partial frame (padded with silence), emit what is left."""
        events: list[Event] = []
        rest = self.framer.take_partial()
        if rest.size and self._pending_time is not None:
            frame = np.zeros(self.config.frame_samples, dtype=np.float32)
            frame[: rest.size] = rest
            events.extend(self._frame(frame, self._pending_time))
        events.extend(self.endpointer.flush())
        self._pending_time = None
        return events

    def set_muted(self, muted: bool) -> list[Event]:
        """Half duplex; see :meth:`Endpointer.set_muted`. The model is not run while muted
        (it saves CPU) and restarts from a clean state when unmuted."""
        if not muted and self.endpointer.muted:
            self.vad.reset()
        return self.endpointer.set_muted(muted)

    def set_speculate_ms(self, ms: int | None) -> None:
        """See :meth:`Endpointer.set_speculate_ms`."""
        self.endpointer.set_speculate_ms(ms)

    def set_threshold(self, threshold: float | None) -> None:
        """See :meth:`Endpointer.set_threshold`."""
        self.endpointer.set_threshold(threshold)

    def set_assistant_audible(self, audible: bool) -> None:
        """See :meth:`Endpointer.set_assistant_audible`."""
        self.endpointer.set_assistant_audible(audible)

    def _frame(
        self, frame: np.ndarray, frame_time: float, kept: np.ndarray | None = None
    ) -> Sequence[Event]:
        if self.endpointer.muted:
            return ()
        self.last_prob = self.vad.prob(frame)
        return self.endpointer.process(frame if kept is None else kept, self.last_prob, frame_time)
