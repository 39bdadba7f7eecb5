"""The message contract: every output id, its dtype and its metadata, in one place.

Like the Wyoming protocol, the vocabulary is tiny and every node speaks it. Every message
on the wire is a pyarrow array plus a flat metadata dict (dora allows bool/int/float/str).

| output               | value                 | metadata (besides `turn_id`)                           |
|----------------------|-----------------------|--------------------------------------------------------|
| microphone/audio     | float32[n], mono      | sample_rate, capture_time, seq (no turn: turn_id = -1) |
| vad/speech_started   | int64[1] = turn_id    | t_speech_start                                         |
| vad/utterance        | float32[n], mono      | sample_rate, t_speech_start, t_speech_end              |
| asr/transcript       | utf8[1]               | t_* so far + t_transcript, asr_s                        |
| llm/text             | utf8[1]               | event = delta or end, index, t_* (end: reason, error)   |
| segmenter/segment    | utf8[1]               | event = segment or end, segment_index, t_*             |
| tts/audio            | float32[n], mono      | sample_rate, segment_index, chunk_index, end_of_segment, text, event |
| tts/ready            | utf8[1] = "tts"       | restart (restarted by dora: send the lost segments)    |
| speaker/played       | int64[1] = seg index  | event = started/finished/turn_end/interrupted, text    |
| speaker/reference    | float32[n], 16 kHz    | event = play (t_start: when it will be heard) or cut   |

Rules every node follows:

* `turn_id` (int) is given by the VAD when speech starts; it increases by one per turn.
  A node that has seen `speech_started` for turn N drops any message of a turn < N.
  That is the whole interruption protocol (as in Pipecat, interruption is just a message).
* Timestamps are UNIX seconds (float) named `t_<what>`; each node copies every `t_*` key
  it receives onto what it sends, so the speaker ends up with the whole history of a turn.
* Audio is float32 in [-1, 1], mono, with its `sample_rate` in the metadata.
* `event` tells the kind of message on outputs that carry more than one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

NO_TURN = -1

# event names
DELTA = "delta"
END = "end"
SEGMENT = "segment"
STARTED = "started"
FINISHED = "finished"
TURN_END = "turn_end"
INTERRUPTED = "interrupted"

# output ids (the YAML declares the same names)
MIC_AUDIO = "audio"
VAD_SPEECH_STARTED = "speech_started"
VAD_UTTERANCE = "utterance"
ASR_TRANSCRIPT = "transcript"
LLM_TEXT = "text"
SEGMENTER_SEGMENT = "segment"
TTS_AUDIO = "audio"
TTS_READY = "ready"
SPEAKER_PLAYED = "played"
SPEAKER_REFERENCE = "reference"

Meta = dict[str, Any]


def times(meta: Mapping[str, Any]) -> Meta:
    """The `t_*` timestamps (and durations) of a message, to carry onto the next one."""
    return {k: v for k, v in meta.items() if k.startswith("t_") or k.endswith("_s")}


def turn_of(meta: Mapping[str, Any]) -> int:
    value = meta.get("turn_id", NO_TURN)
    try:
        return int(value)
    except (TypeError, ValueError):
        return NO_TURN


def text_array(text: str) -> pa.Array:
    return pa.array([text], type=pa.utf8())


def text_of(value: pa.Array) -> str:
    """The text of a message; tolerant of an empty array (never crashes a node)."""
    if len(value) == 0:
        return ""
    item = value[0].as_py()
    return "" if item is None else str(item)


def int_array(number: int) -> pa.Array:
    return pa.array([number], type=pa.int64())


def audio_array(samples: np.ndarray) -> pa.Array:
    """float32 samples as an arrow array without a copy when already float32 contiguous."""
    samples = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    return pa.array(samples, type=pa.float32())


def audio_of(value: pa.Array) -> np.ndarray:
    """Samples of an audio message as float32 (zero-copy when the sender used float32)."""
    if len(value) == 0:
        return np.zeros(0, dtype=np.float32)
    arr = value.to_numpy(zero_copy_only=False)
    if arr.dtype != np.float32:
        if np.issubdtype(arr.dtype, np.integer):
            scale = float(np.iinfo(arr.dtype).max)
            arr = arr.astype(np.float32) / scale
        else:
            arr = arr.astype(np.float32)
    return arr


@dataclass
class Message:
    """One message as a node sees it: output id, value and metadata."""

    id: str
    value: pa.Array
    metadata: Meta = field(default_factory=dict)

    @property
    def turn_id(self) -> int:
        return turn_of(self.metadata)

    @property
    def event(self) -> str:
        return str(self.metadata.get("event", ""))
