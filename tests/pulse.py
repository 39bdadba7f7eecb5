"""PulseAudio control for the sound tests: `pactl` output parsed by its columns and fields.

`pactl list short ...` prints tab-separated columns and may end a line with an empty one
(a module loaded without arguments, or whose last column is empty), so lines are split on
tabs and module arguments parsed as shell-quoted words, never matched as substrings.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

PULSE_SETUP = Path(__file__).resolve().parent.parent / ".ci" / "pulse-setup.sh"


def pactl(*args: str) -> str:
    return subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=30).stdout


def short_rows(text: str) -> list[list[str]]:
    """The rows of a `pactl list short ...` output, each split into its tab-separated columns."""
    return [line.split("\t") for line in text.splitlines() if line.strip()]


def module_arguments(argument: str) -> dict[str, str]:
    """`sink_name=a sink_properties=device.description="A b"` -> {"sink_name": "a", ...}."""
    out: dict[str, str] = {}
    for word in shlex.split(argument):
        key, _, value = word.partition("=")
        out[key] = value
    return out


def null_sink_module(modules: str, name: str) -> str | None:
    """Index of the module-null-sink that made sink `name`, in `pactl list short modules`."""
    for row in short_rows(modules):
        if len(row) >= 2 and row[1].strip() == "module-null-sink":
            argument = row[2] if len(row) > 2 else ""
            if module_arguments(argument).get("sink_name") == name:
                return row[0].strip()
    return None


def device_index(kind: str, name: str) -> str:
    """Index of the sink or source (`kind` "sinks"/"sources") called `name`, "?" if none."""
    for row in short_rows(pactl("list", "short", kind)):
        if len(row) >= 2 and row[1].strip() == name:
            return row[0].strip()
    return "?"


def parse_streams(text: str) -> list[tuple[int, str, int]]:
    """(index, device index, process id) of each stream in `pactl list source-outputs` or
    `pactl list sink-inputs` (process id -1 when the stream names none)."""
    found: list[tuple[int, str, int]] = []
    index, device, pid = -1, "", -1
    for raw in text.splitlines() + [""]:
        line = raw.strip()
        if line.startswith(("Source Output #", "Sink Input #")) or not line:
            if index >= 0:
                found.append((index, device, pid))
            index, device, pid = (int(line.split("#", 1)[1]), "", -1) if line else (-1, "", -1)
        elif line.startswith(("Source:", "Sink:")):
            device = line.split(":", 1)[1].strip()
        elif line.startswith("application.process.id"):
            pid = int(line.split("=", 1)[1].strip().strip('"'))
    return found


def streams_of(kind: str, pids: set[int]) -> dict[int, str]:
    """PulseAudio streams (`source-output` or `sink-input`) of these processes: index -> device index."""
    return {index: device for index, device, pid in parse_streams(pactl("list", f"{kind}s")) if pid in pids}


def remove_null_sink(name: str) -> None:
    """Unload the null sink `name` (its monitor source goes with it): the device is gone."""
    modules = pactl("list", "short", "modules")
    index = null_sink_module(modules, name)
    if index is None:
        raise AssertionError(f"no null sink {name!r} loaded:\n{modules}")
    subprocess.run(["pactl", "unload-module", index], check=True, timeout=30)


def kill_streams(kind: str, pids: set[int]) -> None:
    """What an unplugged device does to a stream when no sound server moves it elsewhere (plain
    ALSA, a USB card opened directly): the stream dies under the process."""
    streams = streams_of(kind, pids)
    assert streams, f"no {kind} of the assistant:\n" + pactl("list", "short", f"{kind}s")
    for index in streams:
        subprocess.run(["pacmd", f"kill-{kind}", str(index)], check=True, timeout=30)


def restore_sound_card() -> None:
    """Both null sinks back, and the defaults (what every other sound test expects)."""
    done = subprocess.run(["bash", str(PULSE_SETUP)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
