"""Transcript cues: does the tentative transcript of a pause read like a finished turn?

The speculative ASR transcribes the utterance as soon as the user pauses (pipeline/vad.py's
tentative utterances), so its text is there for free while the end of the turn is decided.
Two cues are cheap and reliable enough to use:

* a transcript that ends on a word that cannot end an English question or request ("What
  is the capital of", "Tell me about the", "uh") is not finished, whatever the punctuation
  (Whisper often puts a "?" after a question's first half);
* one that ends with "?" (or ".", "!") on any other word reads as finished.

Anything else (no text, no punctuation) is unknown: the other signals decide.
"""

from __future__ import annotations

import re
from enum import Enum


class Cue(Enum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    UNKNOWN = "unknown"


NON_FINAL_WORDS: frozenset[str] = frozenset("""
a an the my your our their its some every each
of to about and or but nor so because if than as at by for into onto with like
between during until upon via per versus
is are was were am
um uh er erm hmm ah uhm
which whose
very quite let's tell give
""".split())  # noqa: SIM905 (a word list reads better as text)
"""Words a question or request hardly ends on: hesitations, articles, possessives,
conjunctions, most prepositions, the forms of "be", words that want what follows. Words
that often end a whole question are left out ("What time is it?", "Where are you from?",
"What is this?", "Can you?"). A few kept ones can end one ("Who are you with?", "What is it
like?") but a pause right after them is far more often the middle of a sentence, and a wrong
"incomplete" costs only the wait up to TURN_MAX_PAUSE_MS where a wrong "complete" answers
half a question."""

_TRAILING_DOTS = re.compile(r"(\.\.\.|…|-|—|,)\s*$")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def last_word(text: str) -> str:
    """The last word of `text`, lower case, without punctuation ("" if none)."""
    words = _WORD.findall(text.lower())
    return words[-1] if words else ""


_WORDS_AS_WRITTEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def ends_on_a_name(text: str) -> bool:
    """The last word is capitalised inside the sentence ("What is the capital of Spain?"):
    a name, which Whisper writes less surely than common words, but never as its guess at
    the end of a cut-off question (those are common words: "that", "it", "on")."""
    words = _WORDS_AS_WRITTEN.findall(text)
    return len(words) > 1 and words[-1][0].isupper() and words[-1] != "I"


def transcript_cue(text: str) -> Cue:
    """What the tentative transcript says about the end of the turn (see the module doc)."""
    stripped = text.strip()
    word = last_word(stripped)
    if not word:
        return Cue.UNKNOWN
    if word in NON_FINAL_WORDS or _TRAILING_DOTS.search(stripped):
        return Cue.INCOMPLETE
    if stripped[-1] in "?.!":
        return Cue.COMPLETE
    return Cue.UNKNOWN
