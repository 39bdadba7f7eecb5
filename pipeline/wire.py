"""Payloads on the wire: how text, numbers and audio travel as Arrow arrays.

Split from :mod:`pipeline.messages` (the vocabulary: which messages exist and what they
carry) because this is the other half of the contract: how each payload is encoded, and the
one choice a deployment makes about it (`VOICE_WIRE_AUDIO`, float32 or int16 audio).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa


class ContractError(ValueError):
    """A message does not follow this contract (a required key is missing or mistyped)."""


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


WIRE_AUDIO_ENV = "VOICE_WIRE_AUDIO"
"""How this process sends audio payloads: `float32` (default) or `int16`.

pipeline/deploy.py sets it to int16 on the nodes whose audio crosses machines (the VAD's
utterance, the TTS's voice): half the bytes, and 16 bits are the quality of a CD, far
above what Whisper or a speaker needs. Receivers are unchanged (:func:`audio_of`).
"""
WIRE_ENCODINGS = ("float32", "int16")


def wire_encoding() -> str:
    value = os.environ.get(WIRE_AUDIO_ENV, "float32").strip() or "float32"
    if value not in WIRE_ENCODINGS:
        raise ContractError(f"{WIRE_AUDIO_ENV}={value!r}: use one of {', '.join(WIRE_ENCODINGS)}")
    return value


def audio_array(samples: np.ndarray, encoding: str | None = None) -> pa.Array:
    """Samples as an arrow array: float32 (no copy when already float32 contiguous) or int16.

    `encoding` defaults to this process's :func:`wire_encoding`. int16 clips to [-1, 1].
    """
    samples = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    if (encoding or _WIRE) == "int16":
        scaled = np.clip(np.rint(samples * 32767.0), -32767, 32767).astype(np.int16)
        return pa.array(scaled, type=pa.int16())
    return pa.array(samples, type=pa.float32())


def audio_of(value: pa.Array) -> np.ndarray:
    """Samples of an audio payload as float32 (zero-copy when the sender used float32).

    Integer payloads are scaled to [-1, 1], so a sender may choose int16 to halve what
    crosses a network without changing the contract.
    """
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


_EMPTY = np.zeros(0, dtype=np.float32)
_WIRE = wire_encoding()


def empty_audio() -> np.ndarray:
    """The shared empty audio array (a dataclass default that allocates nothing)."""
    return _EMPTY
