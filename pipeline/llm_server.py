"""The embedded OpenAI-compatible server: llama-cpp-python's server as a child process.

Why llama-cpp-python's server: it speaks the OpenAI chat API with SSE streaming (so the llm
node uses the same SDK path for the embedded model as for OpenAI or Ollama), runs GGUF models
on a small CPU, and is a pip package. It listens on 127.0.0.1 only.

The server must never outlive the llm-server node: if the node is killed (and restarted by
dora), an orphaned server would keep the port and the new node could not start its own. So
the child asks Linux to send it SIGTERM when its parent dies (PR_SET_PDEATHSIG, set by a tiny
boot script before llama_cpp.server starts, not in a `preexec_fn`, which is unsafe in a
threaded process), and `start` waits a few seconds for a dying server to free the port.
"""

from __future__ import annotations

import collections
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field

from pipeline.llm import EMBEDDED_HOST, EMBEDDED_MODEL_ALIAS
from pipeline.models import llm_serving_path
from pipeline.segmenter import FIRST_MAX_WORDS
from pipeline.settings import Settings

# Runs `python -m llama_cpp.server ARGS` after PR_SET_PDEATHSIG (1) = SIGTERM; exits at once if
# the parent is already gone (it died between fork and prctl).
_BOOT = """\
import ctypes, os, runpy, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
except Exception:
    pass
if os.getppid() != int(os.environ.get("VOICE_LLM_SERVER_PARENT", os.getppid())):
    sys.exit(0)
os.nice(int(os.environ.get("VOICE_LLM_SERVER_NICE", "0")))
if os.environ.get("VOICE_LLM_FIRST_PHRASE"):
    from pipeline.llm_pace import install
    install(*map(int, os.environ["VOICE_LLM_FIRST_PHRASE"].split(",")))
sys.argv = ["llama_cpp.server"] + sys.argv[1:]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""
PORT_FREE_WAIT_S = 10.0


@dataclass
class EmbeddedServer:
    model_path: str
    port: int
    threads: int = 1
    ctx: int = 2048
    batch_threads: int = 2
    host: str = EMBEDDED_HOST
    nice: int = 5
    first_phrase_threads: int = 2  # see pipeline/llm_pace.py
    first_min_words: int = 3
    first_max_words: int = FIRST_MAX_WORDS
    _proc: subprocess.Popen[bytes] | None = None
    _log: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=30))

    @classmethod
    def from_settings(cls, s: Settings) -> EmbeddedServer:
        return cls(llm_serving_path(s.llm_server_model, s.models_dir), s.llm_server_port, s.llm_server_threads,
                   s.llm_server_ctx, nice=s.llm_server_nice, batch_threads=s.llm_server_batch_threads,
                   first_phrase_threads=s.llm_server_first_phrase_threads,
                   first_min_words=s.segment_first_min_words,
                   first_max_words=min(FIRST_MAX_WORDS, s.segment_max_words))

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable, "-c", _BOOT,
            "--model", self.model_path,
            "--model_alias", EMBEDDED_MODEL_ALIAS,
            "--host", self.host,
            "--port", str(self.port),
            "--n_threads", str(self.threads),  # generating: one core, Piper has the other
            "--n_threads_batch", str(self.batch_threads),  # reading the prompt: both cores
            "--n_ctx", str(self.ctx),
            # The server's default (true) copies the logits of every prompt token (49152
            # floats each for SmolLM2) into a n_ctx x vocab array and makes llama.cpp compute
            # them: +50 MB after 6 short turns, +280 MB (524 vs 247 MB PSS) after re-reading a
            # long history, and a slower first token. Only logprobs need it; we never ask.
            "--logits_all", "false",
            # llama.cpp's compute buffers scale with the physical batch: 128 instead of 512
            # is -19 MB PSS, with the same first token (136-143 vs 143-145 ms median) and
            # the same time to re-read a long history (3.4-3.9 vs 3.9-4.0 s)
            "--n_ubatch", "128",
            "--verbose", "false",
        ]

    def first_phrase_env(self) -> str:
        """"threads,min_words,max_words" for `pipeline.llm_pace.install`; empty: no pacing."""
        if self.first_phrase_threads <= self.threads:
            return ""
        return f"{self.first_phrase_threads},{self.first_min_words},{self.first_max_words}"

    def port_free(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            return sock.connect_ex((self.host, self.port)) != 0

    def wait_port_free(self, timeout_s: float = PORT_FREE_WAIT_S) -> bool:
        """Wait until nothing listens on the port (a previous server may still be dying)."""
        deadline = time.monotonic() + timeout_s
        pause = threading.Event()
        while not self.port_free():
            if time.monotonic() >= deadline:
                return False
            pause.wait(0.2)
        return True

    def start(self, port_wait_s: float = PORT_FREE_WAIT_S) -> None:
        """Start the server; refuse when something else keeps listening on the port."""
        self.stop()
        if not self.wait_port_free(port_wait_s):
            raise OSError(
                f"LLM_SERVER_PORT={self.port} is already in use on {self.host}: "
                "stop the other program or choose another port"
            )
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "VOICE_LLM_SERVER_PARENT": str(os.getpid()),
                 # Generation yields to the audio path: on 2 cores, Piper synthesizing the
                 # first segment and the VAD must not wait behind llama.cpp's threads.
                 "VOICE_LLM_SERVER_NICE": str(self.nice),
                 "VOICE_LLM_FIRST_PHRASE": self.first_phrase_env()},
        )
        threading.Thread(target=self._pump, args=(self._proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._log.append(line.decode(errors="replace").rstrip())

    def log_tail(self) -> str:
        return " | ".join(list(self._log)[-5:])

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=1.0) as resp:
                return resp.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the server answers /v1/models (start-up only, so a short poll is fine)."""
        deadline = time.monotonic() + timeout_s
        pause = threading.Event()
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            if self.healthy():
                return True
            pause.wait(0.1)
        return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
