"""Rich-text facets: what makes links, mentions and hashtags live in a Bluesky post.

Bluesky does not parse post text. The client marks each link, mention and tag with a facet
that gives its position as a range of UTF-8 **bytes** (not characters: ``é`` is two bytes,
``👍`` four) and what it points to. Detection follows the official client's rules: a link
starts with ``http://`` or ``https://`` and loses trailing punctuation; a mention is ``@`` and
a domain-like handle; a tag is ``#`` and up to 64 characters that are not all digits. Each
must start the text or follow white space (or an opening parenthesis, for links and
mentions).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Span", "facet", "find_spans"]

_LINK = re.compile(r"(?:^|(?<=[\s(]))https?://\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?:^|(?<=[\s(]))@([a-zA-Z0-9.-]+)")
_HANDLE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+"
    r"[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$"
)
# Invisible characters end a tag as white space does (soft hyphen, joiners, word joiner...).
_TAG = re.compile(r"(?:^|(?<=\s))[#＃]([^\s\u00ad\u2060\u200a\u200b\u200c\u200d\u20e2]+)")
_TAG_MAX_CHARS = 64
_LINK_TRAILING = ".,;:!?\"'"

Kind = Literal["link", "mention", "tag"]


@dataclass(frozen=True)
class Span:
    """A facet's place in the text, as UTF-8 byte offsets, and its target (URL, handle, tag)."""

    kind: Kind
    byte_start: int
    byte_end: int
    value: str


def _trim_link(url: str) -> str:
    while url:
        unbalanced = url[-1] == ")" and url.count("(") < url.count(")")
        if url[-1] not in _LINK_TRAILING and not unbalanced:
            break
        url = url[:-1]
    return url


def _is_punctuation(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def _tag(raw: str) -> str | None:
    """The tag in ``raw`` (the text after ``#``), or None when it is not one."""
    tag = raw
    while tag and _is_punctuation(tag[-1]):
        tag = tag[:-1]
    if not tag or tag.startswith("\ufe0f") or len(tag) > _TAG_MAX_CHARS:
        return None  # "#️⃣" is a keycap emoji, not a tag
    if all(ch.isdigit() or _is_punctuation(ch) for ch in tag):
        return None  # "#1" is a number
    return tag


def find_spans(text: str) -> list[Span]:
    """Links, mentions and tags in ``text``, ordered by position, never overlapping."""

    def byte_offset(index: int) -> int:
        return len(text[:index].encode("utf-8"))

    found: list[tuple[int, int, Kind, str]] = []  # character offsets
    for m in _LINK.finditer(text):
        url = _trim_link(m.group())
        if "://" in url and not url.endswith("://"):
            found.append((m.start(), m.start() + len(url), "link", url))
    for m in _MENTION.finditer(text):
        handle = m.group(1).rstrip(".-")
        if _HANDLE.match(handle):
            found.append((m.start(), m.start(1) + len(handle), "mention", handle.lower()))
    for m in _TAG.finditer(text):
        tag = _tag(m.group(1))
        if tag is not None:
            found.append((m.start(), m.start(1) + len(tag), "tag", tag))

    spans: list[Span] = []
    end = 0
    for start, stop, kind, value in sorted(found):
        if start >= end:  # a tag or mention inside a link belongs to the link
            spans.append(Span(kind, byte_offset(start), byte_offset(stop), value))
            end = stop
    return spans


def facet(span: Span, dids: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``app.bsky.richtext.facet`` for ``span``; None for a mention whose handle did not
    resolve (``dids`` maps handles to DIDs), which stays plain text as in the official app."""
    feature: dict[str, Any]
    if span.kind == "link":
        feature = {"$type": "app.bsky.richtext.facet#link", "uri": span.value}
    elif span.kind == "mention":
        did = dids.get(span.value)
        if did is None:
            return None
        feature = {"$type": "app.bsky.richtext.facet#mention", "did": did}
    else:
        feature = {"$type": "app.bsky.richtext.facet#tag", "tag": span.value}
    return {
        "index": {"byteStart": span.byte_start, "byteEnd": span.byte_end},
        "features": [feature],
    }
