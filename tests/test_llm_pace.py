"""The embedded server generates an answer's first phrase on both cores, the rest on one."""

from __future__ import annotations

import pytest

from pipeline.llm_pace import FirstPhrase, paced
from pipeline.segmenter import StreamSegmenter


def pace_prefix(text: str, step: int = 1) -> str:
    """The text generated when the pace drops to one thread, fed `step` characters a time."""
    phrase = FirstPhrase(min_words=3, max_words=10)
    for i in range(0, len(text), step):
        if phrase.feed(text[i : i + step]):
            return text[: i + step]
    return text


def segmenter_prefix(text: str) -> tuple[str, str]:
    """(text pushed when the first segment came out, that segment)."""
    seg = StreamSegmenter(first_min_words=3, max_words=20)
    for i in range(len(text)):
        out = seg.push(text[i])
        if out:
            return text[: i + 1], out[0]
    return text, (seg.finish() or [""])[0]


@pytest.mark.parametrize("answer", [
    "The capital of France is Paris. It is also its largest city.",
    "Sure, here it is: boil the egg for nine minutes.",
    "Yes. That is right, and more.",
    "One two three four five six seven eight nine ten eleven twelve.",
    "First line without a mark\nSecond line.",
])
def test_the_pace_drops_when_the_segmenter_cuts_the_first_segment(answer):
    """The server drops to one thread with the first segment's last word generated, and no
    later than the segmenter releases it (which needs the next word's first letter)."""
    pushed, first = segmenter_prefix(answer)
    paced_at = pace_prefix(answer)
    assert len(paced_at) <= len(pushed)
    assert len(paced_at.split()) >= len(first.split())


def test_a_short_yes_ends_the_phrase_but_a_clause_needs_three_words():
    phrase = FirstPhrase(min_words=3, max_words=10)
    assert not phrase.feed("Well, ")
    assert not phrase.feed("that is")
    assert phrase.feed(" right, and")
    assert phrase.feed("anything")  # and stays done
    assert FirstPhrase(3, 10).feed("Yes. ")


def test_any_split_into_tokens_gives_the_same_point():
    text = "Well, the answer is: forty two, as everyone knows."
    assert pace_prefix(text) == "Well, the answer is: "
    for step in (2, 3, 5, 7):
        done = pace_prefix(text, step)
        assert done.startswith("Well, the answer is: ") and len(done) < len("Well, the answer is: ") + step


class FakeLlama:
    """Stands for a `llama_cpp.Llama`: `paced` only hands it to the callbacks."""


def test_generation_is_fast_until_the_first_phrase_then_slow_and_slow_after_an_early_stop():
    tokens = ["The", " capital", " of", " France", " is", " Paris", ".", " It", " is", " big", "."]
    calls: list[str] = []

    def generate(llama, prompt, **kwargs):
        for i, _t in enumerate(tokens):
            calls.append(f"gen {i}")
            yield i

    wrapped = paced(generate, lambda ll: calls.append("fast"), lambda ll: calls.append("slow"),
                    lambda ll, tok: tokens[tok], min_words=3, max_words=10)
    got = list(wrapped(FakeLlama(), [1, 2, 3]))
    assert got == list(range(len(tokens)))
    # fast from the start; slow once " It" (the space after "Paris.") came, and at the end
    assert calls[0] == "fast"
    assert calls.index("slow") == calls.index("gen 7") + 1
    assert calls[-1] == "slow"

    calls.clear()
    gen = wrapped(FakeLlama(), [1])
    next(gen)
    gen.close()  # the client went away after the first token
    assert calls == ["fast", "gen 0", "slow"]


def test_tokens_sent_into_the_generator_reach_llama_cpp():
    received = []

    def generate(llama, prompt):
        sent = yield 1
        received.append(sent)
        yield 2

    wrapped = paced(generate, lambda ll: None, lambda ll: None, lambda ll, tok: "x ", 3, 10)
    gen = wrapped(FakeLlama(), [])
    assert next(gen) == 1
    assert gen.send([7, 8]) == 2
    assert received == [[7, 8]]


def test_the_server_paces_real_llama_cpp_generation(monkeypatch):
    """In the server process: llama.cpp really gets 2 threads for the first phrase, then 1,
    and the answer is the same as without pacing."""
    import llama_cpp

    from pipeline import llm_pace
    from pipeline.models import llm_serving_path

    llama = llama_cpp.Llama(llm_serving_path("", ""), n_threads=1, n_threads_batch=2, n_ctx=512, verbose=False)
    prompt = "<|im_start|>user\nTell me about Paris, in three sentences.<|im_end|>\n<|im_start|>assistant\n"

    def answer() -> str:
        out = llama.create_completion(prompt, max_tokens=40, temperature=0, stream=True)
        return "".join(chunk["choices"][0]["text"] for chunk in out)

    plain = answer()
    calls: list[tuple[int, int]] = []  # (threads, tokens in the context when set)
    real = llama_cpp.llama_set_n_threads

    def record(ctx, n, n_batch):
        calls.append((n, llama.n_tokens))
        return real(ctx, n, n_batch)

    monkeypatch.setattr(llama_cpp, "llama_set_n_threads", record)
    monkeypatch.setattr(llama_cpp.Llama, "generate", llama_cpp.Llama.generate)  # undone after the test
    llm_pace.install(2, 3, 10)
    assert answer() == plain
    assert calls[0][0] == 2 and {n for n, _ in calls[1:]} == {1}
    # one thread again within the answer, not only at its end
    assert calls[1][1] < calls[-1][1]


def test_the_embedded_server_is_paced_only_with_more_threads_for_the_first_phrase():
    from pipeline.llm_server import EmbeddedServer

    assert EmbeddedServer("m.gguf", 1, threads=1, first_phrase_threads=2).first_phrase_env() == "2,3,10"
    assert EmbeddedServer("m.gguf", 1, threads=2, first_phrase_threads=2).first_phrase_env() == ""


def test_a_llama_cpp_without_the_expected_internals_generates_unpaced(monkeypatch, capsys):
    import llama_cpp

    from pipeline import llm_pace

    def generate(self, tokens):
        yield from tokens

    monkeypatch.setattr(llama_cpp.Llama, "generate", generate)
    llm_pace.install(2, 3, 10)

    class Renamed:  # no `_ctx`: a future llama-cpp-python
        n_threads, n_threads_batch = 1, 2

        def detokenize(self, tokens):
            return b"word "

    assert list(llama_cpp.Llama.generate(Renamed(), [5, 6, 7])) == [5, 6, 7]
    assert "generating unpaced (AttributeError" in capsys.readouterr().err
