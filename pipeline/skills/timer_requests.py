"""What a timer request says: set (how long, what name), how long is left, cancel.

Works on normalised text (see :mod:`.normalize`). Durations are read with
:mod:`.numbers`: "10 seconds", "five minutes", "an hour and a half", "half an hour",
"1 hour 30 minutes", "two and a half minutes", "a quarter of an hour", "90 secs".
Only whole-utterance shapes are accepted, so "how long should I set a timer for eggs" or
"how much time is left in the game" are left to the LLM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from .numbers import Num, numberize
from .timers import say_duration

UNITS = {
    "second": 1, "seconds": 1, "sec": 1, "secs": 1, "minute": 60, "minutes": 60, "min": 60,
    "mins": 60, "hour": 3600, "hours": 3600, "hr": 3600, "hrs": 3600,
}  # fmt: skip
_NAME_WORD = re.compile(r"[a-z]+")
_NOT_NAMES = frozenset(
    ("a", "an", "the", "my", "for", "of", "timer", "timers", "and", "to", "on", "in", "at",
     "is", "it", "me", "this", "that", "set", "start", "one", "new", "another", "second")
)  # fmt: skip


@dataclass(frozen=True)
class SetTimer:
    seconds: Fraction | None  # None: the length was not said
    name: str | None = None


@dataclass(frozen=True)
class TimeLeft:
    name: str | None = None


@dataclass(frozen=True)
class CancelTimer:
    name: str | None = None
    everything: bool = False


TimerRequest = SetTimer | TimeLeft | CancelTimer


def parse_duration(words: list[str]) -> Fraction | None:
    """Seconds in a phrase that is only a duration, else None."""
    tokens = numberize(words)
    total, i, parts = Fraction(0), 0, 0
    while i < len(tokens):
        if parts and tokens[i] in ("and", ","):
            i += 1
        amount: Fraction | None = None
        tok = tokens[i] if i < len(tokens) else None
        if isinstance(tok, Num):
            amount, i = tok.value, i + 1
            if tok.fraction_word and i < len(tokens) and tokens[i] in ("of", "an", "a"):
                i += 1  # "half an hour", "a quarter of an hour"
                if i < len(tokens) and tokens[i] in ("an", "a"):
                    i += 1
        elif tok in ("a", "an"):
            amount, i = Fraction(1), i + 1
        if amount is None or i >= len(tokens) or tokens[i] not in UNITS:
            return None
        unit = UNITS[tokens[i]]
        i += 1
        # "an hour and a half", "5 minutes and a quarter"
        if i + 1 < len(tokens) and tokens[i] == "and":
            nxt = tokens[i + 1]
            if isinstance(nxt, Num) and nxt.fraction_word and nxt.value < 1:
                amount += nxt.value
                i += 2
        total += amount * unit
        parts += 1
    return total if parts else None


def _name(words: list[str]) -> str | None:
    """A timer's name from its words ("pasta", "the eggs"), None if it is not a name."""
    words = [w for w in words if w not in ("the", "my")]
    if not words:
        return None
    if len(words) > 3 or any(w in _NOT_NAMES or not _NAME_WORD.fullmatch(w) for w in words):
        return None
    return " ".join(words)


def _reference(words: list[str]) -> str | None | bool:
    """Which timer words like "pasta" or "5 minute" point at; False if they point nowhere."""
    words = [w for w in words if w not in ("the", "my", "that", "this")]
    if not words:
        return None
    seconds = parse_duration(words)
    if seconds is not None and seconds > 0:
        return say_duration(int(seconds), adjective=True)
    return _name(words) or False


_SET_VERBS = ("set", "start", "create", "make", "put on", "add", "begin", "i need", "i want", "give me")
_SET = re.compile(
    rf"(?:(?P<verb>{'|'.join(_SET_VERBS)}) )?(?:(?:a second|a new|another|one more|a|an|the|my|new) )?"
    r"(?P<pre>.*?) ?timers? ?(?P<post>.*)"
)
_POST = re.compile(
    r"(?:(?:for|of|on for|lasting) (?P<dur>.+?))?"
    r"(?: ?(?:for|called|named|labelled|labeled) (?:the |my )?(?P<name>[a-z ]+))?"
)
_DONE = r"(?: (?:is done|goes off|ends|rings|finishes|is up|is over))?"
_LEFT = re.compile(
    r"(?:how much (?:more )?(?:time|longer) (?:is |do i have |do we have )?(?:left|remaining|to go)?"
    r"|how long (?:is |do i have |do we have )?(?:left|remaining|to go)"
    r"|(?:what is the )?time (?:left|remaining)|how much time have i got left)"
    r"(?: (?:on|for|in) (?:the |my )?(?P<name>[a-z0-9 ]*?) ?timers?)?"
    r"|how (?:long|much time) (?:until|before|till) (?:the |my )?(?P<name4>[a-z0-9 ]*?) ?timer"
    + _DONE
    + r"|(?:check|show|list) (?:the |my |all )?(?:my )?(?P<name2>[a-z0-9 ]*?) ?timers?"
    r"|(?:what|which) timers (?:do i have|are (?:running|set|on))|do i have any timers"
    r"|how is (?:the |my )(?P<name3>[a-z0-9 ]*?) ?timer (?:doing|going)"
)
_CANCEL = re.compile(
    r"(?:cancel|stop|delete|remove|turn off|switch off|clear|end|kill|dismiss|reset)"
    r"(?P<all> all(?: of)?| every| both)? (?:the |my |that |this |those |these )?"
    r"(?P<name>[a-z0-9 ]*?) ?(?P<timer>timers?)"
)


def parse_request(text: str) -> TimerRequest | None:
    """The timer request in a normalised utterance, or None when it is not one."""
    if m := _LEFT.fullmatch(text):
        words = (m["name"] or m["name2"] or m["name3"] or m["name4"] or "").split()
        reference = _reference(words)
        return None if reference is False else TimeLeft(reference)
    if "timer" not in text:
        return None
    if m := _CANCEL.fullmatch(text):
        reference = _reference(m["name"].split())
        if reference is False:
            return None
        every = bool(m["all"]) or (m["timer"] == "timers" and reference is None)
        return CancelTimer(None if every else reference, every)
    return _parse_set(text)


def _parse_set(text: str) -> SetTimer | None:
    m = _SET.fullmatch(text)
    post = _POST.fullmatch(m["post"]) if m else None
    if m is None or post is None:
        return None
    pre = m["pre"].split()
    seconds = parse_duration(post["dur"].split()) if post["dur"] else None
    name = _name(post["name"].split()) if post["name"] else None
    if post["name"] and name is None:
        return None
    if post["dur"] and seconds is None:
        # "a timer for pasta": the words after "for" are its name, not its length.
        name = None if post["name"] else _name(post["dur"].split())
        if name is None:
            return None
    # Words before "timer": a length ("5 minute"), a name ("pasta"), or both.
    for cut in range(len(pre), -1, -1):
        head, tail = pre[:cut], pre[cut:]
        head_seconds = parse_duration(head) if head else None
        tail_name = _name(tail) if tail else None
        if (head and head_seconds is None) or (tail and tail_name is None):
            continue
        if (head_seconds is not None and seconds is not None) or (tail_name and name):
            return None  # two lengths or two names
        seconds = seconds if seconds is not None else head_seconds
        if seconds is None and not m["verb"]:
            return None  # "the pasta timer" alone asks nothing
        return SetTimer(seconds, name or tail_name)
    return None


_ALL = re.compile(r"(?:cancel )?(?:all|both|all of them|both of them|every one|everything|all timers)")


def parse_choice(text: str) -> CancelTimer | None:
    """The answer to "Which one should I cancel?": "the pasta one", "5 minute", "both"."""
    if _ALL.fullmatch(text):
        return CancelTimer(everything=True)
    words = text.split()
    if words[:1] == ["cancel"]:
        words = words[1:]
    if words[-1:] in (["one"], ["timer"]):
        words = words[:-1]
    reference = _reference(words)
    return CancelTimer(reference) if isinstance(reference, str) else None
