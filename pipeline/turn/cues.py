"""Transcript cues: does the tentative transcript of a pause read like a finished turn?

The speculative ASR transcribes the utterance as soon as the user pauses (pipeline/endpoint.py's
tentative utterances), so its text is there for free while the end of the turn is decided.
Two cues are cheap and reliable enough to use:

* a transcript that ends on a word that cannot end an English question or request ("What
  is the capital of", "Tell me about the", "uh"), or a "do" question that stops after its
  subject ("Why do cats?"), is not finished, whatever the punctuation (Whisper often puts a
  "?" after a question's first half);
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


GUESS_WORDS: frozenset[str] = frozenset(
    ["that", "this", "it", "them", "they", "these", "those", "what", "one", "there"])
"""Pronouns Whisper writes as its guess at the end of a cut-off question ("What time does
the" -> "What time does that?", "Um, what is the" -> "What is that?", "How many legs does a"
-> "How many likes does this?"): an ending on one needs more of its confidence
(TURN_GUESS_WORD_P) than another word. Whole questions do end on them ("What time is it?"),
but Whisper is then sure of the word (0.94 and more on the dev set)."""

FUNCTION_WORDS: frozenset[str] = NON_FINAL_WORDS | GUESS_WORDS | frozenset("""
i me you we us he him she her who whom whose where when why how here then
on in up out off from over down away back too
do does did done have has had be been being can could will would shall should may might
must not no yes
""".split())  # noqa: SIM905 (a word list reads better as text)
"""Closed-class words: pronouns, prepositions and particles, auxiliaries. The other words
(nouns, verbs, adjectives, numbers) are *content* words: when Whisper doubts one at the end
of a finished-looking transcript it has more often misheard a real last word ("How far away
is the moon?", P("moon") 0.51-0.76; "a good work?") than made one up for a cut-off question,
where it writes a short pronoun or preposition ("that", "on", "this")."""


class Ending(Enum):
    """What kind of word ends a transcript (see :func:`ending_kind`)."""

    NAME = "name"
    GUESS = "guess"
    FUNCTION = "function"
    CONTENT = "content"


def ending_kind(text: str) -> Ending:
    """The kind of the last word of `text`: a capitalised name, one of :data:`GUESS_WORDS`,
    another closed-class word (:data:`FUNCTION_WORDS`), or a content word."""
    if ends_on_a_name(text):
        return Ending.NAME
    word = last_word(text)
    if word in GUESS_WORDS:
        return Ending.GUESS
    if word in FUNCTION_WORDS:
        return Ending.FUNCTION
    return Ending.CONTENT


DO_WORDS: frozenset[str] = frozenset(["do", "does", "did", "don't", "doesn't", "didn't"])
WH_WORDS: frozenset[str] = frozenset(["what", "when", "where", "why", "how", "which", "who", "whose", "whom"])
_ARTICLES: frozenset[str] = frozenset(["a", "an", "the", "my", "your", "his", "her", "our", "their", "some", "any"])
_SENTENCES = re.compile(r"[.?!]+\s+")


def lacks_main_verb(text: str) -> bool:
    """The last sentence is a question with "do" support that stops after its subject:
    "Why do cats?", "How many likes does this?", "What does the?". English puts the main
    verb after the subject ("Why do cats purr?"), and Whisper ends a question cut off after
    "does the" with a pronoun or a noun as if it were finished."""
    sentence = _SENTENCES.split(text.strip())[-1]
    words = _WORD.findall(sentence.lower())
    do_at = [i for i, w in enumerate(words) if w in DO_WORDS]
    if not do_at or not (do_at[-1] == 0 or words[0] in WH_WORDS):
        return False
    rest = words[do_at[-1] + 1:]
    return len(rest) == 1 or (len(rest) == 2 and rest[0] in _ARTICLES)


STRANDED: frozenset[str] = frozenset(
    ["of", "to", "about", "for", "with", "at", "by", "from", "in", "on", "into", "like"])
"""Prepositions a whole question may end on ("What are clouds made of?", "Who is it for?"),
though a pause after them is far more often the middle of one."""


def stranded_question(text: str) -> bool:
    """A question marked finished by Whisper that ends on a preposition of :data:`STRANDED`:
    :data:`NON_FINAL_WORDS` reads it unfinished, a language model can tell."""
    stripped = text.strip()
    return stripped.endswith("?") and last_word(stripped) in STRANDED


def wants_sentence_end(text: str) -> bool:
    """Is the sentence-end score of this tentative transcript of use to the policy? Not for
    one that reads unfinished, unless it is a :func:`stranded_question`."""
    return transcript_cue(text) is not Cue.INCOMPLETE or stranded_question(text)


def transcript_cue(text: str, do_questions: bool = True) -> Cue:
    """What the tentative transcript says about the end of the turn (see the module doc);
    `do_questions`: use :func:`lacks_main_verb`."""
    stripped = text.strip()
    word = last_word(stripped)
    if not word:
        return Cue.UNKNOWN
    if (word in NON_FINAL_WORDS or _TRAILING_DOTS.search(stripped)
            or (do_questions and lacks_main_verb(stripped))):
        return Cue.INCOMPLETE
    if stripped[-1] in "?.!":
        return Cue.COMPLETE
    return Cue.UNKNOWN
