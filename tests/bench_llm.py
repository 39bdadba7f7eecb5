"""`python -m tests.bench_llm`: the embedded server's first token and token rate, per model.

Models side by side in one run (interleaved rounds, so the machine's load hits both): the
bundled Q4_1 GGUF and the Q8_0 copy the assistant serves (`pipeline.models.q8_copy`), or any
GGUF files given. Each round asks 8 questions in one conversation (history as the llm node
sends it), so the prompt cache works as in a session. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from openai import OpenAI

from pipeline.llm import Conversation
from pipeline.llm_pace import FirstPhrase
from pipeline.llm_server import EmbeddedServer
from pipeline.models import llm_gguf_path, q8_copy
from pipeline.settings import load

QUESTIONS = [
    "What is the capital of France?", "How many days are in a week?", "What color is the sky?",
    "Who wrote Romeo and Juliet?", "What is the largest ocean?", "How do I boil an egg?",
    "Name a fruit that is yellow.", "What is two plus two?",
]


def one_round(path: str, port: int, first_phrase_threads: int = 2) -> tuple[list[float], list[float], list[float], list[str], int]:
    """First-token seconds, seconds to the first phrase (see pipeline/llm_pace.py), seconds
    per later token, the answers, the server's PSS in kB."""
    server = EmbeddedServer(path, port, threads=1, batch_threads=2, nice=5, first_phrase_threads=first_phrase_threads)
    server.start()
    try:
        if not server.wait_ready(120):
            raise SystemExit(f"server did not start: {server.log_tail()}")
        client = OpenAI(base_url=server.base_url, api_key="none")
        conv = Conversation("You are a helpful voice assistant. Answer briefly in plain English.")
        client.chat.completions.create(model="x", messages=conv.messages("Hi"), max_tokens=1)
        first, phrase_s, per_token, answers = [], [], [], []
        for question in QUESTIONS:
            t0 = time.perf_counter()
            t_first = t_last = 0.0
            n, text = 0, ""
            phrase, t_phrase = FirstPhrase(), 0.0
            stream = client.chat.completions.create(
                model="x", messages=conv.messages(question), stream=True, max_tokens=60, temperature=0)
            for chunk in stream:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    n, text, t_last = n + 1, text + delta, time.perf_counter() - t0
                    t_first = t_first or t_last
                    if not t_phrase and phrase.feed(delta):
                        t_phrase = t_last
            first.append(t_first)
            phrase_s.append(t_phrase or t_last)
            per_token.append((t_last - t_first) / max(1, n - 1))
            answers.append(text.strip())
            conv.record(question, text, False)
        rollup = Path(f"/proc/{server.pid}/smaps_rollup").read_text().split("\n")
        pss = next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
        return first, phrase_s, per_token, answers, pss
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", help="GGUF files (default: the bundled one and its Q8_0 copy)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--port", type=int, default=18390)
    ap.add_argument("--pace", action="store_true",
                    help="the served model with LLM_SERVER_FIRST_PHRASE_THREADS 1 and 2, side by side")
    args = ap.parse_args()
    models_dir = load().models_dir
    bundled = llm_gguf_path("", models_dir)
    if args.pace:
        runs = [(q8_copy(bundled, models_dir), threads) for threads in (1, 2)]
    else:
        runs = [(path, 2) for path in args.models or [bundled, q8_copy(bundled, models_dir)]]
    for r in range(args.rounds):
        for path, threads in runs:
            first, phrase, per_token, answers, pss = one_round(path, args.port, threads)
            print(f"round {r + 1} {path.rsplit('/', 1)[-1]}, first phrase on {threads} thread(s): first token "
                  f"median {statistics.median(first) * 1000:.0f} ms, first phrase {statistics.median(phrase) * 1000:.0f} ms, "
                  f"then {statistics.median(per_token) * 1000:.1f} ms a token; server PSS {pss / 1024:.0f} MB", flush=True)
            if r == 0:
                for answer in answers:
                    print(f"    {answer[:90]}")


if __name__ == "__main__":
    main()
