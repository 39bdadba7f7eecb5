"""Run the whole dataflow headless: a WAV file as the microphone, a WAV file as the speaker.

Used by `make demo`, the end-to-end tests and the benchmarks. It starts `dora run` on the
repository's `dataflow.yml` with MIC_FILE / SPEAKER_FILE / METRICS_FILE set and returns the
per-turn records the speaker wrote (transcript, answer, timestamps).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.models import REPO_ROOT

BUNDLED_QUESTION = Path(__file__).resolve().parent / "data" / "question.wav"


@dataclass
class FileRun:
    returncode: int
    turns: list[dict]
    output_wav: Path
    log: str
    wall_s: float


def dora_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for `dora run`: the venv's bin first on PATH (dora finds python there)."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parent.parent)
    env.setdefault("RUST_BACKTRACE", "0")
    env.update(extra or {})
    return env


def run_file_mode(
    question: Path | str = BUNDLED_QUESTION,
    env: dict[str, str] | None = None,
    workdir: Path | None = None,
    timeout_s: float = 300.0,
    dataflow: Path = REPO_ROOT / "dataflow.yml",
) -> FileRun:
    workdir = Path(workdir or tempfile.mkdtemp(prefix="voice-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out_wav = workdir / "answer.wav"
    metrics = workdir / "metrics.jsonl"
    for p in (out_wav, metrics):
        p.unlink(missing_ok=True)
    settings = {"MIC_FILE": str(Path(question).resolve()), "SPEAKER_FILE": str(out_wav),
                "METRICS_FILE": str(metrics)}
    settings.update(env or {})
    started = time.monotonic()
    proc = subprocess.run(
        ["dora", "run", str(dataflow)],
        env=dora_env(settings), cwd=str(dataflow.parent), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s, text=True,
    )
    turns = []
    if metrics.exists():
        turns = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return FileRun(proc.returncode, turns, out_wav, proc.stdout, time.monotonic() - started)
