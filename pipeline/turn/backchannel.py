"""Backchannels: short acknowledgements a listener says without taking the turn.

"yeah", "mm-hmm", "okay", "I see" said while the assistant speaks mean "go on": they are
neither an interruption nor a question, and must never reach the LLM. :func:`is_backchannel`
recognises them in a transcript; how the speaker ducks and then resumes around them is
described in docs/echo-and-turn-taking.md ("Backchannels").

Anything with more than an acknowledgement in it ("yeah but why", "okay stop", "no", "wait")
is not a backchannel: a real interruption must keep stopping the answer.
"""

from __future__ import annotations

import re

BACKCHANNELS: frozenset[str] = frozenset({
    "yeah", "yes", "yep", "yup", "ya", "yea", "mm hmm", "mhm", "mm", "mmm", "hmm", "uh huh",
    "okay", "ok", "right", "alright", "all right", "i see", "sure", "got it", "cool", "nice",
    "great", "good", "oh", "ah", "aha", "ah ok", "oh ok", "oh okay", "oh i see", "i know",
    "exactly", "true", "really", "wow", "indeed", "of course", "makes sense", "fine",
})
"""Whole acknowledgements (lower case, punctuation and hyphens as spaces). "no", "stop",
"wait", "what" are deliberately absent: they interrupt."""

_SEPARATORS = re.compile(r"[^a-z']+")
MAX_REPEATS = 3  # "yeah yeah yeah" is still a backchannel


def _normalise(text: str) -> str:
    return " ".join(_SEPARATORS.sub(" ", text.lower()).split())


def is_backchannel(text: str) -> bool:
    """True if `text` (a transcript) is only an acknowledgement, possibly repeated
    ("Yeah.", "Mm-hmm", "okay, okay", "I see."); False for anything else, empty included."""
    words = _normalise(text).split()
    if not words:
        return False
    phrase = " ".join(words)
    if phrase in BACKCHANNELS:
        return True
    # a short acknowledgement said two or three times, or two of them ("yeah okay")
    for n in (1, 2):
        if len(words) % n == 0 and len(words) // n <= MAX_REPEATS:
            parts = [" ".join(words[i:i + n]) for i in range(0, len(words), n)]
            if all(p in BACKCHANNELS for p in parts):
                return True
    return False
