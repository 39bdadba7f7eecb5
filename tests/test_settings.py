import dataclasses
import re
from pathlib import Path

import pytest

from pipeline import settings

README = Path(__file__).parent.parent / "README.md"
SETTINGS_DOC = Path(__file__).parent.parent / "docs" / "settings.md"
TABLE = re.compile(r"<!-- settings table:[^\n]*-->\n(.*?)\n<!-- end of settings table -->", re.S)


def test_defaults_are_valid():
    s = settings.load({})
    assert s.vad_end_silence_ms == 500 and s.enable_streaming and s.barge_in
    assert s.uses_embedded_llm


def test_llm_tools_are_on_for_an_external_server_only_unless_set():
    from pipeline.llm import LlmConfig

    external = {"OPENAI_BASE_URL": "http://localhost:11434/v1"}
    assert not settings.load({}).uses_llm_tools
    assert settings.load(external).uses_llm_tools
    assert not settings.load({**external, "LLM_TOOLS": "off"}).uses_llm_tools
    assert settings.load({"LLM_TOOLS": "on"}).uses_llm_tools
    assert LlmConfig.from_settings(settings.load(external)).tools


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


def test_the_settings_page_is_the_generated_table_of_every_setting():
    """Regenerate it with `python -m pipeline.settings` after changing a setting."""
    found = TABLE.findall(SETTINGS_DOC.read_text())
    assert len(found) == 1, "docs/settings.md needs exactly one marked settings table"
    assert found[0] == settings.markdown_table()
    rows = [line.split("|")[1].strip(" `") for line in found[0].splitlines()[2:]]
    assert rows == [spec.name for spec in settings.SPECS]


def test_the_readme_shows_the_essential_settings_and_links_the_rest():
    """Regenerate it with `python -m pipeline.settings --readme`."""
    readme = README.read_text()
    found = TABLE.findall(readme)
    assert len(found) == 1, "the README needs exactly one marked settings table"
    assert found[0] == settings.markdown_table(settings.ESSENTIAL)
    rows = [line.split("|")[1].strip(" `") for line in found[0].splitlines()[2:]]
    assert sorted(rows) == sorted(settings.ESSENTIAL)
    assert "docs/settings.md" in readme


def test_every_setting_is_one_field_with_one_declaration():
    """SPECS is derived from the Settings fields: same names, same order, same defaults."""
    names = [f.name for f in dataclasses.fields(settings.Settings)]
    assert [spec.name for spec in settings.SPECS] == [n.upper() for n in names]
    assert len(set(names)) == len(names)
    assert settings.load({}) == settings.Settings() == settings.DEFAULTS
    for spec in settings.SPECS:
        assert spec.doc.strip(), spec.name
        # a default written in the environment means the default: in range, right type
        assert spec.parse(spec.default_text()) == spec.default, spec.name
        assert type(spec.default).__name__ == ("str" if spec.kind == "choice" else spec.kind)


def test_models_dir_is_a_setting():
    assert settings.load({}).models_dir == ""
    assert settings.load({"MODELS_DIR": "/srv/models"}).models_dir == "/srv/models"


def test_stage_configs_default_to_the_settings():
    """A config built without settings (tests, benchmarks) behaves as the assistant does."""
    from pipeline.asr import AsrConfig
    from pipeline.llm import LlmConfig, embedded_base_url
    from pipeline.tts import TtsConfig
    from pipeline.vad import EndpointConfig

    d = settings.DEFAULTS
    assert AsrConfig() == AsrConfig.from_settings(d)
    assert TtsConfig() == TtsConfig.from_settings(d)
    url = embedded_base_url(d.llm_server_port)
    assert LlmConfig(base_url=url, embedded=True) == LlmConfig.from_settings(d)
    assert dataclasses.replace(EndpointConfig(), speculate_ms=d.vad_speculative_ms) == (
        EndpointConfig.from_settings(d))


def test_configs_are_built_from_the_settings():
    from pipeline.asr import AsrConfig
    from pipeline.llm import LlmConfig
    from pipeline.tts import TtsConfig
    from pipeline.vad import EndpointConfig

    s = settings.load({"ASR_THREADS": "1", "TTS_LENGTH_SCALE": "0.8", "MODELS_DIR": "/m",
                       "OPENAI_BASE_URL": "http://h:1/v1", "LLM_FIRST_TOKEN_TIMEOUT_S": "7",
                       "VAD_END_SILENCE_MS": "300", "VAD_SPECULATIVE_MS": "320"})
    assert AsrConfig.from_settings(s).threads == 1 and AsrConfig.from_settings(s).models_dir == "/m"
    assert TtsConfig.from_settings(s).length_scale == 0.8
    llm = LlmConfig.from_settings(s)
    assert llm.base_url == "http://h:1/v1" and llm.first_token_timeout_s == 7 and not llm.embedded
    ep = EndpointConfig.from_settings(s)
    assert ep.end_silence_ms == 300 and ep.speculate_ms == 0  # speculating after the endpoint: off


def test_node_exits_with_a_clear_message_on_a_bad_setting(monkeypatch, capsys):
    from pipeline.runtime import start

    monkeypatch.setenv("VAD_END_SILENCE_MS", "soon")
    with pytest.raises(SystemExit) as info:
        start("vad")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "VAD_END_SILENCE_MS" in err and "integer" in err
