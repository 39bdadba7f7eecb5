"""Does the transcript read as a finished sentence? P(sentence end) from a small language model.

Whisper writes a "?" after many a half question ("Who discovered?", "Could you remind me to
call?", "Where is the nearest?"), so the final mark says little; no word list can tell those
from whole questions ending on the same kinds of words ("Who won?", "What should I cook?").
A language model can: it has read which sentences go on. The bundled SmolLM2-135M-Instruct,
given the transcript as the start of a user's chat message without its final mark, puts on
the next token being an end ("?", ".", "!", a newline, the end of the message) under 0.03
for such halves and 0.1-0.9 for whole questions (docs/echo-and-turn-taking.md has the
figures). This is the idea of LiveKit's turn detector (a fine-tuned SmolLM2-135M scoring the
end of the user's message); here the instruct model is used as it ships, so nothing is
downloaded, and only as one cue among the others (pipeline/turn/policy.py).

The model is the GGUF the embedded server serves (memory-mapped: the pages are shared with
it), run by llama.cpp on one thread: median 46 ms, max 90 ms per transcript on this machine. It
runs in the asr node, on the tentative transcripts of pauses only, so a board that only
captures audio does not need llama.cpp.
"""

from __future__ import annotations

import re

import numpy as np

PROMPT = "<|im_start|>user\n"
"""The start of a user's message in SmolLM2's chat template: the transcript follows."""

END_TEXTS = ("?", ".", "!", "\n", "<|im_end|>")
"""Next tokens that end the sentence (or the message)."""

_FINAL = re.compile(r"[\s.?!…]+$")


def unpunctuated(text: str) -> str:
    """`text` without its final marks: the model is to say whether one comes next."""
    return _FINAL.sub("", text.strip())


class SentenceEnd:
    """P(the sentence ends after `text`) by a llama.cpp model (SmolLM2's chat template)."""

    def __init__(self, gguf_path: str, threads: int = 1, n_ctx: int = 128) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self.model = llama_cpp.Llama(model_path=gguf_path, n_ctx=n_ctx, n_batch=n_ctx,
                                     n_threads=threads, n_threads_batch=threads,
                                     logits_all=False, verbose=False)
        self._prompt = self.model.tokenize(PROMPT.encode(), add_bos=False, special=True)
        ends = {self.model.tokenize(t.encode(), add_bos=False, special=True)[0] for t in END_TEXTS}
        self._ends = np.array(sorted(ends))
        self._room = n_ctx - len(self._prompt) - 1
        self._vocab = self.model.n_vocab()

    def __call__(self, text: str) -> float:
        """P(end) after `text` (its final marks removed); 1.0 for a text without words."""
        body = unpunctuated(text)
        if not any(c.isalnum() for c in body):
            return 1.0
        tokens = self.model.tokenize(body.encode(), add_bos=False, special=False)[-self._room:]
        self.model.reset()
        self.model.eval(self._prompt + tokens)
        ptr = self._llama_cpp.llama_get_logits_ith(self.model.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(self._vocab,))
        top = float(logits.max())
        weights = np.exp(logits - top)  # one 49k-float softmax per pause, not per frame
        return float(weights[self._ends].sum() / weights.sum())

    def warm_up(self) -> None:
        """One call, so the first pause of a session does not pay llama.cpp's first run."""
        self("What is the capital of")


def load(models_dir: str) -> SentenceEnd:
    """The scorer on the bundled SmolLM2 (whatever LLM answers: its scores are what the
    thresholds were chosen on); raises ModelNotFound naming the fix if it cannot be run."""
    from pipeline.models import ModelNotFound, llm_serving_path

    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        raise ModelNotFound("TURN_TEXT_MODEL=true needs llama-cpp-python where the asr node "
                            "runs (pip install -e '.[server]'), or set TURN_TEXT_MODEL=false") from exc
    return SentenceEnd(llm_serving_path("", models_dir))
