"""Turn LLM markdown into plain text that a TTS voice can read aloud.

Piper reads what it is given: ``**`` becomes silence at best and "asterisk" at worst, a URL
in a markdown link is spelled out, an emoji is noise. :func:`speakable` strips all of it:
headers, bullets, numbered-list markers, emphasis, code spans (content kept), fenced code
blocks (dropped), links (label kept), images and HTML tags (dropped), emoji and other
symbols no voice can say (dropped by Unicode category), and it collapses whitespace.

Why it is built from *local* rules
----------------------------------
The LLM streams its answer in deltas that cut anywhere, also inside ``**bold**`` or a link,
so markdown cannot be converted delta by delta. The segmenter (:mod:`pipeline.segmenter`)
instead converts each segment once it has decided the segment is complete, with
:func:`speakable_piece`. For that to give the same words as converting the whole answer,
every rule here is one of:

* *line rules* (fences, header/bullet/number markers, "end the line as a sentence"), which
  need to know where a line starts and ends - the segmenter always cuts at newlines and
  tells :func:`speakable_piece` whether a piece starts and ends a line;
* *token rules* (emphasis, code spans, link targets, symbols, punctuation-only tokens), whose
  result for a whitespace-separated token depends on that token alone - the segmenter only
  cuts at whitespace, so a cut can never change them;
* the two rules that may span whitespace (images ``![alt text](url)`` and HTML tags
  ``<a href="x">``): the segmenter asks :func:`open_construct` and does not cut inside one.

So ``" ".join(speakable_piece(p, ...) for p in pieces)`` has the same words as
``speakable(whole_text)`` - the property the segmenter's tests check.
"""

from __future__ import annotations

import html
import re
import unicodedata
from enum import Enum

FENCE_MARKERS = ("```", "~~~")
LINE_BREAKS = "\r\n"  # each one ends a line; "\r\n" just adds an empty line, which says nothing

# Where a sentence or clause has audibly ended (a TTS voice pauses after these).
PAUSE_MARKS = ".,;:!?…"
# Closing quotes and brackets that may follow the pause mark inside the same sentence.
CLOSING = "\"'”’»)]}"

# Math symbols a voice can read ("a + b"): a token made only of these (or of currency signs)
# is kept. Unicode calls "%", "&" and "@" punctuation; alone they say nothing.
_READABLE = frozenset("+=<>×÷±−")
_DASHES = frozenset("-‐‑‒–—―")
# Free-standing symbols Unicode files under punctuation but a voice should say (English,
# like the Piper voice and pysbd's rules).
_SPOKEN_AS = {"&": "and"}
# Unicode categories nobody can pronounce: other/modifier symbols (emoji, ©, `, ^),
# surrogates, private use, unassigned (emoji newer than Python's tables), enclosing marks
# (the keycap in 1️⃣).
_UNSPEAKABLE_CATEGORIES = frozenset({"So", "Sk", "Cs", "Co", "Cn", "Me"})
_KEEP_SYMBOLS = frozenset("°")  # So, but a voice says "degrees"
_INVISIBLE = frozenset("\u200b\u200d\u2060\ufeff")  # zero-width space/joiner, word joiner, BOM

_LINE_SPLIT = re.compile(r"[\r\n]")
# Markdown line markers: quote, header, bullet, numbered item ("1." or "1)").
_LINE_MARKER = re.compile(r"[ \t]*(?:>|#{1,6}|[-*+•]|\d{1,3}[.)])(?:[ \t]+|$)")
_CHECKBOX = re.compile(r"\[[ xX]\](?:[ \t]+|$)")
# The bounds (300) are mirrored by _OPEN_TAG/_OPEN_IMAGE: see open_construct().
_IMAGE = re.compile(r"!\[[^\[\]\n]{0,300}\]\([^()\s]*\)")
_TAG = re.compile(r"<[A-Za-z/!][^<>\n]{0,300}>")
_OPEN_IMAGE = re.compile(r"!\[[^\[\]\n]{0,299}\Z")
_OPEN_TAG = re.compile(r"<[A-Za-z/!][^<>\n]{0,299}\Z")
_LINK_TARGET = re.compile(r"\]\([^()\s]*\)")
_EMPHASIS = re.compile(r"[*_~]+")
_BRACKETS = str.maketrans({"[": " ", "]": " "})


class LineKind(Enum):
    """What a whole line is, as far as speech is concerned."""

    TEXT = "text"
    FENCE = "fence"  # opens or closes a fenced code block
    CODE = "code"  # a one-line ```code``` block: dropped, fence state unchanged


def line_kind(line: str) -> LineKind:
    """Classify a complete line (without its line break)."""
    stripped = line.lstrip(" \t")
    marker = stripped[:3]
    if marker not in FENCE_MARKERS:
        return LineKind.TEXT
    return LineKind.CODE if marker in stripped[3:] else LineKind.FENCE


def may_be_fence(line_start: str) -> bool:
    """Whether a line that begins with `line_start` could still turn out to be a fence line.

    The segmenter holds a new line back only while this is true, i.e. for at most three
    characters, so that code blocks are never spoken.
    """
    stripped = line_start.lstrip(" \t")
    return any(m.startswith(stripped[:3]) for m in FENCE_MARKERS)


def speakable(text: str) -> str:
    """The whole of `text` as speakable plain text (markdown, code and emoji removed)."""
    out: list[str] = []
    in_fence = False
    for line in _LINE_SPLIT.split(text):
        kind = line_kind(line)
        if kind is LineKind.FENCE:
            in_fence = not in_fence
            continue
        if in_fence or kind is LineKind.CODE:
            continue
        piece = speakable_piece(line, line_start=True, line_end=True)
        if piece:
            out.append(piece)
    return " ".join(out)


def speakable_piece(text: str, *, line_start: bool = True, line_end: bool = True) -> str:
    """Speakable text of a piece of one line that is not inside a code block.

    `line_start`: the piece starts its line, so a list/header marker is stripped.
    `line_end`: the piece ends its line, so it is ended as a sentence if it is not already
    (a list item or header then gets a falling intonation instead of running on).
    """
    if line_start:
        text = strip_line_marker(text)
    text = drop_markup(text)
    text = drop_unspeakable(text)
    text = drop_emphasis(text)
    if "**" in text or "`" in text:  # leftovers inside a word ("2**8", "a`b"): not speakable
        text = text.replace("**", " ").replace("`", " ")
    words = speakable_tokens(text.split())
    if line_end and words and not ends_with_pause(words[-1]):
        words[-1] += "."
    return " ".join(words)


def strip_line_marker(line: str) -> str:
    """Remove quote/header/bullet/number markers (also nested ones, "> - ") and a checkbox."""
    for _ in range(4):
        match = _LINE_MARKER.match(line)
        if match is None:
            break
        line = line[match.end() :]
    match = _CHECKBOX.match(line)
    return line[match.end() :] if match else line


def drop_markup(text: str) -> str:
    """Images and HTML tags go; a link keeps its label; HTML entities become characters."""
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "[" in text or "]" in text:
        text = _IMAGE.sub(" ", text)
        text = _LINK_TARGET.sub("", text).translate(_BRACKETS)
    if "&" in text:
        text = html.unescape(text)
    return text


def open_construct(text: str) -> bool:
    """Whether `text` ends inside an image or an HTML tag, i.e. a cut here would split one.

    These are the only markdown constructs that contain whitespace and are dropped as a
    whole, so they are the only ones a cut at whitespace could break. The bound of 300
    characters matches the ones in `_IMAGE` and `_TAG`: a longer run can never be matched
    as one, so the segmenter may cut in it.
    """
    lt = text.rfind("<")
    if lt >= 0 and _OPEN_TAG.match(text, lt):
        return True
    bang = text.rfind("![")
    return bang >= 0 and _OPEN_IMAGE.match(text, bang) is not None


class _SymbolFilter(dict[int, int | None]):
    """A `str.translate` table that deletes unspeakable characters, computed once per char.

    Looking up `unicodedata.category` for every character of every segment would be the
    slowest step; the table learns each character's verdict the first time it sees it.
    """

    def __missing__(self, code: int) -> int | None:
        verdict = None if _unspeakable(chr(code)) else code
        self[code] = verdict
        return verdict


def _unspeakable(ch: str) -> bool:
    if ch in _KEEP_SYMBOLS:
        return False
    if ch in _INVISIBLE:
        return True
    code = ord(ch)
    if 0xFE00 <= code <= 0xFE0F or 0xE0000 <= code <= 0xE01EF:  # variation selectors, tags
        return True
    category = unicodedata.category(ch)
    if category == "Cc":
        return not ch.isspace()
    return category in _UNSPEAKABLE_CATEGORIES


_SYMBOL_FILTER = _SymbolFilter()


def drop_unspeakable(text: str) -> str:
    """Delete emoji (with their skin tones, joiners and variation selectors), pictographs,
    backticks (so a code span keeps just its content), control characters and the like.

    Letters, digits, punctuation, currency (Sc) and math (Sm) symbols stay.
    """
    return text.translate(_SYMBOL_FILTER)


def drop_emphasis(text: str) -> str:
    """Remove runs of * _ ~ unless they sit between two letters/digits.

    That removes **bold**, *italics*, __bold__, _italics_ and ~~strike~~ markers while
    snake_case, 5*3 or a_b stay intact. It only looks at the two neighbouring characters,
    so it gives the same result on a whole line and on its whitespace-separated pieces.
    """
    if "*" not in text and "_" not in text and "~" not in text:
        return text

    def keep_inside_word(match: re.Match[str]) -> str:
        start, end = match.span()
        inside = start > 0 and end < len(text) and text[start - 1].isalnum() and text[end].isalnum()
        return match.group() if inside else ""

    return _EMPHASIS.sub(keep_inside_word, text)


def speakable_tokens(tokens: list[str]) -> list[str]:
    """Drop tokens with nothing to say, but keep the pause they stand for.

    A free-standing dash becomes a comma and "Really ?" / "Done 🎉!" / "Wait ..." keep their
    marks on the word before, so the voice still pauses and questions still rise. A mark is
    only moved onto a word that has none: that keeps the rule the same on a whole line and
    on pieces of it cut after a pause mark (see the module docstring).
    """
    out: list[str] = []
    for token in tokens:
        if is_audible(token):
            out.append(token)
            continue
        if token in _SPOKEN_AS:
            out.append(_SPOKEN_AS[token])
            continue
        if token == "%" and out and out[-1][-1].isdigit():
            out[-1] += token  # "50 %" -> "50%"
            continue
        if all(ch in _DASHES for ch in token):
            marks = ","
        else:
            marks = "".join(ch for ch in token if ch in PAUSE_MARKS)
        if marks and out and not ends_with_pause(out[-1]):
            out[-1] += marks
    return out


def is_audible(token: str) -> bool:
    """A token is worth sending to TTS if it has a letter, a digit or a readable symbol.

    Punctuation-only tokens ("-", "...", "|", "#") and rules ("===", "***") are not.
    """
    if len(token) > 1 and len(set(token)) == 1 and not token[0].isalnum():
        return False
    return any(ch.isalnum() or ch in _READABLE or unicodedata.category(ch) == "Sc" for ch in token)


def ends_with_pause(text: str) -> bool:
    """Whether `text` ends with a pause mark, possibly followed by closing quotes/brackets."""
    stripped = text.rstrip(CLOSING)
    return bool(stripped) and stripped[-1] in PAUSE_MARKS
