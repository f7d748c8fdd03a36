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


def test_safe_can_keep_line_breaks() -> None:
    assert safe("one\x1b\ntwo", keep_newlines=True) == "one\\x1b\ntwo"


@pytest.mark.parametrize(
    ("text", "width"),
    [("abc", 3), ("日本語", 6), ("e\u0301", 1), ("👨‍👩‍👧", 2), ("🇺🇦", 2), ("a\u200bb", 2)],
)
def test_display_width_counts_terminal_columns(text: str, width: int) -> None:
    assert display_width(text) == width
