"""Recognising our post in an X timeline, to settle a post whose create call timed out.

X does not return a post's text as it was sent: every link becomes a t.co link, an image
adds a t.co link of its own, and ``&``, ``<`` and ``>`` come back as HTML entities. The
timeline's ``entities.urls`` map each t.co link to what it stands for, so the sent text can
be rebuilt and compared exactly (up to Unicode normalisation, whitespace runs and a trailing
slash on a link).
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Mapping
from typing import Any

from .weighted import find_urls

__all__ = ["normalise", "timeline_text"]


def timeline_text(post: Mapping[str, Any]) -> str:
    """The text of a timeline post with t.co links expanded and image links removed.

    Long posts (over 280) carry their full text and entities in ``note_tweet``.
    """
    source: Mapping[str, Any] = post
    note = post.get("note_tweet")
    if isinstance(note, Mapping) and isinstance(note.get("text"), str):
        source = note
    text = str(source.get("text", ""))
    entities = source.get("entities")
    urls = entities.get("urls") if isinstance(entities, Mapping) else None
    for url in urls if isinstance(urls, list) else []:
        if not isinstance(url, Mapping) or not isinstance(url.get("url"), str):
            continue
        if url.get("media_key"):
            replacement = ""
        else:
            replacement = str(url.get("unwound_url") or url.get("expanded_url") or url["url"])
        text = text.replace(url["url"], replacement)
    return html.unescape(text)


def normalise(text: str) -> str:
    """A form of ``text`` that survives X's rewriting, for equality tests."""
    text = unicodedata.normalize("NFC", text)
    pieces = []
    position = 0
    for start, end in find_urls(text):
        pieces.append(text[position:start])
        pieces.append(text[start:end].rstrip("/"))
        position = end
    pieces.append(text[position:])
    return " ".join("".join(pieces).split())
