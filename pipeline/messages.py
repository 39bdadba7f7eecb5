"""The message contract: one typed class per output of the dataflow.

Like the Wyoming protocol, the vocabulary is tiny and every node speaks it. On the wire a
message is a pyarrow array (its *payload*) plus a flat metadata dict (dora allows bool, int,
float and str). Nodes never build or read metadata: they send ``msg.to_dora()`` and read
``Class.from_dora(value, metadata)``, so a key, a type or a default exists in one place, here.

| output               | class          | payload                | what it says                                |
|----------------------|----------------|------------------------|---------------------------------------------|
| microphone/audio     | `MicAudio`     | float32[n], 16 kHz     | a block of captured sound                   |
| vad/speech_started   | `SpeechStarted`| int64[1] = turn_id     | the user started a turn (interrupts)        |
| vad/utterance        | `Utterance`    | float32[n]             | the speech of a turn (tentative or final)   |
| vad/duck             | `Duck`         | int64[1] = turn_id     | pause (or resume) the assistant's answer    |
| vad/probe            | `Probe`        | float32[n]             | speech over the answer: a backchannel?      |
| asr/transcript       | `Transcript`   | utf8[1]                | what the user said                          |
| asr/probe_text       | `ProbeText`    | utf8[1]                | what a probe said (only the vad reads it)   |
| asr/text_end         | `TextEnd`      | utf8[1] = transcript   | does a tentative transcript read finished?  |
| llm/text             | `LlmText`      | utf8[1]                | an answer's text delta, or its end          |
| llm/ready            | `LlmReady`     | utf8[1]                | the assistant can answer (file mode starts) |
| llm-server/ready     | `ServerReady`  | utf8[1] = base URL     | the embedded server answers (again)         |
| llm-server/alive     | `ServerAlive`  | utf8[1] = "server"     | the server side is there (every tick, 2 s)  |
| segmenter/segment    | `Segment`      | utf8[1]                | a speakable piece of the answer, or its end |
| tts/audio            | `TtsAudio`     | float32[n]             | a chunk of a segment's voice, or the end    |
| tts/ready            | `TtsReady`     | utf8[1] = "tts"        | the voice is loaded (after a crash: resend) |
| speaker/played       | `Played`       | int64[1] = segment     | what the user really heard, and when        |
| speaker/reference    | `Reference`    | float32[n], 16 kHz     | what will be heard, for the echo canceller  |
| speaker/fault        | `DeviceFault`  | utf8[1]                | the device failed or is back (live view)    |

Rules every node follows:

* Turns. `turn_id` (int) names the turn a message belongs to. The VAD gives user turns
  ids that are multiples of :data:`TURN_STRIDE`; the assistant may start turns of its own
  (a timer that rings) with the ids in between (:func:`assistant_turn`), so both kinds stay
  ordered and never collide without any node asking another. A node that has seen turn N
  drops any message of a turn < N: that is the whole interruption protocol (as in Pipecat,
  an interruption is just a message). Messages of no turn carry :data:`NO_TURN`.
* Times. `times` holds the turn's stage timestamps (`t_<what>`, UNIX seconds) and stage
  durations (`<what>_s`, seconds). Each stage copies the times it received onto what it
  sends and adds its own, so the speaker ends up with the whole history of a turn
  (pipeline/metrics.py turns it into the latency line).
* Audio is float32 in [-1, 1], mono, with its `sample_rate`; a sender may put it on the wire
  as int16 (:data:`WIRE_AUDIO_ENV`), receivers always read float32.
* `event` tells the kind of message on outputs that carry more than one kind.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
import pyarrow as pa

# the payload encoding lives in pipeline/wire.py; re-exported: a node needs one import
from pipeline.wire import WIRE_AUDIO_ENV as WIRE_AUDIO_ENV
from pipeline.wire import WIRE_ENCODINGS as WIRE_ENCODINGS
from pipeline.wire import ContractError as ContractError
from pipeline.wire import audio_array as audio_array
from pipeline.wire import audio_of as audio_of
from pipeline.wire import empty_audio
from pipeline.wire import int_array as int_array
from pipeline.wire import text_array as text_array
from pipeline.wire import text_of as text_of
from pipeline.wire import wire_encoding as wire_encoding

NO_TURN = -1
TURN_STRIDE = 1000
"""User turns are 1000, 2000, ...; the assistant's own turns after user turn 2000 are 2001,..."""

ASR_RATE = 16000
"""The rate of microphone audio, utterances and the echo reference."""

# event names (one definition; pipeline/playback.py uses these)
DELTA = "delta"
END = "end"
SEGMENT = "segment"
STARTED = "started"
FINISHED = "finished"
TURN_END = "turn_end"
INTERRUPTED = "interrupted"
PLAY = "play"
CUT = "cut"
DELAY = "delay"

# why an answer ended (`LlmText.reason`)
REASON_STOP = "stop"
REASON_CANCELLED = "cancelled"
REASON_ERROR = "error"

Meta = dict[str, Any]
Times = dict[str, float]


def user_turn(n: int) -> int:
    """The id of the user's n-th turn (n >= 1)."""
    return n * TURN_STRIDE


def is_user_turn(turn_id: int) -> bool:
    """A turn the user started by speaking (as opposed to one the assistant started)."""
    return turn_id > 0 and turn_id % TURN_STRIDE == 0


def assistant_turn(after: int, k: int = 1) -> int:
    """The id of the assistant's k-th own turn after turn `after` (user or assistant).

    It sorts after `after` and before the user's next turn, so a user who speaks next
    interrupts it like any answer. Raises when the gap is used up (999 rings in one turn).
    """
    base = max(after, 0)
    turn = base + k
    if turn // TURN_STRIDE != base // TURN_STRIDE:
        raise ValueError(f"no assistant turn left after {after}")
    return turn


def is_stamp(key: str) -> bool:
    """A key of `times`: a timestamp `t_*` or a duration `*_s`."""
    return key.startswith("t_") or key.endswith("_s")


def now() -> float:
    """UNIX time, the clock of every `t_*` stamp."""
    return time.time()


# --- the base class ------------------------------------------------------------------------

M = TypeVar("M", bound="Message")


@dataclass
class Message:
    """One output of one node: its payload is the field named by ``PAYLOAD``.

    Every other dataclass field is a metadata key of the same name, except ``times``, whose
    items are flattened into the metadata. ``PAYLOAD_KIND`` is ``text``, ``audio`` or
    ``int``. Fields without a default are required on the wire; the rest take the one
    default written here.
    """

    OUTPUT: ClassVar[str] = ""  # the output id as dataflow.yml declares it
    PAYLOAD: ClassVar[str] = ""
    PAYLOAD_KIND: ClassVar[str] = "text"

    def to_dora(self) -> tuple[pa.Array, Meta]:
        """(payload, metadata) for `node.send_output(self.OUTPUT, ...)`."""
        meta: Meta = {}
        payload: pa.Array | None = None
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == self.PAYLOAD:
                payload = _encode(self.PAYLOAD_KIND, value)
            elif f.name == "times":
                meta.update((k, v) for k, v in value.items() if v is not None)
            elif value is not None:
                meta[f.name] = value
        assert payload is not None, f"{type(self).__name__} has no payload field"
        return payload, meta

    @classmethod
    def from_dora(cls: type[M], value: pa.Array, metadata: Mapping[str, Any]) -> M:
        """Decode a received message; raises :class:`ContractError` if it breaks the contract."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == cls.PAYLOAD:
                kwargs[f.name] = _decode(cls.PAYLOAD_KIND, value)
            elif f.name == "times":
                kwargs["times"] = {k: float(v) for k, v in metadata.items()
                                   if is_stamp(k) and isinstance(v, (int, float))
                                   and k not in _FIELD_NAMES[cls]}
            elif f.name in metadata:
                kwargs[f.name] = _coerce(cls, f, metadata[f.name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ContractError(f"{cls.__name__}: metadata key {f.name!r} is missing")
        return cls(**kwargs)


_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _register(cls: type[M]) -> type[M]:
    _FIELD_NAMES[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    return cls


def _encode(kind: str, value: Any) -> pa.Array:
    if kind == "text":
        return text_array(str(value))
    if kind == "audio":
        return audio_array(value)
    return int_array(int(value))


def _decode(kind: str, value: pa.Array) -> Any:
    if kind == "text":
        return text_of(value)
    if kind == "audio":
        return audio_of(value)
    if len(value) == 0:
        raise ContractError("an int64[1] payload is empty")
    return int(value[0].as_py())


_CASTS = {"int": int, "float": float, "str": str, "bool": bool}


def _coerce(cls: type, f: dataclasses.Field, raw: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    cast = _CASTS.get(kind)
    if cast is None:
        return raw
    try:
        return cast(raw)
    except (TypeError, ValueError):
        raise ContractError(f"{cls.__name__}.{f.name}: {raw!r} is not {kind}") from None


# --- the outputs ---------------------------------------------------------------------------

@_register
@dataclass
class MicAudio(Message):
    """microphone/audio: one block of captured sound (no turn)."""

    OUTPUT: ClassVar[str] = "audio"
    PAYLOAD: ClassVar[str] = "samples"
    PAYLOAD_KIND: ClassVar[str] = "audio"

    samples: np.ndarray
    capture_time: float  # UNIX time the block's first sample was captured
    seq: int = 0  # block counter, to see losses
    sample_rate: int = ASR_RATE


@_register
@dataclass
class SpeechStarted(Message):
    """vad/speech_started: the user started turn `turn_id`; older turns are interrupted."""

    OUTPUT: ClassVar[str] = "speech_started"
    PAYLOAD: ClassVar[str] = "turn_id"
    PAYLOAD_KIND: ClassVar[str] = "int"

    turn_id: int
    t_speech_start: float


@_register
@dataclass
class Utterance(Message):
    """vad/utterance: a turn's speech, tentative (`final` false: the user paused) or final.

    A final utterance with `same_as_tentative` holds the same audio as the last tentative
    one of its turn, so its transcript can be reused; a tentative one with it holds the audio
    of its turn's :class:`Probe` (the turn was held over the answer, then let go), whose
    transcript is reused.
    """

    OUTPUT: ClassVar[str] = "utterance"
    PAYLOAD: ClassVar[str] = "samples"
    PAYLOAD_KIND: ClassVar[str] = "audio"

    turn_id: int
    samples: np.ndarray
    t_speech_start: float
    t_speech_end: float
    t_utterance: float
    final: bool = True
    same_as_tentative: bool = False
    sample_rate: int = ASR_RATE

    @property
    def times(self) -> Times:
        return {"t_speech_start": self.t_speech_start, "t_speech_end": self.t_speech_end,
                "t_utterance": self.t_utterance}

    @property
    def duration_s(self) -> float:
        """Seconds of audio (not a metadata key: only fields are sent)."""
        return self.samples.size / self.sample_rate


@_register
@dataclass
class Duck(Message):
    """vad/duck: the user may be talking over the answer (`on`): the speaker pauses it (or,
    BACKCHANNEL_HOLD=duck, lowers its volume) at once; `on` false resumes it (it was a
    backchannel). `turn_id` is the user turn that would start; `t` when the vad decided.
    `echo`: the assistant's voice may reach the microphone (the vad's echo canceller has not
    ruled it out), so a resume from silence waits for its reference to reach the canceller."""

    OUTPUT: ClassVar[str] = "duck"
    PAYLOAD: ClassVar[str] = "turn_id"
    PAYLOAD_KIND: ClassVar[str] = "int"

    turn_id: int
    on: bool
    t: float
    echo: bool = True


@_register
@dataclass
class Probe(Message):
    """vad/probe: speech that began while the assistant was audible, sent to the ASR only to
    learn whether it is a backchannel ("yeah", "mm-hmm": pipeline/turn/backchannel.py).

    It is not a turn: a class and an output of its own (not an `Utterance` with a flag), so
    that only the nodes wired to it (the asr) ever see it, and no node that starts or answers
    turns can mistake it for one. `turn_id` is the user turn it would start.
    """

    OUTPUT: ClassVar[str] = "probe"
    PAYLOAD: ClassVar[str] = "samples"
    PAYLOAD_KIND: ClassVar[str] = "audio"

    turn_id: int
    samples: np.ndarray
    t_speech_start: float
    t_speech_end: float
    sample_rate: int = ASR_RATE
    # taken while the voice goes on (not in a pause): its words can show that the speech is
    # not a backchannel, never that it is one (more may follow); the ASR keeps no copy
    partial: bool = False


@_register
@dataclass
class ProbeText(Message):
    """asr/probe_text: the transcript of a :class:`Probe` ("" if it was nothing, or the
    assistant's own echo). Only the vad reads it; like the probe it is never a turn."""

    OUTPUT: ClassVar[str] = "probe_text"
    PAYLOAD: ClassVar[str] = "text"

    turn_id: int
    text: str
    t_probe: float = 0.0  # when the asr started on the probe
    asr_s: float = 0.0  # seconds the ASR took
    partial: bool = False  # the probe's


@_register
@dataclass
class Transcript(Message):
    """asr/transcript: what the user said in turn `turn_id` (tentative unless `final`)."""

    OUTPUT: ClassVar[str] = "transcript"
    PAYLOAD: ClassVar[str] = "text"

    turn_id: int
    text: str
    final: bool = True
    times: Times = field(default_factory=dict)
    last_word_p: float = 1.0  # Whisper's P of the last word and of the final mark (asr.py)
    end_mark_p: float = 1.0


@_register
@dataclass
class TextEnd(Message):
    """asr/text_end: how likely the sentence of a tentative transcript (`text`, turn
    `turn_id`) is to end where it stops (pipeline/turn/text_end.py); -1 = not scored (its
    words already say it goes on). Sent right after that transcript, so the LLM's speculative
    request does not wait for the score; only the vad reads it (TURN_TEXT_MODEL)."""

    OUTPUT: ClassVar[str] = "text_end"
    PAYLOAD: ClassVar[str] = "text"

    turn_id: int
    text: str
    p: float
    scorer_s: float = 0.0  # seconds the scorer took


@_register
@dataclass
class LlmText(Message):
    """llm/text: a delta of the answer (`event` = delta) or its end (`event` = end).

    `index` counts the turn's messages from 0. An end says why (`reason`: stop, cancelled or
    error); an error also names its kind (`error`), and so does the apology's delta.
    """

    OUTPUT: ClassVar[str] = "text"
    PAYLOAD: ClassVar[str] = "text"

    turn_id: int
    event: str
    index: int
    text: str = ""
    reason: str = ""
    error: str = ""
    times: Times = field(default_factory=dict)


@_register
@dataclass
class LlmReady(Message):
    """llm/ready: the assistant can answer; `endpoint` is `embedded` or the server's URL."""

    OUTPUT: ClassVar[str] = "ready"
    PAYLOAD: ClassVar[str] = "endpoint"

    endpoint: str


@_register
@dataclass
class ServerReady(Message):
    """llm-server/ready: the OpenAI-compatible server at `base_url` answers (again)."""

    OUTPUT: ClassVar[str] = "ready"
    PAYLOAD: ClassVar[str] = "base_url"

    base_url: str
    embedded: bool = True


@_register
@dataclass
class ServerAlive(Message):
    """llm-server/alive: the server side of the dataflow is still there (sent every tick).

    dora 1.1 tells the board's nodes nothing when the server's daemon dies (their inputs
    just go quiet), so the speaker watches this beat (pipeline/stages/server_watch.py).
    """

    OUTPUT: ClassVar[str] = "alive"
    PAYLOAD: ClassVar[str] = "side"

    side: str = "server"
    t: float = 0.0  # UNIX time it was sent


@_register
@dataclass
class Segment(Message):
    """segmenter/segment: a speakable piece of the answer (`event` = segment) or its end.

    `resent` marks a segment sent again after the tts node crashed.
    """

    OUTPUT: ClassVar[str] = "segment"
    PAYLOAD: ClassVar[str] = "text"

    turn_id: int
    event: str
    segment_index: int
    text: str = ""
    resent: bool = False
    times: Times = field(default_factory=dict)


@_register
@dataclass
class TtsAudio(Message):
    """tts/audio: a chunk of a segment's voice (`event` = segment) or the answer's end.

    A segment comes in chunks (`chunk_index` from 0); the one with `end_of_segment` is its
    last. The end of the answer is one empty message with `event` = end.
    """

    OUTPUT: ClassVar[str] = "audio"
    PAYLOAD: ClassVar[str] = "samples"
    PAYLOAD_KIND: ClassVar[str] = "audio"

    turn_id: int
    event: str
    segment_index: int
    sample_rate: int
    samples: np.ndarray = field(default_factory=empty_audio)
    chunk_index: int = 0
    end_of_segment: bool = True
    text: str = ""
    times: Times = field(default_factory=dict)


@_register
@dataclass
class TtsReady(Message):
    """tts/ready: the voice is loaded; `restart`: dora restarted the node, resend what it lost."""

    OUTPUT: ClassVar[str] = "ready"
    PAYLOAD: ClassVar[str] = "name"

    name: str = "tts"
    restart: bool = False


@_register
@dataclass
class Played(Message):
    """speaker/played: what the user heard of segment `segment_index` of turn `turn_id`.

    `event`: started, finished, turn_end (the whole answer was heard) or interrupted (cut
    after `played_s` seconds of it). `t` is when it happened at the speaker. `times` holds
    every timestamp of the turn so far.
    """

    OUTPUT: ClassVar[str] = "played"
    PAYLOAD: ClassVar[str] = "segment_index"
    PAYLOAD_KIND: ClassVar[str] = "int"

    turn_id: int
    event: str
    segment_index: int
    t: float
    text: str = ""
    played_s: float = 0.0
    times: Times = field(default_factory=dict)


@_register
@dataclass
class Reference(Message):
    """speaker/reference: what the speaker will play, for the echo canceller.

    `event` = play: `samples` (16 kHz) are heard from UNIX time `t_start` on; cut: nothing
    after `t_start` will be heard; delay: what was to play from `t_start` on plays
    `delay_s` later (the device stalled).
    """

    OUTPUT: ClassVar[str] = "reference"
    PAYLOAD: ClassVar[str] = "samples"
    PAYLOAD_KIND: ClassVar[str] = "audio"

    event: str
    t_start: float
    samples: np.ndarray = field(default_factory=empty_audio)
    delay_s: float = 0.0
    turn_id: int = NO_TURN
    sample_rate: int = ASR_RATE



@_register
@dataclass
class DeviceFault(Message):
    """speaker/fault: the sound device failed (`active`) or is back (`active` false).

    Only the live view listens: the speaker itself reopens the device and plays on.
    """

    OUTPUT: ClassVar[str] = "fault"
    PAYLOAD: ClassVar[str] = "message"

    message: str
    device: str = "speaker"
    active: bool = True
    t: float = 0.0  # UNIX time it happened


ALL: tuple[type[Message], ...] = (
    MicAudio, SpeechStarted, Utterance, Duck, Probe, ProbeText, Transcript, TextEnd, LlmText, LlmReady,
    ServerReady, ServerAlive, Segment, TtsAudio, TtsReady, Played, Reference, DeviceFault,
)
