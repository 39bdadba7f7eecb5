"""`make eval`: how often the assistant's answers are right, on a public dev set.

The dev set (tests/data/eval_questions.json, written for this project) holds everyday
questions (facts, simple science, units, definitions, how-to, follow-ups), each with the
words a right answer must contain: every group in `expect` needs one of its words.

Text mode (default) asks the questions in order, as one conversation, the way the product
meets them: each is a final transcript handed to the llm stage (`LlmStage.answer`: the
skills first, then the LLM through the responder) against the embedded server, and each
answer is reported heard, so history hygiene is measured too. No ASR, TTS or audio: fast.
Each variant (prompt, sampling, answer length, history policy, skills on or off) runs in
the same process, one after the other, against the same server; the order alternates
between rounds. `before` is the assistant as it was (no skills, old prompt, temperature
0.3, whole history, whole answers); `after` is the current settings.
Printed per variant: accuracy per split (dev; held-out; held-out-2, written to confirm a
tuning round once at its end), each with the LLM's part (the questions no skill answers),
answers that drifted to an earlier topic, mean words per answer, first-text and
whole-answer latency (medians). `--compare` prints the questions the variants disagree on.

Voice mode (`--voice`) speaks the questions with Piper through the whole dataflow in file
mode and scores the answers the speaker played (pipeline/metrics.py's per-turn records).

Not a test: figures depend on the machine and the model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import queue
import random
import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import messages as m
from pipeline.llm import Conversation, LlmClient, LlmConfig
from pipeline.llm_server import EmbeddedServer
from pipeline.settings import load
from pipeline.skills import Skills
from pipeline.stages.llm import LlmStage

DEV_SET = Path(__file__).parent / "data" / "eval_questions.json"

# The defaults before the answers were tuned (issue #12), kept to compare against.
# No skills, the whole answer, the server's default sampling; a fixed seed, so that the
# 0.3 temperature draws the same answers in every run.
BASELINE = {"system_prompt": "You are a helpful voice assistant. Answer briefly in plain English.",
            "temperature": 0.3, "max_tokens": 120, "history": "all", "skills": False,
            "max_sentences": 0, "sampling": {"seed": 12}}


@dataclass
class Item:
    question: str
    expect: list[list[str]]
    follow_up: bool = False
    split: str = "dev"  # "held-out" and "held-out-2" are never tuned on and reported apart


@dataclass
class Result:
    answers: list[str] = field(default_factory=list)
    right: list[bool] = field(default_factory=list)
    drifted: list[bool] = field(default_factory=list)
    first_token_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)


# `"heldout": true` (or 1) marks the first held-out set, `"heldout": 2` the second one,
# written later to confirm the choices made on the dev and first held-out sets.
SPLITS = ("dev", "held-out", "held-out-2")


def load_dev_set(path: Path = DEV_SET) -> list[Item]:
    return [Item(d["q"], d["expect"], bool(d.get("follow_up")), SPLITS[int(d.get("heldout", 0))])
            for d in json.loads(path.read_text())]


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


class _NoSkills(Skills):
    """The assistant before the skills: everything goes to the LLM (the "before" variant)."""

    def claims(self, text: str, now: object = None) -> bool:
        return False

    def handle(self, text: str, now: object = None) -> None:
        return None


class _InstructionInUser(Conversation):
    """A variant: the instruction goes at the head of the question, not in a system message."""

    def messages(self, question: str) -> list[dict[str, str]]:
        msgs = super().messages(question)[1:]
        if question:
            msgs[-1] = {"role": "user", "content": f"{self.system_prompt}\n\n{question}"}
        return msgs


class StageRun:
    """The product's path for one variant: each question is a final transcript handed to the
    llm stage (`LlmStage.answer`: skills first, then the LLM through the responder), and the
    answer is heard to its end (the speaker's `played` reports), so history, skills' memory
    and prompt cache behave as in the dataflow."""

    def __init__(self, client: LlmClient, conv: Conversation, skills: bool) -> None:
        self.out: queue.Queue[m.Message] = queue.Queue()
        self.stage = LlmStage(client, conv, "Sorry, I can't answer right now.", self.out.put,
                              skills=Skills() if skills else _NoSkills())
        self.stage.start()
        self.stage.handle(m.ServerReady(client.config.base_url, embedded=True))
        self._wait(lambda msg: isinstance(msg, m.LlmReady))
        self.turn = 0

    def _wait(self, done: Callable[[m.Message], bool]) -> m.Message:
        while True:
            msg = self.out.get(timeout=120)
            if done(msg):
                return msg

    def ask(self, question: str) -> tuple[str, float, float]:
        """The answer, seconds to its first text and to its end."""
        self.turn += 1
        turn = self.turn
        start = time.perf_counter()
        self.stage.handle(m.SpeechStarted(turn, m.now()))
        self.stage.handle(m.Transcript(turn, question, True, {"t_speech_end": m.now(), "t_transcript": m.now()}))
        first: float | None = None
        text = ""
        while True:
            msg = self.out.get(timeout=120)
            if not isinstance(msg, m.LlmText) or msg.turn_id != turn:
                continue
            if msg.event == m.DELTA:
                first = time.perf_counter() - start if first is None else first
                text += msg.text
            elif msg.event == m.END:
                break
        total = time.perf_counter() - start
        for event in (m.FINISHED, m.TURN_END):
            self.stage.handle(m.Played(turn, event, 0, m.now(), text=text if event == m.FINISHED else ""))
        # A trimmed history is read by the server now (`LlmClient.prefill`), while a user
        # would still be silent; the next question waits for it as it would in a real turn.
        for thread in threading.enumerate():
            if thread.name == "prefill":
                thread.join()
        return text, (first if first is not None else total), total

    def close(self) -> None:
        self.stage.finish()


def ask_all(items: list[Item], run: StageRun) -> Result:
    res = Result()
    for k, item in enumerate(items):
        text, first, total = run.ask(item.question)
        res.first_token_s.append(first)
        res.total_s.append(total)
        res.answers.append(text.strip())
        res.right.append(is_right(text, item.expect))
        res.drifted.append(drifted(text, item, items[:k]))
    return res


def shuffled(items: list[Item], seed: int) -> list[Item]:
    """The questions in another order (each follow-up stays right after its question): the
    sets are grouped by topic, which a whole-history variant turns into in-topic examples
    that real conversations do not give."""
    groups: list[list[Item]] = []
    for item in items:
        if item.follow_up and groups:
            groups[-1].append(item)
        else:
            groups.append([item])
    random.Random(seed).shuffle(groups)
    return [item for group in groups for item in group]


def skill_questions(items: list[Item]) -> set[str]:
    """The questions a skill answers in the product (units, arithmetic...), so the LLM's own
    share of a split can be compared between variants with and without skills."""
    skills = Skills()
    return {item.question for item in items if skills.answer_now(item.question) is not None}


def report(name: str, res: Result, items: list[Item]) -> str:
    """One part per split (dev, held-out, held-out-2; in brackets the questions no skill
    answers, the LLM's share) and the latency over all questions."""
    parts = []
    by_skill = skill_questions(items)
    for split in SPLITS:
        idx = [k for k, item in enumerate(items[: len(res.right)]) if item.split == split]
        if idx:
            right = sum(res.right[k] for k in idx)
            llm = [k for k in idx if items[k].question not in by_skill]
            parts.append(f"{split} {right}/{len(idx)} ({100 * right / len(idx):.0f} %; "
                         f"LLM part {sum(res.right[k] for k in llm)}/{len(llm)})")
    words = statistics.mean(len(a.split()) for a in res.answers) if res.answers else 0.0
    return (f"{name:10s} right: {', '.join(parts)}; drifted to an earlier topic {sum(res.drifted)}, "
            f"{words:.1f} words per answer, "
            f"first token median {statistics.median(res.first_token_s) * 1000:.0f} ms, "
            f"whole answer median {statistics.median(res.total_s) * 1000:.0f} ms")


def compare(results: dict[str, Result], items: list[Item]) -> list[str]:
    """The questions on which the variants disagree (right for some, wrong for others), with
    each variant's answer: where a setting wins or loses answers."""
    lines = []
    for k, item in enumerate(items):
        marks = {name: res.right[k] for name, res in results.items() if k < len(res.right)}
        if len(set(marks.values())) > 1:
            lines.append(f"  [{item.split}] {item.question!r}")
            lines += [f"      {'+' if marks[name] else '-'} {name:10s} {results[name].answers[k][:110]!r}"
                      for name in marks]
    return lines


def variants() -> dict[str, dict]:
    s = load()
    return {"before": BASELINE,
            "after": {"system_prompt": s.llm_system_prompt, "temperature": s.llm_temperature,
                      "max_tokens": s.llm_max_tokens, "history": s.llm_history, "skills": True,
                      "max_sentences": s.llm_max_sentences,
                      "sampling": {"repeat_penalty": s.llm_repeat_penalty}}}


def make_run(base_url: str, v: dict, history_turns: int) -> StageRun:
    """A variant: prompt, sampling, answer length, history policy, skills on or off, and
    where the instruction goes (`"instruction": "user"`: at the head of the question)."""
    config = LlmConfig(base_url=base_url, system_prompt=v["system_prompt"], max_tokens=v["max_tokens"],
                       temperature=v["temperature"], embedded=True, first_token_timeout_s=60,
                       token_timeout_s=30, max_sentences=v.get("max_sentences", 0),
                       sampling=tuple(sorted(v.get("sampling", {}).items())))
    kind = _InstructionInUser if v.get("instruction") == "user" else Conversation
    conv = kind(v["system_prompt"], v.get("history_turns", history_turns), history=v["history"],
                examples=tuple(tuple(e) for e in v.get("examples", ())))
    return StageRun(LlmClient(config), conv, skills=v.get("skills", False))


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
    print(report("voice", res, items), flush=True)
    for item, turn in zip(items, turns, strict=False):
        print(f"    heard {turn.get('transcript')!r} for {item.question!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions")
    ap.add_argument("--split", default="all",
                    help=f"comma-separated splits to ask ({', '.join(SPLITS)}) or all")
    ap.add_argument("--show", action="store_true", help="print every wrong answer")
    ap.add_argument("--compare", action="store_true",
                    help="print the questions on which the variants disagree, with their answers")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                    help="another variant: the current one with these fields changed")
    ap.add_argument("--port", type=int, default=18391, help="port of the embedded server")
    ap.add_argument("--voice", action="store_true", help="voice mode: spoken through the whole chain")
    ap.add_argument("--gap", type=float, default=9.0, help="voice mode: seconds between questions")
    ap.add_argument("--shuffle", type=int, default=0, metavar="SEED",
                    help="ask the questions in a random order drawn from SEED (0 = file order)")
    ap.add_argument("--only", default="", help="comma-separated variant names to run")
    args = ap.parse_args()
    table = variants()
    for spec in args.variant:
        name, _, raw = spec.partition("=")
        table[name] = {**table["after"], **json.loads(raw)}
    if args.only:
        table = {k: v for k, v in table.items() if k in args.only.split(",")}
    items = load_dev_set()
    if args.split != "all":
        items = [i for i in items if i.split in args.split.split(",")]
    if args.shuffle:
        items = shuffled(items, args.shuffle)
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
        first: dict[str, Result] = {}
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                run = make_run(server.base_url, table[name], s.llm_history_turns)
                try:
                    res = ask_all(items, run)
                finally:
                    run.close()
                first.setdefault(name, res)
                print(f"round {r + 1} " + report(name, res, items), flush=True)
                if args.show:
                    for item, answer, ok in zip(items, res.answers, res.right, strict=True):
                        if not ok:
                            print(f"    {item.question!r} -> {answer[:100]!r}")
        if args.compare:
            print("\n".join(["where the variants disagree (round 1):", *compare(first, items)]))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
