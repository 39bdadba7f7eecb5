"""`make bench`: where each millisecond of a turn goes, and how much memory the dataflow takes.

Spoken questions (texts below, spoken by Piper at bench time) go through the whole dataflow
with the embedded models, either in file mode (WAV in, WAV out) or through the PulseAudio
virtual sound card (`--sound`: the real microphone and speaker paths; the voice-to-voice time
is then also measured on the recording: from the end of the question played into the
microphone sink to the first sound on the speaker's monitor).

Reported: per stage the median and p95 over all turns, the real-time factor of ASR and TTS,
and the peak resident memory (VmRSS) of each node process and of the whole dataflow.
Not a test: numbers depend on the machine (printed with the results).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio import write_wav
from pipeline.metrics import STAGES
from tests.conftest import _speech_16k

# Skill turns (days in a week: units; two plus two; the time) among the first 8 (the default
# --turns), so `make bench` reports skill and LLM answers apart in one run.
QUESTIONS = [
    "What is the capital of France?",
    "What do bees make?",
    "What color is the sky?",
    "Who wrote Romeo and Juliet?",
    "What is two plus two?",
    "What is the largest ocean?",
    "What time is it?",
    "How do I boil an egg?",
    "Name a fruit that is yellow.",
    "How many centimeters are in a meter?",
]
GAP_S = 7.0  # silence after each question (`--gap`); answers longer than that are queued in file mode


def rss_by_node(field: str = "VmRSS:", marker: str = "") -> dict[str, int]:
    """Resident memory in kB of every process of the dataflow, by node name.

    `VmRSS:` counts shared library pages once per process; `Pss:` (from smaps_rollup) splits
    shared pages between the processes that map them, so PSS sums to the real total.
    """
    out: dict[str, int] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if marker and marker.encode() not in Path(f"/proc/{pid}/environ").read_bytes():
                continue  # a process of another dataflow on this machine
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            source = "status" if field == "VmRSS:" else "smaps_rollup"
            status = Path(f"/proc/{pid}/{source}").read_text()
        except OSError:
            continue
        name = None
        if "llama_cpp.server" in cmd:
            name = "llm-server (llama.cpp)"
        elif "/nodes/" in cmd and cmd.split("/nodes/")[1].split(".py")[0]:
            name = cmd.split("/nodes/")[1].split(".py")[0].replace("_", "-")
        elif "dora run" in cmd or "dora-daemon" in cmd or cmd.startswith("dora "):
            name = "dora (daemon)"
        if name is None:
            continue
        for line in status.splitlines():
            if line.startswith(field):
                out[name] = out.get(name, 0) + int(line.split()[1])
    return out


class RssSampler:
    """Peak RSS per node and peak total, sampled twice a second while the dataflow runs."""

    def __init__(self, marker: str = "") -> None:
        """`marker`: a string in the environment of this dataflow's processes only."""
        self.marker = marker
        self.peak: dict[str, int] = {}
        self.peak_total = 0
        self.peak_pss: dict[str, int] = {}
        self.peak_pss_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            now = rss_by_node(marker=self.marker)
            for k, v in now.items():
                self.peak[k] = max(self.peak.get(k, 0), v)
            self.peak_total = max(self.peak_total, sum(now.values()))
            pss = rss_by_node("Pss:", self.marker)
            for k, v in pss.items():
                self.peak_pss[k] = max(self.peak_pss.get(k, 0), v)
            self.peak_pss_total = max(self.peak_pss_total, sum(pss.values()))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def questions_wav(folder: Path, n: int, gap_s: float = GAP_S) -> tuple[Path, list[tuple[float, float]]]:
    """A WAV with n questions separated by `gap_s`, and (start, end) of each question in s."""
    parts = [np.zeros(8000, dtype=np.float32)]
    spans = []
    pos = 8000
    for i in range(n):
        speech = np.asarray(_speech_16k(QUESTIONS[i % len(QUESTIONS)]))
        spans.append((pos / 16000, (pos + speech.size) / 16000))
        parts += [speech, np.zeros(int(gap_s * 16000), dtype=np.float32)]
        pos += speech.size + int(gap_s * 16000)
    path = folder / "bench_questions.wav"
    write_wav(path, np.concatenate(parts), 16000)
    return path, spans


@contextlib.contextmanager
def watching(url: str):
    """The page at `url` open in headless chromium, connected and receiving its updates."""
    from tests.browser import Chromium

    browser = Chromium()
    try:
        browser.open(url)
        browser.wait_for("document.getElementById('link').textContent === 'live'")
        yield browser
    finally:
        browser.close()


def pct(values: list[float], q: float) -> float:
    vals = sorted(values)
    return vals[min(len(vals) - 1, int(round(q * (len(vals) - 1))))]


@dataclass(frozen=True)
class Queued:
    """A turn asked while an earlier answer still played, whose answer waited for its end."""

    asked_before_end_s: float  # the question started this long before the earlier answer ended
    waited_s: float  # its first audio was ready this long before it could be heard


def queued_behind_an_answer(turns: list[dict]) -> dict[int, Queued]:
    """File mode: the turns whose first sound waited for the end of an earlier answer.

    The file speaker (pipeline/audio_io/sinks.py, SpeakerFile) plays "instantly": it writes
    each answer whole as soon as it gets it, stamped on a virtual clock that starts after the
    previous answer's last sample. So when the next question starts, nothing is left to cut
    (no barge-in) and the vad was told the answer ended (no pause, no backchannel gate): an
    answer ready before the earlier one's end is stamped as heard after it. Live, the same
    question would have cut the earlier answer; in file mode that turn's latency is mostly
    the earlier answer's length and says nothing about the pipeline.
    """
    queued: dict[int, Queued] = {}
    playhead: float | None = None  # where the file speaker's virtual clock has got to
    for turn in sorted(turns, key=lambda t: t["times"].get("t_speech_start", float("inf"))):
        times = turn["times"]
        start, ready = times.get("t_speech_start"), times.get("t_first_audio")
        if None not in (start, ready, playhead) and start < playhead and ready < playhead:
            heard = min(playhead, times.get("t_first_played", playhead))
            queued[turn["turn_id"]] = Queued(playhead - start, heard - ready)
        heard_at = [times[k] for k in ("t_first_played", "t_answer_done") if k in times]
        if heard_at:
            playhead = max(heard_at + ([] if playhead is None else [playhead]))
    return queued


def print_queued(turns: list[dict], queued: dict[int, Queued]) -> None:
    """The turns left out of the medians in file mode, with what they waited."""
    print(f"\n{len(queued)} turn(s) asked while an earlier answer still played, whose answer "
          "waited for its end: file mode has no barge-in (its speaker writes every answer "
          "whole, back to back), so they are left out of the medians above:")
    for t in turns:
        q = queued.get(t["turn_id"])
        if q is not None:
            kind = "skill" if "t_skill" in t["times"] else "LLM"
            v2v = t["durations"].get("voice_to_voice", float("nan")) * 1000
            print(f"- turn {t['turn_id']} ({kind}) {t['transcript']!r}: asked "
                  f"{q.asked_before_end_s:.1f} s before the end of the earlier answer; "
                  f"voice_to_voice {v2v:.0f} ms, of which {q.waited_s * 1000:.0f} ms waiting for it")


def run_file(wav: Path, work: Path, env: dict[str, str]) -> tuple[list[dict], RssSampler]:
    from pipeline.filemode import run_file_mode

    with RssSampler(marker=str(work / "metrics.jsonl")) as rss:
        result = run_file_mode(wav, env=env, workdir=work, timeout_s=1200)
    if result.returncode != 0:
        print(result.log[-3000:])
    return result.turns, rss


def run_sound(wav: Path, spans: list[tuple[float, float]], work: Path, env: dict[str, str],
              distributed: bool = False, watch: bool = False):
    """`watch`: the live view's page is open in headless chromium for the whole run."""
    from tests.live import DistributedAssistant, LiveAssistant, ask

    subprocess.run(["bash", str(Path(__file__).parent.parent / ".ci" / "pulse-setup.sh")], check=True)
    kind = DistributedAssistant if distributed else LiveAssistant
    with RssSampler(marker=str(work / "metrics.jsonl")) as rss, kind(work, env) as assistant, \
            contextlib.ExitStack() as page:
        assistant.wait_ready()
        if watch:
            page.enter_context(watching(assistant.view_url()))
        asked = ask(assistant, wav, spans)
    return asked.turns, rss, [x for x in asked.onsets if x is not None]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--sound", action="store_true", help="through the PulseAudio virtual sound card")
    ap.add_argument("--env", action="append", default=[], help="a setting for the run, NAME=value")
    ap.add_argument("--distributed", type=int, default=0, metavar="ROUNDS",
                    help="with --sound: ROUNDS x (`make run`, then `make run-distributed`), "
                         "interleaved; prints both voice-to-voice medians")
    ap.add_argument("--view-ab", type=int, default=0, metavar="ROUNDS",
                    help="with --sound: ROUNDS x (VIEW=false, VIEW=true with the page open in "
                         "headless chromium, VIEW=true with no page), interleaved; prints the "
                         "voice-to-voice medians")
    ap.add_argument("--gap", type=float, default=GAP_S,
                    help="seconds of silence after each question (in file mode, a question "
                         "asked before the previous answer would end waits for it: no barge-in)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    wav, spans = questions_wav(work, args.turns, args.gap)
    env = {"MIC_FILE_TAIL_S": f"{args.gap:g}"}  # "7.0" is refused by `dora start --env`
    env.update(dict(item.split("=", 1) for item in args.env))
    if args.distributed:
        side_by_side(wav, spans, work, env, args.distributed, DEPLOYMENTS)
        return
    if args.view_ab:
        side_by_side(wav, spans, work, env, args.view_ab, VIEW_AB)
        return
    measured: list[float] = []
    over: dict[int, Queued] = {}
    if args.sound:
        turns, rss, measured = run_sound(wav, spans, work, env)
    else:
        turns, rss = run_file(wav, work, env)
        over = queued_behind_an_answer(turns)
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"mode: {'virtual sound card' if args.sound else 'file'}; {len(turns)} turns answered of {args.turns}"
          f"{f', {len(over)} of them queued behind an earlier answer (left out, see below)' if over else ''}"
          f"; {args.gap:g} s after each question{'; settings ' + ' '.join(args.env) if args.env else ''}")
    everything, turns = turns, [t for t in turns if t["turn_id"] not in over]
    print("\n| stage | median | p95 |\n|---|---|---|")
    for name, _a, _b in STAGES:
        vals = [t["durations"][name] for t in turns if name in t["durations"]]
        if vals:
            print(f"| {name} | {statistics.median(vals) * 1000:.0f} ms | {pct(vals, 0.95) * 1000:.0f} ms |")
    for label, skill in (("skills", True), ("the LLM", False)):
        vals = [t["durations"]["voice_to_voice"] for t in turns
                if "voice_to_voice" in t["durations"] and ("t_skill" in t["times"]) == skill]
        if vals:
            print(f"| voice_to_voice, answered by {label} ({len(vals)} turns) | "
                  f"{statistics.median(vals) * 1000:.0f} ms | {pct(vals, 0.95) * 1000:.0f} ms |")
    if measured:
        print(f"| voice_to_voice on the recording | {statistics.median(measured) * 1000:.0f} ms | "
              f"{pct(measured, 0.95) * 1000:.0f} ms |")
    if over:
        print_queued(everything, over)
    asr_rtf = [t["times"]["asr_s"] / t["times"]["asr_audio_s"] for t in everything
               if t["times"].get("asr_audio_s")]
    tts_rtf = [t["times"]["tts_s"] / t["times"]["tts_audio_s"] for t in everything
               if t["times"].get("tts_audio_s")]
    if asr_rtf:
        print(f"\nASR real-time factor: median {statistics.median(asr_rtf):.3f}")
    if tts_rtf:
        print(f"TTS real-time factor: median {statistics.median(tts_rtf):.3f}")
    print("\n| process | peak RSS | peak PSS |\n|---|---|---|")
    for name, kb in sorted(rss.peak.items()):
        print(f"| {name} | {kb / 1024:.0f} MB | {rss.peak_pss.get(name, 0) / 1024:.0f} MB |")
    print(f"| **whole dataflow (peak of the sum)** | {rss.peak_total / 1024:.0f} MB | "
          f"**{rss.peak_pss_total / 1024:.0f} MB** |")


@dataclass(frozen=True)
class Variant:
    """One side of a side-by-side run."""

    name: str
    env: dict[str, str]
    distributed: bool = False
    watch: bool = False  # the live view's page open in headless chromium


DEPLOYMENTS = [Variant("make run", {}), Variant("make run-distributed", {}, distributed=True)]
VIEW_AB = [Variant("VIEW=false", {"VIEW": "false"}),
           Variant("VIEW=true, page open", {"VIEW": "true", "VIEW_PORT": "0"}, watch=True),
           Variant("VIEW=true, no page", {"VIEW": "true", "VIEW_PORT": "0"})]


def side_by_side(wav: Path, spans: list[tuple[float, float]], work: Path, env: dict[str, str],
                 rounds: int, variants: list[Variant]) -> None:
    """End of speech -> first sound on the virtual card for each variant, run after run in
    turn (so a busy moment of the machine weighs on all; the order flips every round)."""
    found: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(rounds):
        for i, v in enumerate(variants if r % 2 == 0 else variants[::-1]):
            run_dir = work / f"{r}-{variants.index(v)}"
            run_dir.mkdir()
            turns, _rss, measured = run_sound(wav, spans, run_dir, {**env, **v.env},
                                              distributed=v.distributed, watch=v.watch)
            found[v.name] += measured
            print(f"round {r + 1}.{i + 1} {v.name}: {len(turns)} turns, voice-to-voice "
                  + ", ".join(f"{x * 1000:.0f}" for x in measured) + " ms", flush=True)
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores; {rounds} rounds of "
          f"{len(spans)} questions each; end of speech -> first sound on the recording")
    print("\n| variant | median | p95 | turns |\n|---|---|---|---|")
    for name, vals in found.items():
        if vals:
            print(f"| {name} | {statistics.median(vals) * 1000:.0f} ms | "
                  f"{pct(vals, 0.95) * 1000:.0f} ms | {len(vals)} |")
    (a, va), (b, vb) = list(found.items())[:2]
    if va and vb:
        print(f"\n{b} - {a} (medians): "
              f"{(statistics.median(vb) - statistics.median(va)) * 1000:+.0f} ms")


if __name__ == "__main__":
    main()
