"""The split deployment on one machine: a dora coordinator, a `board` and a `server` daemon.

`make run-distributed` (``python -m pipeline.cluster``) regenerates
`dataflow.distributed.yml`, starts the three dora processes linked over 127.0.0.1 (distinct
listen ports, one zenoh rendezvous), waits until both daemons are registered, then runs
`dora start dataflow.distributed.yml --attach` with the settings passed as ``--env`` (under
`dora start` nodes see the daemon's environment, not this shell's) and stays attached.
Ctrl-C (or SIGTERM) stops the dataflow, then the daemons and the coordinator: every process
is started in its own session and its whole group is ended, so nothing is left behind.

The end-to-end tests and the benchmark use :class:`Cluster` directly (with free ports, so
they never meet a `dora up` of someone else on the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pipeline import deploy
from pipeline.filemode import dora_env
from pipeline.settings import SPECS

READY_TIMEOUT_S = 30.0
PASSED_THROUGH = ("PYTHONPATH", "MODELS_DIR", "HF_HOME", "HF_HUB_OFFLINE", "OMP_NUM_THREADS")
"""Variables besides the settings (pipeline/settings.py) that the nodes need to see."""


@dataclass(frozen=True)
class Ports:
    """Where the coordinator, the zenoh rendezvous and each daemon listen (all on 127.0.0.1)."""

    coordinator: int = 6013
    zenoh: int = 5456
    board: int = 53291
    server: int = 53292

    @classmethod
    def free(cls) -> Ports:
        """Four ports nobody listens on now (for tests run next to a `dora up`)."""
        socks = [socket.socket() for _ in range(4)]
        try:
            for s in socks:
                s.bind(("127.0.0.1", 0))
            return cls(*(s.getsockname()[1] for s in socks))
        finally:
            for s in socks:
                s.close()


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def service_port(low: int = 20000, rng: random.Random | None = None) -> int:
    """A free port for a server that binds it only later (the embedded LLM, after loading).

    Not one the kernel hands out (``bind(0)``): those come from the ephemeral range, where
    any outgoing connection meanwhile (zenoh links between the daemons) may take it. That
    race left the llm-server of a split run failing "port already in use" at every restart
    (each one loads the model first, 11 s, so dora's crash-loop limit was never hit and the
    dataflow never ended: the "int16 run did not end" of docs/distributed.md).
    """
    rng = rng or random.Random()
    try:
        ephemeral = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    port = first_free(rng.randrange(low, max(low + 1, ephemeral)) for _ in range(100))
    if port is None:
        raise RuntimeError(f"no free port between {low} and {ephemeral}")
    return port


def first_free(ports: Iterable[int]) -> int | None:
    """The first of `ports` that nothing on 127.0.0.1 has bound, or None."""
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return None


def descendants(pid: int) -> list[int]:
    """Pids of every process below `pid` (from /proc), children first."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parents.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


def settings_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The settings and the variables of :data:`PASSED_THROUGH` that are set in `environ`."""
    environ = dict(os.environ if environ is None else environ)
    names = [spec.name for spec in SPECS] + list(PASSED_THROUGH)
    return {k: environ[k] for k in names if k in environ}


@dataclass
class Cluster:
    """Coordinator + board daemon + server daemon as child processes (a context manager)."""

    ports: Ports = field(default_factory=Ports)
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def __enter__(self) -> Cluster:
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix="dora-cluster-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.start_coordinator()
            self.start_daemon(deploy.BOARD)
            self.start_daemon(deploy.SERVER)
            self.wait_for_daemons()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- processes ---------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        out: IO[bytes] | int = subprocess.DEVNULL
        if self.log_dir is not None:
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (closed in close())
            self._logs.append(out)
        proc = subprocess.Popen(["dora", *args], env=dora_env(self.env), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=self.log_dir)
        self.procs[name] = proc
        return proc

    def start_coordinator(self) -> None:
        self._spawn("coordinator", ["coordinator", "--port", str(self.ports.coordinator),
                                    "--store", "memory", "--quiet"])

    def start_daemon(self, machine: str) -> subprocess.Popen:
        """(Re)start the daemon of `machine` (a test stops and starts the server's)."""
        listen = self.ports.board if machine == deploy.BOARD else self.ports.server
        return self._spawn(machine, [
            "daemon", "--machine-id", machine, "--coordinator-port", str(self.ports.coordinator),
            "--zenoh-peer", f"tcp/127.0.0.1:{self.ports.zenoh}",
            "--local-listen-port", str(listen), "--quiet"])

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        """End one process, its group and the nodes it started.

        A daemon starts each node in a process group of its own, and a daemon that is
        stopped leaves its nodes running (dora 1.1), so they are ended here by pid.
        """
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        nodes = descendants(proc.pid)
        for s in (sig, signal.SIGKILL):
            try:
                os.killpg(proc.pid, s)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout_s)
                break
            except subprocess.TimeoutExpired:
                continue
        for pid in nodes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        for name in (deploy.BOARD, deploy.SERVER, "coordinator"):
            self.stop(name)
        for f in self._logs:
            f.close()
        self._logs.clear()

    # --- the coordinator's view ----------------------------------------------------------
    def dora(self, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        """A dora CLI command against this cluster's coordinator."""
        return subprocess.run(["dora", *args, "--coordinator-port", str(self.ports.coordinator)],
                              env=dora_env(self.env), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout_s)

    def machines(self) -> set[str]:
        """Machine ids of the daemons registered with the coordinator now."""
        try:
            done = self.dora("cluster", "status", timeout_s=10)
        except subprocess.TimeoutExpired:
            return set()
        ids = [line.split()[0] for line in done.stdout.splitlines()[1:] if line.strip()]
        return {i.rsplit("-", 5)[0] for i in ids if i.count("-") >= 5}

    def wait_for_daemons(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        want = {deploy.BOARD, deploy.SERVER}
        deadline = time.monotonic() + timeout_s
        said = False
        while (have := self.machines()) != want:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"dora {name} exited with {proc.returncode}"
                                       + self._log_hint(name))
            if time.monotonic() > deadline:
                raise RuntimeError(f"daemons {sorted(want - have)} did not register with the "
                                   f"coordinator in {timeout_s:.0f} s")
            if not said:
                print(f"cluster: waiting for the daemons {sorted(want - have)} to register",
                      flush=True)
                said = True
            time.sleep(0.2)

    def _log_hint(self, name: str) -> str:
        return f" (see {self.log_dir / (name + '.log')})" if self.log_dir else ""

    def start_args(self, dataflow: Path, settings: dict[str, str], name: str = "voice") -> list[str]:
        """`dora start` for the dataflow, attached, with each setting as `--env K=V`."""
        args = ["dora", "start", str(dataflow), "--attach", "--name", name,
                "--coordinator-port", str(self.ports.coordinator)]
        for key, value in settings.items():
            args += ["--env", f"{key}={value}"]
        return args


def run_attached(cluster: Cluster, dataflow: Path, settings: dict[str, str]) -> int:
    """Start the dataflow and stay attached; Ctrl-C stops the dataflow, then everything."""
    attach = subprocess.Popen(cluster.start_args(dataflow, settings), env=dora_env(cluster.env),
                              stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        return attach.wait()
    except KeyboardInterrupt:
        print("\ncluster: stopping the dataflow", flush=True)
        cluster.dora("stop", "--name", "voice", timeout_s=30)
        try:
            return attach.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(attach.pid, signal.SIGKILL)
            return attach.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the board/server split on one machine")
    parser.add_argument("--log-dir", type=Path, default=deploy.REPO_ROOT / "out" / "cluster",
                        help="where the coordinator's and daemons' logs go")
    args = parser.parse_args(argv)
    deploy.write()
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", str(deploy.REPO_ROOT))}
    settings = {**settings_env(), **env}
    with Cluster(env=env, log_dir=args.log_dir) as cluster:
        print(f"cluster: coordinator :{cluster.ports.coordinator}, daemons board and server "
              f"(logs in {args.log_dir})", flush=True)
        return run_attached(cluster, deploy.TARGET, settings)


if __name__ == "__main__":
    sys.exit(main())
