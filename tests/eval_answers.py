"""`make eval`: how often the assistant's answers are right, on a public dev set.

The dev set (tests/data/eval_questions.json, written for this project) holds everyday
questions (facts, simple science, units, definitions, how-to, follow-ups), each with the
words a right answer must contain: every group in `expect` needs one of its words.

Text mode (default) asks the questions in order, as one conversation, straight into the
llm stage's client (pipeline/llm.py) against the embedded server, so history hygiene is
measured too. Each variant (prompt, sampling, history policy) is run in the same process,
one after the other, against the same server; the order alternates between rounds.
Printed per variant: accuracy, answers that drifted to an earlier topic, mean words per
answer, first-token and whole-answer latency (medians).

Voice mode (`--voice`) speaks the questions with Piper through the whole dataflow in file
mode and scores the answers the speaker played (pipeline/metrics.py's per-turn records).

Not a test: figures depend on the machine and the model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.llm import Conversation, LlmClient, LlmConfig
from pipeline.llm_server import EmbeddedServer
from pipeline.settings import load

DEV_SET = Path(__file__).parent / "data" / "eval_questions.json"

# The defaults before the answers were tuned (issue #12), kept to compare against.
BASELINE = {"system_prompt": "You are a helpful voice assistant. Answer briefly in plain English.",
            "temperature": 0.3, "max_tokens": 120, "history": "all"}


@dataclass
class Item:
    question: str
    expect: list[list[str]]
    follow_up: bool = False


@dataclass
class Result:
    answers: list[str] = field(default_factory=list)
    right: list[bool] = field(default_factory=list)
    drifted: list[bool] = field(default_factory=list)
    first_token_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)


def load_dev_set(path: Path = DEV_SET) -> list[Item]:
    return [Item(d["q"], d["expect"], bool(d.get("follow_up"))) for d in json.loads(path.read_text())]


def _norm(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9°,.\- ]+", " ", text.lower()) + " "


def is_right(answer: str, expect: list[list[str]]) -> bool:
    low = _norm(answer)
    return all(any(word in low for word in group) for group in expect)


def drifted(answer: str, item: Item, earlier: list[Item]) -> bool:
    """A wrong answer that carries a right answer of an earlier question (the old topic)."""
    if is_right(answer, item.expect):
        return False
    low = _norm(answer)
    own = {w for g in item.expect for w in g}
    return any(w in low and w not in own for e in earlier[-6:] for g in e.expect for w in g
               if len(w) > 3)


def ask_all(items: list[Item], client: LlmClient, conv: Conversation) -> Result:
    res = Result()
    for k, item in enumerate(items):
        messages = conv.messages(item.question)
        start = time.perf_counter()
        first = None
        text = ""
        for delta in client.stream(messages, threading.Event()):
            if first is None:
                first = time.perf_counter() - start
            text += delta
        res.total_s.append(time.perf_counter() - start)
        res.first_token_s.append(first if first is not None else res.total_s[-1])
        conv.record(item.question, text, False)
        res.answers.append(text.strip())
        res.right.append(is_right(text, item.expect))
        res.drifted.append(drifted(text, item, items[:k]))
    return res


def report(name: str, res: Result) -> str:
    n = len(res.right)
    words = statistics.mean(len(a.split()) for a in res.answers)
    return (f"{name:10s} right {sum(res.right)}/{n} ({100 * sum(res.right) / n:.0f} %), "
            f"drifted to an earlier topic {sum(res.drifted)}, {words:.1f} words per answer, "
            f"first token median {statistics.median(res.first_token_s) * 1000:.0f} ms, "
            f"whole answer median {statistics.median(res.total_s) * 1000:.0f} ms")


def variants() -> dict[str, dict]:
    s = load()
    return {"baseline": BASELINE,
            "current": {"system_prompt": s.llm_system_prompt, "temperature": s.llm_temperature,
                        "max_tokens": s.llm_max_tokens, "history": "follow-ups"}}


def make_client(base_url: str, v: dict, history_turns: int) -> tuple[LlmClient, Conversation]:
    config = LlmConfig(base_url=base_url, system_prompt=v["system_prompt"], max_tokens=v["max_tokens"],
                       temperature=v["temperature"], embedded=True, first_token_timeout_s=60,
                       token_timeout_s=30)
    conv = Conversation(v["system_prompt"], history_turns, history=v["history"],
                        examples=tuple(tuple(e) for e in v.get("examples", ())))
    return LlmClient(config), conv


def voice_mode(items: list[Item], gap_s: float, workdir: Path) -> None:
    """The questions spoken by Piper, one after the other, through the whole dataflow in file
    mode (embedded models); each answer is what the speaker played for that turn."""
    from pipeline.audio import write_wav
    from pipeline.filemode import run_file_mode
    from tests.conftest import VAD_RATE, _speech_16k

    parts = [np.zeros(int(0.3 * VAD_RATE), np.float32)]
    for item in items:
        parts += [np.asarray(_speech_16k(item.question)), np.zeros(int(gap_s * VAD_RATE), np.float32)]
    workdir.mkdir(parents=True, exist_ok=True)
    wav = workdir / "questions.wav"
    write_wav(wav, np.concatenate(parts), VAD_RATE)
    run = run_file_mode(wav, workdir=workdir, timeout_s=60 + len(items) * (gap_s + 10))
    turns = [t for t in run.turns if t.get("transcript")]
    res = Result()
    for k, (item, turn) in enumerate(zip(items, turns, strict=False)):
        answer = str(turn.get("answer", ""))
        res.answers.append(answer)
        res.right.append(is_right(answer, item.expect))
        res.drifted.append(drifted(answer, item, items[:k]))
        durations = turn.get("durations", {})
        res.first_token_s.append(float(durations.get("voice_to_voice", 0.0)))
        res.total_s.append(float(durations.get("answer_total", 0.0)))
    print(f"voice mode: {len(turns)} turns heard for {len(items)} questions "
          f"(latency columns: end of speech to first sound, and to the answer's end)")
    print(report("voice", res), flush=True)
    for item, turn in zip(items, turns, strict=False):
        print(f"    heard {turn.get('transcript')!r} for {item.question!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions")
    ap.add_argument("--show", action="store_true", help="print every wrong answer")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                    help="another variant: the current one with these fields changed")
    ap.add_argument("--port", type=int, default=18391, help="port of the embedded server")
    ap.add_argument("--voice", action="store_true", help="voice mode: spoken through the whole chain")
    ap.add_argument("--gap", type=float, default=9.0, help="voice mode: seconds between questions")
    ap.add_argument("--only", default="", help="comma-separated variant names to run")
    args = ap.parse_args()
    table = variants()
    for spec in args.variant:
        name, _, raw = spec.partition("=")
        table[name] = {**table["current"], **json.loads(raw)}
    if args.only:
        table = {k: v for k, v in table.items() if k in args.only.split(",")}
    items = load_dev_set()
    if args.limit:
        items = items[: args.limit]
    if args.voice:
        voice_mode(items, args.gap, Path("out") / "eval-voice")
        return
    s = load()
    server = dataclasses.replace(EmbeddedServer.from_settings(s), port=args.port)
    server.start()
    try:
        if not server.wait_ready(s.llm_server_start_timeout_s):
            raise SystemExit(f"the embedded server did not start: {server.log_tail()}")
        names = list(table)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                client, conv = make_client(server.base_url, table[name], s.llm_history_turns)
                res = ask_all(items, client, conv)
                print(f"round {r + 1} " + report(name, res), flush=True)
                if args.show:
                    for item, answer, ok in zip(items, res.answers, res.right, strict=True):
                        if not ok:
                            print(f"    {item.question!r} -> {answer[:100]!r}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
