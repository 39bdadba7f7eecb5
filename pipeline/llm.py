"""The streaming LLM client: official `openai` SDK, deltas out as they arrive, faults named.

Why the official SDK: every OpenAI-compatible server (OpenAI, Ollama, llama.cpp, vLLM, LM
Studio) is tested against it, and it gives typed errors and SSE parsing. We add what a voice
loop needs on top: one time budget per turn from the request to the first token
(LLM_FIRST_TOKEN_TIMEOUT_S) that covers the retries of 429/5xx/refused connections and their
waits (the SDK's own retries would honour a two-minute Retry-After and restart the clock on
every attempt), a between-token deadline (a stalled stream must turn into an apology in
seconds, not hang a turn), a cancel that closes the HTTP response at once, and error messages
that never contain the API key.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import math
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.answer_length import SentenceLimit
from pipeline.settings import DEFAULTS, Settings
from pipeline.skills.tools import ToolCall, ToolCallAssembler

EMBEDDED_MODEL_ALIAS = "smollm2"
EMBEDDED_HOST = "127.0.0.1"  # the embedded server listens on this machine only
OPENAI_DEFAULT_MODEL = "gpt-4o-mini"
LOCAL_KEY = "sk-local-no-key"

log = logging.getLogger("llm")


@dataclass(frozen=True)
class LlmConfig:
    """What :class:`LlmClient` needs; the defaults are the settings' (pipeline/settings.py).

    `embedded`: the server is the assistant's own llm-server node (no OPENAI_BASE_URL).
    """

    base_url: str
    api_key: str = DEFAULTS.openai_api_key
    model: str = DEFAULTS.llm_model
    system_prompt: str = DEFAULTS.llm_system_prompt
    max_tokens: int = DEFAULTS.llm_max_tokens
    temperature: float = DEFAULTS.llm_temperature
    history_turns: int = DEFAULTS.llm_history_turns
    streaming: bool = DEFAULTS.enable_streaming
    connect_timeout_s: float = DEFAULTS.llm_connect_timeout_s
    first_token_timeout_s: float = DEFAULTS.llm_first_token_timeout_s
    token_timeout_s: float = DEFAULTS.llm_token_timeout_s
    retries: int = DEFAULTS.llm_retries
    embedded: bool = False
    hold_after_s: float = DEFAULTS.llm_hold_after_s
    hold_phrase: str = DEFAULTS.llm_hold_phrase
    tools: bool = False  # offer the skills as function-calling tools (LLM_TOOLS)
    max_sentences: int = DEFAULTS.llm_max_sentences  # 0 = the whole answer (pipeline/answer_length.py)
    # llama.cpp sampling options (repeat_penalty, top_k, min_p) sent to the embedded server only:
    # the OpenAI API rejects fields it does not know. Pairs, so the config stays hashable.
    sampling: tuple[tuple[str, float], ...] = (("repeat_penalty", DEFAULTS.llm_repeat_penalty),)

    @classmethod
    def from_settings(cls, s: Settings) -> LlmConfig:
        return cls(
            base_url=s.openai_base_url or embedded_base_url(s.llm_server_port),
            api_key=s.openai_api_key,
            model=s.llm_model,
            system_prompt=s.llm_system_prompt,
            max_tokens=s.llm_max_tokens,
            temperature=s.llm_temperature,
            history_turns=s.llm_history_turns,
            streaming=s.enable_streaming,
            connect_timeout_s=s.llm_connect_timeout_s,
            first_token_timeout_s=s.llm_first_token_timeout_s,
            token_timeout_s=s.llm_token_timeout_s,
            retries=s.llm_retries,
            embedded=s.uses_embedded_llm,
            hold_after_s=s.llm_hold_after_s,
            hold_phrase=s.llm_hold_phrase,
            tools=s.uses_llm_tools,
            max_sentences=s.llm_max_sentences,
            sampling=(("repeat_penalty", s.llm_repeat_penalty),),
        )

    def __repr__(self) -> str:
        return f"LlmConfig(base_url={self.base_url!r}, model={self.model!r}, key={'<set>' if self.api_key else '<none>'})"


def embedded_base_url(port: int) -> str:
    """The OpenAI API root of the embedded server (the llm-server node) on `port`."""
    return f"http://{EMBEDDED_HOST}:{port}/v1"


class LlmError(RuntimeError):
    """A failed request, with a message safe to log (never the key).

    `retry_after_s` is the wait the server asked for (429/503 `Retry-After`), if any.
    """

    def __init__(self, kind: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after_s = retry_after_s


# Failures worth another attempt while nothing has been spoken yet: the server was busy or
# unreachable, or the stream broke before its first token. A wrong key, an unknown model, a
# timeout (the budget is spent) or garbage from the server would only fail again.
RETRYABLE = frozenset({"http", "rate_limit", "connection", "stream"})
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 4.0
# an attempt with less of the first-token budget left than this is not worth starting
MIN_ATTEMPT_S = 0.25


def redact(text: str, secret: str) -> str:
    if secret and len(secret) >= 4:
        text = text.replace(secret, "<redacted>")
    return text


def retry_after_s(exc: BaseException) -> float | None:
    """The wait a server asked for in `retry-after-ms` / `Retry-After` (seconds or an HTTP
    date), or None. Read here rather than by the SDK so that our first-token budget bounds
    it: the SDK would honour up to two minutes."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / divisor
        except ValueError:
            if name == "retry-after-ms":
                continue
            try:
                value = email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
        return max(0.0, value) if math.isfinite(value) else None
    return None


def describe_error(exc: BaseException, config: LlmConfig, attempts: int = 1) -> LlmError:
    """Turn any exception from the SDK into an LlmError with a clear, key-free message."""
    import openai

    where = config.base_url
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if isinstance(exc, LlmError):
        return exc
    if isinstance(exc, openai.AuthenticationError):
        return LlmError("auth", f"the server at {where} rejected the API key (HTTP 401): check OPENAI_API_KEY")
    if isinstance(exc, openai.PermissionDeniedError):
        return LlmError("auth", f"the server at {where} refused access (HTTP 403): check OPENAI_API_KEY")
    if isinstance(exc, openai.RateLimitError):
        return LlmError("rate_limit", f"the server at {where} is rate limiting (HTTP 429), {tries}",
                        retry_after_s(exc))
    if isinstance(exc, openai.NotFoundError):
        return LlmError("not_found", f"the server at {where} does not know model {config.model!r} (HTTP 404): check LLM_MODEL")
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        kind = "http" if code >= 500 or code in (408, 409) else "http_client"
        return LlmError(kind, f"the server at {where} answered HTTP {code}, {tries}", retry_after_s(exc))
    if isinstance(exc, openai.APITimeoutError):
        return LlmError("timeout", f"no answer from {where} in time, {tries} "
                        "(LLM_CONNECT_TIMEOUT_S / LLM_FIRST_TOKEN_TIMEOUT_S)")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        detail = redact(f"{type(cause).__name__}: {cause}", config.api_key)[:200]
        return LlmError("connection", f"cannot reach the LLM server at {where}, {tries}: {detail}")
    if isinstance(exc, ValueError):  # json.JSONDecodeError is a ValueError
        return LlmError("protocol", f"the server at {where} sent a malformed stream ({type(exc).__name__})")
    return LlmError("stream", redact(f"the stream from {where} broke: {type(exc).__name__}: {exc}", config.api_key))


def backoff_s(retry: int) -> float:
    """Exponential backoff with jitter (about 0.5, 1, 2 s, at most BACKOFF_MAX_S), used when
    the server did not say how long to wait."""
    return min(BACKOFF_FIRST_S * 2.0**retry, BACKOFF_MAX_S) * (1.0 - 0.25 * random.random())


@dataclass
class Exchange:
    question: str
    answer: str = ""
    cut_off: bool = False


# Words that point back at the last exchange ("how tall is it?", "and what about Spain?").
_BACK_WORDS = frozenset(["it", "its", "it's", "that", "this", "these", "those", "they", "them", "their", "he", "she", "him", "her", "his", "there", "then", "also", "too", "else", "more"])
# What the user said or heard earlier ("what is my name?", "what did I just say?").
_BACK_PHRASES = ("my name", "did i ", "did you ", "i said", "you said", "i told", "you told",
                 "remember", "earlier", "before that", "previous", "last answer", "last question")
_BACK_STARTS = ("and ", "but ", "so ", "what about", "how about", "why", "really", "tell me more",
                "what else", "or ")


def is_follow_up(question: str) -> bool:
    """The question only makes sense with the previous exchange.

    A small model copies whatever the history holds into its answer (asked about sleep
    after a dinner question, it recommends a recipe), so history goes with a question only
    when the question refers back to it.
    """
    low = question.lower().strip()
    if low.startswith(_BACK_STARTS) or any(p in low for p in _BACK_PHRASES):
        return True
    words = {w.strip(".,!?;:'\"") for w in low.split()}
    return bool(words & _BACK_WORDS)


@dataclass
class Conversation:
    """Bounded history. An interrupted answer is kept as what was actually spoken.

    `history` says which past exchanges go with a question: `all` of them (up to
    `max_turns`), or only for a follow-up (`follow-ups`, see :func:`is_follow_up`).
    `examples` are fixed exchanges that always come first, after the system prompt.
    """

    system_prompt: str
    max_turns: int = 6
    exchanges: list[Exchange] = field(default_factory=list)
    history: str = "all"
    examples: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_settings(cls, s: Settings) -> Conversation:
        """The llm node's conversation: LLM_SYSTEM_PROMPT, LLM_HISTORY_TURNS, LLM_HISTORY."""
        return cls(s.llm_system_prompt, s.llm_history_turns, history=s.llm_history)

    def messages(self, question: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system_prompt}]
        for q, a in self.examples:
            msgs.append({"role": "user", "content": q})
            msgs.append({"role": "assistant", "content": a})
        past = self.exchanges[-self.max_turns :] if self.max_turns else []
        if self.history != "all" and question and not is_follow_up(question):
            past = []
        for ex in past:
            answer = ex.answer
            if ex.cut_off:
                answer = (answer + " ..." if answer else "...") + " [interrupted by the user]"
            msgs.append({"role": "user", "content": ex.question})
            msgs.append({"role": "assistant", "content": answer})
        msgs.append({"role": "user", "content": question})
        return msgs

    def prefix(self) -> list[dict[str, str]]:
        """What every next request starts with: the system prompt and the history."""
        return self.messages("")[:-1]

    def record(self, question: str, answer: str, cut_off: bool) -> bool:
        """Add an exchange; past `max_turns`, drop the oldest half at once.

        Why in blocks: the server reuses its KV cache for the longest common prefix of two
        requests. Dropping one exchange per turn changes the prefix right after the system
        prompt every turn, so the whole history is evaluated again (a 1.8 s first token
        measured with 6 exchanges on one thread); dropping half keeps the prefix stable
        for `max_turns // 2` turns in a row.

        Returns True when it dropped exchanges: the next request then shares only the system
        prompt with the server's cache (see `LlmClient.prefill`).
        """
        self.exchanges.append(Exchange(question, answer.strip(), cut_off))
        if self.max_turns and len(self.exchanges) > self.max_turns:
            keep = max(1, self.max_turns // 2)
            del self.exchanges[: len(self.exchanges) - keep]
            return True
        return False


def _abort(stream: Any) -> None:
    """Close a streaming response from another thread, waking the thread that reads it.

    Closing alone does not wake a thread blocked reading the socket (on Linux close() does not
    interrupt a recv in progress), so a server gone quiet mid-answer held the reader until the
    read timeout; shutting the socket down first makes that read return at once.
    """
    with contextlib.suppress(Exception):  # no socket to reach: closing is all we can do
        network = stream.response.extensions["network_stream"]
        network.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        stream.close()


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
    """Streams chat completions; several threads may stream at once (one stream each).

    Retries are ours, not the SDK's (its max_retries is 0): the SDK honours a Retry-After of
    up to two minutes and restarts its timeouts on every attempt, while a voice turn has one
    budget, LLM_FIRST_TOKEN_TIMEOUT_S, from the request to the first token with every retry
    and wait included. Within it a failure before the first token is retried up to
    LLM_RETRIES times, after the server's Retry-After or an exponential backoff; when that
    wait would overrun the budget we give up at once, so the apology still comes in time.
    Nothing is retried once a token was yielded: the user may already have heard it.
    """

    def __init__(self, config: LlmConfig) -> None:
        import openai

        self.config = config
        self.client = openai.OpenAI(
            base_url=config.base_url,
            api_key=config.api_key or LOCAL_KEY,
            timeout=self._timeout(config.first_token_timeout_s),
            max_retries=0,
        )
        self._model = config.model
        self._lock = threading.Lock()
        self._open: dict[int, tuple[Any, threading.Event]] = {}

    def _timeout(self, left_s: float) -> Any:
        """httpx timeouts for an attempt with `left_s` seconds of the first-token budget left.

        httpx applies one read timeout to every read, the response headers included, so it
        is the time left: a server that accepts and never answers costs no more than the
        budget. Between tokens the watchdog enforces LLM_TOKEN_TIMEOUT_S.
        """
        import openai

        left_s = max(0.05, left_s)
        short = min(self.config.connect_timeout_s, left_s)
        return openai.Timeout(connect=short, read=max(left_s, 0.05), write=short, pool=short)

    @property
    def model(self) -> str:
        if not self._model:
            self._model = self._default_model()
        return self._model

    def _default_model(self, timeout: Any = None) -> str:
        if self.config.embedded:
            return EMBEDDED_MODEL_ALIAS
        if "api.openai.com" in self.config.base_url:
            return OPENAI_DEFAULT_MODEL
        try:
            models = self.client.models.list(timeout=timeout) if timeout else self.client.models.list()
            first = next(iter(models), None)
            if first is not None:
                return first.id
        except Exception as exc:  # noqa: BLE001
            raise describe_error(exc, self.config) from None
        raise LlmError("not_found", f"the server at {self.config.base_url} lists no model: set LLM_MODEL")

    def healthy(self, timeout_s: float = 1.0) -> bool:
        """The server answers /v1/models. A restarted llm node asks this itself: the
        llm-server's `ready` message was sent to the node's previous life."""
        try:
            self.client.models.list(timeout=timeout_s)
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            return False
        return True

    def warm_up(self, system_prompt: str) -> None:
        """One 1-token request with the system prompt: the server loads its weights and caches
        the prompt's prefix, so the first real turn does not pay for it."""
        with contextlib.suppress(Exception):
            self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": system_prompt}, {"role": "user", "content": "Hi"}],
                max_tokens=1,
            )

    def prefill(self, messages: list[dict[str, str]]) -> bool:
        """Have the embedded server read `messages` now (a 1-token request), while the user
        is silent, so the next turn, which starts with them, finds them in its prompt cache.

        Only for the embedded server (a remote one would bill it) and only worth it after
        the history was trimmed: that turn's request otherwise re-read the whole kept
        history before its first token (360-450 ms instead of ~120 ms, `make bench-sound`).
        Should the user speak meanwhile, their request waits for this one, at most that
        same re-read. False if it failed (it is only an optimisation).
        """
        if not self.config.embedded:
            return False
        try:
            self.client.chat.completions.create(model=self.model, messages=messages, max_tokens=1)
        except Exception as exc:  # noqa: BLE001
            log.debug("prefill failed: %s", exc)
            return False
        return True

    def stream(self, messages: list[dict[str, Any]], cancel: threading.Event,
               tools: list[dict] | None = None, calls: list[ToolCall] | None = None,
               max_sentences: int | None = None) -> Iterator[str]:
        """Yield text deltas as the SDK yields them; raise LlmError on any failure.

        Setting `cancel` (from another thread) and calling `close_current()` stops the
        stream at once; the generator then just ends. With `tools` offered, the tool calls
        the model made (assembled from the stream's deltas) are appended to `calls`.
        The answer ends after `max_sentences` sentences (default: the config's; 0 = no
        limit): the stream is closed there, so the server stops generating.
        """
        if max_sentences is None:
            max_sentences = self.config.max_sentences
        deadline = time.monotonic() + self.config.first_token_timeout_s
        retry = 0
        while True:
            spoke = False
            assembler = ToolCallAssembler()  # a fresh one per attempt: a failed one's fragments go
            try:
                limit = SentenceLimit(max_sentences)  # a fresh one per attempt, like the assembler
                for delta in self._attempt(messages, cancel, deadline, retry + 1, tools, assembler, limit):
                    spoke = True
                    yield delta
                if calls is not None:
                    calls.extend(assembler.calls())
                return
            except LlmError as err:
                if cancel.is_set():
                    return
                if spoke or retry >= self.config.retries or err.kind not in RETRYABLE:
                    raise
                asked = err.retry_after_s
                wait = asked if asked is not None else backoff_s(retry)
                left = deadline - time.monotonic()
                if wait > left - MIN_ATTEMPT_S:
                    why = f"the server asked to wait {asked:.1f} s (Retry-After)" if asked is not None \
                        else f"a {wait:.1f} s backoff"
                    raise LlmError(err.kind, f"{err}; not retried: {why} would overrun "
                                   f"LLM_FIRST_TOKEN_TIMEOUT_S ({max(0.0, left):.1f} s left)") from None
                retry += 1
                log.warning("LLM request failed (%s); retry %d of %d in %.2f s%s",
                            err.kind, retry, self.config.retries, wait,
                            " (Retry-After)" if asked is not None else "")
                if cancel.wait(wait):
                    return

    def _attempt(
        self, messages: list[dict[str, Any]], cancel: threading.Event, deadline: float, attempt: int,
        tools: list[dict] | None = None, calls: ToolCallAssembler | None = None,
        limit: SentenceLimit | None = None,
    ) -> Iterator[str]:
        """One request; raises LlmError (with the attempt number in its message)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise LlmError("timeout", f"no first token from {self.config.base_url} within "
                           f"LLM_FIRST_TOKEN_TIMEOUT_S={self.config.first_token_timeout_s:g} s")
        timeout = self._timeout(left)
        try:
            if not self._model:
                self._model = self._default_model(timeout)
            response = self.client.chat.completions.create(
                model=self._model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=self.config.max_tokens,
                temperature=self.config.temperature,
                stream=self.config.streaming,
                timeout=timeout,
                **({"tools": tools} if tools else {}),
                **({"extra_body": dict(self.config.sampling)} if self.config.sampling and self.config.embedded else {}),
            )
        except Exception as exc:  # noqa: BLE001
            if cancel.is_set():
                return
            raise describe_error(exc, self.config, attempt) from None
        if not self.config.streaming:
            # buffered baseline: the whole answer at once
            if cancel.is_set() or not response.choices:  # type: ignore[union-attr]
                return
            message = response.choices[0].message  # type: ignore[union-attr]
            if calls is not None:
                calls.add(message.tool_calls)
            text = limit.push(message.content or "") if limit is not None else message.content
            if text:
                yield text
            return
        yield from self._read(response, cancel, deadline, attempt, calls, limit)

    def _read(self, stream: Any, cancel: threading.Event, deadline: float, attempt: int,
              calls: ToolCallAssembler | None = None, limit: SentenceLimit | None = None) -> Iterator[str]:
        key = id(stream)
        with self._lock:
            self._open[key] = (stream, cancel)
        watchdog = _Watchdog(max(0.0, deadline - time.monotonic()), self.config.token_timeout_s,
                             lambda: _abort(stream))
        finished = False
        tokens = 0
        try:
            for chunk in stream:
                if cancel.is_set():
                    break
                if not chunk.choices:
                    continue
                if chunk.choices[0].finish_reason:
                    finished = True
                if calls is not None and chunk.choices[0].delta.tool_calls:
                    watchdog.kick()  # a tool call streams in too: the server is alive
                    calls.add(chunk.choices[0].delta.tool_calls)
                delta = chunk.choices[0].delta.content
                if delta:
                    watchdog.kick()
                    tokens += 1
                    text = limit.push(delta) if limit is not None else delta
                    if text:
                        yield text
                    if limit is not None and limit.done:
                        finished = True  # long enough: closing the stream stops the server
                        break
        except Exception as exc:  # noqa: BLE001
            if cancel.is_set():
                return
            if watchdog.expired:
                raise self._stalled(tokens) from None
            raise describe_error(exc, self.config, attempt) from None
        finally:
            watchdog.stop()
            with self._lock:
                self._open.pop(key, None)
            with contextlib.suppress(Exception):
                stream.close()
        if cancel.is_set():
            return
        if watchdog.expired:
            raise self._stalled(tokens)
        if not finished:
            # the connection closed without a finish_reason: the answer was cut off
            raise LlmError("stream", f"the stream from {self.config.base_url} ended before the answer was complete")

    def _stalled(self, tokens: int) -> LlmError:
        if tokens == 0:
            return LlmError("timeout", f"no first token from {self.config.base_url} within "
                            f"LLM_FIRST_TOKEN_TIMEOUT_S={self.config.first_token_timeout_s:g} s")
        return LlmError("timeout", f"the stream from {self.config.base_url} stalled for "
                        f"LLM_TOKEN_TIMEOUT_S={self.config.token_timeout_s:g} s after {tokens} tokens")

    def close_current(self) -> None:
        """Close the HTTP response of every running stream whose cancel flag is set (called
        from another thread): the server stops generating, and a newer turn's stream, whose
        flag is clear, is left alone."""
        with self._lock:
            doomed = [s for s, cancel in self._open.values() if cancel.is_set()]
        for stream in doomed:
            _abort(stream)
