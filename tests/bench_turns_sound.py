"""Turn-taking through the virtual sound card: half questions answered, and end of speech to
first sound, for the fixed 500 ms silence of before, the end-of-turn policy before the
graded doubt (session 7), the default policy without the sentence-end model
(TURN_TEXT_MODEL=false) and the default, run after run in turn (part of `make bench-sound`).

A subset of tests/bench_turns.py's dev set and held-out set, spoken by Piper's joe: paused
questions ("What is the capital of ... Spain?", the pause inserted between the words) and
whole ones, each followed by a silence long enough for the answer, played into the
microphone sink of the whole dataflow (embedded LLM) while speaker.monitor is recorded.

Per paused question: "answered" when the half became a turn of its own (a metrics record
whose end of speech lies before the second half: its answer was committed, the LLM asked
for it), and "sound" when an answer was heard in the pause. Per whole question (and per
paused one answered whole): end of the question's last sound in the played WAV to the first
sound on the recording.

    PYTHONPATH=$PWD python -m tests.bench_turns_sound [--rounds N] [--paused N] [--whole N]
        [--voices N] [--policies 0,3]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.audio import write_wav
from tests.bench_turns import COMPLETE, COMPLETE_HELD, PAUSES_S, SPLIT, SPLIT_HELD, piper, voices
from tests.live import LiveAssistant, Recorder, play

RATE = 16000
GAP_S = 7.0  # after each question: the answer, and silence
VARIANTS = {
    "fixed 500 ms silence (before)": {"TURN_CUES": "false", "TURN_MODEL": "false",
                                      "VAD_END_SILENCE_MS": "500"},
    "main's end-of-turn policy (session 7)": {"TURN_GUESS_WORD_P": "0", "TURN_CONTENT_WORD_P": "1",
                                              "TURN_DO_QUESTIONS": "false",
                                              "TURN_TEXT_MODEL": "false"},
    "without the sentence-end model (session 8)": {"TURN_TEXT_MODEL": "false"},
    "default end-of-turn policy (after)": {},
}


@dataclass(frozen=True)
class Spoken:
    """One question in the played WAV; times in s from its start."""

    text: str
    group: str
    end: float  # end of the last sound
    half_end: float | None = None  # paused questions: end of the first half
    resume: float | None = None  # and start of the second


@dataclass
class Result:
    answered_half: list[bool] = field(default_factory=list)
    sound_in_pause: list[bool] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    whole_delays: list[float] = field(default_factory=list)
    paused_delays: list[float] = field(default_factory=list)


def last_sound(audio: np.ndarray, block: int = 160, threshold: float = 0.01) -> float:
    """End (s) of the last 10 ms block of `audio` louder than `threshold` (RMS)."""
    n = audio.size // block * block
    loud = np.flatnonzero(np.sqrt(np.mean(audio[:n].reshape(-1, block) ** 2, axis=1)) > threshold)
    return float(loud[-1] + 1) * block / RATE if loud.size else 0.0


def chosen(n: int, dev: list, held: list) -> list[tuple[int, str, object]]:
    """n items, alternately from the dev set and the held-out set: (index, group, item)."""
    out = []
    for k in range(n):
        group, items = ("dev", dev) if k % 2 == 0 else ("held-out", held)
        i = (k // 2) * 5 % len(items)  # spread over the list (5 is prime to its length)
        out.append((i, group, items[i]))
    return out


def questions_wav(folder: Path, n_paused: int, n_whole: int,
                  n_voices: int = 1) -> tuple[Path, list[Spoken]]:
    """The questions in turn by the first `n_voices` of tests/bench_turns.py's voices
    (1: Piper's joe alone)."""
    speakers = voices()[:n_voices] if n_voices > 1 else [piper("piper joe 1.0", 1.0, 0.667)]
    parts, spoken, pos = [np.zeros(RATE // 2, np.float32)], [], 0.5
    paused = chosen(n_paused, SPLIT, SPLIT_HELD)
    whole = chosen(n_whole, COMPLETE, COMPLETE_HELD)
    order = [("p", x) for x in paused] + [("w", x) for x in whole]
    order = [order[k] for k in np.random.default_rng(7).permutation(len(order))]
    for n, (kind, (i, group, item)) in enumerate(order):
        voice = speakers[n % len(speakers)]
        if kind == "p":
            a, b = item
            pause = PAUSES_S[i % len(PAUSES_S)]
            audio, resume = voice.speak_paused(a, b, pause)
            half_end = last_sound(audio[: int((resume - pause) * RATE)])
            spoken.append(Spoken(f"{a} ... {b}", group, pos + last_sound(audio),
                                 pos + half_end, pos + resume))
        else:
            audio = voice.speak(item)
            spoken.append(Spoken(item, group, pos + last_sound(audio)))
        parts += [audio.astype(np.float32), np.zeros(int(GAP_S * RATE), np.float32)]
        pos += audio.size / RATE + GAP_S
    path = folder / "turn_questions.wav"
    write_wav(path, np.concatenate(parts), RATE)
    return path, spoken


def run(wav: Path, spoken: list[Spoken], work: Path, env: dict[str, str]) -> Result:
    subprocess.run(["bash", str(Path(__file__).parent.parent / ".ci" / "pulse-setup.sh")],
                   check=True)
    with LiveAssistant(work, env) as assistant:
        assistant.wait_ready()
        rec = Recorder()
        rec.wait_started()
        t0 = time.time()
        play(wav)
        try:
            assistant.wait_turns(len(spoken), timeout=60)
        except TimeoutError as exc:
            print(f"  (not every question answered: {str(exc).splitlines()[0]})")
        rec.wait_quiet(quiet_s=1.0, timeout=30)
        audio = rec.stop()
        turns = assistant.turns()
    ends = [t["times"]["t_speech_end"] - t0 for t in turns if "t_speech_end" in t["times"]]
    out = Result()
    for q in spoken:
        heard = rec.sound_after(audio, t0 + (q.half_end if q.half_end is not None else q.end))
        if q.half_end is None or q.resume is None:
            if heard is not None:
                out.whole_delays.append(heard)
            continue
        half = any(q.half_end - 0.5 < e < q.resume - 0.05 for e in ends)
        in_pause = heard is not None and heard < q.resume - q.half_end
        out.answered_half.append(half)
        out.sound_in_pause.append(in_pause)
        out.groups.append(q.group)
        after = rec.sound_after(audio, t0 + q.end)
        if not half and after is not None:
            out.paused_delays.append(after)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def summary(name: str, results: list[Result]) -> str:
    half = [h for r in results for h in r.answered_half]
    sound = [s for r in results for s in r.sound_in_pause]
    groups = [g for r in results for g in r.groups]
    by_group = ", ".join(
        f"{g} {sum(h for h, gg in zip(half, groups, strict=True) if gg == g)}/{groups.count(g)}"
        for g in ("dev", "held-out"))
    whole = [d for r in results for d in r.whole_delays]
    paused = [d for r in results for d in r.paused_delays]

    def ms(xs: list[float], q: float) -> str:
        return f"{pct(xs, q) * 1000:.0f} ms" if xs else "-"

    return (f"| {name} | {sum(half)}/{len(half)} ({by_group}) | {sum(sound)}/{len(sound)} | "
            f"{ms(whole, 0.5)} | {ms(whole, 0.9)} | {len(whole)} | {ms(paused, 0.5)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--paused", type=int, default=6)
    ap.add_argument("--whole", type=int, default=6)
    ap.add_argument("--policies", default="",
                    help="comma-separated numbers of the policies to run (0 = the fixed silence, "
                         "the last = the default); empty = all")
    ap.add_argument("--voices", type=int, default=1,
                    help="speakers in turn: 1 = Piper's joe; up to 6 adds Piper slower and "
                         "espeak-ng en-us/en-gb voices (tests/bench_turns.py)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-turns-"))
    wav, spoken = questions_wav(work, args.paused, args.whole, args.voices)
    # Short answers, so that each is over before the next question: a question spoken over
    # an answer is a barge-in, whose timing is another matter (tests/bench_bargein.py).
    env = {"MIC_FILE_TAIL_S": f"{GAP_S:g}", "LLM_MAX_TOKENS": "24"}
    names = list(VARIANTS)
    if args.policies:
        names = [names[int(i)] for i in args.policies.split(",")]
    found: dict[str, list[Result]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            run_dir = work / f"{r}-{names.index(name)}"
            run_dir.mkdir()
            res = run(wav, spoken, run_dir, {**env, **VARIANTS[name]})
            found[name].append(res)
            print(f"round {r + 1} {name}: half questions answered "
                  f"{sum(res.answered_half)}/{len(res.answered_half)}, whole: "
                  + ", ".join(f"{x * 1000:.0f}" for x in res.whole_delays) + " ms", flush=True)
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores; {args.rounds} round(s) of "
          f"{args.paused} paused + {args.whole} whole questions ({args.voices} voice(s)) through the virtual "
          "sound card; end of speech -> first sound on the recording")
    print("\n| policy | half questions answered | answer heard in the pause | whole: median | "
          "p90 | n | paused, answered whole: median |\n|---|---|---|---|---|---|---|")
    for name, results in found.items():
        print(summary(name, results))


if __name__ == "__main__":
    main()
