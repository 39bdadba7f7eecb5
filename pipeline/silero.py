"""Silero VAD v6 (ONNX, streaming): one 32 ms frame of 16 kHz audio in, a speech probability out.

The model ships inside the installed `faster_whisper` package; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512  # 32 ms at 16 kHz, the only window Silero v5/v6 accepts at this rate
CONTEXT_SAMPLES = 64  # tail of the previous frame the model sees in front of each frame
STATE_SHAPE = (1, 1, 128)


class VadModelError(RuntimeError):
    """The Silero model could not be found or loaded; the message says where it looked."""


def silero_model_path() -> str:
    """Path of the Silero VAD ONNX model shipped inside the installed `faster_whisper`.

    The package is located with `importlib.util.find_spec` rather than imported: importing
    faster_whisper loads CTranslate2 and PyAV, which the VAD node does not otherwise need.
    Nothing is ever downloaded.
    """
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or spec.origin is None:
        raise VadModelError("faster_whisper is not installed; it ships the Silero VAD model")
    path = os.path.join(os.path.dirname(spec.origin), "assets", "silero_vad_v6.onnx")
    if not os.path.isfile(path):
        raise VadModelError(f"Silero VAD model not found at {path} (faster_whisper too old?)")
    return path


class SileroVad:
    """Streaming Silero VAD: one 512-sample, 16 kHz frame in, one speech probability out.

    The model is stateful: each call gets the 64 last samples of the previous frame in front
    of the new one (input shape (1, 576)) and the LSTM states `h`, `c` returned by the
    previous call. Frames must therefore be fed in order, and :meth:`reset` called after a
    gap in the audio. The input buffer is allocated once; only onnxruntime's small outputs
    are allocated per frame.

    onnxruntime runs with one intra-op and one inter-op thread: a frame costs well under a
    millisecond on one core, and the machine's other cores are needed by Whisper and the LLM.
    """

    def __init__(self, model_path: str | None = None) -> None:
        import onnxruntime as ort  # imported here so the Endpointer is usable without it

        path = model_path or silero_model_path()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # errors only; the model triggers harmless warnings
        try:
            self._session = ort.InferenceSession(
                path, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise VadModelError(f"cannot load Silero VAD model {path}: {e}") from e
        self.model_path = path
        self._input = np.zeros((1, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)
        self._frame_view = self._input[0, CONTEXT_SAMPLES:]
        self._context_view = self._input[0, :CONTEXT_SAMPLES]
        self._tail_view = self._input[0, FRAME_SAMPLES:]
        self._h = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._feed = {"input": self._input, "h": self._h, "c": self._c}

    def reset(self) -> None:
        """Forget the recurrent state and the audio context (new stream, or after a gap)."""
        self._input.fill(0.0)
        self._h = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._feed["h"], self._feed["c"] = self._h, self._c

    def prob(self, frame: np.ndarray) -> float:
        """Speech probability of the next 512-sample frame (float32, 16 kHz, in [-1, 1])."""
        if frame.shape != (FRAME_SAMPLES,):
            raise ValueError(
                f"SileroVad needs frames of {FRAME_SAMPLES} samples, got {frame.shape}"
            )
        self._frame_view[:] = frame
        out, h, c = self._session.run(None, self._feed)
        self._feed["h"], self._feed["c"] = h, c
        self._context_view[:] = self._tail_view  # this frame's tail is the next one's context
        return float(out.reshape(-1)[0])
