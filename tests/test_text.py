"""scheduler.text: grapheme clusters, terminal width and safe printing of stored text."""

from __future__ import annotations

import pytest

from scheduler.text import display_width, grapheme_count, graphemes, safe


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("hello", 5),
        ("a\r\nb", 3),
        ("👨‍👩‍👧", 1),
        ("🇺🇦🇱🇻", 2),
        ("e\u0301", 1),
        ("\u1100\u1161\u11a8", 1),  # conjoining jamo
        ("क्षि", 1),  # Devanagari conjunct (GB9c)
        ("🫨", 1),  # Unicode 15 emoji
        ("", 0),
    ],
)
def test_grapheme_clusters(text: str, count: int) -> None:
    assert grapheme_count(text) == count
    assert "".join(graphemes(text)) == text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),
        ("over\rwrite", "over\\rwrite"),
        ("abc\u202edef", "abc\\u202edef"),  # RIGHT-TO-LEFT OVERRIDE
        ("nul\x00", "nul\\x00"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("bell\x07", "bell\\x07"),
        ("two\nlines", "two\\nlines"),
        ("plain Ünïcödé 日本", "plain Ünïcödé 日本"),
    ],
)
def test_safe_escapes_what_would_change_the_terminal(raw: str, shown: str) -> None:
    assert safe(raw) == shown


@pytest.mark.parametrize(
    "text",
    [
        "👩\u200d💻 at work",  # woman technologist: one emoji of three code points
        "👨\u200d👩\u200d👧\u200d👦",  # a family
        "🏳\ufe0f\u200d🌈",  # rainbow flag
        "می\u200cخواهم",  # Persian: the non-joiner is part of the word's spelling
        "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland
    ],
)
def test_safe_leaves_the_joiners_and_flag_tags_text_is_written_with(text: str) -> None:
    assert safe(text) == text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\u200dstart", "\\u200dstart"),
        ("end\u200d", "end\\u200d"),
        ("a \u200d b", "a \\u200d b"),
        ("x\u200d\u200dy", "x\\u200d\\u200dy"),
        ("\U000e0067 a tag alone", "\\U000e0067 a tag alone"),
        ("a\u202eb\u200dc", "a\\u202eb\u200dc"),
    ],
)
def test_a_joiner_that_joins_nothing_or_a_tag_outside_a_flag_is_still_escaped(
    raw: str, shown: str
) -> None:
    assert safe(raw) == shown


def test_safe_can_keep_line_breaks() -> None:
    assert safe("one\x1b\ntwo", keep_newlines=True) == "one\\x1b\ntwo"


@pytest.mark.parametrize(
    ("text", "width"),
    [("abc", 3), ("日本語", 6), ("e\u0301", 1), ("👨‍👩‍👧", 2), ("🇺🇦", 2), ("a\u200bb", 2)],
)
def test_display_width_counts_terminal_columns(text: str, width: int) -> None:
    assert display_width(text) == width
