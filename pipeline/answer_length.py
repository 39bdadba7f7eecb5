"""How long a spoken answer may be: the end of its first sentences, found while it streams.

Why: a voice answer is heard, not skimmed, and the bundled 135M model's first sentence is
its answer while what follows is where it drifts into made-up detail ("The capital of
France is Paris. It is known as the City of Lights and has a population of 2 million
kangaroos"). The client stops reading the stream at the end of the allowed sentences
(LLM_MAX_SENTENCES) and closes it, so the server stops generating too; `make eval`
measures it (docs/answers.md). A question that asks for more ("explain", "tell me more",
"step by step") gets the whole answer.

The test for a sentence end is deliberately plain, and errs on the side of *not* cutting:
`. ! ?` (or a run of them, maybe closed by a quote or bracket) followed by white space and
then a capital letter, a digit or a quote. Not an end: a decimal ("3.5"), an abbreviation
or an initial before the period ("Dr. Watson", "J. K. Rowling", "e.g. apples"), or a list
number at the start of a line ("1. Boil the water"). Until the character after the space has
arrived, it waits.
"""

from __future__ import annotations

import re

_ENDS = ".!?…"
_CLOSERS = "\"'”’»)]"
# Words whose period is not a sentence end (lower-cased, without the period).
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "mt", "ft", "vs", "etc", "e.g", "i.e",
    "eg", "ie", "approx", "no", "inc", "ltd", "co", "u.s", "u.k", "a.m", "p.m", "am", "pm", "min",
    "sec", "hr", "hrs", "oz", "lb", "lbs", "in", "km", "cm", "mm", "kg", "jan", "feb", "mar",
    "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
})  # fmt: skip
_SENTENCE_START = re.compile(r"[A-Z0-9\"'“‘(]")
# Asking for more than a one-sentence answer.
_MORE = re.compile(
    r"\b(explain|describe|tell me (more|about|a story|a joke)|more about|in detail|details"
    r"|step by step|steps|list|examples|story|poem|recipe|summar(y|ize|ise)|compare"
    r"|difference between|pros and cons|why)\b"
)


def asks_for_more(question: str) -> bool:
    """The question wants more than a sentence or two ("explain how vaccines work")."""
    return bool(_MORE.search(question.lower()))


def _word_before(text: str, i: int) -> str:
    start = i
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:i]


def _is_end(text: str, i: int) -> bool:
    """The period-like character at `i` (the first of its run) may end a sentence."""
    if text[i] in "!?…":
        return True
    word = _word_before(text, i)
    bare = word.lstrip("\"'“‘(").lower()
    if not bare:
        return True
    if len(bare) == 1 and bare.isalpha():  # an initial: "J. K. Rowling"
        return False
    if bare in _ABBREVIATIONS:
        return False
    if bare.isdigit():  # "1. Boil the water": a list number opening a line
        line_start = text.rfind("\n", 0, i - len(word)) + 1
        return text[line_start : i - len(word)].strip() != ""
    return True


def sentence_ends(text: str) -> list[int]:
    """Where each complete sentence of `text` ends (the index after its punctuation and
    closers); a sentence end is only known once the next sentence has started."""
    ends: list[int] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] not in _ENDS:
            i += 1
            continue
        start = i
        while i < n and text[i] in _ENDS:
            i += 1
        while i < n and text[i] in _CLOSERS:
            i += 1
        j = i
        while j < n and text[j].isspace():
            j += 1
        if j in (i, n):
            continue  # "3.5", or nothing after it yet
        if _SENTENCE_START.match(text[j]) and _is_end(text, start):
            ends.append(i)
    return ends


class SentenceLimit:
    """Feed it the streamed deltas; it says what to pass on and when the answer is long enough.

    `max_sentences` 0 = no limit.
    """

    def __init__(self, max_sentences: int) -> None:
        self.max_sentences = max_sentences
        self.text = ""
        self.sent = 0  # characters of `text` passed on
        self.done = False

    def push(self, delta: str) -> str:
        """The part of `delta` to pass on; after the last allowed sentence, `done` is set."""
        if self.done:
            return ""
        self.text += delta
        if self.max_sentences <= 0:
            self.sent = len(self.text)
            return delta
        ends = sentence_ends(self.text)
        if len(ends) >= self.max_sentences:
            cut = ends[self.max_sentences - 1]
            self.done = True
        else:
            cut = len(self.text)
        out = self.text[self.sent : cut] if cut > self.sent else ""
        self.sent = max(self.sent, cut)
        return out
