"""How Telegram measures a message: UTF-16 code units of the text after entity parsing.

The Bot API limits (4096 for a message, 1024 for a media caption) apply to the text the user
will see, so HTML markup does not count. Each code point outside the Basic Multilingual Plane
(most emoji, rare CJK) takes two UTF-16 code units, so "👍🏽" is 4 long, not 1 or 2.
"""

from __future__ import annotations

from html.parser import HTMLParser

__all__ = ["CAPTION_LIMIT", "MESSAGE_LIMIT", "utf16_length", "visible_text"]

#: ``sendMessage`` text, 1-4096 characters after entities parsing.
MESSAGE_LIMIT = 4096
#: ``sendPhoto`` / ``sendMediaGroup`` caption, 0-1024 characters after entities parsing.
CAPTION_LIMIT = 1024


def utf16_length(text: str) -> int:
    """The length of ``text`` in UTF-16 code units, as Telegram counts it."""
    return len(text.encode("utf-16-le")) // 2


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def visible_text(text: str, parse_mode: str | None) -> str:
    """The text a reader sees once Telegram has parsed ``parse_mode`` markup.

    HTML is parsed exactly (tags dropped, entities decoded). Markdown modes are left as they
    are: their escaping rules depend on context, and counting the markup characters too can
    only over-estimate the length, never let a too-long message through.
    """
    if parse_mode is None or parse_mode.lower() != "html":
        return text
    collector = _TextCollector()
    collector.feed(text)
    collector.close()
    return "".join(collector.parts)
