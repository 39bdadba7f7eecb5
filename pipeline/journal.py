"""A node's note about the turn it is working on, kept outside the process (crash recovery).

dora restarts a crashed node (`restart_policy: on-failure`) as a new process with none of its
memory, and the messages sent to it while it was down are lost. A node that must finish, or
at least close, the turn its previous life left open writes a small JSON note here: the llm
node (pipeline/responder.py) and the segmenter (pipeline/scheduler.py). It is written a few
times per turn (never per token) with an atomic rename.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("journal")


@dataclass(frozen=True)
class JournalEntry:
    turn_id: int
    open: bool  # the turn was started and its `end` not yet sent
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class TurnJournal:
    """The turn a node is working on, in a small JSON file in the temporary folder."""

    path: Path
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _last: int = -1

    @classmethod
    def for_dataflow(cls, dataflow_id: str, node_id: str = "llm") -> TurnJournal | None:
        """The journal of one node of one running dataflow (None without a dataflow id)."""
        safe = "".join(c for c in dataflow_id if c.isalnum() or c == "-")
        if not safe:
            return None
        return cls(Path(tempfile.gettempdir()) / f"dora-voice-{node_id}-{safe}.json")

    def write(self, turn_id: int, is_open: bool, **extra: Any) -> None:
        """Note the state of `turn_id` (plus any JSON-able `extra` fields); notes about turns
        older than the last one are ignored (a cancelled answer may end after the next one
        started)."""
        with self._lock:
            if turn_id < self._last:
                return
            self._last = turn_id
            tmp = self.path.with_suffix(".tmp")
            try:
                tmp.write_text(json.dumps({**extra, "turn_id": turn_id, "open": is_open}))
                os.replace(tmp, self.path)
            except OSError as exc:
                log.warning("cannot write the turn journal %s: %s", self.path, exc)

    def read(self) -> JournalEntry | None:
        try:
            data = json.loads(self.path.read_text())
            extra = {k: v for k, v in data.items() if k not in ("turn_id", "open")}
            return JournalEntry(int(data["turn_id"]), bool(data["open"]), extra)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
