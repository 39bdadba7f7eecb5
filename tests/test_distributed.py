"""The board's side of the split deployment: what it imports, what it sends over the link."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from pipeline import deploy
from pipeline import messages as m

SERVER_PACKAGES = ("faster_whisper", "ctranslate2", "llama_cpp", "piper", "openai", "pysbd")


def test_board_nodes_import_none_of_the_server_packages():
    board = [f"nodes.{n.replace('-', '_')}" for n in deploy.nodes_on(deploy.BOARD)]
    code = ("import importlib, json, sys\n"
            f"for name in {board!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(deploy.REPO_ROOT)}, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = {name.split(".")[0] for name in json.loads(done.stdout.splitlines()[-1])}
    assert {"nodes", "pipeline"} <= loaded
    assert not loaded & set(SERVER_PACKAGES), sorted(loaded & set(SERVER_PACKAGES))


def test_int16_audio_is_half_the_bytes_and_reads_back_as_float32():
    rng = np.random.default_rng(0)
    samples = np.clip(rng.normal(0, 0.3, 16000), -1, 1).astype(np.float32)
    wide, narrow = m.audio_array(samples, "float32"), m.audio_array(samples, "int16")
    assert narrow.nbytes * 2 == wide.nbytes
    back = m.audio_of(narrow)
    assert back.dtype == np.float32
    assert np.max(np.abs(back - samples)) <= 1 / 32767


def test_int16_clips_instead_of_wrapping_around():
    back = m.audio_of(m.audio_array(np.array([1.5, -1.5, 0.5], dtype=np.float32), "int16"))
    assert np.allclose(back, [1.0, -1.0, 0.5], atol=1e-4)


def test_the_wire_encoding_comes_from_the_environment():
    code = ("from pipeline import messages as m; import numpy as np;"
            "print(m.audio_array(np.zeros(4, dtype=np.float32)).type)")
    env = {**os.environ, "PYTHONPATH": str(deploy.REPO_ROOT)}
    for value, expected in (("int16", "int16"), ("", "float"), ("float32", "float")):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**env, m.WIRE_AUDIO_ENV: value}, timeout=60)
        assert done.stdout.strip() == expected, done.stderr
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, m.WIRE_AUDIO_ENV: "mp3"}, timeout=60)
    assert bad.returncode != 0 and m.WIRE_AUDIO_ENV in bad.stderr


def test_audio_that_crosses_machines_is_sent_as_int16():
    text = deploy.SOURCE.read_text()
    assert deploy.crossing_audio_senders(text) == {"vad", "tts"}
    # all on one machine: nothing crosses
    assert deploy.crossing_audio_senders(text, {k: deploy.BOARD for k in deploy.PLACEMENT}) == set()


def test_service_port_is_free_and_outside_the_ephemeral_range(tmp_path, monkeypatch):
    """A port bound only after the model loads must not be one outgoing connections may take
    meanwhile; a taken one is skipped."""
    import random
    import socket

    from pipeline import cluster

    (tmp_path / "range").write_text("32768\t60999\n")
    monkeypatch.setattr(cluster, "EPHEMERAL_RANGE", tmp_path / "range")
    first = cluster.service_port(rng=random.Random(7))
    assert 20000 <= first < 32768
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        again = cluster.service_port(rng=random.Random(7))  # same first pick, now taken
    assert again != first and 20000 <= again < 32768
