from pathlib import Path

import pytest

from pipeline import settings


def test_defaults_are_valid():
    s = settings.load({})
    assert s.vad_end_silence_ms == 500 and s.enable_streaming and s.barge_in
    assert s.uses_embedded_llm


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("VAD_THRESHOLD", "abc", ["VAD_THRESHOLD", "number"]),
        ("VAD_THRESHOLD", "1.5", ["VAD_THRESHOLD", "out of range"]),
        ("ENABLE_STREAMING", "maybe", ["ENABLE_STREAMING", "true or false"]),
        ("ASR_COMPUTE_TYPE", "fp64", ["ASR_COMPUTE_TYPE", "int8"]),
        ("LLM_MAX_TOKENS", "0", ["LLM_MAX_TOKENS"]),
        ("MIC_FILE", "/no/such.wav", ["MIC_FILE", "no such file"]),
    ],
)
def test_bad_values_name_the_setting(name, value, words):
    with pytest.raises(settings.SettingsError) as info:
        settings.load({name: value})
    for w in words:
        assert w in str(info.value)


def test_api_key_never_shown():
    s = settings.load({"OPENAI_API_KEY": "sk-very-secret-123"})
    assert "sk-very-secret-123" not in repr(s)


def test_readme_documents_every_setting():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for spec in settings.SPECS:
        assert f"`{spec.name}`" in readme, spec.name


def test_node_exits_with_a_clear_message_on_a_bad_setting(monkeypatch, capsys):
    from pipeline.runtime import start

    monkeypatch.setenv("VAD_END_SILENCE_MS", "soon")
    with pytest.raises(SystemExit) as info:
        start("vad")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "VAD_END_SILENCE_MS" in err and "integer" in err
