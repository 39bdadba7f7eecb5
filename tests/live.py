"""Drive the real dataflow on the PulseAudio virtual sound card (tests and benchmarks).

The user's voice is played into the `uservoice` sink (the assistant's default microphone is
its monitor); what the assistant says is recorded from `speaker.monitor`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio import write_wav
from pipeline.filemode import dora_env
from pipeline.models import REPO_ROOT

REC_RATE = 16000


class Recorder:
    """parecord of speaker.monitor into memory, with the wall time of its first sample."""

    def __init__(self, device: str = "speaker.monitor") -> None:
        self.proc = subprocess.Popen(
            ["parecord", f"--device={device}", "--raw", "--format=s16le", f"--rate={REC_RATE}",
             "--channels=1", "--latency-msec=20"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.started = time.time()
        self.chunks: list[bytes] = []
        self.first_t: float | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            data = self.proc.stdout.read1(3200) if hasattr(self.proc.stdout, "read1") else self.proc.stdout.read(3200)
            if not data:
                return
            if self.first_t is None:
                self.first_t = time.time() - len(data) / 2 / REC_RATE
            self.chunks.append(data)

    def audio(self) -> np.ndarray:
        """What was recorded so far (the reader thread may append meanwhile)."""
        raw = b"".join(list(self.chunks))
        return np.frombuffer(raw[: len(raw) // 2 * 2], dtype=np.int16).astype(np.float32) / 32768.0

    def wait_quiet(self, quiet_s: float = 0.3, threshold: float = 0.02, timeout: float = 10.0) -> None:
        """Wait until the recording goes on for `quiet_s` of silence from now: what was playing
        (the tail of an answer still in the sound server's buffers) has been recorded."""
        from tests.conftest import wait_until

        start = self.audio().size

        def quiet() -> bool:
            tail = self.audio()[start:]
            n = int(quiet_s * REC_RATE)
            return tail.size >= n and float(np.max(np.abs(tail[-n:]))) < threshold

        wait_until(quiet, timeout, f"{quiet_s} s of silence from speaker.monitor")

    def stop(self) -> np.ndarray:
        self.proc.terminate()
        self.proc.wait(5)
        self._thread.join(2)
        raw = b"".join(self.chunks)
        return np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0

    def save(self, audio: np.ndarray, path: Path) -> Path:
        write_wav(path, audio, REC_RATE)
        return path

    def sound_after(self, audio: np.ndarray, t: float, block: int = 160,
                    threshold: float = 0.01) -> float | None:
        """Seconds from wall time `t` to the first loud 10 ms block of `audio` (this
        recording), None if nothing is heard after `t`: where an answer starts."""
        assert self.first_t is not None
        rms = np.sqrt(np.mean(audio[: audio.size // block * block].reshape(-1, block) ** 2, axis=1))
        first = int(max(0.0, t - self.first_t) * REC_RATE / block)
        hits = np.nonzero(rms[first:] > threshold)[0]
        return None if hits.size == 0 else self.first_t + (first + hits[0]) * block / REC_RATE - t


@dataclass
class Asked:
    """What `ask` heard: the turns' metrics records, and per question the seconds from its
    end to the first sound on speaker.monitor (None: no sound after it)."""

    turns: list[dict]
    onsets: list[float | None]
    audio: np.ndarray


def ask(assistant: LiveAssistant, wav: Path, spans: list[tuple[float, float]],
        timeout: float = 120.0) -> Asked:
    """Play `wav` (questions at `spans`, (start, end) in s) into the microphone sink while
    recording speaker.monitor; wait for a turn per question and for the speaker to go quiet."""
    from tests.conftest import wait_until

    rec = Recorder()
    wait_until(lambda: rec.first_t is not None, 10, "the recorder of speaker.monitor")
    t_play = time.time()
    play(wav)
    turns = assistant.wait_turns(len(spans), timeout)
    rec.wait_quiet()
    audio = rec.stop()
    return Asked(turns, [rec.sound_after(audio, t_play + end) for _start, end in spans], audio)


def stop_dataflow(proc: subprocess.Popen) -> int:
    """Stop a `dora run` started in its own session: SIGINT (a clean stop), then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def play(wav: Path, device: str = "uservoice") -> None:
    subprocess.run(["paplay", f"--device={device}", str(wav)], check=True, timeout=120)


class LiveAssistant:
    """`dora run dataflow.yml` on the default (virtual) sound devices."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None,
                 root: Path = REPO_ROOT) -> None:
        """`root`: the checkout whose dataflow runs (another one to compare versions)."""
        self.workdir = workdir
        self.metrics = workdir / "metrics.jsonl"
        self.log_path = workdir / "dora.log"
        settings = {"METRICS_FILE": str(self.metrics), "MIC_FILE": "", "SPEAKER_FILE": ""}
        if root != REPO_ROOT:
            settings["PYTHONPATH"] = str(root)
        settings.update(env or {})
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["dora", "run", str(root / "dataflow.yml")], env=dora_env(settings),
            cwd=str(root), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "assistant ready" in self.log():
                return
            if self.proc.poll() is not None:
                raise RuntimeError("dataflow ended early:\n" + self.log()[-3000:])
            time.sleep(0.2)
        raise TimeoutError("assistant not ready:\n" + self.log()[-3000:])

    def view_url(self, timeout: float = 60.0) -> str:
        """The live view's address, as the view node logged it (VIEW_PORT=0 picks any port)."""
        from tests.conftest import wait_until

        found = wait_until(lambda: re.search(r"live view at (http://\S+)", self.log()), timeout,
                           "the view node's 'live view at' line", lambda: self.log()[-3000:])
        return found.group(1)

    def turns(self) -> list[dict]:
        if not self.metrics.exists():
            return []
        return [json.loads(x) for x in self.metrics.read_text().splitlines() if x.strip()]

    def wait_turns(self, n: int, timeout: float = 60.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.turns()
            if len(got) >= n:
                return got
            time.sleep(0.2)
        raise TimeoutError(f"{len(self.turns())} of {n} turns:\n" + self.log()[-3000:])

    def stop(self) -> int:
        code = stop_dataflow(self.proc)
        self._log.close()
        return code

    def __enter__(self) -> LiveAssistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DistributedAssistant(LiveAssistant):
    """`make run-distributed` on this machine: a board and a server daemon (pipeline/cluster.py)
    on free ports, `dora start dataflow.distributed.yml --attach` on the virtual sound card."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        from pipeline import deploy
        from pipeline.cluster import Cluster, Ports, settings_env

        self.workdir = workdir
        self.metrics = workdir / "metrics.jsonl"
        self.log_path = workdir / "dora.log"
        deploy.write()
        base = {"PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO_ROOT))}
        settings = {**settings_env(), **base, "METRICS_FILE": str(self.metrics), "MIC_FILE": "",
                    "SPEAKER_FILE": "", **(env or {})}
        self.cluster = Cluster(ports=Ports.free(), env=base, log_dir=workdir / "cluster").__enter__()
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.cluster.start_args(deploy.TARGET, settings), env=dora_env(base),
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def stop(self) -> int:
        try:
            return super().stop()
        finally:
            self.cluster.close()
