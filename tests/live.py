"""Drive the real dataflow on the PulseAudio virtual sound card (tests and benchmarks).

The user's voice is played into the `uservoice` sink (the assistant's default microphone is
its monitor); what the assistant says is recorded from `speaker.monitor`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import warnings
import wave
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

    def wait_started(self, timeout: float = 10.0) -> None:
        """Wait (up to `timeout`) for the first samples, so `first_t` dates the recording."""
        deadline = time.monotonic() + timeout
        while self.first_t is None and time.monotonic() < deadline:
            time.sleep(0.05)

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
    """Play `wav` into `device`, waiting for its end (up to its length and a minute)."""
    with wave.open(str(wav)) as w:
        length_s = w.getnframes() / w.getframerate()
    subprocess.run(["paplay", f"--device={device}", str(wav)], check=True, timeout=length_s + 60)


def unconnected_nodes(log: str) -> dict[str, int]:
    """Nodes that dora spawned but that never connected (no "node is ready"): name -> pid."""
    spawned = dict(re.findall(r"(\S+): spawner spawned node with pid (\d+)", log))
    ready = set(re.findall(r"(\S+): daemon node is ready", log))
    return {name: int(pid) for name, pid in spawned.items() if name not in ready}


class LiveAssistant:
    """`dora run dataflow.yml` on the default (virtual) sound devices.

    Every node runs with Python's faulthandler on, so a node that hangs can be made to print
    where it hangs (SIGABRT). dora 1.1 has no start-up deadline (dora-rs/dora#3022): a node
    that hangs before it connects to its daemon holds the whole dataflow back for good. That
    was seen once in ~150 starts (the llm node, in CI); `wait_ready` then dumps the hung
    nodes' stacks into the log and starts the dataflow once more.
    """

    can_restart = True

    def __init__(self, workdir: Path, env: dict[str, str] | None = None,
                 root: Path = REPO_ROOT) -> None:
        """`root`: the checkout whose dataflow runs (another one to compare versions)."""
        self.workdir = workdir
        self.metrics = workdir / "metrics.jsonl"
        self.log_path = workdir / "dora.log"
        self.root = root
        settings = {"METRICS_FILE": str(self.metrics), "MIC_FILE": "", "SPEAKER_FILE": "",
                    "PYTHONFAULTHANDLER": "1"}
        if root != REPO_ROOT:
            settings["PYTHONPATH"] = str(root)
        settings.update(env or {})
        self.settings = settings
        self.restarts = 0
        self._launch()

    def _launch(self) -> None:
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["dora", "run", str(self.root / "dataflow.yml")], env=dora_env(self.settings),
            cwd=str(self.root), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0, hung_after_s: float = 60.0) -> None:
        """Until the llm node says `assistant ready`; a node still not connected to dora after
        `hung_after_s` is taken as hung: its stack goes to the log and the dataflow starts
        again, once."""
        if self._wait_log("assistant ready", min(hung_after_s, timeout)):
            return
        hung = unconnected_nodes(self.log())
        if hung and self.can_restart and not self.restarts:
            self._restart_hung(hung)
            if self._wait_log("assistant ready", timeout):
                return
        elif self._wait_log("assistant ready", max(0.0, timeout - hung_after_s)):
            return
        raise TimeoutError("assistant not ready:\n" + self.log()[-3000:])

    def _wait_log(self, line: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if line in self.log():
                return True
            if self.proc.poll() is not None:
                raise RuntimeError("dataflow ended early:\n" + self.log()[-3000:])
            time.sleep(0.2)
        return False

    def _restart_hung(self, hung: dict[str, int]) -> None:
        for pid in hung.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGABRT)  # faulthandler prints the stack into the log
        time.sleep(1.0)
        self.stop()
        kept = self.log_path.with_name(f"dora.hung{self.restarts}.log")
        self.log_path.replace(kept)
        self.restarts += 1
        warnings.warn(f"nodes {sorted(hung)} never connected to dora; their stacks are in {kept}; "
                      "the dataflow starts again", RuntimeWarning, stacklevel=3)
        self._launch()

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

    can_restart = False  # its cluster's daemons would have to start again too

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
