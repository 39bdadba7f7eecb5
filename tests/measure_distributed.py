"""Measure the split deployment in file mode: bytes/s between the machines and each side's PSS.

Runs the cluster of pipeline/cluster.py on free ports with MIC_FILE / SPEAKER_FILE, and every
0.25 s reads (a) the TCP byte counters (`ss -tinp`) of every socket that links a process of
the board (its daemon and nodes) to a process of the server, and (b) the PSS
(/proc/<pid>/smaps_rollup) of each daemon and of the nodes below it. The turn's timestamps
(METRICS_FILE) split the run into `listening` (before the end of speech) and `answering`
(end of speech to the answer's end).

    PYTHONPATH=$PWD python -m tests.measure_distributed [--question file.wav]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

from pipeline import deploy
from pipeline.cluster import Cluster, Ports, descendants, service_port, settings_env
from pipeline.filemode import BUNDLED_QUESTION, dora_env

_SOCK = re.compile(r"127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:(\d+).*?pid=(\d+)", re.S)


def pss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(match[1]) if match else 0


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def label(pid: int) -> str:
    words = cmdline(pid).split()
    name = next((w for w in words if w.startswith(("nodes.", "pipeline."))), None)
    name = name or (" ".join(words[2:4]) if "dora" in " ".join(words[:2]) else words[-1] if words else "?")
    return f"{name}#{pid}"


_SEEN: dict[tuple[int, int], tuple[int, int]] = {}


def cross_bytes(board: set[int], server: set[int]) -> tuple[int, int]:
    """(bytes board -> server, bytes server -> board) so far over the sockets that link the
    two, including the sockets already closed (their last counters are kept)."""
    out = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True).stdout
    entries = re.split(r"\n(?=\S)", out)
    owner: dict[int, int] = {}
    counters: list[tuple[int, int, int, int, int]] = []
    for entry in entries:
        m = _SOCK.search(entry)
        if not m:
            continue
        local, peer, pid = int(m[1]), int(m[2]), int(m[3])
        owner[local] = pid
        sent = re.search(r"bytes_sent:(\d+)", entry)
        recv = re.search(r"bytes_received:(\d+)", entry)
        counters.append((local, peer, pid, int(sent[1]) if sent else 0, int(recv[1]) if recv else 0))
    for local, peer, pid, sent, recv in counters:
        if pid in board and owner.get(peer) in server:
            _SEEN[(local, peer)] = (sent, recv)
    return sum(v[0] for v in _SEEN.values()), sum(v[1] for v in _SEEN.values())


def side(cluster: Cluster, machine: str) -> set[int]:
    proc = cluster.procs[machine]
    return {proc.pid, *descendants(proc.pid)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", type=Path, default=BUNDLED_QUESTION)
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--float32", action="store_true",
                        help="send every audio payload as float32 (the baseline)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="measure-dist-"))
    deploy.write()
    env = {k: v for k, v in settings_env().items() if k in ("PYTHONPATH", "MODELS_DIR")}
    settings = {**settings_env(), "MIC_FILE": str(args.question.resolve()),
                "SPEAKER_FILE": str(work / "answer.wav"), "METRICS_FILE": str(work / "metrics.jsonl"),
                "LLM_SERVER_PORT": str(service_port())}
    samples: list[dict] = []
    dataflow = deploy.TARGET
    if args.float32:
        dataflow = deploy.REPO_ROOT / "out" / "dataflow.float32.yml"
        dataflow.parent.mkdir(exist_ok=True)
        dataflow.write_text(deploy.TARGET.read_text().replace(": int16}", ": float32}"))
    with Cluster(ports=Ports.free(), env=env, log_dir=work / "logs") as cluster:
        attach = subprocess.Popen(cluster.start_args(dataflow, settings), env=dora_env(env),
                                  stdout=open(work / "attach.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        deadline = time.monotonic() + args.timeout
        while attach.poll() is None and time.monotonic() < deadline:
            board, server = side(cluster, deploy.BOARD), side(cluster, deploy.SERVER)
            up, down = cross_bytes(board, server)
            samples.append({"t": time.time(), "up": up, "down": down,
                            "board": {label(p): pss_kb(p) for p in board},
                            "server": {label(p): pss_kb(p) for p in server}})
            time.sleep(0.25)
        if attach.poll() is None:
            attach.kill()
    report(samples, work)


def rate(samples: list[dict], t0: float, t1: float, key: str) -> float:
    inside = [s for s in samples if t0 <= s["t"] <= t1]
    if len(inside) < 2:
        return float("nan")
    return (inside[-1][key] - inside[0][key]) / (inside[-1]["t"] - inside[0]["t"])


def report(samples: list[dict], work: Path) -> None:
    metrics = work / "metrics.jsonl"
    turns = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.exists() else []
    print(f"work folder: {work}; {len(turns)} turn(s)")
    if turns:
        t = turns[0]["times"] if "times" in turns[0] else turns[0]
        start, end = t.get("t_speech_start"), t.get("t_speech_end")
        done = t.get("t_answer_done") or samples[-1]["t"]
        for name, a, b in (("listening (speech)", start, end), ("answering", end, done)):
            if a and b:
                print(f"{name:20s} board->server {rate(samples, a, b, 'up'):9.0f} B/s   "
                      f"server->board {rate(samples, a, b, 'down'):9.0f} B/s   ({b - a:.1f} s)")
    idle = [s for s in samples[:]]
    print(f"whole run           board->server {samples[-1]['up']} B, server->board {samples[-1]['down']} B "
          f"over {idle[-1]['t'] - idle[0]['t']:.0f} s")
    for machine in ("board", "server"):
        peak = max(samples, key=lambda s: sum(s[machine].values()))[machine]
        total = sum(peak.values()) / 1024
        parts = ", ".join(f"{k} {v / 1024:.0f}" for k, v in sorted(peak.items()))
        print(f"PSS {machine}: {total:.0f} MB at its peak ({parts})")
    (work / "samples.json").write_text(json.dumps(samples))


if __name__ == "__main__":
    main()
