"""LinkedIn's "little" text format: the commentary of a post is markup, not plain text.

In the Posts API, ``( ) [ ] { } < > @ | ~ _ * \\`` build mentions and templates; left bare,
LinkedIn cuts the published text at the first one it cannot parse (the API still answers
201). ``escape`` backslash-escapes them so the text shows as written.

Two things are left alone on purpose: ``#`` (a ``#word`` must stay a clickable hashtag) and
URLs (escaping inside them stops LinkedIn from linking them). A URL ends at whitespace or at
a bracket, so ``(see https://example.com)`` still escapes its closing parenthesis.
"""

from __future__ import annotations

import re

__all__ = ["RESERVED", "escape"]

RESERVED = frozenset("()[]{}<>@|~_*\\")
_URL = re.compile(r"https?://[^\s()\[\]{}<>|\\]+")


def _escape_plain(text: str) -> str:
    return "".join(f"\\{c}" if c in RESERVED else c for c in text)


def escape(text: str) -> str:
    """``text`` as little-format commentary that LinkedIn shows exactly as ``text``."""
    out: list[str] = []
    pos = 0
    for match in _URL.finditer(text):
        out.append(_escape_plain(text[pos : match.start()]))
        out.append(match.group())
        pos = match.end()
    out.append(_escape_plain(text[pos:]))
    return "".join(out)
