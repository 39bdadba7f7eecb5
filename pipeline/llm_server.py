"""The embedded OpenAI-compatible server: llama-cpp-python's server as a child process.

Why llama-cpp-python's server: it speaks the OpenAI chat API with SSE streaming (so the llm
node uses the same SDK path for the embedded model as for OpenAI or Ollama), runs GGUF models
on a small CPU, and is a pip package. It listens on 127.0.0.1 only.
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

from pipeline.llm import EMBEDDED_MODEL_ALIAS
from pipeline.models import llm_gguf_path
from pipeline.settings import Settings


@dataclass
class EmbeddedServer:
    model_path: str
    port: int
    threads: int = 2
    ctx: int = 2048
    host: str = "127.0.0.1"
    _proc: subprocess.Popen[bytes] | None = None
    _log: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=30))

    @classmethod
    def from_settings(cls, s: Settings) -> EmbeddedServer:
        return cls(llm_gguf_path(s.llm_server_model), s.llm_server_port, s.llm_server_threads, s.llm_server_ctx)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", self.model_path,
            "--model_alias", EMBEDDED_MODEL_ALIAS,
            "--host", self.host,
            "--port", str(self.port),
            "--n_threads", str(self.threads),
            "--n_ctx", str(self.ctx),
            "--verbose", "false",
        ]

    def port_free(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            return sock.connect_ex((self.host, self.port)) != 0

    def start(self) -> None:
        """Start the server; refuse when something else already listens on the port."""
        self.stop()
        if not self.port_free():
            raise OSError(
                f"LLM_SERVER_PORT={self.port} is already in use on {self.host}: "
                "stop the other program or choose another port"
            )
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
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
