"""Finding and opening PortAudio devices (through `sounddevice`), and what goes wrong.

`sounddevice` is imported lazily (:func:`import_sounddevice`): importing it raises OSError
when the PortAudio library is missing, and file mode (and the tests of everything else)
must work without it. Every failure a user can fix is a :class:`DeviceError` whose message
names the setting to change (MIC_DEVICE / MIC_FILE, SPEAKER_DEVICE / SPEAKER_FILE).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any


class DeviceError(RuntimeError):
    """A device (or PortAudio, or a MIC_FILE) cannot be used; the message says what to set."""



@dataclass
class StreamStats:
    """Counters a node logs now and then; written by the audio callback, read by anyone."""

    blocks: int = 0  # callbacks run
    overflows: int = 0  # input: the device had to drop audio (we were too slow)
    underflows: int = 0  # output: the device played silence it did not get from us
    dropped: int = 0  # input: blocks dropped because the reader fell 10 s behind
    callback_max_s: float = 0.0
    callback_total_s: float = 0.0

    @property
    def callback_mean_s(self) -> float:
        return self.callback_total_s / self.blocks if self.blocks else 0.0

    def record(self, seconds: float) -> None:
        self.blocks += 1
        self.callback_total_s += seconds
        if seconds > self.callback_max_s:
            self.callback_max_s = seconds




@dataclass(frozen=True)
class Side:
    """Names that differ between the input and the output side, for error messages."""

    kind: str  # "input" or "output"
    device_var: str
    file_var: str
    thing: str
    file_hint: str

    def help(self, devices: str) -> str:
        return (
            f"plug in a {self.thing}, set {self.device_var} to one of: {devices}, "
            f"or set {self.file_var} {self.file_hint}."
        )


SIDES = {
    "input": Side("input", "MIC_DEVICE", "MIC_FILE", "microphone",
                   "to a WAV file to run without a microphone"),
    "output": Side("output", "SPEAKER_DEVICE", "SPEAKER_FILE", "speaker",
                    "to a WAV file path to write the voice to a file instead"),
}


def _side(kind: str) -> Side:
    try:
        return SIDES[kind]
    except KeyError:
        raise ValueError(f"kind must be 'input' or 'output', got {kind!r}") from None


def import_sounddevice(kind: str = "input") -> ModuleType:
    """Import sounddevice, turning a missing PortAudio library into a DeviceError."""
    side = _side(kind)
    try:
        import sounddevice
    except ImportError:
        raise DeviceError(
            "The sounddevice package is not installed: pip install sounddevice, "
            f"or set {side.file_var} {side.file_hint}."
        ) from None
    except OSError as exc:  # "PortAudio library not found"
        raise DeviceError(
            f"The PortAudio library is not installed ({exc}): install it "
            f"(Debian/Ubuntu: apt-get install libportaudio2; macOS: brew install portaudio), "
            f"or set {side.file_var} {side.file_hint}."
        ) from None
    return sounddevice


def _channels_key(kind: str) -> str:
    return "max_input_channels" if kind == "input" else "max_output_channels"


def _query(kind: str) -> list[dict[str, Any]]:
    """All PortAudio devices (each dict has its `index`); a PortAudio failure is a DeviceError."""
    sd = import_sounddevice(kind)
    try:
        return [dict(d) for d in sd.query_devices()]
    except sd.PortAudioError as exc:
        side = _side(kind)
        raise DeviceError(
            f"PortAudio cannot list audio devices ({exc}) ({side.device_var}): "
            + side.help("(none)")
        ) from None


def list_devices(kind: str) -> list[str]:
    """`"<index> '<name>'"` of every device usable for `kind`, for messages and logs."""
    key = _channels_key(kind)
    return [f"{d['index']} '{d['name']}'" for d in _query(kind) if d.get(key, 0) > 0]


def _devices_text(kind: str) -> str:
    names = list_devices(kind)
    return ", ".join(names) if names else "(no device found)"


def find_device(spec: str, kind: str) -> int:
    """The PortAudio index for a MIC_DEVICE / SPEAKER_DEVICE value.

    `spec` is empty (the system default; an error if there is none), an integer index, or
    a case-insensitive part of the device name (an exact name wins over a partial match;
    several partial matches are an error rather than a silent guess). Errors list the
    devices the user can choose from.
    """
    side = _side(kind)
    spec = spec.strip()
    key = _channels_key(kind)
    devices = [d for d in _query(kind) if d.get(key, 0) > 0]
    if not spec:
        return _default_device(side, devices)
    if spec.lstrip("-").isdigit():
        index = int(spec)
        for d in devices:
            if d["index"] == index:
                return index
        raise DeviceError(
            f"{side.device_var}={spec!r} is not an {kind} device index: "
            + side.help(_devices_text(kind))
        )
    low = spec.lower()
    exact = [d for d in devices if d["name"].lower() == low]
    matches = exact or [d for d in devices if low in d["name"].lower()]
    if len(matches) == 1:
        return int(matches[0]["index"])
    if not matches:
        raise DeviceError(
            f"No {kind} audio device matches {side.device_var}={spec!r}: "
            + side.help(_devices_text(kind))
        )
    names = ", ".join(f"{d['index']} '{d['name']}'" for d in matches)
    raise DeviceError(
        f"{side.device_var}={spec!r} matches several {kind} devices ({names}): "
        f"set {side.device_var} to an index or a longer part of the name."
    )


def _default_device(side: Side, devices: list[dict[str, Any]]) -> int:
    sd = import_sounddevice(side.kind)
    try:
        index = int(sd.query_devices(kind=side.kind)["index"])
    except (sd.PortAudioError, ValueError):
        index = -1
    if index < 0 or not any(d["index"] == index for d in devices):
        names = ", ".join(f"{d['index']} '{d['name']}'" for d in devices) or "(no device found)"
        raise DeviceError(
            f"No {side.kind} audio device found ({side.device_var}=''): " + side.help(names)
        )
    return index


def device_name_of(index: int, kind: str) -> str:
    for d in _query(kind):
        if d["index"] == index:
            return str(d["name"])
    return str(index)


def pick_rate(sd: ModuleType, index: int, kind: str, wanted: int, forced: int | None) -> int:
    """The rate to open the device at: `forced`, else `wanted` if it takes it, else its own."""
    if forced:
        return forced
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=index, channels=1, dtype="float32", samplerate=wanted)
        return wanted
    except (sd.PortAudioError, ValueError):
        return int(sd.query_devices(index)["default_samplerate"])


def open_error(side: Side, spec: str, name: str, exc: Exception) -> DeviceError:
    return DeviceError(
        f"Cannot open {side.kind} device '{name}' ({side.device_var}={spec!r}): {exc}. "
        + side.help(_devices_text(side.kind))
    )



class StreamWatch:
    """Notices a stream that died under us (device unplugged, sound server gone)."""

    def __init__(self, side: Side, stall_s: float) -> None:
        self.side = side
        self.stall_s = stall_s
        self.closing = False
        self.died = threading.Event()
        self.last_callback = 0.0

    def finished(self) -> None:
        """sounddevice's finished_callback: fine when we closed it, an error otherwise."""
        if not self.closing:
            self.died.set()

    def check(self, stream: Any, spec: str) -> None:
        name = self.side.device_var
        if self.died.is_set() or (stream is not None and not stream.active and not self.closing):
            raise DeviceError(
                f"The {self.side.thing} stream stopped ({name}={spec!r}): the device may "
                "have been unplugged or the sound server stopped; reopen it, or "
                f"set {self.side.file_var} {self.side.file_hint}."
            )
        if self.stall_s > 0 and time.time() - self.last_callback > self.stall_s:
            raise DeviceError(
                f"No audio from the {self.side.thing} for {self.stall_s:g} s ({name}={spec!r}):"
                " the device may be in use or gone; reopen it, or "
                f"set {self.side.file_var} {self.side.file_hint}."
            )



def close_quietly(stream: Any, watch: StreamWatch) -> None:
    """Close a sounddevice stream we are done with; `watch` then does not report its end
    as a device failure. None (never opened, or closed already) is fine."""
    if stream is not None:
        watch.closing = True
        stream.close(ignore_errors=True)


@dataclass(frozen=True)
class Found:
    """A device picked for a stream: sounddevice itself, its index, name and the rate to use."""

    sd: Any
    index: int
    name: str
    rate: int


def locate(device: str, kind: str, sample_rate: int, forced_rate: int | None) -> Found:
    """The `kind` ("input" / "output") device named by `device` and the rate to open it at
    (`sample_rate` if it takes it, else its own); DeviceError names the setting."""
    sd = import_sounddevice(kind)
    index = find_device(device, kind)
    return Found(sd, index, device_name_of(index, kind), pick_rate(sd, index, kind, sample_rate, forced_rate))


class DeviceStream:
    """What a live device stream (microphone or speaker) does when it failed: `reopen`
    closes it and opens it again, looking the device up anew (a re-plugged device may
    have a new index)."""

    def start(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def reopen(self) -> Any:
        self.close()
        return self.start()
