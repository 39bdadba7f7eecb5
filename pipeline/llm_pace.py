"""Both cores for the LLM until the first phrase of an answer is out, then one.

On 2 cores the embedded llama.cpp generates on one thread so that Piper, which speaks the
answer while the rest is generated, has the other (`LLM_SERVER_THREADS`). But until the
first segment of an answer is complete, nothing else has work: the user waits in silence
for those first ~8 tokens, and llama.cpp makes them in 16 ms each on 2 threads instead of
23-25 ms on one (SmolLM2-135M Q8_0, this machine). So each completion starts on
`fast` threads, and drops to the server's own thread count as soon as the text generated
so far holds what the segmenter will cut as the first segment: a sentence mark followed by
a space, a clause mark followed by a space after `min_words` words, a line break, or
`max_words` words. That is
an approximation of `pipeline.segmenter` (which the server does not load); erring either
way only costs speed, never text.

Installed in the server process (see `pipeline.llm_server`) by wrapping
`llama_cpp.Llama.generate`, the generator every completion runs through; it only imports
the standard library so the server stays small.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

_SENTENCE = frozenset(".!?…")
_CLAUSE = frozenset(",;:")


@dataclass
class FirstPhrase:
    """Tells, token text by token text, when the first phrase of an answer is complete."""

    min_words: int = 3
    max_words: int = 10
    _words: int = field(default=0, init=False)
    _in_word: bool = field(default=False, init=False)
    _after: str = field(default="", init=False)  # the last character
    done: bool = field(default=False, init=False)

    def feed(self, text: str) -> bool:
        """Add generated text; True once the first phrase is complete (and from then on)."""
        for ch in text:
            if self.done:
                break
            if ch == "\n" and self._words:
                self.done = True
            elif ch.isspace():
                if self._words and (self._after in _SENTENCE
                                    or (self._after in _CLAUSE and self._words >= self.min_words)):
                    self.done = True
                self._in_word = False
            elif ch.isalnum() and not self._in_word:
                self._words += 1
                self._in_word = True
                self.done = self._words > self.max_words
            self._after = ch
        return self.done


def paced(
    generate: Callable[..., Generator[int, Any, None]],
    go_fast: Callable[[Any], None],
    go_slow: Callable[[Any], None],
    text_of: Callable[[Any, int], str],
    min_words: int,
    max_words: int,
) -> Callable[..., Generator[int, Any, None]]:
    """`Llama.generate` that calls `go_fast(llama)` at its start and `go_slow(llama)` once
    the first phrase is out (or the generation ends). `text_of(llama, token)` gives a
    token's text. Tokens sent into the generator (llama-cpp-python's protocol for replacing
    the continuation) are passed on.
    """

    def generate_paced(llama: Any, *args: Any, **kwargs: Any) -> Generator[int, Any, None]:
        phrase = FirstPhrase(min_words, max_words)
        inner = generate(llama, *args, **kwargs)
        go_fast(llama)
        try:
            sent = None
            while True:
                try:
                    token = inner.send(sent)
                except StopIteration:
                    return
                if not phrase.done and phrase.feed(text_of(llama, token)):
                    go_slow(llama)
                sent = yield token
        finally:
            go_slow(llama)
            inner.close()

    return generate_paced


def install(fast: int, min_words: int, max_words: int) -> None:
    """Wrap `llama_cpp.Llama.generate` in this process (the embedded server)."""
    import llama_cpp

    broken: list[str] = []

    def threads(llama: Any, n: int) -> None:
        # llama-cpp-python internals: if a release renames them, generate unpaced (on the
        # server's own threads) rather than fail every request
        if broken:
            return
        try:
            llama_cpp.llama_set_n_threads(llama._ctx.ctx, n, llama.n_threads_batch)
        except (AttributeError, TypeError, ctypes.ArgumentError) as exc:
            broken.append(str(exc))
            print(f"llm_pace: generating unpaced ({type(exc).__name__}: {exc})", file=sys.stderr, flush=True)

    def text_of(llama: Any, token: int) -> str:
        return llama.detokenize([token]).decode("utf-8", errors="ignore")

    llama_cpp.Llama.generate = paced(  # type: ignore[method-assign]
        llama_cpp.Llama.generate,
        lambda llama: threads(llama, fast),
        lambda llama: threads(llama, llama.n_threads),
        text_of, min_words, max_words,
    )
