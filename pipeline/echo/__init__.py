"""Acoustic echo cancellation: the assistant must not hear itself, yet must still hear the user.

* :mod:`~pipeline.echo.reference`: what the speaker played, on the UNIX clock.
* :mod:`~pipeline.echo.canceller`: WebRTC AEC3 (via livekit) fed with that reference.
* :mod:`~pipeline.echo.presence`: does the speaker reach the microphone at all?
* :mod:`~pipeline.echo.onset`: is a voice onset while the assistant talks its own voice?
* :mod:`~pipeline.echo.guard`: the ASR's last check (import it from there: it needs
  :mod:`pipeline.asr`, which the VAD node does not load).
"""

from pipeline.echo.canceller import EchoCanceller, EchoConfig, EchoStats, reference_lead_in_s
from pipeline.echo.onset import OnsetJudge, OnsetMeasures, OnsetRules
from pipeline.echo.presence import EchoPresence
from pipeline.echo.reference import FRAME_SAMPLES, SAMPLE_RATE, ReferenceTimeline

__all__ = [
    "FRAME_SAMPLES", "SAMPLE_RATE", "EchoCanceller", "EchoConfig", "EchoPresence", "EchoStats",
    "OnsetJudge", "OnsetMeasures", "OnsetRules", "ReferenceTimeline", "reference_lead_in_s",
]
