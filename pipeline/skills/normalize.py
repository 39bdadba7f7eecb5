"""Whisper's text, made uniform before any skill looks at it.

Whisper capitalises, punctuates ("What's 14 x 12?"), writes symbols ("15%", "3 + 4",
"7-3", "10-second") and keeps the polite padding people say ("Hey, can you tell me
what time it is, please?"). :func:`normalize` gives lower-case words separated by single
spaces, symbols spelled as words, contractions opened, and the padding removed, so
every skill matches one plain form and near-misses stay near-misses.
"""

from __future__ import annotations

import re

_CONTRACTIONS = {
    "what's": "what is", "whats": "what is", "it's": "it is", "how's": "how is",
    "that's": "that is", "thats": "that is", "there's": "there is", "i'd": "i would",
    "how're": "how are", "what're": "what are", "didn't": "did not", "don't": "do not",
    "let's": "let us", "i'm": "i am", "where's": "where is", "when's": "when is",
}  # fmt: skip
# Spoken padding around a request; removed from both ends, repeatedly.
_LEADING = (
    "hey", "hi", "hello", "okay", "ok", "so", "um", "uh", "umm", "oh", "alright",
    "all right", "well", "please", "can you", "could you", "would you", "will you",
    "can you tell me", "could you tell me", "tell me", "do you know", "please tell me",
    "i want to know", "i would like to know", "quick question",
)  # fmt: skip
_TRAILING = ("please", "thanks", "thank you", "for me", "now please", "okay", "ok")
_SYMBOLS = [
    (re.compile(r"%"), " percent "),
    (re.compile(r"[×*]"), " times "),
    (re.compile(r"÷"), " divided by "),
    (re.compile(r"\+"), " plus "),
    (re.compile(r"\^"), " to the power of "),
    (re.compile(r"[=]"), " "),
    (re.compile(r"√"), " square root of "),
    (re.compile(r"(?<=\d)\s*/\s*(?=\d)"), " over "),
    (re.compile(r"(?<=\d)\s*[-−–]\s*(?=\d)"), " minus "),  # "7-3", "7 - 3"
    (re.compile(r"(?<=\d)x(?=\d)"), " x "),  # "14x12"
    (re.compile(r"(?<=\d)(?=[a-z])"), " "),  # "10sec", "5min"
    (re.compile(r"(?<=\s)[-−–](?=\s)"), " minus "),  # "12 - 5" spaced out
    (re.compile(r"[-‐‑–—](?=[a-z])|(?<=[a-z])[-‐‑–—]"), " "),  # "twenty-three", "10-second"
]
# Dropped: "." "," ":" unless between digits ("3.5", "1,000", "10:30"), a hyphen unless it
# signs a number ("-5"), and every other non-word character except the apostrophe.
_PUNCTUATION = re.compile(r"(?<!\d)[.,:]|[.,:](?!\d)|-(?!\d)|[^\w\s.,:'-]")
_LEADING_RE = re.compile(
    r"^(?:" + "|".join(sorted((re.escape(p) for p in _LEADING), key=len, reverse=True)) + r")\b\s*"
)
_TRAILING_RE = re.compile(
    r"\s*\b(?:" + "|".join(sorted((re.escape(p) for p in _TRAILING), key=len, reverse=True)) + r")$"
)


def normalize(text: str) -> str:
    """``"Hey, what's 14 x 12, please?"`` -> ``"what is 14 x 12"``."""
    s = text.lower().replace("’", "'").replace("‘", "'")
    for pattern, words in _SYMBOLS:
        s = pattern.sub(words, s)
    s = _PUNCTUATION.sub(" ", s)
    words = [_CONTRACTIONS.get(w, w) for w in s.split()]
    s = " ".join(w.strip("'") for w in words)
    while True:
        stripped = _TRAILING_RE.sub("", _LEADING_RE.sub("", s)).strip()
        if stripped == s:
            return s
        s = stripped
