"""Soak: many turns through the whole dataflow in file mode; drift and memory growth.

Not a test (tests/test_soak_short.py runs a short version in `make test`). Usage:

    .venv/bin/python -m tests.soak                       # 200 turns, scripted server
    .venv/bin/python -m tests.soak --turns 50 --embedded  # the real embedded llama.cpp server

What it does: N spoken questions (Piper, cycled from QUESTIONS) with a silence after each
one long enough for the answer, as one WAV played in real time as the microphone
(MIC_FILE_REALTIME=false cannot be used: the file is then read in well under a second, every
question is endpointed at once and each new turn cancels the previous answer; and the
voice-to-voice times, computed from the file's synthetic capture clock, would be
meaningless). The LLM is a scripted OpenAI-compatible server with fixed token timing
(`--token-ms`, `--first-token-ms`), or the embedded server with `--embedded`.

Reported:
* answered turns: a turn record (METRICS_FILE) that is not interrupted, has no LLM error, and
  whose spoken answer is the scripted answer (with --embedded: any non-empty answer);
* voice-to-voice latency (end of the question to the first answer audio, the speaker's
  `voice_to_voice`), median and p95 over the first and the last 20 % of the turns: drift;
* resident memory (VmRSS from /proc/<pid>/status) of each node process of THIS dataflow
  (descendants of our `dora run`, matched by `nodes/<name>.py` / `llama_cpp.server` in the
  command line): after warm-up (once 20 % of the turns, at least 2, are answered) and at the
  end (after the last turn, before the dataflow stops); growth in %.

Exit status 1 if a turn is unanswered or the memory of a node process, or of the whole
dataflow, grew by more than --max-growth (10 %) from warm-up to the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import messages as m
from pipeline.cluster import first_free
from pipeline.filemode import dora_env
from pipeline.models import REPO_ROOT
from tests.live import stop_dataflow

RATE = 16000
QUESTIONS = [
    "What is the capital of France?",
    "What do bees make?",
    "What color is the sky?",
    "Who wrote Romeo and Juliet?",
    "How do I boil an egg?",
]
SCRIPTED_ANSWER = "Here is a short answer. It has two sentences."
PORT_RANGE = (18100, 18199)


# -- processes of one dataflow -------------------------------------------------------------------
def descendants(root: int) -> list[int]:
    """Every process below `root` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def process_name(cmd: str) -> str | None:
    """The node a command line belongs to: `nodes/<name>.py` or the embedded llama server."""
    if "llama_cpp.server" in cmd:
        return "llama-server"
    if "nodes/" in cmd:
        tail = cmd.split("nodes/", 1)[1]
        if ".py" in tail:
            return tail.split(".py", 1)[0].replace("_", "-")
    return None


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def free_port(lo: int = PORT_RANGE[0], hi: int = PORT_RANGE[1]) -> int:
    """A port in our range that nobody listens on (each dataflow gets its own)."""
    ports = list(range(lo, hi + 1))
    random.shuffle(ports)
    port = first_free(ports)
    if port is None:
        raise RuntimeError(f"no free port in {lo}-{hi}")
    return port


# -- one dataflow in file mode, watched while it runs -------------------------------------------
@dataclass
class FileDataflow:
    """`dora run dataflow.yml` in file mode (MIC_FILE -> SPEAKER_FILE), watched while it runs.

    Unlike pipeline.filemode.run_file_mode it does not block: a test can wait for a log line
    or a turn record, then act (start a server, kill a node) while the dataflow runs. The
    dataflow gets its own process group, so everything it started can be stopped by that id.
    """

    question: Path
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics(self) -> Path:
        return self.workdir / "metrics.jsonl"

    @property
    def output_wav(self) -> Path:
        return self.workdir / "answer.wav"

    @property
    def log_path(self) -> Path:
        return self.workdir / "dora.log"

    def start(self) -> FileDataflow:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for p in (self.metrics, self.output_wav):
            p.unlink(missing_ok=True)
        settings = {"MIC_FILE": str(Path(self.question).resolve()), "SPEAKER_FILE": str(self.output_wav),
                    "METRICS_FILE": str(self.metrics)}
        settings.setdefault("LLM_SERVER_PORT", str(free_port()))
        settings.update(self.env)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["dora", "run", str(REPO_ROOT / "dataflow.yml")], env=dora_env(settings),
                cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def __enter__(self) -> FileDataflow:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def turns(self) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        out = []
        for line in self.metrics.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line being written
        return out

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_until(self, what: Callable[[], Any], timeout: float, describe: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = what()
            if got:
                return got
            if not self.running():
                got = what()
                if got:
                    return got
                raise RuntimeError(f"the dataflow ended while waiting for {describe}:\n{self.log()[-4000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"timed out after {timeout:g} s waiting for {describe}:\n{self.log()[-4000:]}")

    def wait_log(self, text: str, timeout: float = 120.0, count: int = 1) -> None:
        self.wait_until(lambda: self.log().count(text) >= count, timeout, repr(text))

    def wait_turns(self, n: int, timeout: float = 120.0) -> list[dict[str, Any]]:
        return self.wait_until(lambda: len(self.turns()) >= n and self.turns(), timeout, f"{n} turn records")

    def pids(self, name: str) -> list[int]:
        """Processes of this dataflow that belong to node `name` (or "llama-server")."""
        if self.proc is None:
            return []
        return [pid for pid in descendants(self.proc.pid) if process_name(cmdline(pid)) == name]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to the process of node `name` of this dataflow: SIGKILL is a crash dora
        must heal, SIGSTOP freezes it until a later SIGKILL (or SIGCONT)."""
        pids = self.pids(name)
        if len(pids) != 1:
            raise RuntimeError(f"expected one process for {name}, found {pids}")
        os.kill(pids[0], sig)
        return pids[0]

    def rss(self) -> dict[str, int]:
        """VmRSS in kB of each node process of this dataflow."""
        out: dict[str, int] = {}
        if self.proc is None:
            return out
        for pid in descendants(self.proc.pid):
            name = process_name(cmdline(pid))
            kb = rss_kb(pid) if name else None
            if name and kb:
                out[name] = out.get(name, 0) + kb
        return out

    def wait(self, timeout: float = 120.0) -> int:
        """Wait for the dataflow to end by itself (file mode ends after the WAV); stop it if not."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        return stop_dataflow(self.proc)


# -- the soak ------------------------------------------------------------------------------------
def speech(text: str) -> np.ndarray:
    from tests.conftest import _speech_16k  # Piper, deterministic, cached per text

    return np.asarray(_speech_16k(text))


def soak_wav(path: Path, turns: int, gap_s: float) -> tuple[Path, list[str]]:
    """`turns` questions, each followed by `gap_s` of silence (room for the answer)."""
    from pipeline.audio import write_wav

    path.parent.mkdir(parents=True, exist_ok=True)
    asked = [QUESTIONS[i % len(QUESTIONS)] for i in range(turns)]
    gap = np.zeros(int(gap_s * RATE), dtype=np.float32)
    parts = [np.zeros(int(0.3 * RATE), dtype=np.float32)]
    for q in asked:
        parts += [speech(q), gap]
    write_wav(path, np.concatenate(parts), RATE)
    return path, asked


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class SoakResult:
    turns: int
    answered: int
    unanswered: list[int]
    latency: dict[str, dict[str, float]]
    rss_warm: dict[str, int]
    rss_end: dict[str, int]
    growth_pct: dict[str, float]
    max_growth_pct: float
    wall_s: float
    returncode: int | None
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return not self.unanswered and self.answered == self.turns and all(
            g <= self.max_growth_pct for g in self.growth_pct.values())

    def report(self) -> str:
        lines = [f"soak: {self.answered}/{self.turns} turns answered in {self.wall_s:.0f} s"
                 f" (dora exit {self.returncode})"]
        if self.unanswered:
            lines.append(f"  unanswered turns: {self.unanswered}")
        for part in ("first", "last"):
            lat = self.latency.get(part, {})
            lines.append(f"  voice-to-voice, {part} 20 %: median {lat.get('median', float('nan')):.3f} s,"
                         f" p95 {lat.get('p95', float('nan')):.3f} s (n={int(lat.get('n', 0))})")
        lines.append("  RSS after warm-up -> end (MB, growth):")
        for name in sorted(self.growth_pct, key=lambda n: (n == "TOTAL", n)):
            warm, end = self.rss_warm.get(name, 0), self.rss_end.get(name, 0)
            if name == "TOTAL":
                warm, end = sum(self.rss_warm.values()), sum(self.rss_end.get(n, 0) for n in self.rss_warm)
            flag = "  <-- over limit" if self.growth_pct[name] > self.max_growth_pct else ""
            lines.append(f"    {name:14s} {warm / 1024:7.1f} -> {end / 1024:7.1f}  {self.growth_pct[name]:+6.1f} %{flag}")
        return "\n".join(lines)


def growth(warm: dict[str, int], end: dict[str, int]) -> dict[str, float]:
    out = {name: 100.0 * (end.get(name, 0) - kb) / kb for name, kb in warm.items() if kb}
    total_warm, total_end = sum(warm.values()), sum(end.get(n, 0) for n in warm)
    if total_warm:
        out["TOTAL"] = 100.0 * (total_end - total_warm) / total_warm
    return out


def run_soak(
    turns: int = 200,
    gap_s: float = 3.5,
    embedded: bool = False,
    token_ms: float = 20.0,
    first_token_ms: float = 100.0,
    max_growth_pct: float = 10.0,
    workdir: Path | None = None,
    progress: Callable[[str], None] = lambda _s: None,
) -> SoakResult:
    """Run the soak and measure it (see the module docstring)."""
    from tests.scripted_server import Script, ScriptedServer

    workdir = Path(workdir or tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    wav, _asked = soak_wav(workdir / "questions.wav", turns, gap_s)
    env = {"LLM_MAX_TOKENS": "40"}
    server = None
    if not embedded:
        server = ScriptedServer(Script(answer=SCRIPTED_ANSWER, token_delay_s=token_ms / 1000,
                                       first_token_delay_s=first_token_ms / 1000)).start()
        env.update({"OPENAI_BASE_URL": server.base_url, "LLM_MODEL": "scripted"})
    warm_at = max(2, turns // 5)
    started = time.monotonic()
    flow = FileDataflow(wav, workdir, env).start()
    try:
        per_turn_s = len(speech(QUESTIONS[0])) / RATE + gap_s + 30.0
        flow.wait_log("assistant ready", timeout=180)
        flow.wait_turns(warm_at, timeout=warm_at * per_turn_s + 60)
        rss_warm = flow.rss()
        progress(f"warm-up done after {warm_at} turns: RSS {sum(rss_warm.values()) / 1024:.0f} MB")
        last_report = warm_at
        while len(flow.turns()) < turns:
            n = len(flow.turns())
            if n >= last_report + max(10, turns // 10):
                last_report = n
                progress(f"{n}/{turns} turns, RSS {sum(flow.rss().values()) / 1024:.0f} MB")
            if not flow.running():
                break
            if time.monotonic() - started > turns * per_turn_s + 240:
                break
            time.sleep(0.5)
        time.sleep(0.5)  # let the last node processes settle
        rss_end = flow.rss()
        code = flow.wait(timeout=120)
    finally:
        flow.stop()
        if server is not None:
            server.close()
    # by the number of the user's turn (ids are m.user_turn(n)); the assistant's own turns
    # (a timer ringing) are not questions
    records = {int(t["turn_id"]) // m.TURN_STRIDE: t for t in flow.turns()
               if m.is_user_turn(int(t["turn_id"]))}

    def answered(rec: dict[str, Any] | None) -> bool:
        if rec is None or rec.get("interrupted") or "t_llm_error" in rec.get("times", {}):
            return False
        if embedded:
            return bool(rec.get("answer", "").strip())
        return rec.get("answer", "").split() == SCRIPTED_ANSWER.split()

    unanswered = [t for t in range(1, turns + 1) if not answered(records.get(t))]
    v2v = [float(records[t]["durations"]["voice_to_voice"]) for t in range(1, turns + 1)
           if t in records and "voice_to_voice" in records[t].get("durations", {})]
    k = max(1, len(v2v) // 5)
    latency = {part: {"median": statistics.median(vals), "p95": percentile(vals, 95), "n": len(vals)}
               for part, vals in (("first", v2v[:k]), ("last", v2v[-k:])) if vals}
    return SoakResult(turns, turns - len(unanswered), unanswered, latency, rss_warm, rss_end,
                      growth(rss_warm, rss_end), max_growth_pct, time.monotonic() - started, code,
                      flow.log()[-3000:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--gap", type=float, default=3.5, help="silence after each question (s)")
    parser.add_argument("--embedded", action="store_true", help="use the embedded llama.cpp server")
    parser.add_argument("--token-ms", type=float, default=20.0, help="scripted server: ms between tokens")
    parser.add_argument("--first-token-ms", type=float, default=100.0, help="scripted server: ms to first token")
    parser.add_argument("--max-growth", type=float, default=10.0, help="allowed RSS growth in %%")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run_soak(args.turns, args.gap, args.embedded, args.token_ms, args.first_token_ms,
                      args.max_growth, args.workdir, progress=lambda s: print(s, flush=True))
    print(result.report())
    if not result.ok:
        print(result.log_tail, file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
