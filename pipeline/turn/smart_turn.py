"""Smart Turn v3.2: is the user's turn complete, judged from the sound of its last 8 s?

The model (BSD-2, int8 ONNX, 8.7 MB) and its numpy Whisper log-mel feature extractor ship
inside the `pipecat-ai` wheel, which `make setup` installs with `--no-deps`. Neither pipecat's
package ``__init__`` (loguru, its heavy imports) nor anything else of pipecat is imported: the
ONNX file is found with `importlib.util.find_spec` (which does not execute the package) and
the feature module is loaded from its file.

The model sees the last 8 s of 16 kHz audio, left-padded with zeros, and returns
P(turn complete): intonation and the shape of the last words ("the capital of ..." falls
differently from "... of Spain?"). It is one signal among others (pipeline/turn/policy.py):
on synthetic voices it misjudges some utterances in both directions.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import numpy as np

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 8 * SAMPLE_RATE
MODEL_FILE = ("audio", "turn", "smart_turn", "data", "smart-turn-v3.2-cpu.onnx")
FEATURES_FILE = ("audio", "turn", "smart_turn", "_whisper_features.py")


class SmartTurnError(RuntimeError):
    """The model or its feature extractor could not be found or loaded."""


def _pipecat_dir() -> str:
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise SmartTurnError(
            "pipecat-ai is not installed; `make setup` installs it with --no-deps "
            "(pip install --no-deps pipecat-ai==1.14.0) for Smart Turn's model file"
        )
    return list(spec.submodule_search_locations)[0]


def model_path() -> str:
    """Path of the Smart Turn v3.2 ONNX model inside the installed pipecat-ai wheel."""
    path = os.path.join(_pipecat_dir(), *MODEL_FILE)
    if not os.path.isfile(path):
        raise SmartTurnError(f"Smart Turn model not found at {path} (pipecat-ai != 1.14?)")
    return path


def load_features_module() -> ModuleType:
    """pipecat's `_whisper_features.py` loaded from its file, outside the pipecat package."""
    path = os.path.join(_pipecat_dir(), *FEATURES_FILE)
    spec = importlib.util.spec_from_file_location("_smart_turn_whisper_features", path)
    if spec is None or spec.loader is None or not os.path.isfile(path):
        raise SmartTurnError(f"Smart Turn feature extractor not found at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def last_window(audio: np.ndarray) -> np.ndarray:
    """The last 8 s of `audio` as float32, left-padded with zeros to exactly 8 s."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if x.size >= WINDOW_SAMPLES:
        return x[-WINDOW_SAMPLES:]
    out = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    if x.size:
        out[-x.size :] = x
    return out


class SmartTurn:
    """The loaded model: :meth:`probability` of a finished turn for 16 kHz float audio.

    onnxruntime runs one intra-op thread without spinning: a call costs a few tens of ms
    and happens once per pause, while Whisper and the LLM need the cores. The session is
    loaded and warmed once in the constructor so the first pause is not slower.
    """

    def __init__(self, path: str | None = None) -> None:
        import onnxruntime as ort

        self.model_path = path or model_path()
        self._features = load_features_module().compute_whisper_log_mel_features
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                self.model_path, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise SmartTurnError(f"cannot load Smart Turn model {self.model_path}: {e}") from e
        self._input = self._session.get_inputs()[0].name
        self.probability(np.zeros(SAMPLE_RATE, dtype=np.float32))  # warm-up

    def probability(self, audio_16k: np.ndarray) -> float:
        """P(the turn is complete) from the last 8 s of `audio_16k` (float32 in [-1, 1])."""
        features = self._features(last_window(audio_16k), do_normalize=True)
        out = self._session.run(None, {self._input: features[np.newaxis].astype(np.float32)})
        return float(np.asarray(out[0]).reshape(-1)[0])
