"""Streaming segmenter: LLM text deltas in, speakable segments for TTS out.

Piper synthesizes a segment at a time, so where the text is cut decides both when speech
starts and how natural it sounds. The first segment of an answer is released at its first
clause boundary (", ; : -" after `first_min_words` words) so the voice starts early; later
ones end at sentence ends, line breaks (paragraphs, list items) or, for a sentence longer
than `max_words`, at its last clause boundary (or after `max_words` words). The first
segment has its own, lower limit (`first_max_words`): the voice waits for the whole first
segment to be generated (~25 ms a token on one core). Before Piper was streamed inside a
sentence (pipeline/tts.py) it also waited for all of it to be synthesized: a first sentence
of 17 words with no comma took 1.2 s, against 0.3 s for 8 words.
Where a sentence must be cut without a clause boundary, the cut goes before the last
conjunction, relative pronoun or preposition ("... passed down | through generations"),
where a speaker would pause, and only with no such word right before the limit.

Split independence
------------------
Deltas cut the text anywhere ("3.|14", "e.|g.", "**|bold**", between "\\r" and "\\n"), and
the segments must not depend on where. So every decision is a function of the text alone:
the scanner walks the uncommitted buffer in order and, at each candidate boundary, looks at
a fixed *window* of text around it (the rest of the line up to the first letter or digit
after it, for "." up to the end of that word). If the window is not complete yet it waits
for the next delta (or for `finish()`, where the end of the answer closes the window); it
never decides on a partial window. Candidates are decided strictly in order and the state
only changes at decisions, so splitting the input can only change *when* a segment is
returned, never *what* it is. Lookahead costs the time of one word of LLM output.

Where pysbd fits
----------------
pysbd (rule-based, maintained, ~200 English abbreviations, initials, "p.m.", numbers) is
the judge for a single "." followed by whitespace and a non-lowercase word: it is run on a
small window (the last four words before the period and the word after it) and the period
is a boundary only if pysbd ends a sentence there. It costs ~0.5 ms a call, so it is called
only at such candidates (a few per answer), never per delta and never on the whole buffer.
Everything cheap and certain is a rule here instead, also where pysbd is wrong: a boundary
needs whitespace after the punctuation (so URLs, e-mail addresses, 3.14 and 1,000 never
split; pysbd cuts "https://x.com/a.b?c=d" at the "?"), a lowercase next word is never a new
sentence ("e.g. apples", "etc. and"), "?" and "!" always end one, and an ellipsis ends one
only before a capital (pysbd never splits after "…", U+2026).

Markdown and emoji are removed from each segment by :func:`pipeline.speakable.speakable_piece`
once it is complete (see that module for why this is equivalent to converting the whole
answer). Code blocks are dropped line by line. No empty or punctuation-only segment is ever
returned: a candidate boundary is taken only if the text before it says something and ends
with an audible pause mark, and if something speakable follows it on the same line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import pysbd

from pipeline.speakable import (
    FENCE_MARKERS,
    LINE_BREAKS,
    LineKind,
    ends_with_pause,
    line_kind,
    may_be_fence,
    open_construct,
    speakable_piece,
)

_SENTENCE_END = frozenset(".!?…")
_CLAUSE = frozenset(",;:")
_DASHES = frozenset("-‐‑‒–—―")
# What may follow the sentence punctuation inside the same sentence: closing quotes and
# brackets, and markdown closers ("**Done.**", "`x.`").
_CLOSERS = frozenset("\"'”’»)]}*_~`")
_PYSBD_WORDS_BEFORE = 4
# Words a phrase may start with: cutting right before one sounds like a natural pause.
_BREAK_BEFORE = frozenset({
    "and", "but", "or", "nor", "so", "yet", "because", "although", "though", "while",
    "whereas", "when", "whenever", "where", "which", "who", "whom", "whose", "that", "if",
    "unless", "until", "since", "after", "before", "as", "than", "in", "on", "at", "to", "for",
    "from", "with", "without", "about", "into", "onto", "through", "during", "over", "under",
    "between", "by", "of",
})
FIRST_MAX_WORDS = 10  # see the module doc; the embedded server paces on it too (llm_pace)
_WORD = re.compile(r"\S+")
_LEADING_BLANKS = re.compile(r"[^\S\r\n]+")


class _Verdict(IntEnum):
    """How a candidate boundary was judged."""

    WAIT = 0  # the window is not complete: wait for more text
    REJECT = 1  # not a boundary: keep scanning after it
    ACCEPT = 2  # a boundary: commit the segment before it


@dataclass(frozen=True)
class _Judgement:
    verdict: _Verdict
    index: int  # WAIT: where to resume; REJECT: where to continue; ACCEPT: the boundary
    spoken: str = ""  # ACCEPT: the segment's speakable text


_WAIT = _Judgement(_Verdict.WAIT, -1)


@dataclass
class StreamSegmenter:
    """Cuts one streamed LLM answer after another into speakable segments.

    `push()` each delta, `finish()` at the end of the answer, `reset()` on interruption.
    """

    first_min_words: int = 3
    max_words: int = 20
    first_max_words: int = FIRST_MAX_WORDS
    _buf: str = field(default="", init=False, repr=False)
    _pos: int = field(default=0, init=False, repr=False)  # scanned up to here
    _words: int = field(default=0, init=False, repr=False)  # words in _buf[:_pos]
    _counted: bool = field(default=False, init=False, repr=False)  # current word counted
    _clauses: list[tuple[int, int]] = field(default_factory=list, init=False, repr=False)
    _line_start: bool = field(default=True, init=False, repr=False)  # _buf starts a line
    _line_known: bool = field(default=False, init=False, repr=False)  # not a fence line
    _in_fence: bool = field(default=False, init=False, repr=False)
    _first: bool = field(default=True, init=False, repr=False)
    _sbd: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.first_min_words < 1 or self.max_words < 1 or self.first_max_words < 1:
            raise ValueError("first_min_words, max_words and first_max_words must be at least 1")

    # ---- public API ---------------------------------------------------------------------

    def push(self, delta: str) -> list[str]:
        """Append an LLM text delta; return the segments it completed (often none)."""
        if not delta:
            return []
        self._buf += delta
        return self._run(final=False)

    def finish(self) -> list[str]:
        """The answer ended: flush what is left; the next push starts a new answer."""
        out = self._run(final=True)
        if not self._in_fence and self._buf:
            self._emit(self._buf, line_end=True, out=out)
        self.reset()
        return out

    def reset(self) -> None:
        """Forget everything (barge-in or a new turn); the next answer starts afresh."""
        self._buf = ""
        self._new_piece(line_start=True)
        self._in_fence = False
        self._first = True

    # ---- scanning ----------------------------------------------------------------------

    def _run(self, final: bool) -> list[str]:
        out: list[str] = []
        while self._step(final, out):
            pass
        return out

    def _step(self, final: bool, out: list[str]) -> bool:
        """Scan until one thing happened (True) or more text is needed (False)."""
        if self._in_fence or not self._line_known:
            return self._line_start_step(final)
        buf = self._buf
        n = len(buf)
        i = self._pos
        while i < n:
            ch = buf[i]
            if ch in LINE_BREAKS:
                self._commit(i, i + 1, out, line_end=True)
                return True
            if ch.isspace():
                self._counted = False
                i += 1
                continue
            if ch.isalnum():
                limit = min(self.first_max_words, self.max_words) if self._first else self.max_words
                too_long = self._words >= limit and buf[i - 1].isspace()
                if too_long and self._split_long(i, out):
                    return True
                if not self._counted:
                    self._words += 1
                    self._counted = True
                i += 1
                continue
            if ch in _SENTENCE_END:
                judged = self._judge_sentence_end(i, final)
            elif ch in _CLAUSE:
                judged = self._judge_clause(i, i + 1, final)
            elif ch in _DASHES and (i == 0 or buf[i - 1].isspace()):
                judged = self._judge_dash(i, final)
            else:
                i += 1
                continue
            if judged.verdict == _Verdict.WAIT:
                self._pos = i
                return False
            if judged.verdict == _Verdict.ACCEPT:
                self._commit(judged.index, judged.index, out, spoken=judged.spoken)
                return True
            i = judged.index
        self._pos = n
        return False

    def _line_start_step(self, final: bool) -> bool:
        """At a line start (or inside a code block): drop fence and code lines whole.

        A text line is held back only while its first three characters could still be a
        fence, so code is never spoken and prose is not delayed.
        """
        buf = self._buf
        breaks = [j for j in (buf.find("\r"), buf.find("\n")) if j >= 0]
        end = min(breaks) if breaks else -1
        line = buf if end < 0 else buf[:end]
        complete = end >= 0 or final
        if not self._in_fence:
            if not complete and may_be_fence(line):
                return False
            if line.lstrip(" \t")[:3] not in FENCE_MARKERS:
                self._line_known = True
                return True
        if not complete:
            return False  # a code line: wait for its end, then drop it
        if line_kind(line) is LineKind.FENCE:
            self._in_fence = not self._in_fence
        if end < 0:
            self._buf = ""
            return False
        self._buf = buf[end + 1 :]
        self._new_piece(line_start=True)
        return True

    # ---- judging candidate boundaries --------------------------------------------------

    def _judge_sentence_end(self, i: int, final: bool) -> _Judgement:
        """`. ! ? …` (runs of them) at `i`, maybe followed by closing quotes/brackets."""
        buf = self._buf
        n = len(buf)
        end = i
        while end < n and buf[end] in _SENTENCE_END:
            end += 1
        boundary = end
        while boundary < n and buf[boundary] in _CLOSERS:
            boundary += 1
        if boundary == n:
            return _Judgement(_Verdict.REJECT, n) if final else _WAIT
        if not buf[boundary].isspace() or buf[boundary] in LINE_BREAKS:
            return _Judgement(_Verdict.REJECT, boundary)  # "3.14", "a.b@x.com", or a line end
        nxt = self._next_alnum(boundary)
        if nxt < 0:
            return _Judgement(_Verdict.REJECT, boundary) if final or nxt == -2 else _WAIT
        if buf[nxt].islower():
            return _Judgement(_Verdict.REJECT, boundary)  # "e.g. apples", "etc. and"
        run = buf[i:end]
        if "?" in run or "!" in run:
            is_end = True
        elif "…" in run or len(run) > 1:
            is_end = buf[nxt].isupper()  # ellipsis: a sentence end only before a capital
        else:
            word_end = nxt
            while word_end < n and not buf[word_end].isspace():
                word_end += 1
            if word_end == n and not final:
                return _WAIT
            is_end = self._pysbd_says_end(i, end, nxt, word_end)
        if not is_end:
            return _Judgement(_Verdict.REJECT, boundary)
        return self._accept(boundary)

    def _judge_clause(self, i: int, boundary: int, final: bool) -> _Judgement:
        """`, ; :` or a free-standing dash ending at `boundary`: a clause may end here.

        It ends a segment only in the first segment of an answer; elsewhere it is remembered
        as a place to split an over-long sentence.
        """
        buf = self._buf
        if boundary == len(buf):
            return _Judgement(_Verdict.REJECT, boundary) if final else _WAIT
        if not buf[boundary].isspace():
            return _Judgement(_Verdict.REJECT, boundary)  # "1,000", "3:30", "https://"
        if self._words < self.first_min_words:
            return _Judgement(_Verdict.REJECT, boundary)
        if not self._first:
            self._clauses.append((boundary, self._words))
            return _Judgement(_Verdict.REJECT, boundary)
        nxt = self._next_alnum(boundary)
        if nxt == -1 and not final:
            return _WAIT
        if nxt < 0:
            return _Judgement(_Verdict.REJECT, boundary)
        self._clauses.append((boundary, self._words))
        judged = self._accept(boundary)
        return judged if judged.verdict == _Verdict.ACCEPT else _Judgement(judged.verdict, boundary)

    def _judge_dash(self, i: int, final: bool) -> _Judgement:
        """A dash that starts a token: a clause boundary if it is a token of its own."""
        buf = self._buf
        end = i
        while end < len(buf) and buf[end] in _DASHES:
            end += 1
        if end == len(buf):
            return _Judgement(_Verdict.REJECT, end) if final else _WAIT
        if not buf[end].isspace():
            return _Judgement(_Verdict.REJECT, end)  # "-5", "--flag"
        return self._judge_clause(i, end, final)

    def _accept(self, boundary: int) -> _Judgement:
        """A boundary the text allows; take it only if the segment before it is audible."""
        piece = self._buf[:boundary]
        if open_construct(piece):
            return _Judgement(_Verdict.REJECT, boundary)
        spoken = speakable_piece(piece, line_start=self._line_start, line_end=False)
        if not spoken or not ends_with_pause(spoken):
            return _Judgement(_Verdict.REJECT, boundary)
        return _Judgement(_Verdict.ACCEPT, boundary, spoken)

    def _next_alnum(self, start: int) -> int:
        """Index of the first letter/digit after `start` on this line; -1: not seen yet,
        -2: the line ends first (nothing speakable follows, so no cut is needed)."""
        buf = self._buf
        for j in range(start, len(buf)):
            ch = buf[j]
            if ch.isalnum():
                return j
            if ch in LINE_BREAKS:
                return -2
        return -1

    def _pysbd_says_end(self, dot: int, after_dot: int, nxt: int, word_end: int) -> bool:
        """Ask pysbd whether the "." at `dot` ends a sentence, on a small fixed window."""
        buf = self._buf
        start = _start_of_words_before(buf, dot, _PYSBD_WORDS_BEFORE)
        window = buf[start:word_end]
        if self._sbd is None:
            self._sbd = pysbd.Segmenter(language="en", clean=False, char_span=True)
        try:
            spans = self._sbd.segment(window)
        except Exception:  # pysbd is regex soup; never let it take the voice down
            return buf[nxt].isupper()
        low, high = after_dot - start, nxt - start
        return any(low <= span.end <= high for span in spans)

    def _split_long(self, i: int, out: list[str]) -> bool:
        """The sentence reached its word limit and a new word starts at `i`: cut it.

        At the last clause boundary that leaves `first_min_words` words and an audible
        segment, else before the last phrase-starting word (see `_BREAK_BEFORE`) that does,
        else right before this word.
        """
        if open_construct(self._buf[:i]):
            return False
        for boundary, words in reversed(self._clauses):
            if words >= self.first_min_words:
                judged = self._accept(boundary)
                if judged.verdict == _Verdict.ACCEPT:
                    self._commit(boundary, boundary, out, spoken=judged.spoken)
                    return True
        cut = self._phrase_start(i)
        self._commit(cut, cut, out)
        return True

    def _phrase_start(self, i: int) -> int:
        """Start of the last word in `_buf[:i]` that begins a phrase and leaves at least
        `first_min_words` words before it (and is not the very last word), else `i`."""
        best = i
        words = 0
        last = None
        for match in _WORD.finditer(self._buf, 0, i):
            token = match.group()
            if not any(ch.isalnum() for ch in token):
                continue
            if words >= self.first_min_words and token.lower() in _BREAK_BEFORE:
                last = match.start()
            words += 1
        if last is not None and not open_construct(self._buf[:last]):
            best = last
        return best

    # ---- committing --------------------------------------------------------------------

    def _commit(
        self,
        end: int,
        resume: int,
        out: list[str],
        *,
        line_end: bool = False,
        spoken: str | None = None,
    ) -> None:
        """Emit `_buf[:end]` as a segment and continue with `_buf[resume:]`."""
        piece = self._buf[:end]
        rest = self._buf[resume:]
        if spoken is None:
            self._emit(piece, line_end=line_end, out=out)
        elif spoken:
            out.append(spoken)
            self._first = False
        if not line_end:
            match = _LEADING_BLANKS.match(rest)
            rest = rest[match.end() :] if match else rest
        self._buf = rest
        self._new_piece(line_start=line_end)
        self._line_known = not line_end

    def _emit(self, piece: str, *, line_end: bool, out: list[str]) -> None:
        spoken = speakable_piece(piece, line_start=self._line_start, line_end=line_end)
        if spoken:
            out.append(spoken)
            self._first = False

    def _new_piece(self, *, line_start: bool) -> None:
        self._pos = 0
        self._words = 0
        self._counted = False
        self._clauses = []
        self._line_start = line_start
        self._line_known = False


def _start_of_words_before(text: str, index: int, count: int) -> int:
    """Start of the `count`-th whitespace-separated word ending at or before `index`."""
    j = index
    start = 0
    for _ in range(count):
        while j > 0 and not text[j - 1].isspace():
            j -= 1
        start = j
        while j > 0 and text[j - 1].isspace():
            j -= 1
        if j == 0:
            break
    return start
