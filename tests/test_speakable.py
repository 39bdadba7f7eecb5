"""pipeline.speakable: LLM markdown -> text a TTS voice can read."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.speakable import (
    LineKind,
    line_kind,
    may_be_fence,
    open_construct,
    speakable,
    speakable_piece,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# Title\nBody text.", "Title. Body text."),
        ("### Deep header", "Deep header."),
        ("#hashtag stays", "#hashtag stays."),
        ("- one\n- two", "one. two."),
        ("* star item\n+ plus item", "star item. plus item."),
        ("  - nested item", "nested item."),
        ("- [ ] open task\n- [x] done task", "open task. done task."),
        ("> quoted text", "quoted text."),
    ],
)
def test_headers_bullets_and_quotes_are_stripped(text: str, expected: str) -> None:
    assert speakable(text) == expected


def test_numbered_items_keep_their_text_and_end_as_sentences() -> None:
    text = "Steps:\n1. Open the door\n2) Walk in!\n10. Sit down."
    assert speakable(text) == "Steps: Open the door. Walk in! Sit down."


def test_numbers_that_are_not_list_markers_stay() -> None:
    assert speakable("1.5 liters and 2023. Good.") == "1.5 liters and 2023. Good."
    assert speakable("-5 degrees") == "-5 degrees."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("This is **bold** text.", "This is bold text."),
        ("This is *italic* text.", "This is italic text."),
        ("This is __bold__ and _italic_.", "This is bold and italic."),
        ("Keep snake_case and my_var_name.", "Keep snake_case and my_var_name."),
        ("Five 5*3 stays.", "Five 5*3 stays."),
        ("***Both*** at once.", "Both at once."),
        ("~~struck~~ out.", "struck out."),
        ("**Done.** Next.", "Done. Next."),
    ],
)
def test_emphasis_markers_are_dropped_but_not_inside_words(text: str, expected: str) -> None:
    assert speakable(text) == expected


def test_inline_code_keeps_its_content() -> None:
    assert speakable("Run `make test` now.") == "Run make test now."


def test_fenced_code_blocks_are_dropped() -> None:
    text = "Here:\n```python\nprint('Hi. There')\nx = 1\n```\nThat prints."
    assert speakable(text) == "Here: That prints."
    assert speakable("Tilde:\n~~~\ncode\n~~~\nAfter.") == "Tilde: After."


def test_an_unclosed_fence_drops_the_rest() -> None:
    assert speakable("Before.\n```\ncode until the end") == "Before."


def test_a_one_line_code_block_is_dropped_without_opening_a_fence() -> None:
    assert speakable("```x = 1```\nStill here.") == "Still here."


def test_links_keep_their_label_and_images_go() -> None:
    assert speakable("See [the docs](https://x.io/a_b.html) now.") == "See the docs now."
    assert speakable("A ![a cat photo](cat.png) here.") == "A here."
    assert speakable("Cite [1] please.") == "Cite 1 please."


def test_html_tags_and_entities() -> None:
    assert speakable("Use <b>bold</b><br/>and <a href='x y'>links</a>.") == ("Use bold and links.")
    assert speakable("Tom &amp; Jerry, 5 &gt; 3") == "Tom and Jerry, 5 > 3."


@pytest.mark.parametrize(
    "emoji",
    ["😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "✅", "🫨", "©", "™"],
)
def test_emoji_and_pictographs_are_dropped(emoji: str) -> None:
    assert speakable(f"Nice {emoji} work{emoji}!") == "Nice work!"


def test_a_keycap_keeps_its_digit() -> None:
    assert speakable("Step 1️⃣ first") == "Step 1 first."


def test_readable_symbols_and_scripts_stay() -> None:
    assert speakable("It costs $5, €3 or ¥100.") == "It costs $5, €3 or ¥100."
    assert speakable("About 50 % or 20°C; 2 + 2 = 4.") == "About 50% or 20°C; 2 + 2 = 4."
    assert speakable("Café naïve, 東京, नमस्ते.") == "Café naïve, 東京, नमस्ते."


def test_punctuation_only_tokens_keep_their_pause() -> None:
    assert speakable("Really ? Yes - of course ...") == "Really? Yes, of course..."
    assert speakable("---\n***\n| a | b |\n|---|---|\n====") == "a b."


def test_whitespace_is_collapsed() -> None:
    assert speakable("  many \t spaces\r\n\r\n\nand   lines  ") == "many spaces. and lines."


def test_empty_and_blank() -> None:
    assert speakable("") == ""
    assert speakable(" \n\t\r\n") == ""
    assert speakable("😀 🎉\n- \n**") == ""


def test_pieces_follow_line_flags() -> None:
    assert speakable_piece("1. Apples", line_start=True, line_end=False) == "Apples"
    assert speakable_piece("1. Apples", line_start=False, line_end=False) == "1. Apples"
    assert speakable_piece("Apples", line_start=False, line_end=True) == "Apples."
    assert speakable_piece('He said "Hi."', line_start=False, line_end=True) == 'He said "Hi."'


def test_line_kinds_and_fence_prefixes() -> None:
    assert line_kind("```python") is LineKind.FENCE
    assert line_kind("  ~~~") is LineKind.FENCE
    assert line_kind("```x```") is LineKind.CODE
    assert line_kind("`x` code") is LineKind.TEXT
    assert may_be_fence("") and may_be_fence(" `") and may_be_fence("``")
    assert not may_be_fence("`x") and not may_be_fence("Hello")


def test_open_construct() -> None:
    assert open_construct("see <a href='x")
    assert open_construct("an ![alt text")
    assert not open_construct("a <b>closed</b> tag")
    assert not open_construct("a < b")
    assert not open_construct("a ![alt](x.png) done")


_UNSPEAKABLE = {"So", "Sk", "Cs", "Co", "Cn", "Me"}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_output_is_clean_for_any_text(text: str) -> None:
    """Whatever comes in: no emoji/symbol characters, no markers, no extra whitespace."""
    out = speakable(text)
    assert out == " ".join(out.split())
    assert "**" not in out and "`" not in out
    assert not any(unicodedata.category(ch) in _UNSPEAKABLE and ch != "°" for ch in out)
    assert "\u200d" not in out and "\ufe0f" not in out
