"""Every setting of the assistant, declared once and read from environment variables at start.

dora's convention is configuration through `env:` in `dataflow.yml` or the shell that runs
`dora run`, so that is the only source. Every node calls :func:`load` before it touches a
device or a model; a bad value stops the node with one line that names the variable and the
values it accepts, instead of a traceback deep inside a library later on.

Each field of :class:`Settings` is one setting: its name is the variable's name in lower
case, its type says how the value is parsed, and :func:`setting` gives its default, its
documentation and the values it accepts. Adding a setting is adding one field. :data:`SPECS`
and the settings tables (docs/settings.md, and the README's :data:`ESSENTIAL` ones: ``python
-m pipeline.settings [--readme]``) are derived from those fields, and the stage configs
(``AsrConfig.from_settings`` and the like) take their defaults from :data:`DEFAULTS`, so the
documentation and the defaults cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

_SPEC_KEY = "setting"
KINDS = ("str", "int", "float", "bool", "choice")


class SettingsError(ValueError):
    """A setting has a value the assistant cannot use; the message names it."""


@dataclass(frozen=True)
class Spec:
    """How one environment variable is parsed and documented."""

    name: str
    default: Any
    kind: str  # one of KINDS
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

    def default_text(self) -> str:
        """The default as it would be written in the environment."""
        if self.kind == "bool":
            return "true" if self.default else "false"
        if self.kind == "float":
            return f"{self.default:g}"
        return str(self.default)

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


def setting(
    default: Any,
    doc: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    secret: bool = False,
) -> Any:
    """Declare one field of :class:`Settings`: its default, what it does and why, its range."""
    meta = {"doc": doc, "minimum": minimum, "maximum": maximum, "choices": choices,
            "secret": secret}
    return field(default=default, metadata={_SPEC_KEY: meta})


@dataclass(frozen=True)
class Settings:
    """Parsed settings; attribute names are the lower-cased variable names.

    ``Settings()`` is every default; :func:`load` reads the environment.
    """

    # audio in
    mic_device: str = setting("", "Input device: index or part of its name (`python -m sounddevice` lists them); empty = system default.")
    mic_file: str = setting("", "WAV file to use instead of a microphone (file mode); the mic node ends after it.")
    mic_file_realtime: bool = setting(True, "Pace the WAV file at real time like a microphone; false feeds it as fast as possible.")
    mic_file_tail_s: float = setting(2.5, "Seconds of silence appended after MIC_FILE so the last question is endpointed (longer than TURN_MAX_PAUSE_MS, the longest pause inside a turn).", minimum=0, maximum=60)
    mic_block_ms: int = setting(20, "Microphone chunk length in milliseconds.", minimum=5, maximum=100)
    # audio out
    speaker_device: str = setting("", "Output device: index or part of its name; empty = system default.")
    speaker_file: str = setting("", "WAV file to write the assistant's voice to instead of a speaker (file mode).")
    server_reply_timeout_s: float = setting(20.0, "Seconds after the end of a question with no word from the server side (llm-server/alive, the voice) and nothing playing before the speaker logs one line and plays a short tone; above LLM_FIRST_TOKEN_TIMEOUT_S so the LLM's own apology comes first.", minimum=1, maximum=600)
    # vad
    vad_threshold: float = setting(0.5, "Silero speech probability above which a 32 ms frame counts as speech.", minimum=0.05, maximum=0.99)
    vad_threshold_playing: float = setting(0.7, "Speech threshold while the assistant is audible (with AEC): its residual echo must not start a turn.", minimum=0.05, maximum=0.99)
    vad_start_ms: int = setting(96, "Speech needed before `speech_started` is sent (and a playing answer is interrupted).", minimum=32, maximum=2000)
    vad_min_speech_ms: int = setting(250, "Utterances with less speech than this are dropped (coughs, clicks).", minimum=32, maximum=5000)
    vad_end_silence_ms: int = setting(500, "Silence that ends an utterance when the end-of-turn signals (TURN_MODEL, TURN_CUES) cannot settle it sooner, or when both are off.", minimum=100, maximum=5000)
    vad_speculative_ms: int = setting(64, "Silence after which ASR starts on a tentative utterance, so the transcript is ready when the endpoint comes (counted in 32 ms VAD frames); 0 = off.", minimum=0, maximum=5000)
    vad_preroll_ms: int = setting(300, "Audio kept from before speech started, so the first syllable is not cut.", minimum=0, maximum=2000)
    vad_max_utterance_s: float = setting(15.0, "An utterance is cut and sent after this long.", minimum=1, maximum=120)
    # end of turn (pipeline/turn/policy.py)
    turn_model: bool = setting(False, "Also ask the Smart Turn v3.2 model (from the pipecat-ai wheel, `make setup`) whether a pause ends the turn. Off by default: on 2 cores its inference competes with the LLM's first token (docs/echo-and-turn-taking.md), and the transcript cues alone catch nearly as many half questions.")
    turn_cues: bool = setting(True, "Use the speculative transcript: one ending on a word like \"of\", \"the\", \"um\" is not finished.")
    turn_check_ms: int = setting(256, "Silence after which the end-of-turn signals are asked; a pause judged complete ends the turn then (counted in 32 ms VAD frames).", minimum=32, maximum=5000)
    turn_max_pause_ms: int = setting(2000, "Longest pause inside a turn judged unfinished (the user is thinking): this much silence always ends the turn.", minimum=100, maximum=10000)
    turn_unsure_ms: int = setting(2000, "Silence that ends a pause whose transcript reads neither finished nor unfinished (no final punctuation, or a last word Whisper doubts: TURN_MIN_WORD_P); at least VAD_END_SILENCE_MS, at most TURN_MAX_PAUSE_MS. Shorter answers such whole questions sooner and more half ones (docs/echo-and-turn-taking.md).", minimum=100, maximum=10000)
    turn_min_word_p: float = setting(0.8, "A transcript that reads finished counts only as unsure (TURN_UNSURE_MS) when Whisper gave its last word a lower probability than this: a guessed ending (\"What time does the\" heard as \"What time does that?\"); a name at the end (capitalised) is never doubted. 0 = off.", minimum=0, maximum=1)
    turn_guess_word_p: float = setting(0.9, "Like TURN_MIN_WORD_P (and at least it), for a transcript that ends on a pronoun Whisper writes as its guess at a cut-off question (\"that\", \"this\", \"it\": \"What time does the\" heard as \"What time does that?\").", minimum=0, maximum=1)
    turn_content_word_p: float = setting(0.5, "A finished-looking transcript whose last word is a content word (not a pronoun, preposition or auxiliary: \"moon\", \"book\") with a probability from this up to TURN_MIN_WORD_P waits only TURN_DOUBT_MS: Whisper misheard a real last word more often than it guessed one. At or above TURN_MIN_WORD_P = off.", minimum=0, maximum=1)
    turn_doubt_ms: int = setting(1000, "Silence that ends a pause whose transcript reads finished but whose last content word Whisper doubts mildly (TURN_CONTENT_WORD_P); at least VAD_END_SILENCE_MS, at most TURN_MAX_PAUSE_MS.", minimum=100, maximum=10000)
    turn_do_questions: bool = setting(True, "A \"do\" question that stops after its subject (\"Why do cats?\", \"What time does this?\") reads unfinished, whatever its punctuation: Whisper completes a cut-off \"...does the\" that way.")
    turn_text_model: bool = setting(True, "Ask the bundled SmolLM2 (in the asr node, ~50 ms per pause, after the transcript is sent) how likely the transcript of a pause is to end there: a half question Whisper wrote with a \"?\" (\"Who discovered?\") reads unfinished to it (TURN_TEXT_END_P). Needs llama-cpp-python where the asr node runs.")
    turn_text_end_p: float = setting(0.05, "A transcript that reads finished waits TURN_UNSURE_MS when the language model (TURN_TEXT_MODEL) gives the end of the sentence there a lower probability than this (half questions scored under 0.03, whole ones 0.1-0.9). 0 = off.", minimum=0, maximum=1)
    turn_text_complete_p: float = setting(0.2, "A transcript without a final mark (\"who painted the Mona Lisa\") whose last word is a name or a content word Whisper is sure of (TURN_MIN_WORD_P) reads finished when the language model (TURN_TEXT_MODEL) gives the end of the sentence there at least this probability; else it waits TURN_UNSURE_MS. So does a question ending on a preposition (\"What are clouds made of?\"). 1 = off.", minimum=0, maximum=1)
    turn_disagree_ms: int = setting(256, "Silence that ends a pause the transcript reads as finished (\"...?\") but the model does not (at least TURN_CHECK_MS). Longer waits out more half questions but makes whole ones the model doubts wait as long (docs/echo-and-turn-taking.md).", minimum=32, maximum=10000)
    turn_threshold: float = setting(0.5, "Smart Turn probability from which a pause counts as the end of the turn.", minimum=0.01, maximum=0.99)
    aec: bool = setting(True, "Acoustic echo cancellation (WebRTC AEC3 via livekit) with the played audio as reference, so the assistant does not hear itself.")
    barge_in: bool = setting(True, "Let the user interrupt the assistant; false = half duplex, the microphone is ignored while the assistant speaks.")
    backchannels: bool = setting(True, "Speech over the answer first pauses it (BACKCHANNEL_HOLD); a backchannel (\"yeah\", \"mm-hmm\", \"okay\") lets it go on, anything else interrupts it. False: every onset interrupts at once.")
    backchannel_max_ms: int = setting(700, "Speech over the answer longer than this (from its onset) is an interruption without waiting for its words (spoken backchannels measured at most ~610 ms).", minimum=100, maximum=3000)
    backchannel_pause_ms: int = setting(32, "Voice over the answer this long (before VAD_START_MS makes it speech) already pauses it; voice that then stops short, or is the assistant's own echo, lets it go on at once. 0 = pause at VAD_START_MS.", minimum=0, maximum=2000)
    backchannel_probe_ms: int = setting(0, "Speech over the answer still going this long after its onset is transcribed so far, and interrupts as soon as its words cannot begin a backchannel (\"What is the...\"), before BACKCHANNEL_MAX_MS. 0 = off (the default: through the sound card Whisper made up words for a cut-off \"mm-hmm\", \"in a month\", and stopped the answer).", minimum=0, maximum=3000)
    backchannel_probe_silence_ms: int = setting(32, "Pause in speech over the answer after which what was said is transcribed to tell a backchannel (the verdict is only taken if the voice has not resumed by then).", minimum=32, maximum=1000)
    backchannel_hold: str = setting("pause", "What the answer does while speech over it is told apart from a backchannel: `pause` (silent within ~20 ms, resumed where it stopped if it was one) or `duck` (plays on DUCK_DB lower, so an interruption without a short first word is heard until BACKCHANNEL_MAX_MS).", choices=("pause", "duck"))
    duck_db: float = setting(-20.0, "Volume of the answer while the user may be talking over it, with BACKCHANNEL_HOLD=duck.", minimum=-60, maximum=0)
    # asr
    asr_model: str = setting("tiny.en", "Whisper model: `tiny.en` (bundled), a folder with a CTranslate2 model, or a model name found in MODELS_DIR.")
    asr_compute_type: str = setting("int8", "CTranslate2 compute type.", choices=("int8", "int8_float32", "float32"))
    asr_threads: int = setting(2, "CPU threads for Whisper.", minimum=1, maximum=64)
    asr_language: str = setting("en", "Language code given to Whisper.")
    asr_beam_size: int = setting(1, "Beam size; 1 (greedy) is fastest.", minimum=1, maximum=10)
    asr_no_speech_threshold: float = setting(0.6, "Whisper segments more likely silence than this (and unsure) are dropped.", minimum=0, maximum=1)
    asr_window_s: float = setting(10.0, "Encoder window for utterances up to half its length, shorter than Whisper's 30 s because the encoder's time grows with it; a result that loops or ends early is decoded again in 30 s. 30 = always the full window.", minimum=5, maximum=30)
    asr_logprob_threshold: float = setting(-1.0, "Whisper segments with a lower average log-probability are dropped when also likely silence.", minimum=-20, maximum=0)
    # llm
    openai_base_url: str = setting("", "OpenAI-compatible server, e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1` (Ollama); empty = the embedded server.")
    openai_api_key: str = setting("", "API key for OPENAI_BASE_URL; never logged.", secret=True)
    llm_model: str = setting("", "Model name; empty = `gpt-4o-mini` for api.openai.com, the embedded model otherwise, or the server's first model.")
    llm_system_prompt: str = setting("You are a helpful voice assistant. Answer the question in one short, correct sentence.", "System prompt (measured against others with `make eval`, docs/answers.md).")
    llm_max_tokens: int = setting(120, "Maximum tokens of one answer.", minimum=1, maximum=8192)
    llm_max_sentences: int = setting(2, "An answer ends after this many sentences (the stream is closed, the server stops) unless the question asks for more (\"explain\", \"tell me more\", \"step by step\"); 0 = the whole answer. A small model's later sentences are where it makes things up (`make eval`, docs/answers.md).", minimum=0, maximum=100)
    llm_repeat_penalty: float = setting(1.0, "Repeat penalty of the embedded server (llama.cpp's own default is 1.1): 1 = none, so the small model may restate the question's words (\"The capital of France is Paris\") instead of being pushed off them (`make eval`, docs/answers.md). Not sent to an external server.", minimum=0.5, maximum=2)
    llm_temperature: float = setting(0.0, "Sampling temperature; 0 = always the likeliest word (fewest made-up answers from a small model).", minimum=0, maximum=2)
    llm_history: str = setting("follow-ups", "Which past exchanges go with a question: `follow-ups` (only when it refers back: \"and what about Spain?\", \"how tall is it?\"), so an earlier topic cannot leak into a new one, or `all`.", choices=("follow-ups", "all"))
    llm_hold_after_s: float = setting(3.0, "Seconds after the end of the question without a first word from the LLM after which the assistant says LLM_HOLD_PHRASE once; 0 = never.", minimum=0, maximum=600)
    llm_hold_phrase: str = setting("One moment.", "What the assistant says while a slow LLM has not answered yet.")
    llm_history_turns: int = setting(6, "At most this many past question/answer pairs go with each request; past it the oldest half is dropped at once, so the server's prompt cache keeps matching.", minimum=0, maximum=100)
    enable_streaming: bool = setting(True, "Forward each text delta as it arrives; false waits for the whole answer (a baseline for measurements).")
    llm_connect_timeout_s: float = setting(5.0, "Seconds to connect to the LLM server.", minimum=0.1, maximum=300)
    llm_first_token_timeout_s: float = setting(15.0, "Seconds from the request to the first token, retries and their waits included (then the apology).", minimum=0.1, maximum=600)
    llm_token_timeout_s: float = setting(10.0, "Seconds to wait between two tokens.", minimum=0.1, maximum=600)
    llm_retries: int = setting(2, "Retries of a failed request (HTTP 429/5xx, refused) while nothing has been spoken yet.", minimum=0, maximum=10)
    llm_tools: str = setting("auto", "Offer the skills (time, timers, arithmetic, unit conversions) to the LLM as OpenAI function-calling tools; `auto` = on for an external server (OPENAI_BASE_URL), off for the embedded 135M model, which cannot call tools reliably.", choices=("auto", "on", "off"))
    llm_apology: str = setting("Sorry, I can't answer right now.", "What the assistant says when the LLM fails.")
    llm_server_port: int = setting(18080, "Port of the embedded server on 127.0.0.1.", minimum=1024, maximum=65535)
    llm_server_model: str = setting("", "GGUF file for the embedded server (a path or a name in MODELS_DIR); empty = the bundled SmolLM2-135M-Instruct, served as a Q8_0 copy made once in MODELS_DIR because llama.cpp reads the prompt faster in Q8_0 than in its Q4_1.")
    llm_server_threads: int = setting(1, "CPU threads of the embedded server while it generates: 1 leaves the other core to Piper, which synthesizes the first segment meanwhile.", minimum=1, maximum=64)
    llm_server_batch_threads: int = setting(2, "CPU threads of the embedded server while it reads the prompt: nothing else runs then, so every core shortens the wait for the first token.", minimum=1, maximum=64)
    llm_server_first_phrase_threads: int = setting(2, "CPU threads of the embedded server while it generates an answer's first phrase (nothing else runs then; see pipeline/llm_pace.py); then LLM_SERVER_THREADS.", minimum=1, maximum=64)
    llm_server_nice: int = setting(5, "CPU priority of the embedded server (higher = lower priority), so speech synthesis and the VAD come first.", minimum=0, maximum=19)
    llm_server_ctx: int = setting(2048, "Context length of the embedded server.", minimum=256, maximum=32768)
    llm_server_start_timeout_s: float = setting(120.0, "Seconds the embedded server may take to start (a turn waits for it at most LLM_FIRST_TOKEN_TIMEOUT_S).", minimum=1, maximum=1200)
    # segmenter
    segments_ahead: int = setting(2, "Segments sent to TTS before the speaker has played them (backpressure).", minimum=1, maximum=20)
    segment_first_min_words: int = setting(3, "Words the first segment needs before a clause boundary (, ; : -) may end it.", minimum=1, maximum=50)
    segment_max_words: int = setting(20, "A longer sentence is split at a clause boundary, else before a phrase-starting word, at this many words, so the first audio of a long sentence is not held back.", minimum=5, maximum=200)
    # tts
    tts_voice: str = setting("", "Piper voice `.onnx` (its `.onnx.json` beside it), a path or a name in MODELS_DIR; empty = bundled en_US-joe-medium.")
    tts_threads: int = setting(2, "CPU threads for Piper (onnxruntime).", minimum=1, maximum=64)
    tts_length_scale: float = setting(1.0, "Speaking rate of Piper: below 1 is faster.", minimum=0.3, maximum=3)
    # models
    models_dir: str = setting("", "Folder for user-chosen models and the ones derived once from the bundled models (the Q8_0 LLM, the split voice); empty = `models/` in the repository.")
    # metrics
    # live view
    view: bool = setting(True, "Serve the live view (state, transcript, streaming answer, latency) as a web page; false = no view node work.")
    view_host: str = setting("127.0.0.1", "Address the live view listens on; anything but a loopback address needs VIEW_TOKEN.")
    view_port: int = setting(8765, "Port of the live view; 0 = any free port (the address is logged).", minimum=0, maximum=65535)
    view_token: str = setting("", "Token the live view asks for (`?token=` or `Authorization: Bearer`); required off 127.0.0.1.", secret=True)
    view_export: str = setting("", "Write the conversation as one self-contained HTML page to this file (after each turn and at the end).")
    metrics_file: str = setting("", "Append one JSON line of raw timestamps per turn to this file.")
    log_level: str = setting("info", "Log level of the nodes.", choices=("debug", "info", "warning", "error"))

    def __repr__(self) -> str:  # never print the API key
        parts = []
        for spec in SPECS:
            value = getattr(self, spec.name.lower())
            if spec.secret and value:
                value = "<set>"
            parts.append(f"{spec.name.lower()}={value!r}")
        return "Settings(" + ", ".join(parts) + ")"

    @property
    def uses_embedded_llm(self) -> bool:
        return not self.openai_base_url

    @property
    def uses_llm_tools(self) -> bool:
        """LLM_TOOLS resolved: `auto` is on for an external server only."""
        return self.llm_tools == "on" or (self.llm_tools == "auto" and not self.uses_embedded_llm)


def _spec(f: Any) -> Spec:
    meta = f.metadata[_SPEC_KEY]
    kind = "choice" if meta["choices"] else str(f.type)
    if kind not in KINDS:
        raise TypeError(f"Settings.{f.name}: unsupported type {f.type!r}")
    return Spec(name=f.name.upper(), default=f.default, kind=kind, **meta)


SPECS: tuple[Spec, ...] = tuple(_spec(f) for f in fields(Settings))
DEFAULTS = Settings()


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate every setting; raise :class:`SettingsError` naming the bad one."""
    env = os.environ if env is None else env
    values = {}
    for spec in SPECS:
        raw = env.get(spec.name)
        if raw is None or (raw.strip() == "" and spec.kind != "str"):
            continue
        values[spec.name.lower()] = spec.parse(raw)
    settings = Settings(**values)
    if settings.vad_min_speech_ms < settings.vad_start_ms:
        raise SettingsError(
            f"VAD_MIN_SPEECH_MS={settings.vad_min_speech_ms} must not be below "
            f"VAD_START_MS={settings.vad_start_ms}"
        )
    if settings.turn_check_ms > settings.vad_end_silence_ms:
        raise SettingsError(
            f"TURN_CHECK_MS={settings.turn_check_ms} must not be above "
            f"VAD_END_SILENCE_MS={settings.vad_end_silence_ms}"
        )
    if settings.mic_file and not os.path.isfile(settings.mic_file):
        raise SettingsError(f"MIC_FILE={settings.mic_file!r} is not valid: no such file")
    return settings


ESSENTIAL = (
    "OPENAI_BASE_URL", "OPENAI_API_KEY", "LLM_MODEL", "LLM_SERVER_MODEL", "LLM_TOOLS",
    "MIC_DEVICE", "SPEAKER_DEVICE", "MIC_FILE", "SPEAKER_FILE", "BARGE_IN", "BACKCHANNELS",
    "TURN_MAX_PAUSE_MS", "ASR_MODEL", "TTS_VOICE", "VIEW_PORT", "LOG_LEVEL",
)
"""The settings the README shows (the ones a user changes first); docs/settings.md has all."""


def markdown_table(names: tuple[str, ...] | None = None) -> str:
    """The settings table of docs/settings.md (all), or of the README (`names`, in SPECS
    order)."""
    rows = ["| Setting | Default | Allowed | What it does |", "|---|---|---|---|"]
    for spec in SPECS:
        if names is not None and spec.name not in names:
            continue
        default = f"`{spec.default_text()}`" if spec.default_text() else "(empty)"
        rows.append(f"| `{spec.name}` | {default} | {spec.allowed()} | {spec.doc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    print(markdown_table(ESSENTIAL if sys.argv[1:] == ["--readme"] else None))
