"""Benchmark: what the listener hears when the user talks over an answer (virtual sound card).

In each round the assistant speaks a long answer (scripted server) and, 2 s into it, the user
says a backchannel ("Yeah.", "Mm-hmm.", "Okay.", "Uh-huh.", "Right.", "I see.") or an
interruption, with or without a short first word ("What is the capital of Spain?", "No, I
meant the other one.", "Wait, go back.", "Stop. What is the capital of Spain?"). Two
recorders run side by side: `uservoice.monitor` gives the wall time of the user's first
voiced sample (the onset), `speaker.monitor` what the assistant played. Per round, from the
onset: `quiet`, the answer's level falls under a third of what it was in the second before
(ducked or paused); `silent`, under -26 dB of it for 0.6 s (stopped: a duck at -20 dB is not
silent); for a backchannel `back`, the level over half again, and whether the answer went
on; for an interruption whether its question was answered and `answer`, the first sound of
its answer after the silence. And the LLM requests made of a backchannel (there must be none).
Levels are taken in 10 ms windows. From the dataflow's log each round also gets where the
time to silence went: the VAD's onset (the capture time of its first voiced frame), the
vad's decision to pause, the speaker's pause (log times, ms resolution).

Run: `.venv/bin/python -m tests.bench_backchannel [--n 1] [--old PATH] [--baseline]`: `--old`
runs the same rounds first on the dataflow of another checkout (e.g. a clone of main),
`--baseline` the interruptions with BACKCHANNELS=false (every onset cuts the answer at once:
the speed to match), then all rounds on this checkout.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from pipeline.audio import write_wav
from pipeline.models import REPO_ROOT
from pipeline.turn.backchannel import is_backchannel
from tests.bench_bargein import onset_after
from tests.conftest import _speech_16k, words
from tests.live import REC_RATE, LiveAssistant, Recorder, play
from tests.scripted_server import Script, ScriptedServer
from tests.test_e2e_turns import answer_for, wait_for_sound

BACKCHANNELS = ["Yeah.", "Mm-hmm.", "Okay.", "Uh-huh.", "Right.", "I see."]
INTERRUPTIONS = ["What is the capital of Spain?", "No, I meant the other one.", "Wait, go back.",
                 "Stop. What is the capital of Spain?"]
WINDOW = REC_RATE // 100  # 10 ms
PER_S = 100  # windows per second
QUIET_RUN_S = 0.15  # under a third of the level this long: ducked or paused
SILENT_RUN_S = 0.6  # under -26 dB this long: stopped


def levels(audio: np.ndarray) -> np.ndarray:
    """RMS of each 10 ms window."""
    n = audio.size // WINDOW * WINDOW
    return np.sqrt(np.mean(audio[:n].reshape(-1, WINDOW) ** 2, axis=1))


@dataclass
class Heard:
    """What the listener heard of the answer after the onset (seconds from it, or None)."""

    quiet: float | None = None  # under a third of its level (ducked or paused)
    silent: float | None = None  # under -26 dB of it for 0.6 s (stopped)
    back: float | None = None  # over half its level again after `quiet`
    went_on: bool = False  # and it played on for the next 2 s
    answer: float | None = None  # (an interruption) the first sound after `silent`: its answer


def heard(audio: np.ndarray, t0: float, onset: float) -> Heard | None:
    """The answer's level after `onset`, compared to the second before it (None: no answer
    was playing then)."""
    lv = levels(audio)
    i0 = int((onset - t0) * PER_S)
    before = lv[max(0, i0 - PER_S):i0]
    if not np.any(before > 0.005):
        return None
    ref = float(np.median(before[before > 0.005]))

    def first(start: int, run: int, ok) -> int | None:  # noqa: ANN001 - a predicate on levels
        return next((i for i in range(start, lv.size - run + 1) if np.all(ok(lv[i:i + run]))), None)

    out = Heard()
    n_quiet = round(QUIET_RUN_S * PER_S)
    quiet = first(i0, n_quiet, lambda x: x < ref / 3)
    silent = first(i0, round(SILENT_RUN_S * PER_S), lambda x: x < ref / 20)
    back = None if quiet is None else first(quiet + n_quiet, 1, lambda x: x > ref / 2)
    answer = None if silent is None else first(silent, 3, lambda x: x > ref / 10)
    out.quiet, out.silent, out.back, out.answer = (None if i is None else t0 + i / PER_S - onset
                                                   for i in (quiet, silent, back, answer))
    if back is not None:
        after = lv[back:back + 2 * PER_S]
        out.went_on = after.size == 2 * PER_S and float(np.mean(after > ref / 10)) > 0.5
    return out


def wav(folder: Path, text: str, lead_s: float = 0.0) -> Path:
    path = folder / f"{abs(hash(text))}-{lead_s}.wav"
    speech = np.asarray(_speech_16k(text))
    write_wav(path, np.concatenate([np.zeros(int(lead_s * 16000), np.float32), speech]), 16000)
    return path


@dataclass
class Round:
    said: str
    backchannel: bool
    heard: Heard | None
    answered: bool = False  # (an interruption) a turn with its words was answered
    chain: dict[str, float] = field(default_factory=dict)  # log milestones, s from the onset


_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) INFO (.*)")
MILESTONES = {  # name: (node, pattern of its log line); the first after the phrase started
    "vad onset": ("vad", re.compile(r"(?:voice|speech) over the answer \((?:voice )?from ([\d.]+)\)")),
    "pause sent": ("vad", re.compile(r"(?:voice|speech) over the answer")),
    "paused": ("speaker", re.compile(r"answer paused")),
    "verdict": ("vad", re.compile(r"over the answer: (a backchannel|an interruption)|still speaking")),
    "resumed": ("speaker", re.compile(r"answer resumed")),
    "turn": ("vad", re.compile(r"turn \d+: speech started")),
}


def chain(log: str, t_from: float, onset: float) -> dict[str, float]:
    """Where the time went: each milestone's time (the log line's, or for `vad onset` the
    capture time it names) minus the onset heard on uservoice.monitor, first after `t_from`."""
    out: dict[str, float] = {}
    for line in log.splitlines():
        found = _LINE.search(line)
        if found is None:
            continue
        t = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if t < t_from:
            continue
        for name, (node, pattern) in MILESTONES.items():
            hit = pattern.search(found.group(3)) if found.group(2) == node else None
            if hit is not None and name not in out:
                out[name] = (float(hit.group(1)) if name == "vad onset" else t) - onset
    return out


def run_version(root: Path, work: Path, phrases: list[str],
                env: dict[str, str] | None = None) -> tuple[list[Round], int]:
    """Every phrase over a long answer of the dataflow in `root` (with settings `env`):
    (rounds, LLM requests made of a backchannel)."""
    ask = wav(work, "Tell me a long story about bread.", lead_s=0.2)
    rounds: list[Round] = []
    playing = False  # the story of the last round still plays (after a backchannel)
    with ScriptedServer(Script(answer_fn=answer_for, token_delay_s=0.01)) as srv, \
            LiveAssistant(work, {"OPENAI_BASE_URL": srv.base_url, **(env or {})},
                          root=root) as assistant:
        assistant.wait_ready()
        for said in phrases:
            backchannel = is_backchannel(said)
            spk, mic = Recorder("speaker.monitor"), Recorder("uservoice.monitor")
            n_turns = len(assistant.turns())
            play(ask)  # (interrupts the story still playing)
            if playing:
                assistant.wait_turns(n_turns + 1, timeout=60)
                time.sleep(1.5)
            wait_for_sound(spk)
            time.sleep(2.0)
            t_play = time.time()
            play(wav(work, said))
            key = {w for w in words(said) if len(w) > 3}
            if backchannel:
                time.sleep(3.0)
            else:  # the interruption's turn (or the last of those it was split into), answered
                _wait_answered(assistant, n_turns, key)
            a_spk, a_mic = spk.stop(), mic.stop()
            playing = backchannel
            onset = onset_after(a_mic, mic.first_t or t_play, t_play)
            got = None if onset is None else heard(a_spk, spk.first_t or t_play, onset)
            answered = not backchannel and any(
                key <= words(t.get("transcript", "")) and not t["interrupted"]
                for t in assistant.turns()[n_turns:])
            steps = {} if onset is None else chain(assistant.log(), t_play, onset)
            rounds.append(Round(said, backchannel, got, answered, steps))
            print(f"  {said!r}: {_describe(rounds[-1])}", flush=True)
        requests = [r["messages"][-1]["content"] for r in srv.script.requests]
    return rounds, sum(is_backchannel(r) for r in requests)


def _wait_answered(assistant: LiveAssistant, n_turns: int, key: set[str],
                   timeout: float = 30.0) -> None:
    """Until a turn after the first `n_turns` has the words `key` and was not interrupted
    (its answer played to the end), or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(key <= words(t.get("transcript", "")) and not t["interrupted"]
               for t in assistant.turns()[n_turns:]):
            return
        time.sleep(0.2)
    print(f"  (no answered turn with {sorted(key)} after {timeout:.0f} s)", flush=True)


def _describe(r: Round) -> str:
    h = r.heard
    if h is None:
        return "no onset or no answer playing: not measured"
    text = f"quiet {_ms(h.quiet)}, silent {_ms(h.silent)}"
    steps = " | " + ", ".join(f"{k} {_ms(v)}" for k, v in r.chain.items()) if r.chain else ""
    if r.backchannel:
        return f"{text}, back {_ms(h.back)}, answer went on: {h.went_on}{steps}"
    return f"{text}, its answer {_ms(h.answer)}, answered: {r.answered}{steps}"


def summary(name: str, rounds: list[Round], llm_backchannels: int) -> str:
    bc = [r.heard for r in rounds if r.backchannel and r.heard is not None]
    it = [r.heard for r in rounds if not r.backchannel and r.heard is not None]
    held = [h.back - h.quiet for h in bc if h.back is not None and h.quiet is not None]
    lines = [
        f"{name}: interruptions ({len(it)}): onset -> quiet {_stats([h.quiet for h in it])}; "
        f"onset -> silent {_stats([h.silent for h in it])}; onset -> its answer "
        f"{_stats([h.answer for h in it])}; answered "
        f"{sum(r.answered for r in rounds if not r.backchannel)}/{len(it)}",
        f"{name}: backchannels ({len(bc)}): went on {sum(h.went_on for h in bc)}/{len(bc)}; "
        f"onset -> quiet {_stats([h.quiet for h in bc])}; onset -> back {_stats([h.back for h in bc])}; "
        f"held (quiet -> back) {_stats(held)}; silent at all {sum(h.silent is not None for h in bc)}; "
        f"LLM requests of a backchannel: {llm_backchannels}",
    ]
    return "\n".join(lines if bc else lines[:1])


def _ms(t: float | None) -> str:
    return "-" if t is None else f"{1000 * t:.0f} ms"


def _stats(xs: list[float | None]) -> str:
    got = [x for x in xs if x is not None]
    if not got:
        return "none"
    missing = f", {len(xs) - len(got)} never" if len(got) < len(xs) else ""
    return (f"median {1000 * statistics.median(got):.0f} ms, max {1000 * max(got):.0f} ms "
            f"(n={len(got)}{missing})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1, help="rounds of each phrase")
    ap.add_argument("--old", type=Path, help="another checkout to measure first (e.g. main)")
    ap.add_argument("--baseline", action="store_true",
                    help="also the interruptions with BACKCHANNELS=false (each onset cuts at once)")
    args = ap.parse_args()
    subprocess.run(["bash", str(REPO_ROOT / ".ci" / "pulse-setup.sh")], check=True)
    others = INTERRUPTIONS + INTERRUPTIONS[:2]  # as many as backchannels, taken in turn
    phrases = [p for _ in range(args.n) for pair in zip(BACKCHANNELS, others, strict=True)
               for p in pair]
    versions: list[tuple[str, Path, list[str], dict[str, str]]] = []
    if args.old:
        versions.append(("old", args.old.resolve(), phrases, {}))
    if args.baseline:
        cuts = [p for p in phrases if not is_backchannel(p)]
        versions.append(("no gate", REPO_ROOT, cuts, {"BACKCHANNELS": "false"}))
    versions.append(("new", REPO_ROOT, phrases, {}))
    results = []
    for name, root, said, env in versions:
        print(f"{name}: {root} {env}", flush=True)
        work = Path(tempfile.mkdtemp(prefix=f"backchannel-{name.replace(' ', '-')}-"))
        results.append((name, *run_version(root, work, said, env)))
    print()
    for name, rounds, llm in results:
        print(summary(name, rounds, llm))


if __name__ == "__main__":
    main()
