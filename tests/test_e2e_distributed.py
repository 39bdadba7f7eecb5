"""The split deployment on this machine: a board and a server daemon answer a spoken question."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from pipeline import deploy
from pipeline.cluster import Cluster, Ports, descendants, settings_env
from pipeline.filemode import BUNDLED_QUESTION, dora_env
from tests.conftest import overlap, transcribe_file

pytestmark = pytest.mark.e2e


def node_pids(cluster: Cluster, machine: str) -> dict[str, int]:
    """Node module -> pid for every process below `machine`'s daemon."""
    found = {}
    for pid in descendants(cluster.procs[machine].pid):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-m" in args:
            found[args[args.index(b"-m") + 1].decode()] = pid
    return found


def test_board_and_server_daemons_answer_a_spoken_question(tmp_path):
    deploy.write()
    env = {k: v for k, v in settings_env().items() if k in ("PYTHONPATH", "MODELS_DIR")}
    env.setdefault("PYTHONPATH", str(deploy.REPO_ROOT))
    settings = {**settings_env(), **env, "MIC_FILE": str(BUNDLED_QUESTION),
                "SPEAKER_FILE": str(tmp_path / "answer.wav"),
                "METRICS_FILE": str(tmp_path / "metrics.jsonl"),
                "LLM_SERVER_PORT": str(Ports.free().coordinator)}
    placed: dict[str, dict[str, int]] = {}
    with Cluster(ports=Ports.free(), env=env, log_dir=tmp_path / "logs") as cluster:
        log = open(tmp_path / "attach.log", "w")  # noqa: SIM115
        attach = subprocess.Popen(cluster.start_args(deploy.TARGET, settings), env=dora_env(env),
                                  stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while attach.poll() is None and time.monotonic() < deadline:
            for machine in (deploy.BOARD, deploy.SERVER):
                placed.setdefault(machine, {}).update(node_pids(cluster, machine))
            time.sleep(0.5)
        if attach.poll() is None:
            attach.kill()
        log.close()
    text = (tmp_path / "attach.log").read_text()
    assert attach.returncode == 0, text[-3000:]
    assert {"nodes.microphone", "nodes.vad", "nodes.speaker"} <= placed[deploy.BOARD].keys()
    assert {"nodes.asr", "nodes.llm", "nodes.tts"} <= placed[deploy.SERVER].keys()
    assert not {"nodes.asr", "nodes.llm", "nodes.tts"} & placed[deploy.BOARD].keys()
    turns = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines() if x]
    assert len(turns) == 1, text[-3000:]
    assert overlap("what is the capital of france", turns[0]["transcript"]) >= 0.8
    heard = transcribe_file(tmp_path / "answer.wav")
    assert overlap(turns[0]["answer"], heard) >= 0.6, (turns[0]["answer"], heard)
