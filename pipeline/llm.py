"""The streaming LLM client: official `openai` SDK, deltas out as they arrive, faults named.

Why the official SDK: every OpenAI-compatible server (OpenAI, Ollama, llama.cpp, vLLM, LM
Studio) is tested against it, and it already does what we would otherwise write: retries with
exponential backoff on 429/5xx/connection errors (only before any token arrived, which is when
a retry is safe), typed errors, and SSE parsing. We add what a voice loop needs on top:
a first-token and a between-token deadline (a stalled stream must turn into an apology in
seconds, not hang a turn), a cancel that closes the HTTP response at once, and error messages
that never contain the API key.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

EMBEDDED_MODEL_ALIAS = "smollm2"
OPENAI_DEFAULT_MODEL = "gpt-4o-mini"
LOCAL_KEY = "sk-local-no-key"


@dataclass(frozen=True)
class LlmConfig:
    base_url: str
    api_key: str = ""
    model: str = ""
    system_prompt: str = "You are a helpful voice assistant."
    max_tokens: int = 120
    temperature: float = 0.3
    history_turns: int = 6
    streaming: bool = True
    connect_timeout_s: float = 5.0
    first_token_timeout_s: float = 20.0
    token_timeout_s: float = 10.0
    retries: int = 2
    embedded: bool = False

    def __repr__(self) -> str:
        return f"LlmConfig(base_url={self.base_url!r}, model={self.model!r}, key={'<set>' if self.api_key else '<none>'})"


class LlmError(RuntimeError):
    """A failed request, with a message safe to log (never the key)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def redact(text: str, secret: str) -> str:
    if secret and len(secret) >= 4:
        text = text.replace(secret, "<redacted>")
    return text


def describe_error(exc: BaseException, config: LlmConfig) -> LlmError:
    """Turn any exception from the SDK into an LlmError with a clear, key-free message."""
    import openai

    where = config.base_url
    if isinstance(exc, LlmError):
        return exc
    if isinstance(exc, openai.AuthenticationError):
        return LlmError("auth", f"the server at {where} rejected the API key (HTTP 401): check OPENAI_API_KEY")
    if isinstance(exc, openai.PermissionDeniedError):
        return LlmError("auth", f"the server at {where} refused access (HTTP 403): check OPENAI_API_KEY")
    if isinstance(exc, openai.RateLimitError):
        return LlmError("rate_limit", f"the server at {where} is rate limiting (HTTP 429) after {config.retries} retries")
    if isinstance(exc, openai.NotFoundError):
        return LlmError("not_found", f"the server at {where} does not know model {config.model!r} (HTTP 404): check LLM_MODEL")
    if isinstance(exc, openai.APIStatusError):
        return LlmError("http", f"the server at {where} answered HTTP {exc.status_code} after {config.retries} retries")
    if isinstance(exc, openai.APITimeoutError):
        return LlmError("timeout", f"no answer from {where} in time (LLM_CONNECT_TIMEOUT_S / LLM_FIRST_TOKEN_TIMEOUT_S)")
    if isinstance(exc, openai.APIConnectionError):
        return LlmError("connection", f"cannot reach the LLM server at {where}: {type(exc.__cause__ or exc).__name__}")
    if isinstance(exc, ValueError):  # json.JSONDecodeError is a ValueError
        return LlmError("protocol", f"the server at {where} sent a malformed stream ({type(exc).__name__})")
    return LlmError("stream", redact(f"the stream from {where} broke: {type(exc).__name__}: {exc}", config.api_key))


@dataclass
class Exchange:
    question: str
    answer: str = ""
    cut_off: bool = False


@dataclass
class Conversation:
    """Bounded history. An interrupted answer is kept as what was actually spoken."""

    system_prompt: str
    max_turns: int = 6
    exchanges: list[Exchange] = field(default_factory=list)

    def messages(self, question: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system_prompt}]
        for ex in self.exchanges[-self.max_turns :] if self.max_turns else []:
            answer = ex.answer
            if ex.cut_off:
                answer = (answer + " ..." if answer else "...") + " [interrupted by the user]"
            msgs.append({"role": "user", "content": ex.question})
            msgs.append({"role": "assistant", "content": answer})
        msgs.append({"role": "user", "content": question})
        return msgs

    def record(self, question: str, answer: str, cut_off: bool) -> None:
        self.exchanges.append(Exchange(question, answer.strip(), cut_off))
        if self.max_turns and len(self.exchanges) > self.max_turns:
            del self.exchanges[: len(self.exchanges) - self.max_turns]


class _Watchdog:
    """Closes a stream when no token came within the first-token / between-token deadline.

    One short-lived thread per request, woken by each token; it never polls.
    """

    def __init__(self, first_s: float, between_s: float, on_expire: Callable[[], None]) -> None:
        self._first_s = first_s
        self._between_s = between_s
        self._on_expire = on_expire
        self._cond = threading.Condition()
        self._deadline = time.monotonic() + first_s
        self._done = False
        self.expired = False
        self._thread = threading.Thread(target=self._run, name="llm-watchdog", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        with self._cond:
            self._deadline = time.monotonic() + self._between_s
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._done:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    self.expired = True
                    break
                self._cond.wait(left)
        if self.expired:
            with contextlib.suppress(Exception):  # closing a broken stream may itself fail
                self._on_expire()


class LlmClient:
    """Streams chat completions; one request at a time per caller thread."""

    def __init__(self, config: LlmConfig) -> None:
        import openai

        self.config = config
        timeout = openai.Timeout(
            connect=config.connect_timeout_s,
            read=max(config.first_token_timeout_s, config.token_timeout_s),
            write=config.connect_timeout_s,
            pool=config.connect_timeout_s,
        )
        self.client = openai.OpenAI(
            base_url=config.base_url,
            api_key=config.api_key or LOCAL_KEY,
            timeout=timeout,
            max_retries=config.retries,
        )
        self._model = config.model

    @property
    def model(self) -> str:
        if not self._model:
            self._model = self._default_model()
        return self._model

    def _default_model(self) -> str:
        if self.config.embedded:
            return EMBEDDED_MODEL_ALIAS
        if "api.openai.com" in self.config.base_url:
            return OPENAI_DEFAULT_MODEL
        try:
            models = self.client.models.list()
            first = next(iter(models), None)
            if first is not None:
                return first.id
        except Exception as exc:  # noqa: BLE001
            raise describe_error(exc, self.config) from None
        raise LlmError("not_found", f"the server at {self.config.base_url} lists no model: set LLM_MODEL")

    def warm_up(self, system_prompt: str) -> None:
        """One 1-token request with the system prompt: the server loads its weights and caches
        the prompt's prefix, so the first real turn does not pay for it."""
        with contextlib.suppress(Exception):
            self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": system_prompt}, {"role": "user", "content": "Hi"}],
                max_tokens=1,
            )

    def stream(self, messages: list[dict[str, str]], cancel: threading.Event) -> Iterator[str]:
        """Yield text deltas as the SDK yields them; raise LlmError on any failure.

        Setting `cancel` (from another thread) and calling `close_current()` stops the
        stream at once; the generator then just ends.
        """
        if not self.config.streaming:
            yield from self._complete(messages, cancel)
            return
        try:
            stream = self.client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=self.config.max_tokens,
                temperature=self.config.temperature,
                stream=True,
            )
        except Exception as exc:  # noqa: BLE001
            if cancel.is_set():
                return
            raise describe_error(exc, self.config) from None
        self._current = stream
        watchdog = _Watchdog(
            self.config.first_token_timeout_s, self.config.token_timeout_s, stream.close
        )
        finished = False
        try:
            for chunk in stream:
                if cancel.is_set():
                    break
                if not chunk.choices:
                    continue
                if chunk.choices[0].finish_reason:
                    finished = True
                delta = chunk.choices[0].delta.content
                if delta:
                    watchdog.kick()
                    yield delta
        except Exception as exc:  # noqa: BLE001
            if cancel.is_set():
                return
            if watchdog.expired:
                raise LlmError(
                    "timeout",
                    f"the stream from {self.config.base_url} stalled (LLM_FIRST_TOKEN_TIMEOUT_S / LLM_TOKEN_TIMEOUT_S)",
                ) from None
            raise describe_error(exc, self.config) from None
        finally:
            watchdog.stop()
            stream.close()
            self._current = None
        if watchdog.expired and not cancel.is_set():
            raise LlmError(
                "timeout",
                f"the stream from {self.config.base_url} stalled (LLM_FIRST_TOKEN_TIMEOUT_S / LLM_TOKEN_TIMEOUT_S)",
            )
        if not finished and not cancel.is_set():
            # the connection closed without a finish_reason: the answer was cut off
            raise LlmError("stream", f"the stream from {self.config.base_url} ended before the answer was complete")

    _current: object | None = None

    def close_current(self) -> None:
        """Close the HTTP response of the running stream (called from another thread)."""
        current = self._current
        if current is not None:
            with contextlib.suppress(Exception):
                current.close()  # type: ignore[attr-defined]

    def _complete(self, messages: list[dict[str, str]], cancel: threading.Event) -> Iterator[str]:
        """Buffered baseline: one request without streaming, the whole answer at once."""
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=self.config.max_tokens,
                temperature=self.config.temperature,
                stream=False,
            )
        except Exception as exc:  # noqa: BLE001
            if cancel.is_set():
                return
            raise describe_error(exc, self.config) from None
        if cancel.is_set() or not response.choices:
            return
        text = response.choices[0].message.content or ""
        if text:
            yield text
