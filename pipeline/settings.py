"""Every setting of the assistant, read from environment variables once at start.

dora's convention is configuration through `env:` in `dataflow.yml` or the shell that runs
`dora run`, so that is the only source. Every node calls :func:`load` before it touches a
device or a model; a bad value stops the node with one line that names the variable and the
values it accepts, instead of a traceback deep inside a library later on.

The table in the README is generated from :data:`SPECS` (``python -m pipeline.settings``),
so the documentation and the defaults cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any


class SettingsError(ValueError):
    """A setting has a value the assistant cannot use; the message names it."""


@dataclass(frozen=True)
class Spec:
    """How one environment variable is parsed and documented."""

    name: str
    default: str
    kind: str  # "str", "int", "float", "bool", "choice"
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False

    def allowed(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind in ("int", "float"):
            lo = "-inf" if self.minimum is None else f"{self.minimum:g}"
            hi = "inf" if self.maximum is None else f"{self.maximum:g}"
            kind = "an integer" if self.kind == "int" else "a number"
            return f"{kind} from {lo} to {hi}"
        return "any text"

    def parse(self, raw: str) -> Any:
        value: Any
        shown = "<hidden>" if self.secret else repr(raw)
        if self.kind == "str":
            return raw
        if self.kind == "bool":
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise SettingsError(f"{self.name}={shown} is not valid: use {self.allowed()}")
        if self.kind == "choice":
            low = raw.strip().lower()
            if low not in self.choices:
                raise SettingsError(f"{self.name}={shown} is not valid: use {self.allowed()}")
            return low
        conv: Callable[[str], Any] = int if self.kind == "int" else float
        try:
            value = conv(raw.strip())
        except ValueError:
            raise SettingsError(
                f"{self.name}={shown} is not valid: use {self.allowed()}"
            ) from None
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise SettingsError(f"{self.name}={shown} is out of range: use {self.allowed()}")
        return value


def _s(name: str, default: str, kind: str, doc: str, **kw: Any) -> Spec:
    return Spec(name=name, default=default, kind=kind, doc=doc, **kw)


SPECS: tuple[Spec, ...] = (
    # audio in
    _s("MIC_DEVICE", "", "str", "Input device: index or part of its name (`python -m sounddevice` lists them); empty = system default."),
    _s("MIC_FILE", "", "str", "WAV file to use instead of a microphone (file mode); the mic node ends after it."),
    _s("MIC_FILE_REALTIME", "true", "bool", "Pace the WAV file at real time like a microphone; false feeds it as fast as possible."),
    _s("MIC_FILE_TAIL_S", "1.5", "float", "Seconds of silence appended after MIC_FILE so the last question is endpointed.", minimum=0, maximum=60),
    _s("MIC_BLOCK_MS", "20", "int", "Microphone chunk length in milliseconds.", minimum=5, maximum=100),
    # audio out
    _s("SPEAKER_DEVICE", "", "str", "Output device: index or part of its name; empty = system default."),
    _s("SPEAKER_FILE", "", "str", "WAV file to write the assistant's voice to instead of a speaker (file mode)."),
    # vad
    _s("VAD_THRESHOLD", "0.5", "float", "Silero speech probability above which a 32 ms frame counts as speech.", minimum=0.05, maximum=0.99),
    _s("VAD_THRESHOLD_PLAYING", "0.7", "float", "Speech threshold while the assistant is audible (with AEC): its residual echo must not start a turn.", minimum=0.05, maximum=0.99),
    _s("VAD_START_MS", "96", "int", "Speech needed before `speech_started` is sent (and a playing answer is interrupted).", minimum=32, maximum=2000),
    _s("VAD_MIN_SPEECH_MS", "250", "int", "Utterances with less speech than this are dropped (coughs, clicks).", minimum=32, maximum=5000),
    _s("VAD_END_SILENCE_MS", "500", "int", "Silence that ends an utterance (endpointing).", minimum=100, maximum=5000),
    _s("VAD_SPECULATIVE_MS", "64", "int", "Silence after which ASR starts on a tentative utterance, so the transcript is ready when the endpoint comes (counted in 32 ms VAD frames); 0 = off.", minimum=0, maximum=5000),
    _s("VAD_PREROLL_MS", "300", "int", "Audio kept from before speech started, so the first syllable is not cut.", minimum=0, maximum=2000),
    _s("VAD_MAX_UTTERANCE_S", "15", "float", "An utterance is cut and sent after this long.", minimum=1, maximum=120),
    _s("AEC", "true", "bool", "Acoustic echo cancellation (WebRTC AEC3 via livekit) with the played audio as reference, so the assistant does not hear itself."),
    _s("BARGE_IN", "true", "bool", "Let the user interrupt the assistant; false = half duplex, the microphone is ignored while the assistant speaks."),
    # asr
    _s("ASR_MODEL", "tiny.en", "str", "Whisper model: `tiny.en` (bundled), a folder with a CTranslate2 model, or a model name found in `models/`."),
    _s("ASR_COMPUTE_TYPE", "int8", "choice", "CTranslate2 compute type.", choices=("int8", "int8_float32", "float32")),
    _s("ASR_THREADS", "2", "int", "CPU threads for Whisper.", minimum=1, maximum=64),
    _s("ASR_LANGUAGE", "en", "str", "Language code given to Whisper."),
    _s("ASR_BEAM_SIZE", "1", "int", "Beam size; 1 (greedy) is fastest.", minimum=1, maximum=10),
    _s("ASR_NO_SPEECH_THRESHOLD", "0.6", "float", "Whisper segments more likely silence than this (and unsure) are dropped.", minimum=0, maximum=1),
    _s("ASR_WINDOW_S", "10", "float", "Encoder window for utterances up to half its length: 10 s encodes ~8x faster than Whisper's 30 s; a result that loops or ends early is decoded again in 30 s. 30 = always the full window.", minimum=5, maximum=30),
    _s("ASR_LOGPROB_THRESHOLD", "-1.0", "float", "Whisper segments with a lower average log-probability are dropped when also likely silence.", minimum=-20, maximum=0),
    # llm
    _s("OPENAI_BASE_URL", "", "str", "OpenAI-compatible server, e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1` (Ollama); empty = the embedded server."),
    _s("OPENAI_API_KEY", "", "str", "API key for OPENAI_BASE_URL; never logged.", secret=True),
    _s("LLM_MODEL", "", "str", "Model name; empty = `gpt-4o-mini` for api.openai.com, the embedded model otherwise, or the server's first model."),
    _s("LLM_SYSTEM_PROMPT", "You are a helpful voice assistant. Answer briefly in plain English.", "str", "System prompt."),
    _s("LLM_MAX_TOKENS", "120", "int", "Maximum tokens of one answer.", minimum=1, maximum=8192),
    _s("LLM_TEMPERATURE", "0.3", "float", "Sampling temperature.", minimum=0, maximum=2),
    _s("LLM_HISTORY_TURNS", "6", "int", "At most this many past question/answer pairs go with each request; past it the oldest half is dropped at once, so the server's prompt cache keeps matching.", minimum=0, maximum=100),
    _s("ENABLE_STREAMING", "true", "bool", "Forward each text delta as it arrives; false waits for the whole answer (a baseline for measurements)."),
    _s("LLM_CONNECT_TIMEOUT_S", "5", "float", "Seconds to connect to the LLM server.", minimum=0.1, maximum=300),
    _s("LLM_FIRST_TOKEN_TIMEOUT_S", "15", "float", "Seconds from the request to the first token, retries and their waits included (then the apology).", minimum=0.1, maximum=600),
    _s("LLM_TOKEN_TIMEOUT_S", "10", "float", "Seconds to wait between two tokens.", minimum=0.1, maximum=600),
    _s("LLM_RETRIES", "2", "int", "Retries of a failed request (HTTP 429/5xx, refused) while nothing has been spoken yet.", minimum=0, maximum=10),
    _s("LLM_APOLOGY", "Sorry, I can't answer right now.", "str", "What the assistant says when the LLM fails."),
    _s("LLM_SERVER_PORT", "18080", "int", "Port of the embedded server on 127.0.0.1.", minimum=1024, maximum=65535),
    _s("LLM_SERVER_MODEL", "", "str", "GGUF file for the embedded server; empty = the bundled SmolLM2-135M-Instruct, served as a Q8_0 copy made once in `models/` (first token ~28 % faster than its Q4_1)."),
    _s("LLM_SERVER_THREADS", "1", "int", "CPU threads of the embedded server while it generates: 1 leaves the other core to Piper, which synthesizes the first segment meanwhile.", minimum=1, maximum=64),
    _s("LLM_SERVER_BATCH_THREADS", "2", "int", "CPU threads of the embedded server while it reads the prompt (nothing else runs then): first token 153 vs 190 ms, a whole history re-read 2.0 vs 5.0 s.", minimum=1, maximum=64),
    _s("LLM_SERVER_FIRST_PHRASE_THREADS", "2", "int", "CPU threads of the embedded server while it generates an answer's first phrase (nothing else runs then; see pipeline/llm_pace.py); then LLM_SERVER_THREADS.", minimum=1, maximum=64),
    _s("LLM_SERVER_NICE", "5", "int", "CPU priority of the embedded server (higher = lower priority), so speech synthesis and the VAD come first.", minimum=0, maximum=19),
    _s("LLM_SERVER_CTX", "2048", "int", "Context length of the embedded server.", minimum=256, maximum=32768),
    _s("LLM_SERVER_START_TIMEOUT_S", "120", "float", "Seconds the embedded server may take to start (a turn waits for it at most LLM_FIRST_TOKEN_TIMEOUT_S).", minimum=1, maximum=1200),
    # segmenter
    _s("SEGMENTS_AHEAD", "2", "int", "Segments sent to TTS before the speaker has played them (backpressure).", minimum=1, maximum=20),
    _s("SEGMENT_FIRST_MIN_WORDS", "3", "int", "Words the first segment needs before a clause boundary (, ; : -) may end it.", minimum=1, maximum=50),
    _s("SEGMENT_MAX_WORDS", "20", "int", "A longer sentence is split at a clause boundary, else before a phrase-starting word, at this many words. Piper's memory no longer grows with the segment (its vocoder runs in chunks): peak RSS 219-227 MB for 10-32 words, against 217 / 252 / 310 MB for 10 / 20 / 32 words before.", minimum=5, maximum=200),
    # tts
    _s("TTS_VOICE", "", "str", "Piper voice `.onnx` (its `.onnx.json` beside it); empty = bundled en_US-joe-medium."),
    _s("TTS_THREADS", "2", "int", "CPU threads for Piper (onnxruntime).", minimum=1, maximum=64),
    _s("TTS_LENGTH_SCALE", "1.0", "float", "Speaking rate of Piper: below 1 is faster.", minimum=0.3, maximum=3),
    # live view
    _s("VIEW", "true", "bool", "Serve the live view (state, transcript, streaming answer, latency) as a web page; false = no view node work."),
    _s("VIEW_HOST", "127.0.0.1", "str", "Address the live view listens on; anything but a loopback address needs VIEW_TOKEN."),
    _s("VIEW_PORT", "8765", "int", "Port of the live view; 0 = any free port (the address is logged).", minimum=0, maximum=65535),
    _s("VIEW_TOKEN", "", "str", "Token the live view asks for (`?token=` or `Authorization: Bearer`); required off 127.0.0.1.", secret=True),
    _s("VIEW_EXPORT", "", "str", "Write the conversation as one self-contained HTML page to this file (after each turn and at the end)."),
    # metrics
    _s("METRICS_FILE", "", "str", "Append one JSON line of raw timestamps per turn to this file."),
    _s("LOG_LEVEL", "info", "choice", "Log level of the nodes.", choices=("debug", "info", "warning", "error")),
)

_BY_NAME = {spec.name: spec for spec in SPECS}


@dataclass(frozen=True)
class Settings:
    """Parsed settings; attribute names are the lower-cased variable names."""

    mic_device: str
    mic_file: str
    mic_file_realtime: bool
    mic_file_tail_s: float
    mic_block_ms: int
    speaker_device: str
    speaker_file: str
    vad_threshold: float
    vad_threshold_playing: float
    vad_start_ms: int
    vad_min_speech_ms: int
    vad_end_silence_ms: int
    vad_speculative_ms: int
    vad_preroll_ms: int
    vad_max_utterance_s: float
    aec: bool
    barge_in: bool
    asr_model: str
    asr_compute_type: str
    asr_threads: int
    asr_language: str
    asr_beam_size: int
    asr_no_speech_threshold: float
    asr_logprob_threshold: float
    asr_window_s: float
    openai_base_url: str
    openai_api_key: str
    llm_model: str
    llm_system_prompt: str
    llm_max_tokens: int
    llm_temperature: float
    llm_history_turns: int
    enable_streaming: bool
    llm_connect_timeout_s: float
    llm_first_token_timeout_s: float
    llm_token_timeout_s: float
    llm_retries: int
    llm_apology: str
    llm_server_port: int
    llm_server_model: str
    llm_server_threads: int
    llm_server_batch_threads: int
    llm_server_first_phrase_threads: int
    llm_server_nice: int
    llm_server_ctx: int
    llm_server_start_timeout_s: float
    segments_ahead: int
    segment_first_min_words: int
    segment_max_words: int
    tts_voice: str
    tts_length_scale: float
    tts_threads: int
    view: bool
    view_host: str
    view_port: int
    view_token: str
    view_export: str
    metrics_file: str
    log_level: str

    def __repr__(self) -> str:  # never print the API key
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if _BY_NAME[f.name.upper()].secret and value:
                value = "<set>"
            parts.append(f"{f.name}={value!r}")
        return "Settings(" + ", ".join(parts) + ")"

    @property
    def uses_embedded_llm(self) -> bool:
        return not self.openai_base_url


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate every setting; raise :class:`SettingsError` naming the bad one."""
    env = os.environ if env is None else env
    values = {}
    for spec in SPECS:
        raw = env.get(spec.name)
        if raw is None or (raw.strip() == "" and spec.kind != "str"):
            raw = spec.default
        values[spec.name.lower()] = spec.parse(raw)
    settings = Settings(**values)
    if settings.vad_min_speech_ms < settings.vad_start_ms:
        raise SettingsError(
            f"VAD_MIN_SPEECH_MS={settings.vad_min_speech_ms} must not be below "
            f"VAD_START_MS={settings.vad_start_ms}"
        )
    if settings.mic_file and not os.path.isfile(settings.mic_file):
        raise SettingsError(f"MIC_FILE={settings.mic_file!r} is not valid: no such file")
    return settings


def markdown_table() -> str:
    """The README's settings table."""
    rows = ["| Setting | Default | Allowed | What it does |", "|---|---|---|---|"]
    for spec in SPECS:
        default = f"`{spec.default}`" if spec.default else "(empty)"
        rows.append(f"| `{spec.name}` | {default} | {spec.allowed()} | {spec.doc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
