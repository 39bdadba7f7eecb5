"""The embedded server's model: the bundled Q4_1 GGUF is served as a Q8_0 copy made once."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from pipeline import models


def file_type(path: str) -> str:
    from llama_cpp import Llama

    llm = Llama(path, vocab_only=True, verbose=False)
    return llm.metadata["general.file_type"]


def test_the_bundled_model_is_served_as_a_q8_copy_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = models.llm_gguf_path("", str(tmp_path))
    served = models.llm_serving_path("", str(tmp_path))
    assert Path(served).parent == tmp_path and served.endswith(".Q8_0.gguf")
    assert file_type(bundled) == "3" and file_type(served) == "7"  # llama.cpp's Q4_1, Q8_0
    assert [p.name for p in tmp_path.iterdir()] == [Path(served).name]  # no temporary left

    def no_conversion(*args: object, **kwargs: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(subprocess, "run", no_conversion)
    assert models.llm_serving_path("", str(tmp_path)) == served


def test_a_chosen_model_is_served_as_it_is(tmp_path: Path) -> None:
    mine = tmp_path / "mine.Q4_1.gguf"
    mine.write_bytes(b"GGUF")
    assert models.llm_serving_path("mine.Q4_1.gguf", str(tmp_path)) == str(mine)


def test_the_models_dir_setting_reaches_every_model_lookup(tmp_path: Path) -> None:
    """MODELS_DIR is a setting like any other: each stage's config carries it to the lookup."""
    from pipeline.asr import AsrConfig
    from pipeline.llm_server import EmbeddedServer
    from pipeline.settings import load
    from pipeline.tts import TtsConfig

    (tmp_path / "whisper-mine").mkdir()
    (tmp_path / "mine.Q4_1.gguf").write_bytes(b"GGUF")
    s = load({"MODELS_DIR": str(tmp_path), "LLM_SERVER_MODEL": "mine.Q4_1.gguf"})
    assert EmbeddedServer.from_settings(s).model_path == str(tmp_path / "mine.Q4_1.gguf")
    asr = AsrConfig.from_settings(s)
    assert models.asr_model_path("whisper-mine", asr.models_dir) == str(tmp_path / "whisper-mine")
    assert TtsConfig.from_settings(s).models_dir == str(tmp_path)
    assert models.models_folder("") == models.REPO_ROOT / "models"


def test_without_a_copy_the_original_is_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A model llama.cpp cannot re-encode (or a models/ folder it cannot write to) costs speed,
    never the assistant: the original is served and the log says why."""
    broken = tmp_path / "broken.Q4_1.gguf"
    broken.write_bytes(b"not a model")
    with caplog.at_level(logging.WARNING, logger="models"):
        assert models.q8_copy(str(broken), str(tmp_path / "models")) == str(broken)
    assert "could not be made" in caplog.text
    assert list((tmp_path / "models").iterdir()) == []
