"""pipeline.segmenter: streamed LLM deltas -> speakable segments for TTS."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.segmenter import StreamSegmenter
from pipeline.speakable import speakable


def segments(
    text: str | list[str], first_min_words: int = 3, max_words: int = 30, first_max_words: int = 10
) -> list[str]:
    """All segments of one answer, pushed as the given deltas (a str is one delta)."""
    seg = StreamSegmenter(first_min_words=first_min_words, max_words=max_words,
                          first_max_words=first_max_words)
    out: list[str] = []
    for delta in [text] if isinstance(text, str) else text:
        out += seg.push(delta)
    return out + seg.finish()


def chars(text: str) -> list[str]:
    """The most adversarial split: one character per delta."""
    return list(text)


def audible(segment: str) -> bool:
    """Has something to say: a letter, a digit, or a readable (currency/math) symbol."""
    return any(ch.isalnum() or unicodedata.category(ch) in ("Sc", "Sm") for ch in segment)


def check(text: str, expected: list[str], **kwargs: int) -> None:
    """`text` gives `expected` whether pushed whole or one character at a time."""
    assert segments(text, **kwargs) == expected
    assert segments(chars(text), **kwargs) == expected


# ---- the first segment is released early ----------------------------------------------


def test_first_segment_is_released_at_the_first_clause() -> None:
    seg = StreamSegmenter()
    assert seg.push("Of course we can, ") == []  # waits for something to follow
    assert seg.push("let me") == ["Of course we can,"]
    assert seg.push(" check that, quickly.") == []  # later segments end at sentence ends
    assert seg.finish() == ["let me check that, quickly."]


def test_first_clause_needs_first_min_words() -> None:
    check("Yes, sure, I think, that works.", ["Yes, sure, I think,", "that works."])
    check("Yes, sure, that works.", ["Yes,", "sure, that works."], first_min_words=1)
    check("Sure, I can help with that.", ["Sure, I can help with that."])


@pytest.mark.parametrize("mark", [";", ":"])
def test_first_clause_at_semicolon_and_colon(mark: str) -> None:
    check(f"Here is the plan{mark} we go now.", [f"Here is the plan{mark}", "we go now."])


@pytest.mark.parametrize("dash", ["-", "—", "–", "--"])
def test_first_clause_at_a_free_standing_dash(dash: str) -> None:
    check(f"I think so {dash} but let me check.", ["I think so,", "but let me check."])


def test_a_dash_inside_a_word_is_not_a_clause() -> None:
    check("A well-known fact—really, it is.", ["A well-known fact—really,", "it is."])


def test_a_sentence_end_comes_before_the_clause_rule() -> None:
    check("Hi! How are you, my friend?", ["Hi!", "How are you, my friend?"])


def test_later_segments_end_at_sentence_ends_only() -> None:
    text = "First, a short one. Then, after a pause, more; and more: done."
    check(text, ["First, a short one.", "Then, after a pause, more; and more: done."])


def test_first_clause_rule_again_after_finish() -> None:
    seg = StreamSegmenter()
    assert seg.push("One two three, four. Five six seven, eight. ") == [
        "One two three,",
        "four.",
    ]
    assert seg.finish() == ["Five six seven, eight."]
    assert seg.push("Nine ten eleven, twelve.") == ["Nine ten eleven,"]
    assert seg.finish() == ["twelve."]


def test_reset_drops_everything_and_restarts_the_answer() -> None:
    seg = StreamSegmenter()
    assert seg.push("One two three, four five. Six seven") == ["One two three,", "four five."]
    seg.reset()
    assert seg.push("Eight nine ten, eleven") == ["Eight nine ten,"]
    assert seg.finish() == ["eleven."]
    seg.push("```\nhalf a code block")
    seg.reset()
    assert seg.push("Back to prose, yes.") == ["Back to prose,"]


# ---- where a sentence does not end -----------------------------------------------------


@pytest.mark.parametrize(
    "sentence",
    [
        "We met Dr. Smith today.",
        "We met Mr. Brown today.",
        "We met Mrs. Brown today.",
        "Eat fruit e.g. Apples today.",
        "Eat fruit e.g. apples today.",
        "Eat fruit i.e. Apples today.",
        "Bring pens, paper etc. and ink.",
        "The U.S. Army is big.",
        "It was Ali vs. Frazier then.",
        "It is 3.14 meters long.",
        "It costs $1,000 in total.",
        "Ring at 5 p.m. and wait.",
        "J. R. R. Tolkien wrote it.",
        "Visit https://example.com/a.b?c=d today.",
        "Write to a.b@example.com today.",
        "Then he asked why? and left.",
        "It was fine... and then it rained.",
        "It was fine… and then it rained.",
        "It was fine... 3 times.",
    ],
)
def test_no_split_inside_a_sentence(sentence: str) -> None:
    check(f"{sentence} Next one.", [sentence, "Next one."])


def test_abbreviation_split_across_deltas() -> None:
    text = "Eat fruit e.g. Apples today. Next one."
    expected = ["Eat fruit e.g. Apples today.", "Next one."]
    assert segments(["Eat fruit e.", "g. Apples today. Next one."]) == expected
    assert segments(["Eat fruit e.g", ". Apples today. Next one."]) == expected
    assert segments(text) == expected


def test_decimal_split_across_deltas() -> None:
    assert segments(["Pi is about 3.", "14 in total. Next."]) == [
        "Pi is about 3.14 in total.",
        "Next.",
    ]
    assert segments(["Pi is about 3", ".14 in total. Next."]) == [
        "Pi is about 3.14 in total.",
        "Next.",
    ]


def test_a_comma_between_digits_is_not_a_clause() -> None:
    check(
        "We sold 1,000 units today, which is great.",
        ["We sold 1,000 units today,", "which is great."],
    )
    assert segments(["We sold 1,", "000 units today, which is great."]) == [
        "We sold 1,000 units today,",
        "which is great.",
    ]


def test_an_ellipsis_ends_a_sentence_only_before_a_capital() -> None:
    check(
        "Wait... what happened? Well… Then we go.",
        ["Wait... what happened?", "Well…", "Then we go."],
    )
    check("Hmm... Okay, fine.", ["Hmm...", "Okay, fine."])


def test_url_and_email_are_not_cut_and_end_sentences() -> None:
    text = "See https://example.com/a.b?c=d. Mail a.b@example.com. Thanks."
    check(text, ["See https://example.com/a.b?c=d.", "Mail a.b@example.com.", "Thanks."])
    deltas = ["See https://exa", "mple.com/a.", "b?c", "=d. Mail a.", "b@example.", "com. Thanks."]
    assert segments(deltas) == segments(text)


# ---- quotes and brackets ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('He said "Hi." Then he left.', ['He said "Hi."', "Then he left."]),
        ("He said “Hi!” Then he left.", ["He said “Hi!”", "Then he left."]),
        ("She said 'no.' Then she left.", ["She said 'no.'", "Then she left."]),
        ("(It was late.) Then we slept.", ["(It was late.)", "Then we slept."]),
        ("We slept (it was late). Then we woke.", ["We slept (it was late).", "Then we woke."]),
        ('It ended. "Really?" she asked.', ["It ended.", '"Really?" she asked.']),
        ("It ended. (Then we left.)", ["It ended.", "(Then we left.)"]),
    ],
)
def test_closing_quotes_and_brackets_stay_with_the_sentence(text: str, expected: list[str]) -> None:
    check(text, expected)


# ---- over-long sentences ---------------------------------------------------------------

_WORDS = ["One", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
_WORDS += ["eleven", "twelve"]


def test_an_over_long_sentence_is_split_at_its_last_clause() -> None:
    text = "Start. " + " ".join(_WORDS[:4]) + ", " + " ".join(_WORDS[4:10]) + " end."
    check(
        text, ["Start.", "One two three four,", "five six seven eight nine ten end."], max_words=8
    )


def test_an_over_long_sentence_without_clause_is_split_at_max_words() -> None:
    text = "Start. " + " ".join(_WORDS) + "."
    expected = ["Start.", " ".join(_WORDS[:5]), " ".join(_WORDS[5:10]), "eleven twelve."]
    check(text, expected, max_words=5)


def test_a_sentence_of_exactly_max_words_is_not_split() -> None:
    text = "Start. " + " ".join(_WORDS[:5]) + ". Done."
    check(text, ["Start.", " ".join(_WORDS[:5]) + ".", "Done."], max_words=5)


def test_the_first_segment_is_split_too_when_over_long() -> None:
    check(" ".join(_WORDS) + ".", [" ".join(_WORDS[:6]), " ".join(_WORDS[6:]) + "."], max_words=6)


def test_a_long_first_sentence_without_commas_is_cut_early_before_a_phrase() -> None:
    """The first segment decides when speech starts: it is kept short (10 words) even when
    the LLM writes no comma, and cut where a speaker would pause."""
    text = ("The story of a brave knight in the dragon's cave is one that has been passed "
            "down through many generations. It starts in a village.")
    check(text, ["The story of a brave knight",
                 "in the dragon's cave is one that has been passed down through many generations.",
                 "It starts in a village."])


def test_a_long_first_sentence_with_no_phrase_word_is_cut_at_the_limit() -> None:
    check(" ".join(_WORDS) + ".", [" ".join(_WORDS[:10]), " ".join(_WORDS[10:]) + "."])
    check(" ".join(_WORDS) + ".", [" ".join(_WORDS[:4]), " ".join(_WORDS[4:]) + "."],
          first_max_words=4)


# ---- markdown, emoji, line breaks ------------------------------------------------------


def test_markdown_list_header_bold_code_and_link() -> None:
    text = (
        "## Summary\n\nHere are the options:\n"
        "1. **Apples** are red\n2. *Pears* are `green`\n"
        "- See [the docs](https://x.io/a.b) here\n![a photo. Nice](p.png)\n"
        "```python\nprint('Not. Spoken.')\n```\nThat is all."
    )
    expected = [
        "Summary.",
        "Here are the options:",
        "Apples are red.",
        "Pears are green.",
        "See the docs here.",
        "That is all.",
    ]
    check(text, expected)


def test_markdown_split_mid_marker() -> None:
    deltas = [
        "This is *",
        "*bo",
        "ld*",
        "* text. And `co",
        "de` too",
        ". [Li",
        "nk](ht",
        "tp://a.b) end.",
    ]
    assert segments(deltas) == ["This is bold text.", "And code too.", "Link end."]


def test_a_bold_sentence_end_keeps_its_closers() -> None:
    check("**Done.** Next step.", ["Done.", "Next step."])


def test_emoji_are_dropped_and_never_alone() -> None:
    check("Great job! 🎉 See you soon. 👋🏽", ["Great job!", "See you soon."])
    check("Family 👨‍👩‍👧 time! 🇫🇷", ["Family time!"])
    assert segments(["Nice 👨", "\u200d👩", "\u200d👧 work!"]) == ["Nice work!"]


def test_lines_and_paragraphs_end_segments() -> None:
    check(
        "First line\nSecond line\n\nNew paragraph",
        ["First line.", "Second line.", "New paragraph."],
    )


def test_crlf_split_between_deltas() -> None:
    expected = ["First line.", "Second line."]
    assert segments(["First line\r", "\nSecond line"]) == expected
    assert segments("First line\r\nSecond line") == expected


def test_no_empty_or_punctuation_only_segments() -> None:
    check("---\n\n***\n😀 🎉\n- \n> \n...\n| --- |\n", [])
    check("Hello there. ... !! 😀\nBye.", ["Hello there.", "Bye."])
    check("Really ? Yes !", ["Really?", "Yes!"])


def test_flush_at_end() -> None:
    seg = StreamSegmenter()
    assert seg.push("no punctuation at all") == []
    assert seg.finish() == ["no punctuation at all."]
    assert seg.push("Ends with a question?") == []  # might still go on: "?" is not enough
    assert seg.finish() == ["Ends with a question?"]
    assert seg.finish() == []


def test_empty_deltas_and_empty_answer() -> None:
    seg = StreamSegmenter()
    assert seg.push("") == []
    assert seg.finish() == []


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        StreamSegmenter(first_min_words=0)
    with pytest.raises(ValueError):
        StreamSegmenter(max_words=0)


# ---- properties ------------------------------------------------------------------------

# fmt: off
_FRAGMENTS = [
    "Hello there.", "Sure, I can help with that.", "Dr. Smith arrived at 3.14 pm.",
    "It costs $1,000 today!", "Is it e.g. fine?", "J. R. R. Tolkien wrote it.",
    "See https://example.com/a.b?c=d for more.", "Mail a.b@example.com now.",
    'He said "Hi." Then he left.', "(It was late.)", "Wait... what?", "Well… Maybe.",
    "**Bold** text.", "*italic* and _under_ and snake_case", "`code span.` here",
    "[a link. More](https://x.io/y)", "![img. Alt](p.png)", "<b>tag</b>", "<a href='x. Y'>",
    "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "1️⃣", "\n", "\n\n", "\r\n", "\r", "- ", "* ", "1. ", "## ", "> ",
    "```python\nprint(1)\n```\n", "```", " - ", " — ", ", ", "; ", ": ", "...", "…", "etc.",
    "vs.", "U.S.", "i.e.", "Mr.", "Mrs.", "3.", "14", "the", "The", "and", "A", "word", "Then",
    "?", "!", ".", "**", "_", "~~", "`", "[", "]", "(", ")", '"', "'", "—", "-", "|", "#",
    "&amp;", "=", "+", "%", "$",
]
# fmt: on
_ALPHABET = "abcXYZé 019.,!?-*_#`[]()<>\n\r\"'…😀:;~|=+&%$—\u200d\ufe0f\t"

_piece = st.one_of(
    st.sampled_from(_FRAGMENTS),
    st.sampled_from(_FRAGMENTS),
    st.sampled_from(_FRAGMENTS),
    st.text(alphabet=_ALPHABET, min_size=1, max_size=12),
)
_text = st.lists(st.tuples(_piece, st.sampled_from([" ", " ", "", "\n"])), max_size=25).map(
    lambda parts: "".join(a + b for a, b in parts)
)


def _split(data: st.DataObject, text: str) -> list[str]:
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=40), label="cuts")
    bounds = [0, *sorted(cuts), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=200, deadline=None)
@given(
    text=_text,
    data=st.data(),
    first_min_words=st.sampled_from([1, 3]),
    max_words=st.sampled_from([3, 6, 30]),
)
def test_segments_do_not_depend_on_the_deltas(
    text: str, data: st.DataObject, first_min_words: int, max_words: int
) -> None:
    whole = segments(text, first_min_words, max_words)
    assert segments(_split(data, text), first_min_words, max_words) == whole
    assert " ".join(whole).split() == speakable(text).split()
    assert all(audible(s) and s == s.strip() for s in whole)


@settings(max_examples=100, deadline=None)
@given(text=_text)
def test_one_char_deltas_and_reuse_after_finish(text: str) -> None:
    """The worst split, on one segmenter reused for two answers (finish resets it)."""
    whole = segments(text)
    seg = StreamSegmenter()
    for _ in range(2):
        out: list[str] = []
        for ch in text:
            out += seg.push(ch)
        assert out + seg.finish() == whole


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=60), data=st.data())
def test_any_text_any_split(text: str, data: st.DataObject) -> None:
    """Arbitrary Unicode, too: same segments, same words, nothing silent."""
    whole = segments(text)
    assert segments(_split(data, text)) == whole
    assert " ".join(whole).split() == speakable(text).split()
    assert all(audible(s) for s in whole)
