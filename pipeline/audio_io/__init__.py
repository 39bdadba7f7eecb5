"""Microphone and speaker: real devices through PortAudio, or WAV files with the same interface.

The nodes see two small interfaces, so device mode and file mode share every other line:
a :class:`Source` (:class:`MicStream`, :class:`MicFile`) and a :class:`Sink`
(:class:`SpeakerStream`, :class:`SpeakerFile`).

* :mod:`.devices`: finding and opening PortAudio devices, :class:`DeviceError`;
* :mod:`.clock`: capture and playback times on the wall clock;
* :mod:`.microphone`: the sources; :mod:`.sinks`: the speakers.

Why callbacks and not blocking reads/writes: PortAudio calls us on its own thread exactly
when the card needs data, so Python work elsewhere (VAD, logging, GC) cannot make the card
run dry; the callbacks do as little as possible.
"""

from pipeline.audio_io.clock import CaptureClock, PlayClock, adc_wall_time
from pipeline.audio_io.devices import DeviceError, StreamStats, find_device, list_devices
from pipeline.audio_io.microphone import MIC_RATE, AudioBlock, MicFile, MicStream, Source
from pipeline.audio_io.sinks import PIPER_RATE, Sink, Speaker, SpeakerFile, SpeakerStream

__all__ = [
    "MIC_RATE", "PIPER_RATE", "AudioBlock", "CaptureClock", "DeviceError", "MicFile",
    "MicStream", "PlayClock", "Sink", "Source", "Speaker", "SpeakerFile", "SpeakerStream",
    "StreamStats", "adc_wall_time", "find_device", "list_devices",
]
