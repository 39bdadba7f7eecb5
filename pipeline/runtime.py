"""Plumbing every node shares: settings at start, logging, a thread-safe sender, and the
one event loop that drives a node's processor.

The node shape (as Pipecat's frame processors): a node's logic is a `pipeline/` class, its
*processor*, that takes one decoded message (or a tick, or a control event such as STOP)
and returns the messages to send. :func:`drive` decodes dora's events with the message
classes of :mod:`pipeline.messages`, calls the processor and sends what it returns; a
message that breaks the contract is logged and dropped, never crashes the node. A node file
is then its wiring (which class each input carries) and its devices.

The node object is passed in (a `dora.Node` in the dataflow, a `dora.testing.MockNode` in
tests), so this module never imports dora.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pyarrow as pa

from pipeline import settings as settings_mod
from pipeline.journal import TurnJournal
from pipeline.messages import ContractError, Message
from pipeline.settings import Settings, SettingsError

M = TypeVar("M")


def start(name: str) -> Settings:
    """Load and validate settings; on a bad one print one clear line and exit 2."""
    try:
        settings = settings_mod.load()
    except SettingsError as exc:
        print(f"[{name}] configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    # Not logging.basicConfig: dora's Python module replaces it once a Node exists.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {name} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    # chatty libraries: their INFO lines drown ours
    for noisy in ("httpx", "httpx2", "openai", "faster_whisper", "piper"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return settings


def load_model(name: str, factory: Callable[[], M]) -> M:
    """A node's model, loaded and warmed up once at start (so the first turn does not pay
    for it); a missing model ends the node with one clear line instead of a traceback."""
    from pipeline.models import ModelNotFound

    try:
        model = factory()
    except ModelNotFound as exc:
        fail(name, str(exc))
    model.warm_up()
    return model


def fail(name: str, message: str, code: int = 1) -> None:
    """Stop a node with one clear line (a missing device, a missing model)."""
    print(f"[{name}] error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


class Outbox:
    """`send_output` behind a lock: worker threads and the event loop both send."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._lock = threading.Lock()

    def send(self, output_id: str, value: pa.Array, metadata: dict[str, Any] | None = None) -> None:
        meta = {k: v for k, v in (metadata or {}).items() if v is not None}
        with self._lock:
            self.node.send_output(output_id, value, meta)

    def emit(self, msg: Message) -> None:
        """Send one message of the contract on its output."""
        value, meta = msg.to_dora()
        self.send(msg.OUTPUT, value, meta)

    def emit_all(self, msgs: Iterable[Message] | None) -> None:
        for msg in msgs or ():
            self.emit(msg)


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - only glibc has it
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()


def release_memory() -> None:
    """Give freed heap back to the OS (glibc's malloc_trim; a no-op elsewhere).

    glibc keeps what a model freed after its last run resident, so a node that ran a big
    inference stays at its peak until the next one. Call it after the result was sent: it
    delays nothing on a turn's path.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


STOP = "__stop__"
CLOSED = "__closed__"
RESTARTED = "__restarted__"
FAILED = "__failed__"
GRACE_S = 0.3


def is_restart(node: Any) -> bool:
    """This process is a node dora restarted after a crash (`restart_policy`)."""
    try:
        return bool(node.is_restart())
    except Exception:  # noqa: BLE001 - a node object without the method: a first start
        return False


def journal_for(node: Any, name: str) -> TurnJournal | None:
    """The crash-recovery journal of node `name` in this dataflow (None without a dataflow id)."""
    try:
        return TurnJournal.for_dataflow(str(node.dataflow_id()), name)
    except Exception:  # noqa: BLE001 - a node object without dataflow id: no journal
        return None


def inputs(
    node: Any,
    primary: frozenset[str] = frozenset(),
    done: Callable[[], bool] = lambda: True,
):
    """Yield (input id, value, metadata) of INPUT events.

    A STOP event is yielded as (STOP, None, {}) so sources can stop producing, and an
    INPUT_CLOSED as (CLOSED, None, {"id": input id}).

    A node that sends to this one crashed: dora 1.1 tells only the nodes downstream of it
    (never the ones that send to it), with NODE_RESTARTED (id = the crashed node) at once when
    its `restart_policy` will restart it, or NODE_FAILED when it gave up. They are yielded as
    (RESTARTED, None, {"id": node id}) and (FAILED, None, {"id": node id}). Whatever was sent
    to the crashed node, and whatever it was working on, is lost: messages sent to it before
    its new process is up (model loaded, `Node()` created) are dropped, not queued.

    Ending: in a dataflow with a feedback edge (the speaker's `played` goes back upstream),
    dora's event stream never ends by itself, so a node ends once all its `primary` inputs
    are closed and `done()` says its own work is finished. dora may deliver INPUT_CLOSED
    before data that was sent earlier, so the node then keeps reading until no event came
    for GRACE_S seconds. With no `primary` inputs the loop ends with dora's stream.
    """
    closed: set[str] = set()
    log = logging.getLogger("runtime")
    while True:
        finishing = bool(primary) and primary <= closed
        event = node.next(timeout=GRACE_S) if finishing else node.next()
        if event is None:
            return
        kind = event.get("type")
        if kind == "INPUT":
            yield event["id"], event["value"], dict(event.get("metadata") or {})
        elif kind == "INPUT_CLOSED":
            closed.add(str(event.get("id")))
            yield CLOSED, None, {"id": event.get("id")}
        elif kind == "STOP":
            yield STOP, None, {}
        elif kind == "NODE_RESTARTED":
            log.warning("node %s crashed; dora is restarting it", event.get("id"))
            yield RESTARTED, None, {"id": str(event.get("id"))}
        elif kind == "NODE_FAILED":
            log.error("node %s failed and will not be restarted", event.get("id"))
            yield FAILED, None, {"id": str(event.get("id"))}
        elif kind == "ERROR":
            if finishing:
                if done():
                    return
                continue
            log.warning("dora error event: %s", event.get("error"))


@dataclass(frozen=True)
class Tick:
    """A dora timer input fired (`input_id` names which)."""

    input_id: str


@dataclass(frozen=True)
class Control:
    """Not a message but news about the dataflow.

    `kind` is STOP, CLOSED (input `input_id` closed), RESTARTED (upstream node `input_id`
    crashed and is being restarted) or FAILED (it crashed for good).
    """

    kind: str
    input_id: str = ""


Event = Message | Tick | Control


class Processor(Protocol):
    """A node's logic: takes one event, returns the messages to send (possibly none).

    Processors that also produce output on their own (a device callback, a worker thread)
    are given an emit function when built; everything they send goes through one
    :class:`Outbox`.
    """

    def handle(self, event: Event) -> Iterable[Message] | None:
        """May be a generator: each message is sent as soon as it is yielded (streaming)."""
        ...

    def idle(self) -> bool:
        """Nothing of its own is still in progress (see :func:`inputs`, `done`)."""
        ...


class Lifecycle(Protocol):
    """Optional hooks of a processor, called by :func:`drive` when it has them.

    ``start()`` runs before the first event (what a node says when it comes up, or resends
    after a restart); ``finish()`` runs after the loop ended cleanly (wait for workers, remove
    a crash journal). A loop that raised skips ``finish``: a node that crashed must leave its
    journal for the process dora starts next. Devices are closed by the node file itself.
    """

    def start(self) -> Iterable[Message] | None: ...

    def finish(self) -> Iterable[Message] | None: ...


def decode(wiring: Mapping[str, type[Message] | None], input_id: str, value: Any,
           meta: Mapping[str, Any]) -> Event | None:
    """The event of one dora input (None for an input the wiring does not know)."""
    if input_id in _CONTROLS:
        return Control(input_id, str(meta.get("id", "")))
    if input_id not in wiring:
        return None
    cls = wiring[input_id]
    if cls is None:
        return Tick(input_id)
    return cls.from_dora(value, meta)


_CONTROLS = frozenset({STOP, CLOSED, RESTARTED, FAILED})


def drive(node: Any, processor: Processor, wiring: Mapping[str, type[Message] | None],
          out: Outbox | None = None, primary: frozenset[str] = frozenset(),
          stop_on: Callable[[Event], bool] = lambda e: False) -> Outbox:
    """Run a node: every dora event is decoded and handed to `processor`; what it returns
    is sent. `wiring` maps each input id to the message class it carries (None: a timer).

    The loop ends as :func:`inputs` says (all `primary` inputs closed and
    ``processor.idle()``), or at the first event for which `stop_on` is true. The
    processor's optional :class:`Lifecycle` hooks run before and after the loop.
    """
    out = out or Outbox(node)
    log = logging.getLogger("runtime")
    start_hook = getattr(processor, "start", None)
    if start_hook is not None:
        out.emit_all(start_hook())
    for input_id, value, meta in inputs(node, primary, processor.idle):
        try:
            event = decode(wiring, input_id, value, meta)
        except ContractError as exc:
            log.error("input %s dropped: %s", input_id, exc)
            continue
        if event is None:
            continue
        out.emit_all(processor.handle(event))
        if stop_on(event):
            break
    finish_hook = getattr(processor, "finish", None)
    if finish_hook is not None:
        out.emit_all(finish_hook())
    return out
