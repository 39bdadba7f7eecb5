"""Kitchen timers: several at once, optionally named, told when they end.

:class:`TimerBook` holds the running timers against an injected monotonic clock. It is
shared between the thread that handles requests and the node's timer thread, so every
method takes the lock. The timer thread needs no polling loop::

    version = book.version
    while running:
        deadline = book.next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        version = book.wait_for_change(version, timeout)  # a new timer wakes it early
        for text in book.due():
            announce(text)

Phrases ("set a pasta timer for 8 minutes") are parsed by :mod:`.timer_requests`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_TIMERS = 20
MAX_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Timer:
    """One running timer; ``deadline`` is on the book's monotonic clock."""

    seconds: int
    deadline: float
    name: str | None = None

    @property
    def label(self) -> str:
        """How the timer is called: "pasta timer", "5 minute timer"."""
        return f"{self.name} timer" if self.name else f"{say_duration(self.seconds, True)} timer"


def say_duration(seconds: int, adjective: bool = False) -> str:
    """90 -> "1 minute and 30 seconds"; 3600 -> "1 hour"; as an adjective: "90 second".

    Hours are given with minutes, minutes with seconds: the precision a person uses.
    """
    if adjective:
        for size, unit in ((3600, "hour"), (60, "minute")):
            if seconds % size == 0:
                return f"{seconds // size} {unit}"
        return f"{seconds} second"
    if seconds >= 3600:
        hours, minutes = seconds // 3600, math.ceil((seconds % 3600) / 60)
        if minutes == 60:
            hours, minutes = hours + 1, 0
        parts = [(hours, "hour"), (minutes, "minute")]
    elif seconds >= 60:
        parts = [(seconds // 60, "minute"), (seconds % 60, "second")]
    else:
        parts = [(seconds, "second")]
    words = [f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in parts if n]
    return " and ".join(words) or "0 seconds"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class TimerBook:
    """The running timers. Thread-safe; ``clock`` is monotonic seconds (injectable)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._timers: list[Timer] = []
        self._changed = threading.Condition(threading.Lock())
        self._version = 0
        self._closed = False

    # -- for the timer thread -------------------------------------------------------
    def now(self) -> float:
        """The book's clock (deadlines are on it)."""
        return self._clock()

    @property
    def version(self) -> int:
        with self._changed:
            return self._version

    def next_deadline(self) -> float | None:
        """The earliest deadline on the clock, or None when no timer runs."""
        with self._changed:
            return min((t.deadline for t in self._timers), default=None)

    def wait_for_change(self, version: int, timeout: float | None) -> int:
        """Block until the book changes after ``version``, ``timeout`` passes or it closes."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != version or self._closed, timeout)
            return self._version

    def close(self) -> None:
        """Wake every waiter for good (node shutdown)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        with self._changed:
            return self._closed

    def due(self, now: float | None = None) -> list[str]:
        """Remove the timers that have ended and give one announcement for each."""
        with self._changed:
            now = self._clock() if now is None else now
            ended = sorted((t for t in self._timers if t.deadline <= now), key=lambda t: t.deadline)
            if ended:
                self._timers = [t for t in self._timers if t.deadline > now]
                self._bump()
        return [f"Your {t.label} is done." for t in ended]

    # -- for requests ---------------------------------------------------------------
    def timers(self, now: float | None = None) -> list[tuple[Timer, int]]:
        """Running timers, soonest first, with the whole seconds left on each."""
        with self._changed:
            now = self._clock() if now is None else now
            ordered = sorted(self._timers, key=lambda t: t.deadline)
        return [(t, max(0, math.ceil(t.deadline - now))) for t in ordered]

    def has(self, name: str | None) -> bool:
        """Whether a timer called ``name`` (by name or length) runs; any timer for None."""
        return bool(self._select(self.timers(), name))

    def set(self, seconds: float, name: str | None = None, now: float | None = None) -> str:
        """Start a timer (a named one replaces its namesake); the spoken confirmation."""
        whole = math.ceil(seconds)
        if whole <= 0:
            return "A timer needs some time on it."
        if whole > MAX_SECONDS:
            return "I can only set timers for up to 24 hours."
        with self._changed:
            now = self._clock() if now is None else now
            replaced = name is not None and any(t.name == name for t in self._timers)
            self._timers = [t for t in self._timers if name is None or t.name != name]
            if len(self._timers) >= MAX_TIMERS:
                return f"You already have {MAX_TIMERS} timers; cancel one first."
            self._timers.append(Timer(whole, now + whole, name))
            self._bump()
        what = f"{name.capitalize()} timer" if name else "Timer"
        verb = "restarted" if replaced else "set"
        return f"{what} {verb} for {say_duration(whole)}."

    def remaining(self, name: str | None = None, now: float | None = None) -> str:
        """How long is left on the named timer, or on all of them."""
        running = self._select(self.timers(now), name)
        if not running:
            return self._missing(name)
        said = [f"your {t.label} has {say_duration(left)} left" for t, left in running]
        sentence = _join(said)
        if len(running) > 1:
            sentence = f"You have {len(running)} timers: {sentence}"
        return sentence[0].upper() + sentence[1:] + "."

    def cancel(self, name: str | None = None, now: float | None = None) -> str:
        """Cancel the named timer, or the only one; asks which when there are several."""
        running = self._select(self.timers(now), name)
        if not running:
            return self._missing(name)
        if len(running) > 1 and name is None:
            labels = _join([f"the {t.label}" for t, _ in running])
            return f"You have {len(running)} timers, {labels}. Which one should I cancel?"
        target = running[0][0]
        with self._changed:
            present = target in self._timers
            if present:
                self._timers.remove(target)
                self._bump()
        return f"Your {target.label} is cancelled." if present else f"Your {target.label} just ended."

    def cancel_all(self) -> str:
        with self._changed:
            count = len(self._timers)
            self._timers = []
            if count:
                self._bump()
        if count == 0:
            return "You don't have any timers."
        return "Your timer is cancelled." if count == 1 else f"All {count} timers are cancelled."

    # -- helpers --------------------------------------------------------------------
    def _bump(self) -> None:
        self._version += 1
        self._changed.notify_all()

    @staticmethod
    def _select(running: list[tuple[Timer, int]], name: str | None) -> list[tuple[Timer, int]]:
        """Timers called ``name``: by their name, or by their length ("5 minute")."""
        if name is None:
            return running
        return [(t, left) for t, left in running if name in (t.name, t.label[: -len(" timer")])]

    @staticmethod
    def _missing(name: str | None) -> str:
        if name is None:
            return "You don't have any timers."
        article = "an" if name[0] in "aeiou8" or name.startswith("11 ") else "a"
        return f"You don't have {article} {name} timer."
