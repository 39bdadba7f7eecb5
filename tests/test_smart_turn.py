"""Smart Turn v3.2 from the pipecat-ai wheel: loaded without pipecat, and it hears a finished
question (the bundled one) as finished and its first half as not."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from pipeline.audio import read_wav
from pipeline.turn.smart_turn import WINDOW_SAMPLES, last_window


def test_last_window_keeps_the_end_and_pads_on_the_left() -> None:
    short = np.arange(1, 11, dtype=np.float32)
    w = last_window(short)
    assert w.size == WINDOW_SAMPLES and w[-10:].tolist() == short.tolist() and not w[:-10].any()
    long = np.arange(WINDOW_SAMPLES + 5, dtype=np.float32)
    assert last_window(long)[0] == 5.0


def test_loading_does_not_import_pipecat() -> None:
    code = ("import sys; from pipeline.turn.smart_turn import SmartTurn; SmartTurn(); "
            "print(sorted(m for m in sys.modules if m.startswith(('pipecat', 'loguru'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_finished_question_scores_higher_than_its_first_half() -> None:
    from importlib.resources import files

    from pipeline.turn.smart_turn import SmartTurn

    audio, rate = read_wav(str(files("pipeline") / "data" / "question.wav"))
    assert rate == 16000
    model = SmartTurn()
    whole = model.probability(audio)
    half = model.probability(audio[: audio.size // 2])
    assert whole > 0.5 > half
