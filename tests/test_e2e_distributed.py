"""The split deployment on this machine: a board and a server daemon answer spoken questions
(from a file, and through the virtual sound card), and the board copes with losing the server."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import deploy
from pipeline.cluster import Cluster, Ports, descendants, service_port, settings_env
from pipeline.filemode import BUNDLED_QUESTION, dora_env
from tests.bench import QUESTIONS, questions_wav
from tests.conftest import overlap, transcribe_file
from tests.live import DistributedAssistant, ask

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


def placement(cluster: Cluster, placed: dict[str, dict[str, int]] | None = None
              ) -> dict[str, dict[str, int]]:
    """Machine -> {node module: pid} of the processes below each daemon now, added to
    `placed` (nodes start at different times: callers sample more than once)."""
    placed = {} if placed is None else placed
    for machine in (deploy.BOARD, deploy.SERVER):
        placed.setdefault(machine, {}).update(node_pids(cluster, machine))
    return placed


def assert_placed(placed: dict[str, dict[str, int]]) -> None:
    """Sound and speech detection run under the board's daemon, the models under the server's."""
    board, server = placed.get(deploy.BOARD, {}).keys(), placed.get(deploy.SERVER, {}).keys()
    assert {"nodes.microphone", "nodes.vad", "nodes.speaker"} <= board, placed
    assert {"nodes.asr", "nodes.llm", "nodes.tts"} <= server, placed
    assert not {"nodes.asr", "nodes.llm", "nodes.tts"} & board, placed


def test_board_and_server_daemons_answer_a_spoken_question(tmp_path):
    deploy.write()
    env = {k: v for k, v in settings_env().items() if k in ("PYTHONPATH", "MODELS_DIR")}
    env.setdefault("PYTHONPATH", str(deploy.REPO_ROOT))
    settings = {**settings_env(), **env, "MIC_FILE": str(BUNDLED_QUESTION),
                "SPEAKER_FILE": str(tmp_path / "answer.wav"),
                "METRICS_FILE": str(tmp_path / "metrics.jsonl"),
                "LLM_SERVER_PORT": str(service_port())}
    placed: dict[str, dict[str, int]] = {}
    with Cluster(ports=Ports.free(), env=env, log_dir=tmp_path / "logs") as cluster:
        log = open(tmp_path / "attach.log", "w")  # noqa: SIM115
        attach = subprocess.Popen(cluster.start_args(deploy.TARGET, settings), env=dora_env(env),
                                  stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while attach.poll() is None and time.monotonic() < deadline:
            placement(cluster, placed)
            time.sleep(0.5)
        if attach.poll() is None:
            attach.kill()
        log.close()
    text = (tmp_path / "attach.log").read_text()
    assert attach.returncode == 0, text[-3000:]
    assert_placed(placed)
    turns = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines() if x]
    assert len(turns) == 1, text[-3000:]
    assert overlap("what is the capital of france", turns[0]["transcript"]) >= 0.8
    heard = transcribe_file(tmp_path / "answer.wav")
    assert overlap(turns[0]["answer"], heard) >= 0.6, (turns[0]["answer"], heard)


@pytest.mark.sound
def test_board_and_server_daemons_answer_spoken_questions_through_the_sound_card(sound_card, tmp_path):
    """`make run-distributed` on the real microphone and speaker paths (the virtual card), the
    embedded model answering: two questions played into the microphone's sink, both answered
    (metrics) and heard on the speaker's monitor, with the nodes on their machines."""
    wav, spans = questions_wav(tmp_path, 2)
    with DistributedAssistant(tmp_path, {"LLM_SERVER_PORT": str(service_port())}) as assistant:
        assistant.wait_ready()
        placed = placement(assistant.cluster)
        asked = ask(assistant, wav, spans)
        placement(assistant.cluster, placed)
        text = assistant.log()
    print("\n[split deployment, virtual card] end of question -> first sound: "
          + ", ".join("none" if x is None else f"{x * 1000:.0f} ms" for x in asked.onsets))
    assert_placed(placed)
    assert len(asked.turns) == 2, text[-3000:]
    for question, turn in zip(QUESTIONS, asked.turns, strict=False):
        assert overlap(question, turn["transcript"]) >= 0.6, turn
        assert turn["answer"].strip() and "t_skill" not in turn["times"], turn  # the LLM's
    first, second = asked.onsets
    # the first answer is heard before the second question ends, the second one after it
    assert first is not None and first < spans[1][1] - spans[0][1], asked.onsets
    assert second is not None, asked.onsets


def test_the_board_says_so_when_the_server_daemon_dies_mid_question(tmp_path):
    """The server's daemon (and its nodes) die while the user asks: dora tells the board
    nothing, so the speaker's watch logs one line and plays the earcon into SPEAKER_FILE;
    Ctrl-C then stops the dataflow."""
    from pipeline.audio import read_wav
    from pipeline.stages.server_watch import earcon

    deploy.write()
    env = {k: v for k, v in settings_env().items() if k in ("PYTHONPATH", "MODELS_DIR")}
    env.setdefault("PYTHONPATH", str(deploy.REPO_ROOT))
    timeout_s = 4
    settings = {**settings_env(), **env, "MIC_FILE": str(BUNDLED_QUESTION),
                "SPEAKER_FILE": str(tmp_path / "answer.wav"),
                "SERVER_REPLY_TIMEOUT_S": str(timeout_s),
                "LLM_SERVER_PORT": str(service_port())}
    log_path = tmp_path / "attach.log"
    with Cluster(ports=Ports.free(), env=env, log_dir=tmp_path / "logs") as cluster:
        log = open(log_path, "w")  # noqa: SIM115
        attach = subprocess.Popen(cluster.start_args(deploy.TARGET, settings), env=dora_env(env),
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            assert wait_for_line(log_path, "speech started", attach, 300), log_path.read_text()[-3000:]
            cluster.stop(deploy.SERVER)  # the daemon and every node it started
            assert wait_for_line(log_path, "no answer from the server for", attach, 120), \
                log_path.read_text()[-3000:]
            attach.send_signal(signal.SIGINT)  # Ctrl-C
            attach.wait(60)
        finally:
            if attach.poll() is None:
                attach.kill()
            log.close()
    text = log_path.read_text()
    lines = [x for x in text.splitlines() if "no answer from the server for" in x]
    assert len(lines) == 1 and "is the server daemon running?" in lines[0], text[-3000:]
    wav, rate = read_wav(tmp_path / "answer.wav")
    tone = earcon(rate)
    assert wav.size == tone.size and np.allclose(wav, tone, atol=2e-4), (wav.size, tone.size)


def wait_for_line(path: Path, needle: str, proc: subprocess.Popen, timeout_s: float) -> bool:
    """Wait until `needle` is in the log at `path` (False if `proc` ended or time is up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if needle in path.read_text(errors="replace"):
            return True
        if proc.poll() is not None:
            return needle in path.read_text(errors="replace")
        time.sleep(0.2)
    return False
